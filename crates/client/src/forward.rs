//! How a tunneled request reaches the origin and its answer comes back: a
//! [`LocalOrigin`](crate::LocalOrigin) is spoken to directly over a pooled HTTP/1.1
//! connection ([`crate::exchange`]: the tunnel's header list written as it is, the
//! response head parsed into one), any other [`Origin`](crate::Origin) through
//! [`Origin::call`](crate::Origin::call) with `http` types.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use localtunnels_core::{is_te_trailers, FieldCoding, Header, HeaderBlock, StreamKind};
use localtunnels_driver::h1::framing::decimal;
use localtunnels_driver::h1::OriginHead;
use localtunnels_driver::http::{header_map, response_head, retain_end_to_end};
use localtunnels_driver::StreamBody;

use crate::ctx::Ctx;
use crate::exchange::{self, Outgoing, ResponseBody};
use crate::origin::{BoxError, OriginBody};

/// Turns a request head from the tunnel into the one the origin gets, in place: the
/// `Host` the owner chose (`--host-header`), or the origin's authority for a request
/// without one; `te: trailers` last if the head carries it (the server sends it when
/// the visitor's `TE` lists `trailers`; this leg forwards trailers), and no other `te`
/// (hop-by-hop: a peer does not choose them for the origin's leg). Returns the method.
/// A head with more than one `Host` is refused (the server refuses such visitors with
/// 400; one that arrives anyway never reaches the origin, whatever the policy).
pub(crate) fn origin_request(ctx: &Ctx, method: &str, headers: &mut Vec<Header>) -> Result<Method, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method}"))?;
    let rewrite = ctx.host_for_origin();
    let mut hosts = 0;
    for (_, value) in headers.iter_mut().filter(|(n, _)| n == header::HOST) {
        hosts += 1;
        if let Some(host) = rewrite {
            *value = host.clone();
        }
    }
    one_host(hosts)?;
    if hosts == 0 {
        if let Some(host) = rewrite.or_else(|| ctx.origin.as_local().and_then(|l| l.default_host())) {
            headers.insert(0, (header::HOST, host.clone()));
        }
    }
    let mut trailers = false;
    headers.retain(|(n, v)| {
        let te = n == header::TE;
        trailers |= te && is_te_trailers(v.as_bytes());
        !te
    });
    if trailers {
        headers.push((header::TE, HeaderValue::from_static("trailers")));
    }
    Ok(method)
}

/// Refuses a request head with `hosts` Host fields if that is more than one.
pub(crate) fn one_host(hosts: usize) -> Result<(), String> {
    match hosts {
        0 | 1 => Ok(()),
        n => Err(format!("the request has {n} Host headers")),
    }
}

/// The request's method as the origin gets it (`origin_request`'s first step, for a
/// raw head: `raw_request`).
pub(crate) fn origin_method(method: &str) -> Result<Method, String> {
    Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method}"))
}

/// The request's `Content-Length`, if it has one.
pub(crate) fn content_length(headers: &[Header]) -> Option<u64> {
    headers.iter().find(|(n, _)| n == header::CONTENT_LENGTH).and_then(|(_, v)| decimal(v.as_bytes()))
}

/// The origin's answer, either way it came.
pub(crate) enum Answer {
    /// From a connection this client spoke HTTP/1.1 on.
    Direct(exchange::Response),
    /// From [`Origin::call`](crate::Origin::call).
    Called(Response<OriginBody>),
}

impl Answer {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Answer::Direct(r) => r.head.status(),
            Answer::Called(r) => r.status().as_u16(),
        }
    }

    /// The head as the tunnel carries it (hop-by-hop fields dropped: the status and
    /// the RESPONSE's block), and the body. A usual head from a connection of ours
    /// went from the parser into its block; any other is written into one here.
    pub(crate) fn into_parts(self) -> (u16, HeaderBlock, AnswerBody) {
        match self {
            Answer::Direct(r) => {
                let (status, block, body) = r.into_parts();
                (status, block, AnswerBody::Direct(body))
            }
            Answer::Called(r) => {
                let (parts, body) = r.into_parts();
                let head = response_head(parts.status, &parts.headers, StreamKind::Http);
                (head.status, HeaderBlock::from_headers(&head.headers, BLOCK_CODING), AnswerBody::Called(body))
            }
        }
    }
}

impl exchange::Response {
    pub(crate) fn status(&self) -> u16 {
        self.head.status()
    }

    /// [`Answer::into_parts`] of an answer from a connection of ours, its body as the
    /// exchange left it: what `http::serve_raw` takes, with no [`Answer`] or
    /// [`AnswerBody`] around it (its origin is always ours).
    pub(crate) fn into_parts(self) -> (u16, HeaderBlock, Box<ResponseBody>) {
        match self.head {
            OriginHead::Block(head) => (head.status, head.block, self.body),
            OriginHead::Listed(head) => {
                let mut headers = head.headers;
                retain_end_to_end(&mut headers, StreamKind::Http);
                (head.status, HeaderBlock::from_headers(&headers, BLOCK_CODING), self.body)
            }
        }
    }
}

/// How the client writes a RESPONSE's block: with the table's indexes, which every
/// server of this protocol version reads (a session towards one that does not
/// re-encodes it as text: `Session::respond_block`).
pub(crate) const BLOCK_CODING: FieldCoding = FieldCoding::Indexed;

/// Sends the request (`headers` as [`origin_request`] left them) to the origin.
pub(crate) async fn send(
    ctx: &Ctx,
    method: &Method,
    target: &str,
    headers: &[Header],
    body: StreamBody,
) -> Result<Answer, BoxError> {
    if let Some(local) = ctx.origin.as_local() {
        let req = Outgoing { method, target, headers };
        return Ok(Answer::Direct(local.pool().send(req, body).await?));
    }
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = target.parse().map_err(|_| format!("invalid target {target}"))?;
    *req.headers_mut() = header_map(headers);
    Ok(Answer::Called(ctx.origin.call(req).await?))
}

/// An answer's body, either way it came.
pub(crate) enum AnswerBody {
    Direct(Box<ResponseBody>),
    Called(OriginBody),
}

impl AnswerBody {
    /// See [`ResponseBody::hold_connection`] (an origin's own body has no connection
    /// of ours).
    pub(crate) fn hold_connection(&mut self, hold: bool) {
        if let AnswerBody::Direct(b) = self {
            b.hold_connection(hold);
        }
    }

    /// See [`ResponseBody::take_whole`] (an origin's own body is always polled).
    #[inline]
    pub(crate) fn take_whole(&mut self) -> Option<Bytes> {
        match self {
            AnswerBody::Direct(b) => b.take_whole(),
            AnswerBody::Called(_) => None,
        }
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            AnswerBody::Direct(b) => Pin::new(&mut **b).poll_frame(cx).map(|f| f.map(|r| r.map_err(BoxError::from))),
            AnswerBody::Called(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Direct(b) => b.is_end_stream(),
            AnswerBody::Called(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnswerBody::Direct(b) => b.size_hint(),
            AnswerBody::Called(b) => b.size_hint(),
        }
    }
}
