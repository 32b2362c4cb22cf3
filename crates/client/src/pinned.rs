//! `--ca FILE`: the server's certificate is trusted when a CA in the file signed it, or
//! when it *is* a certificate in the file (a pinned, usually self-signed, certificate).
//!
//! The usual recipe for a development certificate,
//! `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost`,
//! makes a self-signed certificate marked `CA:TRUE`. webpki refuses a CA certificate
//! presented as the server's own (`CaUsedAsEndEntity`), while `curl --cacert` and Node's
//! `ca` option accept it: OpenSSL treats a certificate in the trust store as trusted
//! as it is. We accept it the same way, and only that way: the presented certificate
//! must be byte for byte one of the file's, within its validity period, allowed for
//! server authentication (when it restricts its purposes), and valid for the name
//! connected to. The handshake signature is checked against its key as for any
//! certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Verifies a server against the CAs of a `--ca` file, or as one of its certificates.
#[derive(Debug)]
pub(crate) struct CaFileVerifier {
    /// Chain verification against the file's certificates as trust anchors.
    webpki: Arc<WebPkiServerVerifier>,
    /// The file's certificates, accepted as they are when presented.
    pinned: Vec<CertificateDer<'static>>,
}

impl CaFileVerifier {
    /// A verifier trusting `certs` (at least one) as CAs and as pinned certificates.
    pub(crate) fn new(certs: Vec<CertificateDer<'static>>, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            roots.add(cert.clone()).map_err(|e| format!("unusable certificate: {e}"))?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
        Ok(CaFileVerifier { webpki, pinned: certs })
    }
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match chained {
            Err(_) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                verify_pinned(end_entity, server_name, now).map(|()| ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The checks a pinned certificate still passes: its validity period, its purpose,
/// and the server name.
fn verify_pinned(cert: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| CertificateError::BadEncoding)?;
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let now = x509_parser::time::ASN1Time::from_timestamp(secs).map_err(|_| CertificateError::BadEncoding)?;
    let validity = x509.validity();
    if now < validity.not_before {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > validity.not_after {
        return Err(CertificateError::Expired.into());
    }
    match x509.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) if eku.value.any || eku.value.server_auth => {}
        Ok(Some(_)) => return Err(CertificateError::InvalidPurpose.into()),
        Err(_) => return Err(CertificateError::BadEncoding.into()),
    }
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&parsed, name)
}

/// A hint that names the fix for a certificate the client refused, for the error the
/// user sees (`ca` is the `--ca` file, if any).
pub(crate) fn hint(e: &std::io::Error, host: &str, ca: Option<&std::path::Path>) -> Option<String> {
    let rustls::Error::InvalidCertificate(why) = e.get_ref()?.downcast_ref::<rustls::Error>()? else { return None };
    Some(match why {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the certificate does not cover '{host}': connect with a name in its subjectAltName, or make one \
             that names it (openssl req ... -addext subjectAltName=DNS:{host})"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the certificate has expired: renew it (or check this machine's clock)".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the certificate is not valid yet: check this machine's clock".to_string()
        }
        _ => match ca {
            Some(file) => format!(
                "the server's certificate is neither signed by a CA in {} nor one of its certificates: give \
                 --ca the CA that signed it, or the server's own certificate (its --tls-cert file)",
                file.display()
            ),
            None => "the server's certificate is not signed by a CA this system trusts: for a private CA or \
                     a self-signed certificate, pass it with --ca FILE"
                .to_string(),
        },
    })
}
