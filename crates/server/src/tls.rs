//! Where the certificate for TLS on the server's one port comes from (HTTPS, and WSS for
//! control connections and visitor WebSockets): a PEM certificate chain and key, reloaded
//! without a restart by [`crate::certs`], beside or instead of certificates obtained by
//! ACME ([`crate::acme`]); `tls_port.rs` accepts the connections.

use std::path::PathBuf;

/// Where the server's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first (e.g. Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}
