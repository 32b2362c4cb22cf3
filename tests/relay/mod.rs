//! A TCP relay for fault injection between a tunnel client and the server: it can
//! pause forwarding without closing anything (a silently dead link: no FIN, no RST,
//! bytes just stop), resume, or cut every connection open now (a dropped link).

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay on 127.0.0.1:0 forwarding to `target`.
pub struct Relay {
    addr: SocketAddr,
    paused: watch::Sender<bool>,
    cut: watch::Sender<u64>,
    accepted: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let (paused, paused_rx) = watch::channel(false);
        let (cut, cut_rx) = watch::channel(0u64);
        let (accepted_tx, accepted) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                accepted_tx.send_modify(|n| *n += 1);
                let (paused, mut cut) = (paused_rx.clone(), cut_rx.clone());
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::select! {
                        _ = async { tokio::join!(pump(ri, wo, paused.clone()), pump(ro, wi, paused)) } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { addr, paused, cut, accepted, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `ClientConfig::server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops forwarding on every connection, open now or later, without closing any.
    pub fn pause(&self) {
        let _ = self.paused.send(true);
    }

    /// Forwards again.
    pub fn resume(&self) {
        let _ = self.paused.send(false);
    }

    /// Closes every connection open now (both ends see the connection end).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Resolves once the relay has accepted more than `n` connections in all.
    pub async fn accepted_more_than(&self, n: u64) {
        let mut rx = self.accepted.clone();
        let _ = rx.wait_for(|&a| a > n).await;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read while running are held back, not forwarded, once paused.
        if paused.wait_for(|p| !p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
