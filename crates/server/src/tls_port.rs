//! The TLS side of the server's port: the certificate store, the file reloader, ACME's
//! on-demand certificates, and the handshake of each connection.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};
use tracing::{debug, info, warn};

use crate::acme::Acme;
use crate::certs::{CertError, CertStore, ACME_TLS_ALPN};
use crate::config::ServerConfig;

/// Everything the TLS port needs.
#[derive(Debug)]
pub struct TlsPort {
    store: Arc<CertStore>,
    config: Arc<rustls::ServerConfig>,
    files: Option<crate::tls::TlsConfig>,
    /// The ACME manager, with `--acme`.
    pub acme: Option<Arc<Acme>>,
}

impl TlsPort {
    /// The TLS port for `config`: `None` when it has neither certificate files nor ACME.
    pub fn new(config: &ServerConfig) -> std::io::Result<Option<TlsPort>> {
        if config.tls.is_none() && config.acme.is_none() {
            return Ok(None);
        }
        let store = Arc::new(CertStore::default());
        if let Some(files) = &config.tls {
            store.reload(&files.cert, &files.key)?;
        }
        let acme = config.acme.clone().map(|a| Acme::new(a, store.clone())).transpose()?;
        let tls_alpn = acme.as_ref().is_some_and(|a| !a.http01());
        let rustls = crate::certs::server_config(store.clone(), tls_alpn)?;
        Ok(Some(TlsPort { store, config: Arc::new(rustls), files: config.tls.clone(), acme }))
    }

    /// How long a connection's TLS handshake may take: with ACME it may wait for an order.
    pub fn handshake_limit(&self, base: std::time::Duration) -> std::time::Duration {
        base + self.acme.as_ref().map_or(std::time::Duration::ZERO, |a| a.order_timeout())
    }

    /// Reloads the certificate files now (SIGHUP). `Ok(false)` without files.
    pub fn reload(&self) -> Result<bool, CertError> {
        match &self.files {
            Some(files) => self.store.reload(&files.cert, &files.key).map(|()| true),
            None => Ok(false),
        }
    }

    /// Checks the certificate files every `interval` and reloads them when they
    /// changed, until `shutdown` changes. A failed reload keeps the certificate in use.
    pub fn spawn_reloader(self: &Arc<Self>, interval: std::time::Duration, mut shutdown: watch::Receiver<bool>) {
        let Some(files) = self.files.clone() else { return };
        let port = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = localtunnels_driver::timers::sleep(interval) => {}
                    _ = shutdown.changed() => return,
                }
                match port.store.reload_if_changed(&files.cert, &files.key) {
                    Ok(true) => info!(cert = %files.cert.display(), "TLS certificate reloaded (files changed)"),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "TLS certificate files changed but cannot be loaded; keeping the old one")
                    }
                }
            }
        });
    }

    /// The TLS handshake of one connection. With ACME, the client's hello is read
    /// first: a name the server answers for (`is_served`, [`crate::hostnames`]) gets its certificate ordered (or the shared
    /// order joined) before the handshake goes on, unless a certificate from files can
    /// serve it meanwhile. `Ok(None)` for a finished TLS-ALPN-01
    /// validation, which carries no HTTP.
    pub async fn accept<IO>(&self, is_served: impl Fn(&str) -> bool, io: IO) -> std::io::Result<Option<TlsStream<IO>>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(acme) = &self.acme else {
            return TlsAcceptor::from(self.config.clone()).accept(io).await.map(Some);
        };
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let hello = start.client_hello();
        let challenge = hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        let name = hello.server_name().map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        if let (false, Some(name)) = (challenge, name) {
            if self.store.get(&name).is_none() && is_served(&name) {
                if self.store.has_fallback() {
                    // The file's certificate serves this handshake; the order runs meanwhile.
                    let acme = acme.clone();
                    tokio::spawn(async move { acme.ensure(&name).await });
                } else if !acme.ensure(&name).await {
                    debug!(%name, "no certificate for this name yet");
                }
            }
        }
        let tls = start.into_stream(self.config.clone()).await?;
        if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
            return Ok(None);
        }
        Ok(Some(tls))
    }
}
