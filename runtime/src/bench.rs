//! `kestrel bench`: the figures TFLite's `benchmark_model` and OpenVINO's `benchmark_app`
//! give — load time, first run, latency percentiles over timed runs, peak RSS — plus a
//! per-op profile from separate profiled runs (timing every node costs a little, so the
//! latency figures come from un-instrumented runs).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use tract_nnef::internal::*;

use crate::error::RuntimeError;
use crate::latency::Latency;
use crate::model::Model;

/// How many runs of each kind.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Untimed runs after the first one, to warm caches and the allocator.
    pub warmup: usize,
    /// Timed runs.
    pub runs: usize,
    /// Runs with per-node timing, for the op profile (0 to skip it).
    pub profile_runs: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 10,
            runs: 100,
            profile_runs: 20,
        }
    }
}

/// One line of the op profile.
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    /// Node name in the optimised graph (or the op name, in the by-op table).
    pub name: String,
    /// The operator.
    pub op: String,
    /// Mean milliseconds per inference.
    pub ms: f64,
    /// Share of the profiled inference time, 0–1.
    pub share: f64,
}

/// Everything `kestrel bench` reports.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The model's source.
    pub model: String,
    /// Executor threads.
    pub threads: usize,
    /// Load + optimise + plan, ms.
    pub load_ms: f64,
    /// The first inference, ms (includes lazy set-up in kernels).
    pub first_run_ms: f64,
    /// Warm-up runs done.
    pub warmup: usize,
    /// Timed runs done.
    pub runs: usize,
    /// Latency over the timed runs.
    pub latency_ms: Latency,
    /// Peak resident set size of the process, MiB (None where /proc is missing).
    pub peak_rss_mib: Option<f64>,
    /// Allocation requests per timed run (all threads; 0 unless the program's global
    /// allocator is [`crate::pool_alloc::PoolAlloc`], as in `kestrel`).
    pub alloc_requests_per_run: f64,
    /// Of those, the ones that reached the system allocator (0 when the pool serves them all;
    /// `KESTREL_POOL_MB=0` switches the pool off).
    pub system_allocs_per_run: f64,
    /// Nodes by share of time, slowest first.
    pub top_nodes: Vec<OpTime>,
    /// Time by operator kind, slowest first.
    pub by_op: Vec<OpTime>,
}

/// Benchmarks `model` on `inputs`.
pub fn bench(
    model: &Model,
    inputs: &TVec<TValue>,
    options: &BenchOptions,
) -> Result<BenchReport, RuntimeError> {
    let mut session = model.session()?;
    let _pool = crate::pool_alloc::enable(crate::pool_alloc::cache_bytes_from_env());
    let start = Instant::now();
    session.run(inputs.clone())?;
    let first_run = start.elapsed();
    for _ in 0..options.warmup {
        session.run(inputs.clone())?;
    }
    let mut samples = Vec::with_capacity(options.runs.max(1));
    let counts = crate::pool_alloc::counts();
    let window = IcountWindow::open();
    for _ in 0..options.runs.max(1) {
        let start = Instant::now();
        session.run(inputs.clone())?;
        samples.push(start.elapsed());
    }
    drop(window);
    let counts = crate::pool_alloc::counts() - counts;
    let runs = samples.len() as f64;
    let per_run = |n: u64| n as f64 / runs;
    let latency = Latency::from_durations(&mut samples).expect("at least one run");

    let mut node_times = Vec::new();
    for _ in 0..options.profile_runs {
        session.run_timed(inputs.clone(), &mut node_times)?;
    }
    let (top_nodes, by_op) = profile(model, &node_times, options.profile_runs);
    Ok(BenchReport {
        model: model.source().to_string(),
        threads: model.threads(),
        load_ms: model.load_time().as_secs_f64() * 1e3,
        first_run_ms: first_run.as_secs_f64() * 1e3,
        warmup: options.warmup,
        runs: options.runs.max(1),
        latency_ms: latency,
        peak_rss_mib: peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        alloc_requests_per_run: per_run(counts.requests),
        system_allocs_per_run: per_run(counts.system_allocs),
        top_nodes,
        by_op,
    })
}

/// Marks the timed runs for `benches/icount` (a qemu plugin that counts the aarch64
/// instructions executed between the marks, so that loading and optimising the graph under
/// qemu do not drown the figures). Only with `KESTREL_ICOUNT_WINDOW=1`: the marks are two
/// `prctl` calls with an option no kernel knows (`EINVAL`, no effect), which the plugin sees
/// as syscalls.
struct IcountWindow(bool);

impl IcountWindow {
    /// The `prctl` option the plugin watches for ("KICN").
    const MARKER: libc::c_int = 0x4B49_434E;

    fn open() -> IcountWindow {
        let on = std::env::var_os("KESTREL_ICOUNT_WINDOW").is_some_and(|v| v == "1");
        if on {
            Self::mark(1);
        }
        IcountWindow(on)
    }

    fn mark(what: libc::c_ulong) {
        // SAFETY: prctl with an unknown option only returns EINVAL; no memory is passed.
        unsafe {
            libc::prctl(
                Self::MARKER,
                what,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
        }
    }
}

impl Drop for IcountWindow {
    fn drop(&mut self) {
        if self.0 {
            Self::mark(2);
        }
    }
}

fn profile(model: &Model, node_times: &[Duration], runs: usize) -> (Vec<OpTime>, Vec<OpTime>) {
    if runs == 0 {
        return (vec![], vec![]);
    }
    let graph = model.optimized_graph();
    let total: f64 = node_times
        .iter()
        .map(Duration::as_secs_f64)
        .sum::<f64>()
        .max(1e-12);
    let mut nodes: Vec<OpTime> = node_times
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_zero())
        .map(|(id, t)| {
            let node = graph.node(id);
            OpTime {
                name: node.name.clone(),
                op: node.op().name().to_string(),
                ms: t.as_secs_f64() * 1e3 / runs as f64,
                share: t.as_secs_f64() / total,
            }
        })
        .collect();
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let mut kinds: HashMap<String, f64> = HashMap::new();
    for n in &nodes {
        *kinds.entry(n.op.clone()).or_default() += n.ms;
    }
    let per_run_total = total * 1e3 / runs as f64;
    let mut by_op: Vec<OpTime> = kinds
        .into_iter()
        .map(|(op, ms)| OpTime {
            name: op.clone(),
            op,
            ms,
            share: ms / per_run_total,
        })
        .collect();
    by_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    nodes.truncate(15);
    (nodes, by_op)
}

/// Peak resident set size of this process in bytes (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size of this process in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl BenchReport {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(s, "model        {}", self.model);
        let _ = writeln!(s, "threads      {}", self.threads);
        let _ = writeln!(s, "load         {:.2} ms", self.load_ms);
        let _ = writeln!(s, "first run    {:.2} ms", self.first_run_ms);
        let _ = writeln!(
            s,
            "runs         {} (after {} warm-up)",
            self.runs, self.warmup
        );
        let _ = writeln!(
            s,
            "latency ms   min {:.3}  median {:.3}  mean {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            l.min, l.median, l.mean, l.p90, l.p99, l.max
        );
        if let Some(rss) = self.peak_rss_mib {
            let _ = writeln!(s, "peak RSS     {rss:.1} MiB");
        }
        let _ = writeln!(
            s,
            "allocations  {:.1} requests per run, {:.1} reaching the system allocator",
            self.alloc_requests_per_run, self.system_allocs_per_run
        );
        if !self.by_op.is_empty() {
            let _ = writeln!(s, "\nby op kind:");
            for o in &self.by_op {
                let _ = writeln!(s, "  {:>6.1}%  {:>9.3} ms  {}", o.share * 100.0, o.ms, o.op);
            }
            let _ = writeln!(s, "\ntop nodes:");
            for o in &self.top_nodes {
                let _ = writeln!(
                    s,
                    "  {:>6.1}%  {:>9.3} ms  {:<20} {}",
                    o.share * 100.0,
                    o.ms,
                    o.op,
                    o.name
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let peak = peak_rss_bytes().unwrap();
            assert!(peak >= current_rss_bytes().unwrap() / 2 && peak > 0);
        }
    }
}
