//! The transport to the server: plain TCP, or TLS for `wss://`.

use tokio::net::TcpStream;

use crate::config::ServerAddr;

/// The stream the control WebSocket runs over.
pub(crate) type Transport = TcpStream;

/// Wraps `tcp` for `addr` (TLS when `addr.secure`).
pub(crate) async fn connect(tcp: TcpStream, addr: &ServerAddr) -> Result<Transport, String> {
    if addr.secure {
        return Err("TLS (wss://) is not supported by this build yet".into());
    }
    Ok(tcp)
}
