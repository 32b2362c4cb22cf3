//! The inspector's HTTP server: the agent API and the page, on loopback.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{api, Inspector};

/// Where the inspector listens when no address is given: the first of these ports
/// on 127.0.0.1 that is free (ngrok's 4040, then the next ones up to 4049).
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 4040..=4049;

/// A running inspector server; dropping it stops it.
#[derive(Debug)]
pub struct InspectServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl InspectServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its page's URL, e.g. `http://127.0.0.1:4040`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for InspectServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `inspector`'s agent API and page on `addr`, or (`None`) on the first free
/// port of [`DEFAULT_PORTS`] on 127.0.0.1.
pub async fn serve_inspector(inspector: Inspector, addr: Option<SocketAddr>) -> io::Result<InspectServer> {
    let listener = match addr {
        Some(addr) => TcpListener::bind(addr).await?,
        None => bind_default().await?,
    };
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept(listener, inspector));
    Ok(InspectServer { addr, task })
}

async fn bind_default() -> io::Result<TcpListener> {
    let mut last = None;
    for port in DEFAULT_PORTS {
        match TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    let why = last.map_or_else(String::new, |e| e.to_string());
    Err(io::Error::new(io::ErrorKind::AddrInUse, format!("ports 4040-4049 are all taken ({why})")))
}

async fn accept(listener: TcpListener, inspector: Inspector) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait a little rather than spin.
            localtunnels_driver::timers::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let inspector = inspector.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let inspector = inspector.clone();
                async move { Ok::<_, Infallible>(api::handle(&inspector, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
