//! Origins: what answers the requests that come through the tunnel. A local port
//! (the usual case) or an in-process `tower` service such as an axum `Router`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use localtunnels_driver::StreamBody;

/// Errors from an origin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of an origin's response.
pub type OriginBody = BoxBody<Bytes, BoxError>;
/// The future an origin returns.
pub type OriginFuture = Pin<Box<dyn Future<Output = Result<Response<OriginBody>, BoxError>> + Send>>;

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
}

/// An origin on a local (or reachable) port.
#[derive(Debug, Clone)]
pub struct LocalOrigin {
    authority: String,
    secure: bool,
    client: Client<HttpConnector, StreamBody>,
}

impl LocalOrigin {
    /// `http://host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        LocalOrigin { authority: format!("{host}:{port}"), secure: false, client }
    }
}

impl Origin for LocalOrigin {
    fn call(&self, mut req: Request<StreamBody>) -> OriginFuture {
        let scheme = if self.secure { "https" } else { "http" };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{scheme}://{}{path}", self.authority);
        let client = self.client.clone();
        Box::pin(async move {
            *req.uri_mut() = uri.parse()?;
            let res = client.request(req).await?;
            Ok(res.map(|b| b.map_err(BoxError::from).boxed()))
        })
    }

    fn authority(&self) -> Option<String> {
        Some(self.authority.clone())
    }

    fn secure(&self) -> bool {
        self.secure
    }
}

/// An in-process `tower` service (e.g. an axum `Router`) as the origin: no port.
#[derive(Debug, Clone)]
pub struct ServiceOrigin<S> {
    service: S,
}

impl<S> ServiceOrigin<S> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        ServiceOrigin { service }
    }
}

impl<S, B> Origin for ServiceOrigin<S>
where
    S: tower_service::Service<Request<StreamBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    fn call(&self, req: Request<StreamBody>) -> OriginFuture {
        let mut service = self.service.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
            let res = service.call(req).await.map_err(Into::into)?;
            Ok(res.map(|b| b.map_err(Into::into).boxed()))
        })
    }

    fn authority(&self) -> Option<String> {
        None
    }
}
