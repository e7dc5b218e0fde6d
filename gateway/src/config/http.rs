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

/// The admin API over TCP: only with a bearer token.
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
}

pub(super) fn validate(raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8055".to_owned());
    let listen = socket_addr("http.listen", &listen_text)?;
    let admin_socket = non_empty_path(
        "http.admin_socket",
        raw.admin_socket,
        "/run/zt-gateway/admin.sock",
    )?;
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
