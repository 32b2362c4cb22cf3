//! TLS for visitors and clients on the server's one port (rustls): HTTPS, and WSS for
//! control connections and visitor WebSockets, from a PEM certificate chain and key
//! (reloaded without a restart, [`crate::certs`]) and/or certificates obtained by ACME
//! ([`crate::acme`]).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::certs::CertStore;

/// Where the server's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first (e.g. Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS acceptor for `config`, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn acceptor(config: &TlsConfig) -> std::io::Result<TlsAcceptor> {
    let store = Arc::new(CertStore::default());
    store.reload(&config.cert, &config.key)?;
    Ok(TlsAcceptor::from(Arc::new(crate::certs::server_config(store, false)?)))
}
