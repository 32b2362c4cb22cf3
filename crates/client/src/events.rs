//! What a running client reports.

use std::time::Duration;

/// An event of a running tunnel client (the seed's `connected`, `disconnected`,
/// `reconnecting`, `request`, `response` and `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The tunnel is up at `url`.
    Connected {
        /// The public URL.
        url: String,
    },
    /// The control connection dropped.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Waiting `delay` before reconnect attempt `attempt`.
    Reconnecting {
        /// 1 for the first retry.
        attempt: u32,
        /// The backoff chosen.
        delay: Duration,
    },
    /// A visitor request arrived.
    Request {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
    },
    /// Its response head went back (bytes counts the response body once sent).
    Response {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
        /// Status code.
        status: u16,
        /// From request to the end of the response body.
        duration: Duration,
        /// Response body bytes.
        bytes: u64,
    },
    /// Something went wrong that did not stop the client.
    Error {
        /// For people.
        message: String,
    },
}
