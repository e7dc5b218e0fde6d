//! One generic-netlink request the WireGuard library does not offer: `SET_DEVICE` carrying
//! only the interface name and `WGDEVICE_A_PRIVATE_KEY`, so the kernel switches the
//! interface to a new private key and keeps every peer, allowed IP and endpoint (a
//! rotation's flip, `docs/kernel-backend.md`). The library's own call replaces the peers.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_wireguard::{WireguardAttribute, WireguardCmd, WireguardMessage};
use netlink_sys::constants::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};
use zeroize::Zeroize as _;

/// Room for one answer datagram.
const RECEIVE_BUFFER: usize = 16 * 1024;

/// Sets the private key of WireGuard interface `name` to `key`, nothing else.
///
/// # Errors
/// The socket's or the kernel's error.
pub fn set_private_key(name: &str, key: &[u8; 32]) -> io::Result<()> {
    let family = resolve_family()?;
    let mut message = GenlMessage::from_payload(WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes: vec![
            WireguardAttribute::IfName(name.to_owned()),
            WireguardAttribute::PrivateKey(*key),
        ],
    });
    message.set_resolved_family_id(family);
    let answered = request(message);
    answered.map(drop)
}

/// The generic-netlink family id of `wireguard`.
fn resolve_family() -> io::Result<u16> {
    let query = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".to_owned())],
    });
    for answer in request(query)? {
        if let NetlinkPayload::InnerMessage(message) = answer.payload {
            for nla in message.payload.nlas {
                if let GenlCtrlAttrs::FamilyId(id) = nla {
                    return Ok(id);
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "the kernel has no wireguard generic-netlink family (is the module loaded?)",
    ))
}

/// Sends one request and collects its answers up to the acknowledgement. The serialized
/// request, which may hold a key, is wiped once sent.
fn request<T>(payload: T) -> io::Result<Vec<NetlinkMessage<T>>>
where
    T: std::fmt::Debug + Clone + Eq + NetlinkSerializable + NetlinkDeserializable,
    NetlinkPayload<T>: From<T>,
{
    let mut message = NetlinkMessage::from(payload);
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    drop(message);
    let socket = Socket::new(NETLINK_GENERIC)?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let sent = socket.send(&buf, 0);
    let length = buf.len();
    buf.zeroize();
    if sent? != length {
        return Err(io::Error::other("short netlink send"));
    }
    let mut answers = Vec::new();
    let mut received = vec![0u8; RECEIVE_BUFFER];
    loop {
        let size = socket.recv(&mut &mut received[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let answer = NetlinkMessage::<T>::deserialize(&received[offset..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let length = answer.header.length as usize;
            match answer.payload {
                NetlinkPayload::Error(error) => {
                    return match error.code {
                        None => Ok(answers),
                        Some(_) => Err(error.to_io()),
                    };
                }
                NetlinkPayload::Done(_) => return Ok(answers),
                _ => answers.push(answer),
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}
