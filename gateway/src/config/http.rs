//! The `[http]` section: health and metrics listener, the admin socket, and the optional
//! admin TCP listener with its bearer token file.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::{ConfigError, bad};
use super::non_empty_path;

/// The `[http]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Health and metrics listener.
    pub listen: SocketAddr,
    /// Admin socket path (used by `peerctl`).
    pub admin_socket: PathBuf,
    /// The admin API over TCP, when configured.
    pub admin_tcp: Option<AdminTcp>,
}

/// The admin API over TCP: only with a bearer token. It speaks plain HTTP (the gateway has no
/// TLS for it), so a non-loopback address needs `http.admin_allow_plaintext_remote = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTcp {
    /// `http.admin_listen`.
    pub listen: SocketAddr,
    /// `http.admin_token_file`: a file holding the bearer token, mode 0600.
    pub token_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
    admin_socket: Option<String>,
    admin_listen: Option<String>,
    admin_token_file: Option<String>,
    admin_allow_plaintext_remote: Option<bool>,
}

pub(super) fn validate(raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8055".to_owned());
    let listen = socket_addr("http.listen", &listen_text)?;
    let admin_socket = non_empty_path(
        "http.admin_socket",
        raw.admin_socket,
        "/run/zt-gateway/admin.sock",
    )?;
    let allow_plaintext_remote = raw.admin_allow_plaintext_remote.unwrap_or(false);
    let admin_tcp = match (raw.admin_listen, raw.admin_token_file) {
        (None, None) => None,
        (Some(text), Some(token_file)) => {
            let admin_listen = socket_addr("http.admin_listen", &text)?;
            if admin_listen == listen {
                return Err(bad(
                    "http.admin_listen",
                    &text,
                    "must differ from http.listen (the admin API needs a listener of its own)",
                ));
            }
            if !admin_listen.ip().is_loopback() && !allow_plaintext_remote {
                return Err(bad(
                    "http.admin_listen",
                    &text,
                    "is not a loopback address, and the admin API speaks plain HTTP (no TLS): \
                     its bearer token would cross the network in clear text; bind it to \
                     127.0.0.1 or [::1], or set http.admin_allow_plaintext_remote = true \
                     to accept that",
                ));
            }
            Some(AdminTcp {
                listen: admin_listen,
                token_file: non_empty_path("http.admin_token_file", Some(token_file), "")?,
            })
        }
        (Some(text), None) => {
            return Err(bad(
                "http.admin_listen",
                &text,
                "needs http.admin_token_file (the admin API over TCP requires a bearer token)",
            ));
        }
        (None, Some(path)) => {
            return Err(bad(
                "http.admin_token_file",
                &path,
                "only applies with http.admin_listen",
            ));
        }
    };
    if allow_plaintext_remote && admin_tcp.is_none() {
        return Err(bad(
            "http.admin_allow_plaintext_remote",
            "true",
            "only applies with http.admin_listen",
        ));
    }
    Ok(HttpConfig {
        listen,
        admin_socket,
        admin_tcp,
    })
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| bad(key, text, "expected IP:port, e.g. 127.0.0.1:8055"))
}

#[cfg(test)]
mod tests {
    use crate::cli::Overrides;
    use crate::config::Config;

    fn http_section(extra: &str) -> String {
        format!(
            "[interface]\naddress = \"10.10.0.1/24\"\n\
             [cluster]\nname = \"a\"\n\
             [key]\nsource = \"file\"\npath = \"/k\"\n\
             [peers]\nsource = \"directory\"\npath = \"/p\"\n\
             [http]\nadmin_token_file = \"/t\"\n{extra}"
        )
    }

    fn parse(extra: &str) -> Result<Config, super::ConfigError> {
        Config::parse(&http_section(extra), "gateway.toml", &Overrides::default())
    }

    #[test]
    fn non_loopback_admin_listen_is_refused_without_the_explicit_opt_in() {
        for addr in [
            "0.0.0.0:8056",
            "10.0.0.5:8056",
            "[::]:8056",
            "[2001:db8::1]:8056",
        ] {
            let err = parse(&format!("admin_listen = \"{addr}\"\n")).expect_err(addr);
            let msg = err.to_string();
            assert!(msg.starts_with("http.admin_listen = "), "{msg}");
            assert!(msg.contains("admin_allow_plaintext_remote"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        for addr in ["127.0.0.1:8056", "127.0.0.2:8056", "[::1]:8056"] {
            let config = parse(&format!("admin_listen = \"{addr}\"\n")).expect(addr);
            assert!(config.http.admin_tcp.is_some());
        }
        let config =
            parse("admin_listen = \"0.0.0.0:8056\"\nadmin_allow_plaintext_remote = true\n")
                .expect("explicit opt-in");
        assert_eq!(
            config.http.admin_tcp.map(|tcp| tcp.listen),
            Some("0.0.0.0:8056".parse().expect("addr"))
        );
        assert!(
            parse("admin_listen = \"0.0.0.0:8056\"\nadmin_allow_plaintext_remote = false\n")
                .is_err()
        );
    }

    #[test]
    fn plaintext_remote_opt_in_alone_is_an_error() {
        let text = http_section("admin_allow_plaintext_remote = true\n")
            .replace("admin_token_file = \"/t\"\n", "");
        let err = Config::parse(&text, "gateway.toml", &Overrides::default()).expect_err("alone");
        assert!(
            err.to_string()
                .starts_with("http.admin_allow_plaintext_remote"),
            "{err}"
        );
    }
}
