//! The `table` output: readable in an 80-column terminal. Relative times are computed
//! against the snapshot's own time (`now_unix`), so the reader's clock does not matter.

use std::fmt::Write as _;

use super::model::{Channel, ChannelState, Peer, Status};

/// Width the table is laid out for.
pub const WIDTH: usize = 80;

/// Renders the whole status.
pub fn table(status: &Status) -> String {
    let mut out = String::new();
    let iface = &status.interface;
    let gw = &status.gateway;
    let _ = writeln!(
        out,
        "interface {} of cluster {} (gateway {}, {} backend)",
        iface.name, gw.cluster, gw.version, gw.backend
    );
    let _ = writeln!(out, "  public key  {}", iface.public_key);
    let key_age = iface
        .key_age_seconds
        .map_or_else(|| "unknown".to_owned(), duration);
    let _ = writeln!(out, "  key age     {key_age}");
    let _ = writeln!(
        out,
        "  listening   UDP {}, tunnel address {}",
        iface.listen_port, iface.address
    );
    out.push('\n');

    if status.peers.is_empty() {
        out.push_str("no peers applied\n");
    } else {
        let rows: Vec<Vec<String>> = status
            .peers
            .iter()
            .map(|peer| summary_row(peer, status.now_unix))
            .collect();
        columns(
            &mut out,
            &["CLUSTER", "ENDPOINT", "CONNECTED", "HANDSHAKE", "RX", "TX"],
            &rows,
        );
        out.push('\n');
        let rows: Vec<Vec<String>> = status
            .peers
            .iter()
            .flat_map(|peer| {
                let mut ips = peer.allowed_ips.iter();
                let first = vec![
                    peer.cluster.clone(),
                    peer.public_key.clone(),
                    ips.next().cloned().unwrap_or_else(|| "-".to_owned()),
                ];
                std::iter::once(first)
                    .chain(ips.map(|ip| vec![String::new(), String::new(), ip.clone()]))
            })
            .collect();
        columns(&mut out, &["CLUSTER", "PUBLIC KEY", "ALLOWED IPS"], &rows);
        if !status.channels.is_empty() {
            out.push('\n');
            let mut channels: Vec<&Channel> = status.channels.iter().collect();
            channels.sort_by(|a, b| a.cluster.cmp(&b.cluster).then(a.peer.cmp(&b.peer)));
            let rows: Vec<Vec<String>> = channels
                .into_iter()
                .map(|channel| channel_row(channel, status.now_unix))
                .collect();
            columns(
                &mut out,
                &["CLUSTER", "CHANNEL", "CAPABILITIES", "LAST CONTACT"],
                &rows,
            );
        }
    }

    if !status.rejected.is_empty() {
        let count = status.rejected.len();
        let plural = if count == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "\n{count} declaration{plural} rejected (not applied; see the gateway log):"
        );
        for rejected in &status.rejected {
            // File names, resource names and reasons come from outside the gateway.
            let origin = escaped(&rejected.origin);
            let what = match &rejected.name {
                Some(name) => format!("{origin} ({})", escaped(name)),
                None => origin,
            };
            wrap(
                &mut out,
                &format!("{what}: {}", escaped(&rejected.reason)),
                "  ",
                "    ",
            );
        }
    }
    out
}

/// `text` with every control character escaped (`\n`, `\u{1b}`), so that a value cannot
/// break the layout or send escape sequences to the terminal.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn summary_row(peer: &Peer, now_unix: u64) -> Vec<String> {
    vec![
        peer.cluster.clone(),
        peer.endpoint.clone().unwrap_or_else(|| "-".to_owned()),
        if peer.connected { "yes" } else { "no" }.to_owned(),
        peer.last_handshake_unix.map_or_else(
            || "never".to_owned(),
            |at| format!("{} ago", duration(now_unix.saturating_sub(at))),
        ),
        bytes(peer.rx_bytes),
        bytes(peer.tx_bytes),
    ]
}

/// How the table names a channel state; a peer without a channel says so, and a peer that
/// answers WireGuard but not the channel is "plain WireGuard".
pub fn channel_state(state: ChannelState) -> &'static str {
    match state {
        ChannelState::Up => "up",
        ChannelState::Plain => "plain WireGuard",
        ChannelState::Down => "down",
        ChannelState::None => "none (no tunnel address)",
        ChannelState::Unknown => "unknown",
    }
}

fn channel_row(channel: &Channel, now_unix: u64) -> Vec<String> {
    // Capabilities come from the peer: escaped like every outside value.
    let capabilities = if channel.capabilities.is_empty() {
        "-".to_owned()
    } else {
        escaped(&grouped(&channel.capabilities))
    };
    vec![
        channel.cluster.clone(),
        channel_state(channel.state).to_owned(),
        capabilities,
        channel.last_contact_unix.map_or_else(
            || "never".to_owned(),
            |at| format!("{} ago", duration(now_unix.saturating_sub(at))),
        ),
    ]
}

/// Joins capabilities with commas, those of one family (`rotate.announce`, `rotate.abort`)
/// as one entry (`rotate.{announce,abort}`), in the order the peer gave them.
fn grouped(capabilities: &[String]) -> String {
    let mut families: Vec<(&str, Vec<&str>)> = Vec::new();
    for capability in capabilities {
        let (family, member) = capability
            .split_once('.')
            .map_or((capability.as_str(), ""), |(f, m)| (f, m));
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, members)) => members.push(member),
            None => families.push((family, vec![member])),
        }
    }
    families
        .iter()
        .map(|(family, members)| match members.as_slice() {
            [""] => (*family).to_owned(),
            [one] => format!("{family}.{one}"),
            many => format!("{family}.{{{}}}", many.join(",")),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes left-aligned columns two spaces apart; the last column is not padded.
fn columns(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Word-wraps `text` to [`WIDTH`], the first line indented by `first`, the rest by `rest`.
fn wrap(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}

/// Formats a duration in seconds as people read it: `12s`, `3m`, `5h`, `4d`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Formats a byte count with binary units: `512 B`, `1.5 KiB`, `12 MiB`, `3.2 GiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "a display value with one decimal; f64 is exact far beyond that"
    )]
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}
