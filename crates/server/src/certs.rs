//! The certificates the TLS port presents, chosen per handshake by server name (SNI):
//! a certificate of that exact name (obtained by ACME, [`crate::acme`]), else the one
//! from `--tls-cert/--tls-key` (e.g. a wildcard obtained elsewhere), which is reloaded
//! when its files change or on SIGHUP ([`CertStore::reload`]) without a restart.
//! A handshake that offers only the `acme-tls/1` protocol gets the TLS-ALPN-01
//! challenge certificate for its name, if an order is waiting for one.
//!
//! Swapping a certificate affects new handshakes only: open connections keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use std::path::Path;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PEM holds no usable certificate or key, or they do not fit.
    #[error("{0}")]
    Invalid(String),
}

impl From<CertError> for std::io::Error {
    fn from(e: CertError) -> Self {
        match e {
            CertError::Read { ref source, .. } => std::io::Error::new(source.kind(), e.to_string()),
            CertError::Invalid(_) => std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        }
    }
}

/// A certificate chain and key from PEM text (leaf first; PKCS#8, PKCS#1 or SEC1 key).
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8], origin: &str) -> Result<CertifiedKey, CertError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid(format!("invalid TLS certificate {origin}: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::Invalid(format!("no certificate in {origin}")));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CertError::Invalid(format!("invalid TLS key {origin}: {e}")))?;
    CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| CertError::Invalid(format!("TLS certificate and key do not fit ({origin}): {e}")))
}

/// Reads a certificate chain file and a key file, with their modification times.
pub fn load_files(cert: &Path, key: &Path) -> Result<(CertifiedKey, FileStamp), CertError> {
    let read = |path: &Path, what| {
        std::fs::read(path).map_err(|source| CertError::Read { what, path: path.display().to_string(), source })
    };
    let stamp = FileStamp::of(cert, key);
    let (cert_pem, key_pem) = (read(cert, "certificate")?, read(key, "key")?);
    Ok((certified_key(&cert_pem, &key_pem, &cert.display().to_string())?, stamp))
}

/// When the certificate and key files were last modified (what a reload compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp(Option<SystemTime>, Option<SystemTime>);

impl FileStamp {
    /// The stamps of the files now (`None` for a file that cannot be read).
    pub fn of(cert: &Path, key: &Path) -> FileStamp {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        FileStamp(mtime(cert), mtime(key))
    }
}

/// Every certificate the server may present.
#[derive(Debug, Default)]
pub struct CertStore {
    /// From `--tls-cert/--tls-key`, for names without a certificate of their own.
    fallback: RwLock<Option<(Arc<CertifiedKey>, FileStamp)>>,
    /// By exact host name (ACME).
    by_name: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// TLS-ALPN-01 challenge certificates by host name, while their orders wait.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl CertStore {
    /// Loads (or reloads) the fallback certificate from the `cert` and `key` files. On
    /// error the certificate in use stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), CertError> {
        let (certified, stamp) = load_files(cert, key)?;
        *write(&self.fallback) = Some((Arc::new(certified), stamp));
        Ok(())
    }

    /// Reloads the fallback certificate if its files changed since it was loaded.
    /// `Ok(true)` when it did.
    pub fn reload_if_changed(&self, cert: &Path, key: &Path) -> Result<bool, CertError> {
        let now = FileStamp::of(cert, key);
        if read(&self.fallback).as_ref().is_some_and(|(_, loaded)| *loaded == now) {
            return Ok(false);
        }
        self.reload(cert, key).map(|()| true)
    }

    /// The certificate for exactly `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.by_name).get(name).cloned()
    }

    /// Presents `key` for `name` from the next handshake on.
    pub fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        write(&self.by_name).insert(name.to_string(), key);
    }

    /// Whether there is a fallback certificate (from files).
    pub fn has_fallback(&self) -> bool {
        read(&self.fallback).is_some()
    }

    /// Sets (`Some`) or clears the TLS-ALPN-01 challenge certificate for `name`.
    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut challenges = write(&self.challenges);
        match key {
            Some(k) => challenges.insert(name.to_string(), k),
            None => challenges.remove(name),
        };
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let challenge = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            return name.and_then(|n| read(&self.challenges).get(&n).cloned());
        }
        name.and_then(|n| self.get(&n)).or_else(|| read(&self.fallback).as_ref().map(|(k, _)| k.clone()))
    }
}

/// The rustls configuration of the TLS port: certificates from `store`, HTTP/2 and
/// HTTP/1.1 by ALPN, and `acme-tls/1` when TLS-ALPN-01 validation is on.
pub fn server_config(store: Arc<CertStore>, acme_tls_alpn: bool) -> std::io::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_tls_alpn {
        server.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(server)
}
