//! The transport to the server: plain TCP, or TLS (rustls) for `wss://`.
//!
//! The server's certificate is verified against the system's root certificates
//! (`rustls-native-certs`; Mozilla's roots from `webpki-roots` when the system has
//! none), or only against the certificates of [`ClientConfig::ca`] when set, as
//! `curl --cacert`: CAs, or the server's own (self-signed) certificate
//! ([`crate::pinned`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{ClientConfig, ServerAddr};

/// Plain TCP, or client-side TLS over TCP: the control WebSocket's transport
/// (`ws://` / `wss://`) and a network origin's (`http://` / `https://`).
#[derive(Debug)]
pub enum Transport {
    /// No TLS.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Wraps `tcp` for `addr`: TLS (verified for `addr.host`) when `addr.secure`.
pub(crate) async fn connect(tcp: TcpStream, addr: &ServerAddr, config: &ClientConfig) -> Result<Transport, String> {
    if !addr.secure {
        return Ok(Transport::Plain(tcp));
    }
    let connector = connector(config)?;
    let name =
        ServerName::try_from(addr.host.clone()).map_err(|e| format!("invalid server name '{}': {e}", addr.host))?;
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        let hint = crate::pinned::hint(&e, &addr.host, config.ca.as_deref());
        let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
        format!("TLS handshake with {} failed: {e}{hint}", addr.host)
    })?;
    Ok(Transport::Tls(Box::new(tls)))
}

/// A connector trusting `config.ca`, or the system roots.
fn connector(config: &ClientConfig) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let tls = match &config.ca {
        Some(path) => {
            let verifier = crate::pinned::CaFileVerifier::new(ca_certs(path)?, provider)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
        None => builder.with_root_certificates(system_roots()).with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// The certificates of a `--ca` file (PEM), at least one.
fn ca_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in CA file {}", path.display()));
    }
    Ok(certs)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "while loading the system's root certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::debug!("no system root certificates; using the bundled Mozilla roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, data),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
