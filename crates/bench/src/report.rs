//! Collected figures, medians, and the markdown table (every figure also as a ratio
//! to the direct figure of the same run set).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::targets::Kind;

/// A target figure for localtunnels.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Ratio to direct at least this.
    RatioMin(f64),
    /// Ratio to direct at most this.
    RatioMax(f64),
    /// Absolute value at most this.
    Max(f64),
    /// Absolute value at least this.
    Min(f64),
    /// Another row's localtunnels figure over this row's at least this (the rate with
    /// the inspector on over the rate with it off).
    OtherOverThisMin(&'static str, f64),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Key in the results.
    pub id: &'static str,
    /// Row label.
    pub label: &'static str,
    /// Unit shown in the label.
    pub unit: &'static str,
    /// Show the ratio to direct.
    pub ratio: bool,
    /// localtunnels' target, if the issue sets one.
    pub goal: Option<Goal>,
}

const fn m(id: &'static str, label: &'static str, unit: &'static str, ratio: bool, goal: Option<Goal>) -> Metric {
    Metric { id, label, unit, ratio, goal }
}

/// Every row, in order.
pub const METRICS: &[Metric] = &[
    m("rps_1k", "1 KiB GET, 32 conns", "req/s", true, Some(Goal::RatioMin(0.5))),
    m(
        "rps_1k_no_inspect",
        "1 KiB GET, 32 conns, inspector off",
        "req/s",
        true,
        Some(Goal::OtherOverThisMin("rps_1k", 0.9)),
    ),
    m("p50_1k_1", "1 KiB GET p50, 1 conn", "ms", true, Some(Goal::RatioMax(1.5))),
    m("p99_1k_1", "1 KiB GET p99, 1 conn", "ms", true, None),
    m("p50_1k_32", "1 KiB GET p50, 32 conns", "ms", true, None),
    m("p99_1k_32", "1 KiB GET p99, 32 conns", "ms", true, None),
    m("thr_1m", "1 MiB GET throughput, 32 conns", "MiB/s", true, Some(Goal::RatioMin(0.25))),
    m("p50_1m_1", "1 MiB GET p50, 1 conn", "ms", true, None),
    m("p99_1m_1", "1 MiB GET p99, 1 conn", "ms", true, Some(Goal::RatioMax(3.0))),
    m("p50_1m_32", "1 MiB GET p50, 32 conns", "ms", true, None),
    m("p99_1m_32", "1 MiB GET p99, 32 conns", "ms", true, None),
    m("post_1m", "1 MiB POST, 32 conns", "req/s", true, None),
    m("ws_p50", "WebSocket echo p50 (32 B), 1 conn", "ms", true, Some(Goal::RatioMax(1.5))),
    m("ws_p99", "WebSocket echo p99 (32 B), 1 conn", "ms", true, None),
    m("ws_rate", "WebSocket echo, many conns", "msg/s", true, None),
    m(
        "cluster_rps_1k",
        "1 KiB GET through another cluster node, 32 conns, ÷ through the owning node",
        "×",
        false,
        None,
    ),
    m(
        "cluster_p50_1k_1",
        "1 KiB GET p50 through another cluster node, 1 conn, ÷ through the owning node",
        "×",
        false,
        None,
    ),
    m("cpu_1k", "CPU per 1 KiB request (server + client)", "µs", false, Some(Goal::Max(10.0))),
    m("cpu_1k_kernel", "of which in the kernel (system time)", "µs", false, None),
    m("cpu_1k_origin", "the origin's CPU per 1 KiB request", "µs", false, None),
    m("idle_1k", "machine idle during the 1 KiB rate run", "%", false, None),
    m("start", "client start to first 200", "ms", false, Some(Goal::Max(10.0))),
    m("rss_idle_server", "RSS idle, server", "MiB", false, Some(Goal::Max(10.0))),
    m("rss_idle_client", "RSS idle, client", "MiB", false, Some(Goal::Max(10.0))),
    m("rss_1k_server", "RSS under 1 KiB load (first run), server", "MiB", false, None),
    m("rss_1k_client", "RSS under 1 KiB load (first run), client", "MiB", false, None),
    m("rss_1m_server", "RSS under 1 MiB load, server", "MiB", false, Some(Goal::Max(32.0))),
    m("rss_1m_client", "RSS under 1 MiB load, client", "MiB", false, Some(Goal::Max(32.0))),
    m("tunnel_1000", "server memory per idle tunnel, 1,000 tunnels", "KiB", false, None),
    m("tunnel_10000", "server memory per idle tunnel, 10,000 tunnels", "KiB", false, Some(Goal::Max(32.0))),
    m("wasm_gz", "wasm client, gzipped .wasm", "KB", false, Some(Goal::Max(120.0))),
    m("wasm_rps", "wasm client in headless Chromium, 1 KiB", "req/s", false, Some(Goal::Min(10_000.0))),
];

/// Everything measured in one invocation.
#[derive(Debug, Default)]
pub struct Results {
    /// Every run's figure, by metric id and target.
    pub runs: BTreeMap<(&'static str, Kind), Vec<f64>>,
    /// Text shown instead of a figure (e.g. "not forwarded").
    pub cells: BTreeMap<(&'static str, Kind), String>,
    /// Footnotes.
    pub notes: Vec<String>,
}

impl Results {
    /// Records one run's figure.
    pub fn push(&mut self, id: &'static str, kind: Kind, v: f64) {
        self.runs.entry((id, kind)).or_default().push(v);
    }

    /// Shows `text` instead of a figure (unless figures exist).
    pub fn cell(&mut self, id: &'static str, kind: Kind, text: impl Into<String>) {
        self.cells.entry((id, kind)).or_insert_with(|| text.into());
    }

    /// Adds a footnote (once).
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// The median of a metric's runs.
    pub fn median(&self, id: &str, kind: Kind) -> Option<f64> {
        let v = self.runs.iter().find(|((i, k), _)| *i == id && *k == kind)?.1;
        median(v)
    }

    /// The markdown table over `kinds`.
    pub fn table(&self, kinds: &[Kind]) -> String {
        let mut s = String::from("| metric |");
        for k in kinds {
            let _ = write!(s, " {} |", k.label());
        }
        s.push_str(" target (localtunnels) | met |\n|---|");
        for _ in kinds {
            s.push_str("---:|");
        }
        s.push_str("---|---|\n");
        for metric in METRICS {
            if kinds.iter().all(|k| self.median(metric.id, *k).is_none() && !self.cells.contains_key(&(metric.id, *k)))
            {
                continue;
            }
            let _ = write!(s, "| {} ({}) |", metric.label, metric.unit);
            let direct = self.median(metric.id, Kind::Direct);
            for k in kinds {
                let cell = match (self.median(metric.id, *k), self.cells.get(&(metric.id, *k))) {
                    (Some(v), _) => match (metric.ratio, direct, *k) {
                        (true, Some(d), kind) if kind != Kind::Direct && d > 0.0 => {
                            format!("{} ({}×)", fmt(v), fmt_ratio(v / d))
                        }
                        _ => fmt(v),
                    },
                    (None, Some(text)) => text.clone(),
                    (None, None) => "–".into(),
                };
                let _ = write!(s, " {cell} |");
            }
            let (goal, met) = self.goal(metric, direct);
            let _ = writeln!(s, " {goal} | {met} |");
        }
        s
    }

    fn goal(&self, metric: &Metric, direct: Option<f64>) -> (String, &'static str) {
        let Some(goal) = metric.goal else { return (String::new(), "") };
        let ours = self.median(metric.id, Kind::Localtunnels);
        let (text, ok) = match goal {
            Goal::RatioMin(r) => (format!("≥ {r}× direct"), ours.zip(direct).map(|(v, d)| v / d >= r)),
            Goal::RatioMax(r) => (format!("≤ {r}× direct"), ours.zip(direct).map(|(v, d)| v / d <= r)),
            Goal::Max(x) => (format!("≤ {x} {}", metric.unit), ours.map(|v| v <= x)),
            Goal::Min(x) => (format!("≥ {x} {}", metric.unit), ours.map(|v| v >= x)),
            Goal::OtherOverThisMin(other, r) => {
                let theirs = self.median(other, Kind::Localtunnels);
                (format!("{other} ≥ {r}× this"), theirs.zip(ours).map(|(t, o)| t / o >= r))
            }
        };
        let met = match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "?",
        };
        (text, met)
    }

    /// All runs as JSON, for comparing invocations.
    pub fn json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for ((id, kind), v) in &self.runs {
            let entry = out.entry(id.to_string()).or_insert_with(|| serde_json::json!({}));
            entry[kind.label()] = serde_json::json!({ "runs": v, "median": median(v) });
        }
        serde_json::json!({ "metrics": out, "notes": self.notes })
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[mid] } else { (s[mid - 1] + s[mid]) / 2.0 })
}

/// The `p`-th percentile (0..=1) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1].as_secs_f64() * 1e3)
}

/// Three significant figures or so, with thousands separators for big numbers.
pub fn fmt(v: f64) -> String {
    if v >= 1000.0 {
        let n = v.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(fmt(24691.2), "24,691");
        assert_eq!(fmt(0.1234), "0.123");
        let mut r = Results::default();
        r.push("rps_1k", Kind::Direct, 100.0);
        r.push("rps_1k", Kind::Localtunnels, 60.0);
        let t = r.table(&[Kind::Direct, Kind::Localtunnels]);
        assert!(t.contains("| 1 KiB GET, 32 conns (req/s) | 100 | 60.0 (0.60×) | ≥ 0.5× direct | yes |"), "{t}");
        r.push("rps_1k_no_inspect", Kind::Localtunnels, 64.0);
        let t = r.table(&[Kind::Direct, Kind::Localtunnels]);
        assert!(
            t.contains("| 1 KiB GET, 32 conns, inspector off (req/s) | – | 64.0 | rps_1k ≥ 0.9× this | yes |"),
            "{t}"
        );
    }
}
