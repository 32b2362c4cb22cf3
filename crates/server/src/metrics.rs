//! `/metrics`, in the Prometheus conventions, encoded by the `prometheus-client` crate:
//! the OpenMetrics text format (`application/openmetrics-text`) for a scraper that asks
//! for it, else the classic text format (`text/plain; version=0.0.4`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `localtunnels_build_info{version}` | gauge | always 1 |
//! | `localtunnels_tunnels`, `localtunnels_streams` | gauge | connected now, in flight now |
//! | `localtunnels_requests_total`, `localtunnels_websockets_total` | counter | visitor requests, WebSockets |
//! | `localtunnels_sessions_total` | counter | tunnel sessions accepted |
//! | `localtunnels_refused_total{reason}` | counter | handshakes refused, by reason (`name_taken`, ...) |
//! | `localtunnels_errors_total{status}` | counter | errors the server answered, by status |
//! | `localtunnels_request_duration_seconds` | histogram | visitor request to response head |
//! | `localtunnels_tunnel_received_bytes_total`, `..._sent_bytes_total` | counter | bytes over control connections |
//! | `process_*` | | start time, CPU, resident and virtual memory, open and max fds (Linux) |
//!
//! No label carries a tunnel name: the values do not grow with the number of tunnels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use localtunnels_core::RefuseReason;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::ServerState;

/// The OpenMetrics content type, for a scraper whose `Accept` names it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the proxy and the control connections record as they go.
#[derive(Debug)]
pub struct Recorded {
    /// Seconds from a visitor's request to its response head (or the server's own answer).
    pub request_duration: Histogram,
    /// Bytes read from tunnel clients' control connections.
    pub received: AtomicU64,
    /// Bytes written to them.
    pub sent: AtomicU64,
    /// Handshakes refused, by reason.
    refusals: Family<Vec<(String, String)>, Counter>,
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded {
            // 1 ms to about 33 s, doubling.
            request_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            refusals: Family::default(),
        }
    }
}

impl Recorded {
    /// Counts a refused handshake.
    pub fn refused(&self, reason: RefuseReason) {
        self.refusals.get_or_create(&vec![("reason".to_string(), reason.as_str().to_string())]).inc();
    }

    /// Records a visitor request answered after `elapsed`.
    pub fn answered(&self, elapsed: Duration) {
        self.request_duration.observe(elapsed.as_secs_f64());
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&http::HeaderValue>) -> bool {
    accept.and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The metrics page and its content type.
pub fn render(state: &ServerState, openmetrics: bool) -> (String, &'static str) {
    let c = &state.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let live = state.registry.live();
    let streams: usize = live.iter().map(|t| t.stream_count()).sum();
    let mut reg = Registry::default();
    let version = vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    reg.register("localtunnels_build_info", "The server's version, as a label; always 1", BuildInfo(version));
    reg.register("localtunnels_tunnels", "Tunnels connected", gauge(live.len()));
    reg.register("localtunnels_streams", "Streams in flight", gauge(streams));
    reg.register("localtunnels_requests", "Visitor HTTP requests", ConstCounter::new(load(&c.requests)));
    reg.register("localtunnels_websockets", "Visitor WebSockets", ConstCounter::new(load(&c.websockets)));
    reg.register("localtunnels_sessions", "Tunnel sessions accepted", ConstCounter::new(load(&c.sessions)));
    reg.register("localtunnels_refused", "Tunnel handshakes refused, by reason", c.recorded.refusals.clone());
    let errors = Family::<Vec<(String, String)>, Counter>::default();
    let by_status = [
        (400, &c.bad_request),
        (401, &c.unauthorized),
        (403, &c.forbidden),
        (404, &c.not_found),
        (413, &c.too_large),
        (429, &c.rate_limited),
        (502, &c.bad_gateway),
        (503, &c.unavailable),
        (504, &c.timeouts),
    ];
    for (status, v) in by_status {
        errors.get_or_create(&vec![("status".to_string(), status.to_string())]).inc_by(load(v));
    }
    reg.register("localtunnels_errors", "Errors answered by the server, by status", errors);
    reg.register(
        "localtunnels_request_duration_seconds",
        "Seconds from a visitor's request to its response head",
        c.recorded.request_duration.clone(),
    );
    let received = ConstCounter::new(load(&c.recorded.received));
    reg.register("localtunnels_tunnel_received_bytes", "Bytes received from tunnel clients", received);
    let sent = ConstCounter::new(load(&c.recorded.sent));
    reg.register("localtunnels_tunnel_sent_bytes", "Bytes sent to tunnel clients", sent);
    let start = SystemTime::now().checked_sub(state.started.elapsed()).unwrap_or(SystemTime::UNIX_EPOCH);
    reg.register_collector(Box::new(crate::process::ProcessCollector { start }));
    if let Some(acme) = state.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        acme.register_metrics(&mut reg);
    }
    if let Some(cluster) = &state.cluster {
        cluster.register_metrics(&mut reg);
    }

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    if openmetrics {
        (out, OPENMETRICS)
    } else {
        (to_prometheus_text(&out), PROMETHEUS_TEXT)
    }
}

fn gauge(n: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `localtunnels_build_info{version="..."} 1`, typed as a gauge (the classic text
/// format has no `info` type).
#[derive(Debug)]
struct BuildInfo(Vec<(String, String)>);

impl EncodeMetric for BuildInfo {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_family(&self.0)?.encode_gauge(&1i64)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// OpenMetrics text as the classic format: counters' `# TYPE`/`# HELP` name the
/// `_total` series, and the `# UNIT` and `# EOF` lines go (the classic parser knows
/// neither).
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = Vec::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|l| l.strip_suffix(" counter")) {
            counters.push(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.iter().any(|c| c == name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Encodes one constant metric under `name`.
pub(crate) fn encode_const(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}
