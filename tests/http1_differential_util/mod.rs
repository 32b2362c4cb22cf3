//! The differential test's parts: a scripted origin that answers raw bytes (so that
//! malformed and unusual responses reach the tunnel client as written), and a visitor
//! that writes raw bytes and reads back what the server sent, response by response.

#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use localtunnels_driver::h1::{
    parse_request, parse_response, request_framing, response_framing, BodyDecoder, BodyLength, ChunkLimits, Decoded,
    HeadLimits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The `Date` the `dated` script sends (kept as is in comparisons; others vary).
pub const ORIGIN_DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

/// The origin's scripted responses by name (`/r/NAME`), and whether it closes after.
fn script(name: &str) -> (Vec<u8>, bool) {
    let text = |s: &str| (s.as_bytes().to_vec(), false);
    match name {
        "length" => text("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Custom: a\r\nx-custom: b\r\n\r\nhello"),
        "chunked-trailers" => {
            text("HTTP/1.1 200 OK\r\nTrailer: x-sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n")
        }
        "close-delimited" => (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end".to_vec(), true),
        "no-content" => text("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
        "not-modified" => text("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
        "head" => text("HTTP/1.1 200 OK\r\nContent-Length: 42\r\nContent-Type: text/plain\r\n\r\n"),
        "cookies" => text(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Domain=localhost\r\nSet-Cookie: b=2; Domain=diff.localhost; Path=/\r\n\
             Set-Cookie: c=3\r\nContent-Length: 0\r\n\r\n",
        ),
        "hop-by-hop" => text(
            "HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nok",
        ),
        "refused" => text("HTTP/1.1 403 Forbidden\r\nX-Why: no\r\nSet-Cookie: r=1; Domain=localhost\r\nContent-Length: 4\r\n\r\nnope"),
        "switch" => (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(), true),
        "early-hints" => text("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        "same-lengths" => text("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        "length-and-chunked" => {
            text("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        }
        "odd-status" => text("HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n"),
        "dated" => (format!("HTTP/1.1 200 OK\r\nDate: {ORIGIN_DATE}\r\nContent-Length: 0\r\n\r\n").into_bytes(), false),
        "empty-chunked" => text("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "big" => {
            let body: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(), false)
        }
        "big-chunked" => {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for i in 0..100u8 {
                raw.extend_from_slice(b"3e8\r\n");
                raw.extend(std::iter::repeat_n(b'a' + i % 26, 1000));
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            (raw, false)
        }
        "cut" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec(), true),
        // Repeated names with others between them: written grouped, as a HeaderMap orders them.
        "interleaved" => text(
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A: 1\r\nSet-Cookie: b=2; Domain=localhost\r\n\
             Content-Length: 2\r\nX-A: 2\r\nCONTENT-TYPE: text/plain\r\n\r\nok",
        ),
        // Hop-by-hop fields repeated, in odd case, and named by two `Connection` lines.
        "connection-repeated" => text(
            "HTTP/1.1 200 OK\r\nConnection: x-one\r\nX-One: 1\r\nConnection: X-Two, keep-alive\r\nX-Two: 2\r\n\
             X-Three: 3\r\nKEEP-ALIVE: timeout=1\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\
             Proxy-Connection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        // `Trailer` on two lines with another field between, and the trailers it names.
        "trailer-interleaved" => text(
            "HTTP/1.1 200 OK\r\nTrailer: x-a\r\nX-B: 1\r\nTrailer: x-c\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nok\r\n0\r\nx-a: 1\r\nx-c: 2\r\nx-d: 3\r\n\r\n",
        ),
        _ => text("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    }
}

/// An origin on 127.0.0.1:0: `/r/NAME` answers the script `NAME`, anything else 200
/// with what the origin received (the head as it arrived, then the decoded body).
pub async fn scripted_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("origin addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_origin(tcp));
        }
    });
    port
}

async fn serve_origin(mut tcp: TcpStream) {
    let mut buf = BytesMut::new();
    loop {
        let head = loop {
            match parse_request(&mut buf, &HeadLimits::default()) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(_) => return,
            }
            if !matches!(tcp.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        };
        let Ok(framing) = request_framing(head.version, &head.method, &head.headers) else { return };
        let mut decoder = BodyDecoder::new(framing.body, ChunkLimits::default());
        let mut body = Vec::new();
        while !decoder.is_done() {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Data(d))) => body.extend_from_slice(&d),
                Ok(Some(_)) => {}
                Ok(None) => {
                    if !matches!(tcp.read_buf(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let path = head.path().to_string();
        if path == "/ws/accept" {
            return accept_websocket(tcp, &head.headers).await;
        }
        let (raw, close) = match path.strip_prefix("/r/") {
            Some(name) => script(name),
            None => {
                let mut echo = head.raw.to_vec();
                echo.extend_from_slice(b"--body--\n");
                echo.extend_from_slice(&body);
                let mut raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", echo.len()).into_bytes();
                raw.extend_from_slice(&echo);
                (raw, false)
            }
        };
        if tcp.write_all(&raw).await.is_err() || close {
            return;
        }
    }
}

/// `/ws/accept`: the origin's 101 (with a subprotocol, a cookie for the server's
/// domain and a field of its own), then an echo of every WebSocket message.
async fn accept_websocket(mut tcp: TcpStream, headers: &[localtunnels_core::Header]) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let Some(key) = headers.iter().find(|(n, _)| n == "sec-websocket-key").map(|(_, v)| v.as_bytes()) else {
        let _ = tcp.write_all(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    // The first subprotocol offered is chosen (a client refuses one it did not offer).
    let protocol = headers.iter().find(|(n, _)| n == "sec-websocket-protocol").and_then(|(_, v)| v.to_str().ok());
    let chosen =
        protocol.and_then(|p| p.split(',').next()).map(|p| format!("Sec-WebSocket-Protocol: {}\r\n", p.trim()));
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{}Set-Cookie: s=1; Domain=localhost\r\nX-Origin: yes\r\n\r\n",
        derive_accept_key(key),
        chosen.unwrap_or_default()
    );
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
    while let Some(Ok(msg)) = ws.next().await {
        let echo = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(echo).await.is_err() {
            return;
        }
    }
}

/// A masked text frame from a visitor (RFC 6455 §5.3), for bytes sent right after the
/// handshake's head.
pub fn masked_text(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let len = u8::try_from(text.len()).ok().filter(|n| *n < 126).expect("a short text");
    let mut frame = vec![0x81, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// What a visitor saw for a WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub response: Option<Seen>,
    /// After a 101: the messages echoed (for `early`, the one sent with the head, then
    /// one sent after the 101), and the close code the server answered a close with.
    pub echoed: Vec<String>,
    /// Without a 101: the connection still carried a request after the answer.
    pub open: bool,
}

/// Writes the handshake `request` (and `early` right behind it) on a fresh connection
/// to `port`; after a 101 talks WebSocket (`echo` set: expects echoes), else checks
/// whether the connection still carries `probe`.
pub async fn handshake(
    port: u16,
    request: &[u8],
    early: Option<&str>,
    echo: bool,
    probe: &str,
    normal: &dyn Fn(&str) -> String,
) -> Handshake {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};
    let run = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let mut bytes = request.to_vec();
        if let Some(text) = early {
            bytes.extend_from_slice(&masked_text(text));
        }
        tcp.write_all(&bytes).await.expect("write");
        let mut buf = BytesMut::new();
        let response = read_response(&mut tcp, &mut buf, "GET", normal).await;
        let Some(seen) = response else { return Handshake { response: None, echoed: Vec::new(), open: false } };
        if seen.status != 101 {
            let open = tcp.write_all(probe.as_bytes()).await.is_ok()
                && read_response(&mut tcp, &mut buf, "GET", normal).await.is_some_and(|s| s.status == 200);
            return Handshake { response: Some(seen), echoed: Vec::new(), open };
        }
        let mut echoed = Vec::new();
        if echo {
            let mut ws =
                tokio_tungstenite::WebSocketStream::from_partially_read(tcp, buf.to_vec(), Role::Client, None).await;
            let texts = |m: Option<Result<Message, _>>| match m {
                Some(Ok(Message::Text(t))) => t.to_string(),
                other => format!("{other:?}"),
            };
            if early.is_some() {
                echoed.push(texts(ws.next().await));
            }
            ws.send(Message::text("hello")).await.expect("send");
            echoed.push(texts(ws.next().await));
            ws.send(Message::Close(None)).await.expect("close");
            echoed.push(match ws.next().await {
                Some(Ok(Message::Close(frame))) => format!("close {:?}", frame.map(|f| u16::from(f.code))),
                other => format!("{other:?}"),
            });
        }
        Handshake { response: Some(seen), echoed, open: false }
    };
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("the server answered within 30 s")
}

/// One response as the visitor read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub status: u16,
    /// Lowercase names in order; a `date` other than [`ORIGIN_DATE`] reads `<now>`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body ended as its framing said (false: cut short).
    pub complete: bool,
}

/// What a visitor saw for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub responses: Vec<Seen>,
    /// The connection still carried a request after them.
    pub open: bool,
}

/// Writes `request` on a fresh connection to `port`, reads `n` final responses (or
/// until the connection ends), then checks whether the connection is still usable by
/// sending `probe`. `normal` is applied to every text read (ports, request ids).
pub async fn visit(
    port: u16,
    request: &[u8],
    methods: &[&str],
    probe: &str,
    normal: &dyn Fn(&str) -> String,
) -> Outcome {
    let run = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        tcp.write_all(request).await.expect("write");
        let mut buf = BytesMut::new();
        let mut responses = Vec::new();
        let mut finals = 0;
        while finals < methods.len() {
            let Some(seen) = read_response(&mut tcp, &mut buf, methods[finals], normal).await else {
                return Outcome { responses, open: false };
            };
            if !(100..200).contains(&seen.status) {
                finals += 1;
            }
            let complete = seen.complete;
            responses.push(seen);
            if !complete {
                return Outcome { responses, open: false };
            }
        }
        let open = tcp.write_all(probe.as_bytes()).await.is_ok()
            && read_response(&mut tcp, &mut buf, "GET", normal).await.is_some_and(|s| s.status == 200);
        Outcome { responses, open }
    };
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("the server answered within 30 s")
}

/// Reads one response; `None` if the connection ended (or broke) before its head.
async fn read_response(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    method: &str,
    normal: &dyn Fn(&str) -> String,
) -> Option<Seen> {
    let head = loop {
        match parse_response(buf, &HeadLimits::default()) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(e) => panic!("the server sent a malformed head ({e}): {:?}", String::from_utf8_lossy(buf)),
        }
        if !matches!(tcp.read_buf(buf).await, Ok(n) if n > 0) {
            return None;
        }
    };
    let headers = head
        .headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let value = if n == "date" && value != ORIGIN_DATE { "<now>".to_string() } else { normal(&value) };
            (n.as_str().to_string(), value)
        })
        .collect();
    let method = method.parse().expect("a method");
    let length = match head.status {
        // A 101's body is the new protocol.
        101 => BodyLength::Empty,
        status => response_framing(&method, status, &head.headers).unwrap_or(BodyLength::CloseDelimited),
    };
    let mut decoder = BodyDecoder::new(length, ChunkLimits::default());
    let mut body = Vec::new();
    let mut complete = true;
    while !decoder.is_done() {
        match decoder.decode(buf) {
            Ok(Some(Decoded::Data(d))) => body.extend_from_slice(&d),
            Ok(Some(Decoded::Trailers(t))) => {
                for (n, v) in t {
                    body.extend_from_slice(format!("\n[trailer {n}: {}]", v.to_str().unwrap_or("?")).as_bytes());
                }
            }
            Ok(Some(Decoded::End)) => {}
            Ok(None) => {
                if !matches!(tcp.read_buf(buf).await, Ok(n) if n > 0) {
                    complete = decoder.decode_eof().is_ok();
                    break;
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let body = normal(&String::from_utf8_lossy(&body));
    Some(Seen { status: head.status, headers, body, complete })
}

/// `text` with `ports` written as `PORT` and 16-hex-digit request ids as `<id>`.
pub fn normalise(text: &str, ports: &[u16]) -> String {
    // Each leg of a WebSocket handshake has a key of its own.
    let mut out: String = text
        .split_inclusive('\n')
        .map(|line| if line.starts_with("sec-websocket-key:") { "sec-websocket-key: <key>\r\n" } else { line })
        .collect();
    for port in ports {
        out = out.replace(&port.to_string(), "PORT");
    }
    let bytes = out.as_bytes();
    let mut result = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)).count();
        if run == 16 {
            result.extend_from_slice(b"<id>");
            i += 16;
        } else {
            let step = run.max(1);
            result.extend_from_slice(&bytes[i..i + step]);
            i += step;
        }
    }
    String::from_utf8_lossy(&result).into_owned()
}

/// A body of `n` bytes.
pub fn filler(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}
