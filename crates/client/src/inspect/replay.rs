//! Replay: a captured request sent to the origin again (as captured, or edited),
//! recorded as a new entry marked `replay_of`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use localtunnels_core::inspect::{EntryId, Exchange};
use localtunnels_core::Header;
use localtunnels_driver::StreamBody;
use serde::Deserialize;

use super::{BodyRecorder, Inspector};

/// How long a replay waits for the origin's response head.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Changes to a request before it is replayed (our extension of ngrok's
/// `POST /api/requests/http`: its `edit` object). What is left out stays as captured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// Method.
    pub method: Option<String>,
    /// Path and query.
    pub uri: Option<String>,
    /// Every header, replacing the captured ones (`{"Name": ["value", ...]}`).
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// The body, in base64.
    pub body: Option<String>,
}

/// Why a replay was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No such entry (never, or evicted).
    #[error("no captured request with id {0}")]
    NotFound(String),
    /// The captured body is only the body's first bytes.
    #[error("the request body was captured only in part ({captured} of {size} bytes, see --inspect-body-limit): replay it with an edited body")]
    Truncated {
        /// Bytes captured.
        captured: usize,
        /// The body's size.
        size: u64,
    },
    /// The tunnel has not connected yet, so there is no origin.
    #[error("the tunnel is not connected yet")]
    NoOrigin,
    /// An edit cannot make an HTTP request.
    #[error("invalid edit: {0}")]
    Invalid(String),
    /// The origin did not answer.
    #[error("the origin failed: {0}")]
    Origin(String),
}

impl Inspector {
    /// Sends entry `id`'s request to the origin again, with `edit` applied; returns
    /// the new entry's id once the response head is back (its body is recorded as it
    /// arrives).
    pub async fn replay(&self, id: &str, edit: Edit) -> Result<String, ReplayError> {
        let not_found = || ReplayError::NotFound(id.to_string());
        let id: EntryId = id.parse().map_err(|_| not_found())?;
        let (mut method, mut uri, mut headers, body) = {
            let store = self.store();
            let e = store.get(id).ok_or_else(not_found)?;
            if e.websocket.is_some() {
                return Err(ReplayError::Invalid("a WebSocket session cannot be replayed".into()));
            }
            let r = store.request(e);
            let body = if r.body.truncated() && edit.body.is_none() {
                Err(ReplayError::Truncated { captured: r.body.data().len(), size: r.body.size() })
            } else {
                Ok(Bytes::copy_from_slice(r.body.data()))
            };
            (r.method, r.uri, r.headers, body)
        };
        let mut body = body?;
        if let Some(m) = edit.method {
            method = m;
        }
        if let Some(u) = edit.uri {
            uri = u;
        }
        if let Some(h) = edit.headers {
            headers = parse_headers(&h)?;
        }
        if let Some(b) = edit.body {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b.as_bytes());
            body = Bytes::from(decoded.map_err(|e| ReplayError::Invalid(format!("body is not base64: {e}")))?);
        }
        // The body is whole now: its length is the one hyper sends.
        headers.retain(|(n, _)| n != http::header::CONTENT_LENGTH && n != http::header::TRANSFER_ENCODING);
        let mut req = Request::new(StreamBody::full(body.clone()));
        *req.method_mut() = method.parse().map_err(|_| ReplayError::Invalid(format!("method {method:?}")))?;
        *req.uri_mut() = uri.parse().map_err(|_| ReplayError::Invalid(format!("uri {uri:?}")))?;
        for (n, v) in &headers {
            req.headers_mut().append(n.clone(), v.clone());
        }
        let origin = self.origin().ok_or(ReplayError::NoOrigin)?;

        let ex =
            Exchange { method: &method, uri: uri.as_bytes(), headers: &headers, websocket: false, replay_of: Some(id) };
        let new_id = self.begin_exchange(ex);
        let req = req.map(|b| b.tapped(Box::new(BodyRecorder::request(self, new_id))));
        let answer = localtunnels_driver::timers::timeout(REPLAY_TIMEOUT, origin.call(req)).await;
        let res = match answer {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return Err(self.replay_failed(new_id, e.to_string())),
            Err(_) => return Err(self.replay_failed(new_id, "no response within 30 s".into())),
        };
        let (parts, mut res_body) = res.into_parts();
        let res_headers: Vec<Header> = parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        self.update(new_id, |s, _| s.respond(new_id, parts.status.as_u16(), &res_headers));
        let mut recorder = BodyRecorder::response(self, new_id);
        // Nobody waits for a replay's body: it is read (and its first bytes kept) here.
        tokio::spawn(async move {
            while let Some(Ok(frame)) = res_body.frame().await {
                if let Some(data) = frame.data_ref() {
                    recorder.push(data);
                }
            }
        });
        Ok(new_id.to_string())
    }

    fn replay_failed(&self, id: EntryId, message: String) -> ReplayError {
        self.update(id, |s, now| s.fail(id, now, &message));
        ReplayError::Origin(message)
    }
}

fn parse_headers(map: &BTreeMap<String, Vec<String>>) -> Result<Vec<Header>, ReplayError> {
    let mut out = Vec::new();
    for (name, values) in map {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ReplayError::Invalid(format!("header name {name:?}")))?;
        for v in values {
            let v = HeaderValue::from_str(v).map_err(|_| ReplayError::Invalid(format!("value of header {name}")))?;
            out.push((n.clone(), v));
        }
    }
    Ok(out)
}
