//! Origins: what answers the requests that come through the tunnel. A local port
//! (the usual case, plain HTTP or HTTPS) or an in-process `tower` service such as an
//! axum `Router`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
use localtunnels_core::Header;
use localtunnels_driver::h1::HeadLimits;
use localtunnels_driver::http::header_map;
use localtunnels_driver::StreamBody;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::config::ClientConfig;
use crate::exchange::Outgoing;
use crate::pool::OriginPool;

/// Errors from an origin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of an origin's response. Not required to be `Sync`, so any `http_body`
/// body (axum's included) fits.
pub type OriginBody = UnsyncBoxBody<Bytes, BoxError>;
/// The future an origin returns.
pub type OriginFuture = Pin<Box<dyn Future<Output = Result<Response<OriginBody>, BoxError>> + Send>>;
/// A connection being opened to a network origin (see [`Origin::connect_stream`]).
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<OriginStream>> + Send>>;

/// Answers tunneled HTTP requests.
pub trait Origin: Send + Sync + 'static {
    /// Handles one request. Its URI is the visitor's path and query; `authority`
    /// says where it will go.
    fn call(&self, req: Request<StreamBody>) -> OriginFuture;
    /// `host:port` of a network origin (for the Host header and WebSocket
    /// connections); `None` for in-process services.
    fn authority(&self) -> Option<String>;
    /// Whether the network origin speaks TLS.
    fn secure(&self) -> bool {
        false
    }
    /// Opens a new connection to a network origin (TCP, then TLS for HTTPS) for a
    /// tunneled WebSocket, whose handshake then runs over it. `None` (the default):
    /// this origin takes no WebSockets, and visitors' upgrades get 501.
    fn connect_stream(&self) -> Option<ConnectFuture> {
        None
    }
    /// This origin as a [`LocalOrigin`], which the client then speaks HTTP/1.1 to
    /// itself (the tunnel's heads written to and parsed from the socket) instead of
    /// calling [`Origin::call`]. Only `LocalOrigin` says `Some`.
    #[doc(hidden)]
    fn as_local(&self) -> Option<&LocalOrigin> {
        None
    }
    /// The same origin for another tokio runtime (a further control connection of the
    /// tunnel on a thread of its own), when this one keeps runtime-bound resources
    /// such as pooled sockets; `None` (the default) shares this one.
    #[doc(hidden)]
    fn for_another_runtime(&self) -> Option<Arc<dyn Origin>> {
        None
    }
}

/// An origin on a local (or reachable) port, over HTTP or HTTPS.
#[derive(Debug, Clone)]
pub struct LocalOrigin {
    inner: Arc<ConnectorInner>,
    pool: Arc<OriginPool>,
    /// `Host` for requests that have none (an HTTP/2 visitor's): the authority.
    host: Option<HeaderValue>,
}

impl LocalOrigin {
    /// `http://host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self::with_tls(host, port, None)
    }

    /// `https://host:port`. The certificate is verified against the system's roots
    /// (and the Mozilla roots compiled in) unless `allow_invalid_cert`, which accepts
    /// any certificate, e.g. a dev server's self-signed one.
    pub fn https(host: &str, port: u16, allow_invalid_cert: bool) -> Self {
        Self::with_tls(host, port, Some(tls_config(allow_invalid_cert)))
    }

    /// The origin a [`ClientConfig`] describes (`local_host`, `local_port`,
    /// `local_https`, `allow_invalid_cert`).
    pub fn from_config(config: &ClientConfig) -> Self {
        if config.local_https {
            Self::https(&config.local_host, config.local_port, config.allow_invalid_cert)
        } else {
            Self::new(&config.local_host, config.local_port)
        }
    }

    fn with_tls(host: &str, port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Self::with_inner(Arc::new(ConnectorInner { host, port, authority, tls }))
    }

    /// An origin that connects as `inner` says, with a pool of its own.
    fn with_inner(inner: Arc<ConnectorInner>) -> Self {
        let connect = {
            let inner = inner.clone();
            move || ConnectorInner::connect_owned(&inner)
        };
        // A response head may take 64 KiB, and one read asks for at most as much: the
        // body streams on through the tunnel's stream window anyway, so larger reads
        // (hyper's default buffer grew to ~400 KiB) only cost memory under many large
        // downloads.
        let pool = Arc::new(OriginPool::new(Box::new(connect), HeadLimits::default()));
        let host = HeaderValue::from_str(&inner.authority).ok();
        LocalOrigin { inner, pool, host }
    }

    /// The pool the client's own HTTP/1.1 exchanges use.
    pub(crate) fn pool(&self) -> &Arc<OriginPool> {
        &self.pool
    }

    /// `Host` for a request that has none: the origin's authority.
    pub(crate) fn default_host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// Opens a new connection to the origin (TCP, then TLS for HTTPS), for
    /// exchanges that bypass the HTTP client, such as WebSockets.
    pub async fn connect(&self) -> io::Result<OriginStream> {
        self.inner.connect().await
    }

    /// The TLS settings used towards an HTTPS origin.
    pub fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.inner.tls.clone()
    }
}

impl Origin for LocalOrigin {
    /// The tunnel's own requests take a shorter way (`as_local`); this one serves
    /// those that come as `http` requests, such as the inspector's replays.
    fn call(&self, req: Request<StreamBody>) -> OriginFuture {
        let (parts, body) = req.into_parts();
        let mut headers: Vec<Header> = parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        // A request without a Host (an HTTP/2 visitor's) gets the origin's.
        if let (false, Some(host)) = (parts.headers.contains_key(http::header::HOST), &self.host) {
            headers.insert(0, (http::header::HOST, host.clone()));
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            // The URI stays in origin form (the visitor's path and query), as HTTP/1.1 sends it.
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let req = Outgoing { method: &parts.method, target, headers: &headers };
            let res = pool.send(req, body).await?;
            let mut out = Response::new(res.body.map_err(BoxError::from).boxed_unsync());
            *out.status_mut() = http::StatusCode::from_u16(res.head.status)?;
            *out.version_mut() = res.head.version;
            *out.headers_mut() = header_map(&res.head.headers);
            Ok(out)
        })
    }

    fn authority(&self) -> Option<String> {
        Some(self.inner.authority.clone())
    }

    fn secure(&self) -> bool {
        self.inner.tls.is_some()
    }

    fn connect_stream(&self) -> Option<ConnectFuture> {
        Some(ConnectorInner::connect_owned(&self.inner))
    }

    fn as_local(&self) -> Option<&LocalOrigin> {
        Some(self)
    }

    fn for_another_runtime(&self) -> Option<Arc<dyn Origin>> {
        Some(Arc::new(LocalOrigin::with_inner(self.inner.clone())))
    }
}

/// Client TLS settings for an HTTPS origin, on the `ring` provider. HTTP/1.1 only
/// (ALPN), as the HTTP client and WebSocket bridging speak it.
fn tls_config(allow_invalid_cert: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("the ring provider supports the default protocol versions"));
    let mut config = if allow_invalid_cert {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, errors = native.errors.len(), "loaded the system's root certificates");
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts any certificate (`--allow-invalid-cert`) but still checks that the
/// handshake is signed by the key in it, as a self-signed dev server's would be.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct ConnectorInner {
    /// Host without brackets, for connecting and for the TLS server name.
    host: String,
    port: u16,
    /// `host:port` (IPv6 in brackets), for URIs and the Host header.
    authority: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ConnectorInner {
    /// [`ConnectorInner::connect`] as a `'static` future (for the pool and WebSockets).
    fn connect_owned(inner: &Arc<Self>) -> ConnectFuture {
        let inner = inner.clone();
        Box::pin(async move { inner.connect().await })
    }

    async fn connect(&self) -> io::Result<OriginStream> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(OriginStream::Plain(tcp)) };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", self.host)))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
        Ok(OriginStream::Tls(Box::new(stream)))
    }
}

/// A connection to a network origin: plain TCP (`http://`) or TLS over TCP
/// (`https://`); the same type carries the control connection to the server.
pub type OriginStream = crate::tls::Transport;

/// An in-process `tower` service (e.g. an axum `Router`) as the origin: no port.
/// The service is cloned for each request, as hyper does.
#[derive(Debug)]
pub struct ServiceOrigin<S> {
    service: Mutex<S>,
}

impl<S> ServiceOrigin<S> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        ServiceOrigin { service: Mutex::new(service) }
    }
}

impl<S, B> Origin for ServiceOrigin<S>
where
    S: tower_service::Service<Request<StreamBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call(&self, req: Request<StreamBody>) -> OriginFuture {
        // The lock only guards the clone; a poisoned one still holds a usable service.
        let mut service = self.service.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
            let res = service.call(req).await.map_err(Into::into)?;
            Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }

    fn authority(&self) -> Option<String> {
        None
    }
}
