//! Stream work run on the connection's own task (`Connection::on_incoming` handlers that
//! return a future), between two real `Connection`s over in-memory sockets: many
//! streams that wait on each other's flow-control credit all finish on that one task, a
//! stream whose work panics ends alone, and frames written while the socket is stalled
//! get through once the peer reads again.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{Config, RequestHead, ResetCode, ResponseHead, StreamKind};
use localtunnels_driver::{Connection, StreamEvent, StreamFuture, StreamHandle, StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

mod conn_pair;

/// Generous: a lost wake-up shows as a hang, which this turns into a failure.
const LIMIT: Duration = Duration::from_secs(60);

fn request(target: &str) -> RequestHead {
    RequestHead { kind: StreamKind::Http, method: "POST".into(), target: target.into(), headers: vec![] }
}

/// Echoes the request body back as it arrives, as a 200.
async fn echo(tx: StreamSender, mut rx: StreamReceiver, end: bool) {
    tx.respond(ResponseHead { status: 200, headers: vec![] }, false).expect("respond");
    if end {
        return tx.finish().expect("finish");
    }
    while let Some(ev) = rx.recv().await {
        match ev {
            StreamEvent::Data { data, end } => {
                tx.send_data(data).await.expect("send");
                if end {
                    return tx.finish().expect("finish");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads a response: its status and body, until the end.
async fn read_response(mut rx: StreamReceiver) -> Result<(u16, Vec<u8>), ResetCode> {
    let mut status = 0;
    let mut body = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            StreamEvent::Response { head, end } => {
                status = head.status;
                if end {
                    break;
                }
            }
            StreamEvent::Data { data, end } => {
                body.extend_from_slice(&data);
                if end {
                    break;
                }
            }
            StreamEvent::Reset { code, .. } => return Err(code),
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok((status, body))
}

/// Sends `body` on a new stream to `target` and reads the answer.
async fn post(server: &Connection, target: &str, body: Bytes) -> Result<(u16, Vec<u8>), ResetCode> {
    let (tx, rx) = server.open(request(target), false).expect("open").split();
    let send = async {
        tx.send_last(body).await.expect("send the request body");
    };
    let ((), answer) = tokio::join!(send, read_response(rx));
    answer
}

/// Many echo streams at once, each moving 16 windows' worth each way: every stream's
/// work waits for credit that only the same task's socket reads deliver, and all of it
/// runs on one task (the connection's reader), not on one task each.
async fn many_streams_finish_on_one_task() {
    let config = Config { stream_window: 4096, max_streams: 256, ..Config::default() };
    let (a, b) = tokio::io::duplex(16 * 1024);
    let (server, client, _events) = conn_pair::pair_over(config, a, b).await;
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let seen = tasks.clone();
    client.on_incoming(Arc::new(move |stream: StreamHandle, _head, end| {
        let seen = seen.clone();
        let work: StreamFuture = Box::pin(async move {
            seen.lock().unwrap().push(tokio::task::id());
            let (tx, rx) = stream.split();
            echo(tx, rx, end).await;
        });
        Some(work)
    }));
    let server = Arc::new(server);
    let mut exchanges = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let server = server.clone();
        let body: Bytes = (0..64 * 1024u32).map(|j| (i + j) as u8).collect::<Vec<u8>>().into();
        exchanges.spawn(async move { (post(&server, "/echo", body.clone()).await, body) });
    }
    let all = async {
        while let Some(done) = exchanges.join_next().await {
            let (answer, body) = done.expect("exchange task");
            let (status, got) = answer.expect("the exchange was reset");
            assert_eq!(status, 200);
            assert!(got == body, "an echo came back different ({} bytes for {})", got.len(), body.len());
        }
    };
    tokio::time::timeout(LIMIT, all).await.expect("the exchanges did not finish");
    let tasks = tasks.lock().unwrap();
    assert_eq!(tasks.len(), 100);
    assert!(tasks.iter().all(|t| *t == tasks[0]), "the streams ran on several tasks");
    assert_ne!(Some(tasks[0]), tokio::task::try_id(), "the streams ran on the test's task");
}

#[tokio::test]
async fn many_streams_waiting_on_credit_finish_on_the_connection_task() {
    many_streams_finish_on_one_task().await;
}

/// The same on a runtime of two threads, where another thread's commands race the
/// reader's turns for the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_finish_on_the_connection_task_of_a_threaded_runtime() {
    many_streams_finish_on_one_task().await;
}

/// A stream whose work panics is reset; a stream in flight beside it, and streams
/// opened after it, are served.
#[tokio::test]
async fn a_panicking_stream_ends_alone() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, client, _events) = conn_pair::pair_over(Config::default(), a, b).await;
    client.on_incoming(Arc::new(|stream: StreamHandle, head, end| {
        let work: StreamFuture = Box::pin(async move {
            let (tx, mut rx) = stream.split();
            if head.target == "/panic" {
                // After a first wait, so that the panic comes from a poll of the
                // running future, not from its start.
                let _ = rx.recv().await;
                panic!("the handler of /panic panics, as asked");
            }
            echo(tx, rx, end).await;
        });
        Some(work)
    }));
    let test = async {
        // In flight: its body is still to come when the other stream panics.
        let (in_flight_tx, in_flight_rx) = server.open(request("/echo"), false).expect("open").split();
        in_flight_tx.send_data(Bytes::from_static(b"first ")).await.expect("send");
        let panicked = post(&server, "/panic", Bytes::from_static(b"boom")).await;
        assert_eq!(panicked, Err(ResetCode::Cancel), "the panicking stream was not reset");
        in_flight_tx.send_last(Bytes::from_static(b"and last")).await.expect("send");
        let answer = read_response(in_flight_rx).await;
        assert_eq!(answer, Ok((200, b"first and last".to_vec())));
        let after = post(&server, "/echo", Bytes::from_static(b"still here")).await;
        assert_eq!(after, Ok((200, b"still here".to_vec())));
    };
    tokio::time::timeout(LIMIT, test).await.expect("the tunnel stopped serving");
    assert!(!client.is_closed() && !server.is_closed());
}

/// Copies `from` to `to` while `gate` says open.
async fn relay<R, W>(mut from: R, mut to: W, mut gate: watch::Receiver<bool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The client's socket stops being read while its stream's work writes a response: the
/// writes that would wait are left to the connection's writer, and all of it arrives,
/// in order, once the socket is read again.
#[tokio::test]
async fn frames_written_into_a_stalled_socket_arrive_once_it_is_read() {
    let (server_io, server_far) = tokio::io::duplex(1024);
    let (client_io, client_far) = tokio::io::duplex(1024);
    let (server_read, server_write) = tokio::io::split(server_far);
    let (client_read, client_write) = tokio::io::split(client_far);
    let (always, always_rx) = watch::channel(true);
    let (gate, gate_rx) = watch::channel(true);
    tokio::spawn(relay(server_read, client_write, always_rx));
    tokio::spawn(relay(client_read, server_write, gate_rx));
    let (server, client, _events) = conn_pair::pair_over(Config::default(), server_io, client_io).await;
    let body: Bytes = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let (sent_tx, sent_rx) = oneshot::channel();
    let sent_tx = Mutex::new(Some(sent_tx));
    let response = body.clone();
    client.on_incoming(Arc::new(move |stream: StreamHandle, _head, _end| {
        let sent = sent_tx.lock().unwrap().take();
        let body = response.clone();
        let work: StreamFuture = Box::pin(async move {
            let (tx, _rx) = stream.split();
            tx.respond(ResponseHead { status: 200, headers: vec![] }, false).expect("respond");
            tx.send_data(body.slice(..64 * 1024)).await.expect("send");
            if let Some(sent) = sent {
                let _ = sent.send(());
            }
            tx.send_last(body.slice(64 * 1024..)).await.expect("send the rest");
        });
        Some(work)
    }));
    // The client's writes stop here: nothing reads its socket.
    gate.send_replace(false);
    let (_tx, rx) = server.open(request("/big"), true).expect("open").split();
    let test = async {
        sent_rx.await.expect("the stream's work stopped");
        gate.send_replace(true);
        read_response(rx).await
    };
    let answer = tokio::time::timeout(LIMIT, test).await.expect("the response did not arrive");
    let (status, got) = answer.expect("the stream was reset");
    assert_eq!(status, 200);
    assert!(got == body, "the response came back different ({} bytes for {})", got.len(), body.len());
    drop(always);
}

/// Counts the bytes written through it.
struct Counting<T> {
    inner: T,
    written: Arc<std::sync::atomic::AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            self.written.fetch_add(*n, std::sync::atomic::Ordering::SeqCst);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Work a stream future does after `after_write` runs once the frames it queued before
/// were written to the socket (in the same turn of the connection's task), and the
/// stream still ends normally; a future outside the connection's task is not held back.
#[tokio::test]
async fn work_after_after_write_runs_once_the_turns_frames_are_written() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client_io = Counting { inner: b, written: written.clone() };
    let (server, client, _events) = conn_pair::pair_over(Config::default(), a, client_io).await;
    let (seen_tx, seen_rx) = oneshot::channel();
    let seen_tx = Mutex::new(Some(seen_tx));
    client.on_incoming(Arc::new(move |stream: StreamHandle, _head, _end| {
        let (written, seen) = (written.clone(), seen_tx.lock().unwrap().take());
        let work: StreamFuture = Box::pin(async move {
            let (tx, _rx) = stream.split();
            let before = written.load(std::sync::atomic::Ordering::SeqCst);
            tx.respond(ResponseHead { status: 200, headers: vec![] }, true).expect("respond");
            let queued = written.load(std::sync::atomic::Ordering::SeqCst);
            localtunnels_driver::after_write().await;
            let after = written.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(seen) = seen {
                let _ = seen.send((before, queued, after));
            }
        });
        Some(work)
    }));
    let test = async {
        let (_tx, rx) = server.open(request("/after"), true).expect("open").split();
        let answer = read_response(rx).await;
        (answer, seen_rx.await.expect("the stream's work ended early"))
    };
    let (answer, (before, queued, after)) = tokio::time::timeout(LIMIT, test).await.expect("no response");
    assert_eq!(answer, Ok((200, vec![])));
    assert_eq!(queued, before, "the response was written before its poll ended");
    assert!(after > before, "the work after after_write ran before the response was written");
    // Elsewhere it is ready at once.
    tokio::time::timeout(LIMIT, tokio::spawn(localtunnels_driver::after_write())).await.unwrap().unwrap();
}

/// `after_write::pays` says whether work put after the write pays: in a stream future
/// its connection's task runs while it is the only one in flight, and not while
/// another is (nor outside the connection's task).
#[tokio::test]
async fn after_write_pays_only_for_the_connections_only_stream_in_flight() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, client, _events) = conn_pair::pair_over(Config::default(), a, b).await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    client.on_incoming(Arc::new(move |stream: StreamHandle, head: RequestHead, _end| {
        let seen = seen_tx.clone();
        let work: StreamFuture = Box::pin(async move {
            let (tx, mut rx) = stream.split();
            let _ = seen.send((head.target.clone(), localtunnels_driver::after_write::pays()));
            // "/hold" stays in flight until its request body ends.
            if head.target == "/hold" {
                while let Some(ev) = rx.recv().await {
                    if matches!(ev, StreamEvent::Data { end: true, .. }) {
                        break;
                    }
                }
            }
            tx.respond(ResponseHead { status: 200, headers: vec![] }, true).expect("respond");
        });
        Some(work)
    }));
    let test = async {
        let (hold_tx, hold_rx) = server.open(request("/hold"), false).expect("open").split();
        assert_eq!(seen_rx.recv().await, Some(("/hold".to_string(), true)), "alone: it pays");
        let (_tx, rx) = server.open(request("/second"), true).expect("open").split();
        assert_eq!(seen_rx.recv().await, Some(("/second".to_string(), false)), "another in flight");
        assert_eq!(read_response(rx).await, Ok((200, vec![])));
        hold_tx.send_last(Bytes::new()).await.expect("end the request body");
        assert_eq!(read_response(hold_rx).await, Ok((200, vec![])));
        let (_tx, rx) = server.open(request("/third"), true).expect("open").split();
        assert_eq!(seen_rx.recv().await, Some(("/third".to_string(), true)), "alone again");
        assert_eq!(read_response(rx).await, Ok((200, vec![])));
    };
    tokio::time::timeout(LIMIT, test).await.expect("no response");
    // Outside a connection's task there is no write to put work after.
    assert!(!tokio::spawn(async { localtunnels_driver::after_write::pays() }).await.unwrap());
}
