//! The whole benchmark: set up tools, origin and targets, run every case `runs`
//! times (targets interleaved within each run, so noise spreads evenly), then write
//! the table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::sync::oneshot;

use crate::inspect::NoInspect;
use crate::load::{Shot, Tools};
use crate::procs::{cpu_ticks, ensure_tool, machine_ticks, rss_kib, ticks_per_sec, CpuTicks, Proc};
use crate::report::{percentile_ms, Results};
use crate::targets::{Kind, Programs, Recipe, Target};
use crate::Args;

/// The request shapes of the HTTP cases.
#[derive(Debug, Clone, Copy)]
enum Http {
    Rps1k,
    Lat1k1,
    Lat1k32,
    Thr1m,
    Lat1m1,
    Lat1m32,
    Post1m,
}

impl Http {
    /// A latency case's path, whether it runs at one connection (else `--conns`), and
    /// its p50 and p99 result ids. (Rate cases: not used.)
    fn latency(self) -> (&'static str, bool, &'static str, &'static str) {
        match self {
            Http::Lat1k1 => ("/1k", true, "p50_1k_1", "p99_1k_1"),
            Http::Lat1k32 => ("/1k", false, "p50_1k_32", "p99_1k_32"),
            Http::Lat1m1 => ("/1m", true, "p50_1m_1", "p99_1m_1"),
            Http::Lat1m32 => ("/1m", false, "p50_1m_32", "p99_1m_32"),
            Http::Rps1k | Http::Thr1m | Http::Post1m => unreachable!("{self:?} is a rate case"),
        }
    }
}

const HTTP: [Http; 7] =
    [Http::Rps1k, Http::Lat1k1, Http::Lat1k32, Http::Thr1m, Http::Lat1m1, Http::Lat1m32, Http::Post1m];

struct Bench {
    args: Args,
    tools: Tools,
    post_body: PathBuf,
    ticks: f64,
    results: Results,
    /// The HTTP cases' figures with nginx as the origin (`--origin nginx`).
    nginx: Option<Results>,
    /// Shown after a target's name in progress lines: which origin is behind it.
    phase: &'static str,
    /// The origin process the HTTP cases run against (the benchmark's own, or nginx).
    origin_pid: Option<u32>,
}

/// Runs everything `args` selects and writes the report.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let logs = root.join("target/bench-logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let only = args.only.clone();
    let group = |g: &str| only.iter().any(|o| o == g);
    let mut kinds = vec![Kind::Direct];
    for p in &args.peers {
        let k = Kind::parse(p).ok_or_else(|| anyhow!("unknown peer {p} (localtunnels, bore, rathole)"))?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    kinds.sort();
    for o in &args.origin {
        if o != "bench" && o != "nginx" {
            bail!("unknown origin {o} (bench, nginx)");
        }
    }
    // The HTTP cases in front of the benchmark's own origin, and again in front of nginx.
    let own_http = group("http") && args.origin.iter().any(|o| o == "bench");
    let nginx_http = group("http") && args.origin.iter().any(|o| o == "nginx");

    let install = !args.no_install;
    let (post_script, post_body) = crate::load::write_post_files(&logs)?;
    let tools = Tools {
        wrk: ensure_tool("wrk", "wrk", true, install),
        oha: ensure_tool("oha", "oha", false, install),
        post_script,
    };
    let programs = Programs {
        localtunnels: match &args.localtunnels_bin {
            Some(p) => p.clone(),
            None => build_localtunnels(&root)?,
        },
        bore: kinds.contains(&Kind::Bore).then(|| ensure_tool("bore", "bore-cli", false, install)).flatten(),
        rathole: kinds.contains(&Kind::Rathole).then(|| ensure_tool("rathole", "rathole", false, install)).flatten(),
    };
    let mut bench = Bench {
        args,
        tools,
        post_body,
        ticks: ticks_per_sec(),
        results: Results::default(),
        nginx: None,
        phase: "",
        origin_pid: None,
    };
    if bench.tools.wrk.is_none() {
        bench.results.note("wrk is missing: request rates come from oha.");
    }

    let exe = std::env::current_exe()?;
    let mut origin = Proc::spawn(&logs, "origin", &exe, &["origin"])?;
    let origin_port: u16 = origin.line(Duration::from_secs(10)).await?.trim().parse().context("origin port")?;
    bench.origin_pid = Some(origin.pid);

    let mut targets = Vec::new();
    if own_http || group("ws") || group("startup") {
        targets = bench.start_targets(&kinds, &programs, &logs, origin_port).await;
    }
    for t in &targets {
        bench.idle_memory(t);
    }
    if own_http {
        bench.warm_up(&targets).await;
    }
    let no_inspect = match targets.iter().find_map(|t| match t.recipe {
        Recipe::Localtunnels { server_port } if own_http => Some(server_port),
        _ => None,
    }) {
        Some(port) => match NoInspect::start(&programs.localtunnels, &logs, port, origin_port).await {
            Ok(n) => Some(n),
            Err(e) => {
                bench.results.note(format!("the client without an inspector was not measured: {e:#}"));
                None
            }
        },
        None => None,
    };
    let cluster = if group("cluster") {
        match crate::cluster::Cluster::start(&programs.localtunnels, &logs, origin_port).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("[bench] cluster: not measured: {e:#}");
                bench.results.note(format!("the cluster rows were not measured: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    let runs = bench.args.runs;
    for run in 0..runs {
        if own_http {
            for case in HTTP {
                bench.http_case(case, &targets, run).await;
                if let (Http::Rps1k, Some(n)) = (case, &no_inspect) {
                    eprintln!("[bench] run {}/{runs}: {case:?} via localtunnels --no-inspect", run + 1);
                    match bench.tools.rate(&n.shot(), bench.args.conns, bench.args.duration).await {
                        Ok(o) => bench.results.push("rps_1k_no_inspect", Kind::Localtunnels, o.rps),
                        Err(e) => bench.results.note(format!("{case:?} with --no-inspect failed: {e:#}")),
                    }
                }
            }
        }
        if let Some(c) = &cluster {
            eprintln!("[bench] run {}/{runs}: 1 KiB through the owning node and through another", run + 1);
            if let Err(e) = c.measure(&bench.tools, &mut bench.results, bench.args.conns, bench.args.duration).await {
                bench.results.note(format!("the cluster rows failed in run {}: {e:#}", run + 1));
            }
        }
        if group("ws") {
            for t in &targets {
                eprintln!("[bench] run {}/{runs}: WebSocket echo via {}", run + 1, t.kind.label());
                bench.websocket(t).await;
            }
        }
    }
    if group("startup") {
        let n = runs.max(5);
        for t in targets.iter_mut().filter(|t| !matches!(t.recipe, Recipe::None)) {
            for i in 0..n {
                eprintln!("[bench] client start-up {}/{n} via {}", i + 1, t.kind.label());
                match crate::startup::once(t, &programs, &logs, origin_port, i).await {
                    Ok(ms) => bench.results.push("start", t.kind, ms),
                    Err(e) => {
                        bench.results.note(format!("start-up via {} failed: {e:#}", t.kind.label()));
                        break;
                    }
                }
            }
        }
    }
    for t in targets {
        t.stop().await;
    }
    if let Some(n) = no_inspect {
        n.stop().await;
    }
    if let Some(c) = cluster {
        crate::cluster::Cluster::note(&mut bench.results);
        c.stop().await;
    }
    if nginx_http {
        bench.with_nginx(&kinds, &programs, &logs).await;
    }
    if group("tunnels") && kinds.contains(&Kind::Localtunnels) {
        bench.idle_tunnels(&programs.localtunnels, &logs).await;
    }
    origin.stop().await;
    if group("wasm") {
        bench.wasm(&root, &programs.localtunnels, &logs).await;
    }
    bench.write(&root, &kinds)
}

impl Bench {
    /// Starts every target of `kinds` in front of the origin on `origin_port`; one
    /// that does not start is noted and left out.
    async fn start_targets(
        &mut self,
        kinds: &[Kind],
        programs: &Programs,
        logs: &Path,
        origin_port: u16,
    ) -> Vec<Target> {
        let mut targets = Vec::new();
        for &k in kinds {
            match crate::targets::start(k, programs, logs, origin_port).await {
                Ok(t) => targets.push(t),
                Err(e) => {
                    eprintln!("[bench] {}{}: not measured: {e:#}", k.label(), self.phase);
                    self.results.note(format!("{} was not measured: {e:#}", k.label()));
                }
            }
        }
        targets
    }

    /// One second of the 1 KiB load through each target, unmeasured.
    async fn warm_up(&self, targets: &[Target]) {
        for t in targets {
            let shot = Shot { port: t.port, host: t.host.clone(), path: "/1k", post: None };
            let _ = self.tools.rate(&shot, self.args.conns, 1).await;
        }
    }

    /// One HTTP case through every target, in turn.
    async fn http_case(&mut self, case: Http, targets: &[Target], run: usize) {
        let runs = self.args.runs;
        for t in targets {
            eprintln!("[bench] run {}/{runs}: {case:?} via {}{}", run + 1, t.kind.label(), self.phase);
            if let Err(e) = self.http(case, t, run).await {
                eprintln!("[bench]   failed: {e:#}");
                self.results.note(format!("{case:?} via {} failed: {e:#}", t.kind.label()));
            }
        }
    }

    /// The HTTP cases again, every target in front of nginx instead of the benchmark's
    /// origin; their figures go to a table of their own (`self.nginx`).
    async fn with_nginx(&mut self, kinds: &[Kind], programs: &Programs, logs: &Path) {
        let own = std::mem::take(&mut self.results);
        self.phase = " (nginx)";
        if let Err(e) = self.nginx_runs(kinds, programs, &logs.join("nginx")).await {
            eprintln!("[bench] nginx as the origin: {e:#}");
            self.results.note(format!("nginx as the origin was not measured: {e:#}"));
        }
        self.phase = "";
        self.nginx = Some(std::mem::replace(&mut self.results, own));
    }

    async fn nginx_runs(&mut self, kinds: &[Kind], programs: &Programs, dir: &Path) -> anyhow::Result<()> {
        let bin = crate::nginx::ensure(!self.args.no_install)?;
        let nginx = crate::nginx::Nginx::start(&bin, dir).await?;
        let own_origin = self.origin_pid.replace(nginx.pid());
        let targets = self.start_targets(kinds, programs, dir, nginx.port).await;
        self.warm_up(&targets).await;
        for run in 0..self.args.runs {
            for case in HTTP {
                self.http_case(case, &targets, run).await;
            }
        }
        for t in targets {
            t.stop().await;
        }
        nginx.stop().await;
        self.origin_pid = own_origin;
        Ok(())
    }

    fn idle_memory(&mut self, t: &Target) {
        let r = &mut self.results;
        if let Some(kib) = t.server.as_ref().and_then(|p| rss_kib(p.pid)) {
            r.push("rss_idle_server", t.kind, kib as f64 / 1024.0);
        }
        if let Some(kib) = t.client.as_ref().and_then(|p| rss_kib(p.pid)) {
            r.push("rss_idle_client", t.kind, kib as f64 / 1024.0);
        }
    }

    async fn http(&mut self, case: Http, t: &Target, run: usize) -> anyhow::Result<()> {
        let (secs, conns) = (self.args.duration, self.args.conns);
        let shot = |path: &'static str, post: Option<PathBuf>| Shot { port: t.port, host: t.host.clone(), path, post };
        let k = t.kind;
        let outcome = match case {
            Http::Rps1k => {
                let pids = t.pids();
                let cpu0: CpuTicks = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
                let origin0 = self.origin_pid.and_then(cpu_ticks);
                let machine0 = machine_ticks();
                let sampler = Sampler::start(pids.clone());
                let o = self.tools.rate(&shot("/1k", None), conns, secs).await;
                let peaks = sampler.stop().await;
                let cpu1: CpuTicks = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
                let origin1 = self.origin_pid.and_then(cpu_ticks);
                let machine1 = machine_ticks();
                let o = o?;
                self.results.push("rps_1k", k, o.rps);
                let per_request = |ticks: u64| ticks as f64 / self.ticks * 1e6 / o.requests as f64;
                // Where the rest of the machine went: what the origin spent per request
                // (the headers a tunnel adds cost it), and how much of the machine sat idle
                // (a tunnel that keeps too little in flight, or too few threads busy).
                if let (Some(a), Some(b), true) = (origin0, origin1, o.requests > 0) {
                    self.results.push("cpu_1k_origin", k, per_request(b.since(a).total()));
                }
                if let Some(idle) = machine0.zip(machine1).and_then(|(a, b)| b.idle_percent_since(a)) {
                    self.results.push("idle_1k", k, idle);
                }
                if !pids.is_empty() && o.requests > 0 {
                    let spent = cpu1.since(cpu0);
                    self.results.push("cpu_1k", k, per_request(spent.total()));
                    self.results.push("cpu_1k_kernel", k, per_request(spent.system));
                    // Only the first run's peak: later ones follow 1 MiB loads, whose
                    // freed memory the allocator may keep.
                    if run == 0 {
                        self.peaks("rss_1k_server", "rss_1k_client", t, &peaks);
                    }
                }
                o
            }
            Http::Lat1k1 | Http::Lat1k32 | Http::Lat1m1 | Http::Lat1m32 => {
                let (path, one, p50, p99) = case.latency();
                let o = self.tools.latency(&shot(path, None), if one { 1 } else { conns }, secs).await?;
                self.latencies(p50, p99, k, &o);
                o
            }
            Http::Thr1m => {
                let sampler = Sampler::start(t.pids());
                let o = self.tools.rate(&shot("/1m", None), conns, secs).await;
                let peaks = sampler.stop().await;
                let o = o?;
                // 1 MiB per request: requests/s is MiB/s.
                self.results.push("thr_1m", k, o.rps);
                self.peaks("rss_1m_server", "rss_1m_client", t, &peaks);
                o
            }
            Http::Post1m => {
                let o = self.tools.rate(&shot("/sink", Some(self.post_body.clone())), conns, secs).await?;
                self.results.push("post_1m", k, o.rps);
                o
            }
        };
        if outcome.errors > 0 {
            self.results.note(format!(
                "{case:?} via {}: {} failed requests (of {}) in run {}",
                k.label(),
                outcome.errors,
                outcome.requests + outcome.errors,
                run + 1
            ));
        }
        Ok(())
    }

    fn latencies(&mut self, p50: &'static str, p99: &'static str, k: Kind, o: &crate::load::Outcome) {
        if let Some(v) = o.p50 {
            self.results.push(p50, k, v * 1e3);
        }
        if let Some(v) = o.p99 {
            self.results.push(p99, k, v * 1e3);
        }
    }

    fn peaks(&mut self, server: &'static str, client: &'static str, t: &Target, peaks: &[u64]) {
        let mut i = 0;
        if t.server.is_some() {
            if let Some(&p) = peaks.get(i) {
                self.results.push(server, t.kind, p as f64 / 1024.0);
            }
            i += 1;
        }
        if t.client.is_some() {
            if let Some(&p) = peaks.get(i) {
                self.results.push(client, t.kind, p as f64 / 1024.0);
            }
        }
    }

    async fn websocket(&mut self, t: &Target) {
        let secs = self.args.duration;
        let label = t.kind.label();
        match crate::ws::round_trips(t.port, &t.host, secs, crate::ws::PAYLOAD).await {
            Ok(mut samples) => {
                samples.sort();
                if let (Some(p50), Some(p99)) = (percentile_ms(&samples, 0.5), percentile_ms(&samples, 0.99)) {
                    self.results.push("ws_p50", t.kind, p50);
                    self.results.push("ws_p99", t.kind, p99);
                }
            }
            Err(e) => {
                self.results.cell("ws_p50", t.kind, "not forwarded");
                self.results.note(format!("WebSocket echo via {label} failed: {e:#}"));
                return;
            }
        }
        match crate::ws::rate(t.port, &t.host, self.args.ws_conns, secs).await {
            Ok(rate) => self.results.push("ws_rate", t.kind, rate),
            Err(e) => self.results.note(format!("WebSocket message rate via {label} failed: {e:#}")),
        }
    }

    async fn idle_tunnels(&mut self, bin: &Path, logs: &Path) {
        for &n in &self.args.tunnels.clone() {
            let id = match n {
                1000 => "tunnel_1000",
                10_000 => "tunnel_10000",
                _ => "",
            };
            for run in 0..self.args.runs {
                eprintln!("[bench] {n} idle tunnels, run {}/{}", run + 1, self.args.runs);
                match crate::tunnels::measure(bin, logs, n).await {
                    Ok(m) => {
                        let line = format!(
                            "{n} idle tunnels, run {}: server RSS {:.1} → {:.1} MiB, {:.1} KiB per tunnel, \
                             connected in {:.1} s",
                            run + 1,
                            m.base_kib as f64 / 1024.0,
                            m.loaded_kib as f64 / 1024.0,
                            m.per_tunnel_kib,
                            m.connect_secs
                        );
                        eprintln!("[bench]   {line}");
                        if id.is_empty() {
                            self.results.note(line);
                        } else {
                            self.results.push(id, Kind::Localtunnels, m.per_tunnel_kib);
                        }
                    }
                    Err(e) => {
                        eprintln!("[bench]   failed: {e:#}");
                        self.results.note(format!("{n} idle tunnels failed: {e:#}"));
                        break;
                    }
                }
            }
        }
    }

    async fn wasm(&mut self, root: &Path, bin: &Path, logs: &Path) {
        let files = crate::wasm::built(root);
        if files.is_empty() {
            self.results.cell("wasm_gz", Kind::Localtunnels, "not built");
            self.results.note("No pkg/*.wasm: run scripts/build-wasm first to measure the wasm client.");
        }
        for f in files {
            match crate::wasm::gzipped(&f) {
                Ok(bytes) => {
                    self.results.push("wasm_gz", Kind::Localtunnels, bytes as f64 / 1000.0);
                    let raw = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    self.results.note(format!(
                        "{}: {:.1} KB raw, {:.1} KB gzipped (gzip -9).",
                        f.strip_prefix(root).unwrap_or(&f).display(),
                        raw as f64 / 1000.0,
                        bytes as f64 / 1000.0
                    ));
                }
                Err(e) => self.results.note(format!("wasm size: {e:#}")),
            }
        }
        if let Some(why) = crate::wasm::chromium_missing(root) {
            self.results.cell("wasm_rps", Kind::Localtunnels, "not measured");
            self.results.note(format!("wasm client in Chromium not measured: {why}."));
            return;
        }
        if let Err(e) = self.wasm_rps(root, bin, logs).await {
            eprintln!("[bench]   failed: {e:#}");
            self.results.cell("wasm_rps", Kind::Localtunnels, "failed");
            self.results.note(format!("wasm client in Chromium failed: {e:#}"));
        }
    }

    /// A tab of headless Chromium runs the wasm client answering 1 KiB; wrk hits it.
    async fn wasm_rps(&mut self, root: &Path, bin: &Path, logs: &Path) -> anyhow::Result<()> {
        let (server, port) = crate::targets::localtunnels_server(bin, logs, "lt-wasm", &[]).await?;
        let node = crate::procs::which("node").ok_or_else(|| anyhow!("node is not installed"))?;
        let script = root.join("bench/wasm-chromium.mjs").display().to_string();
        let mut tab = Proc::spawn(logs, "wasm-chromium", &node, &[&script, &port.to_string(), "wasmtab"])?;
        let line = tab.line(Duration::from_secs(60)).await?;
        if !line.starts_with("ready ") {
            bail!("the tab said {line:?}");
        }
        let shot = Shot { port, host: format!("wasmtab.localhost:{port}"), path: "/", post: None };
        let _ = self.tools.rate(&shot, self.args.conns, 1).await;
        for run in 0..self.args.runs {
            eprintln!("[bench] run {}/{}: wasm client in Chromium", run + 1, self.args.runs);
            let o = self.tools.rate(&shot, self.args.conns, self.args.duration).await?;
            self.results.push("wasm_rps", Kind::Localtunnels, o.rps);
            if o.errors > 0 {
                self.results.note(format!("wasm client in Chromium: {} failed requests in run {}", o.errors, run + 1));
            }
        }
        tab.terminate(Duration::from_secs(10)).await;
        server.stop().await;
        Ok(())
    }

    fn write(&self, root: &Path, kinds: &[Kind]) -> anyhow::Result<()> {
        let a = &self.args;
        let mut md = format!(
            "## Results{}: {}\n\nMachine: {}. {} s per run, {} runs per case (start-up: {}), medians; \
             ratios (×) are to direct in the same invocation. Load: {} for rates, oha for percentiles; \
             {} keep-alive connections; WebSocket rate over {} connections. Every process (origin, tunnels, \
             load generator) shares the same cores, and other jobs may have been running.\n\n",
            if a.label.is_empty() { String::new() } else { format!(" ({})", a.label) },
            shell("date -u '+%Y-%m-%d %H:%M UTC'"),
            machine(),
            a.duration,
            a.runs,
            a.runs.max(5),
            if self.tools.wrk.is_some() { "wrk" } else { "oha" },
            a.conns,
            a.ws_conns,
        );
        push_table(&mut md, &self.results, kinds);
        if let Some(nginx) = &self.nginx {
            md.push_str(
                "\n### nginx as the origin\n\nThe HTTP cases again, every target in front of Debian's nginx \
                 (one process, the same bodies from files, `POST /sink` read whole before the answer) instead of \
                 the benchmark's origin; ratios are to nginx reached directly.\n\n",
            );
            push_table(&mut md, nginx, kinds);
        }
        println!("{md}");
        let out = root.join(&a.out);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, &md).with_context(|| format!("cannot write {}", out.display()))?;
        let mut json = self.results.json();
        if let Some(nginx) = &self.nginx {
            json["nginx"] = nginx.json();
        }
        let json = serde_json::to_string_pretty(&json)?;
        std::fs::write(out.with_extension("json"), json)?;
        eprintln!("[bench] wrote {}", out.display());
        Ok(())
    }
}

/// Appends `results`' table (if it has a figure) and its notes to `md`.
fn push_table(md: &mut String, results: &Results, kinds: &[Kind]) {
    if !results.runs.is_empty() || !results.cells.is_empty() {
        md.push_str(&results.table(kinds));
    }
    if !results.notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for n in &results.notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
}

/// Samples the peak RSS of some processes every 50 ms until stopped.
struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks = vec![0u64; pids.len()];
            loop {
                for (peak, &pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(rss_kib(pid).unwrap_or(0));
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Vec<u64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The workspace root (this crate is `crates/bench`).
fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.ancestors().nth(2).map(Path::to_path_buf).unwrap_or_else(|| dir.to_path_buf())
}

/// Builds the release `localtunnels` binary (a no-op when up to date).
fn build_localtunnels(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("[bench] cargo build --release -p localtunnels");
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "localtunnels", "--bin", "localtunnels"])
        .status()?;
    if !status.success() {
        bail!("building localtunnels failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/localtunnels"))
}

fn shell(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// "N cores, <cpu model>, <RAM>, Linux <release>".
fn machine() -> String {
    let cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mem = shell("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo");
    format!("{} cores ({}), {mem} RAM, Linux {}", shell("nproc"), cpu.trim(), shell("uname -r"))
}
