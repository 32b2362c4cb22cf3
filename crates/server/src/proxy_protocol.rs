//! The PROXY protocol (HAProxy's, v1 text and v2 binary) that TCP load balancers put
//! in front of a connection to name the client they accepted it from
//! (`--proxy-protocol`, believed only from `--trusted-proxy` addresses).
//!
//! Written here rather than taken from a crate: the header is a line of text or a fixed
//! 16-byte head plus addresses, and what matters is reading exactly the header's bytes
//! off the socket and not one byte of the TLS or HTTP that follows. A v2 header's length
//! is in its head; a v1 line is read a byte at a time to its CRLF (at most 107 bytes,
//! once per connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Longest v2 address block accepted (addresses plus TLVs); the specification allows
/// 65535, but nothing sent in practice comes near this.
const V2_MAX: usize = 4096;

/// Why a PROXY header could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection does not start with a PROXY header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// The header is malformed.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header (v1 or v2) from `io` and returns the source address it names:
/// `None` for `UNKNOWN` (v1) or `LOCAL` (v2, the balancer's own health checks), when
/// the connection's own peer stands.
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = [0u8; 16];
    // "PROXY UNKNOWN\r\n", the shortest v1 line, is 15 bytes: read those first.
    io.read_exact(&mut head[..15]).await?;
    if head.starts_with(b"PROXY ") {
        let mut line = head[..15].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyHeaderError::Invalid("v1 line too long"));
            }
            line.push(io.read_u8().await?);
        }
        return parse_v1(&line);
    }
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    io.read_exact(&mut head[15..16]).await?;
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX {
        return Err(ProxyHeaderError::Invalid("v2 address block too long"));
    }
    let mut block = vec![0u8; len];
    io.read_exact(&mut block).await?;
    parse_v2(head[12], head[13], &block)
}

/// Parses a v1 line (`PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n`).
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let bad = ProxyHeaderError::Invalid;
    let text = std::str::from_utf8(line).map_err(|_| bad("v1 line is not text"))?;
    let mut words = text.trim_end_matches("\r\n").split(' ');
    let (_proxy, family) = (words.next(), words.next());
    match family {
        Some("UNKNOWN") => Ok(None),
        Some("TCP4" | "TCP6") => {
            let src: IpAddr = words.next().and_then(|w| w.parse().ok()).ok_or(bad("v1 source address"))?;
            let _dst: IpAddr = words.next().and_then(|w| w.parse().ok()).ok_or(bad("v1 destination address"))?;
            let port: u16 = words.next().and_then(|w| w.parse().ok()).ok_or(bad("v1 source port"))?;
            let _dport: u16 = words.next().and_then(|w| w.parse().ok()).ok_or(bad("v1 destination port"))?;
            if words.next().is_some() || (family == Some("TCP4")) != src.is_ipv4() {
                return Err(bad("v1 line"));
            }
            Ok(Some(SocketAddr::new(src, port)))
        }
        _ => Err(bad("v1 protocol family")),
    }
}

/// Parses a v2 header's version/command byte, family byte and address block.
fn parse_v2(version_command: u8, family: u8, block: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let bad = ProxyHeaderError::Invalid;
    if version_command >> 4 != 2 {
        return Err(bad("v2 version"));
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}               // PROXY
        _ => return Err(bad("v2 command")),
    }
    let port = |at: usize| block.get(at..at + 2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match family >> 4 {
        // AF_INET: source, destination, source port, destination port.
        1 => {
            let src: [u8; 4] = block.get(..4).and_then(|b| b.try_into().ok()).ok_or(bad("v2 IPv4 block"))?;
            let port = port(8).ok_or(bad("v2 IPv4 block"))?;
            Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(src)), port)))
        }
        2 => {
            let src: [u8; 16] = block.get(..16).and_then(|b| b.try_into().ok()).ok_or(bad("v2 IPv6 block"))?;
            let port = port(32).ok_or(bad("v2 IPv6 block"))?;
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(src)), port)))
        }
        // AF_UNSPEC or AF_UNIX: no address to use.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut io = bytes;
        let r = read_header(&mut io).await;
        (r, io.to_vec())
    }

    #[tokio::test]
    async fn v1_lines_name_the_source_and_leave_the_rest() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(r.unwrap(), Some("203.0.113.7:56324".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (r, rest) = read(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\nx").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(rest, b"x");
        let (r, rest) = read(b"PROXY UNKNOWN\r\nGET").await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn v2_headers_name_the_source_and_leave_the_rest() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 1, 187]);
        h.extend_from_slice(b"GET");
        let (r, rest) = read(&h).await;
        assert_eq!(r.unwrap(), Some("198.51.100.9:8080".parse().unwrap()));
        assert_eq!(rest, b"GET");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0, b'G']);
        let (r, rest) = read(&local).await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(rest, b"G");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        assert!(matches!(read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.0, Err(ProxyHeaderError::Missing)));
        assert!(matches!(read(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").await.0, Err(ProxyHeaderError::Invalid(_))));
        assert!(matches!(read(b"PROXY TCP4 ::1 ::1 1 2\r\n").await.0, Err(ProxyHeaderError::Invalid(_))));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(read(long.as_bytes()).await.0, Err(ProxyHeaderError::Invalid(_))));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(read(&short).await.0, Err(ProxyHeaderError::Invalid(_))));
        assert!(matches!(read(b"PROXY TCP4").await.0, Err(ProxyHeaderError::Io(_))));
    }
}
