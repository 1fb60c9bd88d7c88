//! What `kestrel run` exposes to Prometheus (`--http`, [`super::http`]): counters and
//! histograms the run loop updates with atomic operations (no lock, no allocation per frame),
//! rendered in the Prometheus text exposition format (version 0.0.4) when scraped.
//!
//! Every series carries a `camera` label (the source's name), so a fleet's boards and
//! cameras share one set of metric names. Times are in seconds, as Prometheus names them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::stats::{Stages, STAGES};
use super::tasks::{Task, TaskResult};
use crate::analytics::Analytics;
use crate::camera::SourceCounters;

/// Upper bounds (seconds) of the latency histograms' buckets: 1 ms to 10 s, about ×2.5 apart
/// (Prometheus' default buckets, extended down to 1 ms for per-stage times).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The per-stage histograms' `stage` label values, in [`Stages`] order.
const STAGE_NAMES: [&str; STAGES] = ["capture", "wait", "convert", "resize", "infer", "post"];

/// A histogram with fixed buckets ([`BUCKETS`] and `+Inf`), updated atomically.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative: bucket `i` counts values in
    /// `(BUCKETS[i-1], BUCKETS[i]]`, the last one those above every bound).
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observations, microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation of `seconds` (negative or NaN counts as 0).
    pub fn observe(&self, seconds: f64) {
        let s = if seconds.is_nan() {
            0.0
        } else {
            seconds.max(0.0)
        };
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((s * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` series of `name` with `labels` (already
    /// formatted, `camera="…"` and any other).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The run's metrics, shared by the run loop (writer) and the HTTP thread (reader).
#[derive(Debug)]
pub struct Metrics {
    camera: String,
    model: String,
    model_load_seconds: f64,
    labels: Vec<String>,
    started: Instant,
    frames: AtomicU64,
    bad_frames: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    outage_us: AtomicU64,
    /// Microseconds from `started` to the last processed frame, plus one (0: none yet).
    last_frame_us: AtomicU64,
    latency: Histogram,
    stages: [Histogram; STAGES],
    /// Detections per class index (detection runs; empty otherwise).
    detections: Box<[AtomicU64]>,
    /// Zone and line counts (runs that watch any).
    regions: Option<Regions>,
    /// Model reloads that took, and that failed (the old model kept running).
    reloads: [AtomicU64; 2],
}

/// The zone and line counts of [`Analytics`], mirrored in atomics.
#[derive(Debug)]
struct Regions {
    zones: Vec<String>,
    lines: Vec<String>,
    classes: usize,
    /// Objects inside, `[zone · classes + class]`, and whether a class was ever inside (its
    /// series is written from then on, so a class's series does not come and go).
    inside: Box<[AtomicU64]>,
    seen: Box<[AtomicBool]>,
    /// Crossings, `[(line · 2 + direction) · classes + class]`.
    crossed: Box<[AtomicU64]>,
}

impl Metrics {
    /// Metrics of a run of `model` (its name, and how long it took to load) with `task` on
    /// the camera called `camera`.
    pub fn new(camera: &str, model: &str, model_load: Duration, task: &Task) -> Metrics {
        let (classes, labels) = match task {
            Task::Detect { detector, labels } => {
                (detector.classes().unwrap_or(labels.len()), labels.clone())
            }
            _ => (0, vec![]),
        };
        Metrics {
            camera: camera.to_string(),
            model: model.to_string(),
            model_load_seconds: model_load.as_secs_f64(),
            labels,
            started: Instant::now(),
            frames: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            outage_us: AtomicU64::new(0),
            last_frame_us: AtomicU64::new(0),
            latency: Histogram::default(),
            stages: Default::default(),
            detections: (0..classes).map(|_| AtomicU64::new(0)).collect(),
            regions: None,
            reloads: Default::default(),
        }
    }

    /// Counts a model reload: swapped in (`ok`) or failed.
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// The same, also exposing the zone and line counts of `analytics` (when it watches any;
    /// [`Metrics::counts`] updates them).
    pub fn with_regions(mut self, analytics: Option<&Analytics>) -> Metrics {
        let Some(a) = analytics.filter(|a| a.has_regions()) else {
            return self;
        };
        let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        self.regions = Some(Regions {
            zones: (0..a.zones()).map(|i| a.zone_name(i).to_string()).collect(),
            lines: (0..a.lines()).map(|i| a.line_name(i).to_string()).collect(),
            classes: a.classes(),
            inside: atomics(a.zone_counts().len()),
            seen: (0..a.zone_counts().len())
                .map(|_| AtomicBool::new(false))
                .collect(),
            crossed: atomics(a.line_counts().len()),
        });
        if self.labels.is_empty() {
            self.labels = (0..a.classes())
                .map(|c| a.label(c as u32).unwrap_or_default().to_string())
                .collect();
        }
        self
    }

    /// Copies the zone and line counts of `analytics` (call when they changed).
    pub fn counts(&self, analytics: &Analytics) {
        let Some(r) = &self.regions else { return };
        for ((dst, seen), &v) in r
            .inside
            .iter()
            .zip(&r.seen[..])
            .zip(analytics.zone_counts())
        {
            dst.store(u64::from(v), Ordering::Relaxed);
            if v > 0 {
                seen.store(true, Ordering::Relaxed);
            }
        }
        for (dst, &v) in r.crossed.iter().zip(analytics.line_counts()) {
            dst.store(v, Ordering::Relaxed);
        }
    }

    /// Records a processed frame: its capture-to-result latency, its stages, the task's
    /// result (detections are counted by class).
    pub fn frame(&self, latency: Duration, stages: &Stages, result: &TaskResult) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency.as_secs_f64());
        for (h, v) in self.stages.iter().zip(stages.values()) {
            h.observe(v / 1e3);
        }
        if let TaskResult::Detections(list) = result {
            for d in list.iter() {
                if let Some(c) = self.detections.get(d.class as usize) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let since = self.started.elapsed().as_micros() as u64;
        self.last_frame_us.store(since + 1, Ordering::Relaxed);
    }

    /// Counts a frame that could not be converted.
    pub fn bad_frame(&self) {
        self.bad_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// The capture side's counters: frames dropped for a newer one, reconnects, outages.
    pub fn source(&self, dropped: u64, source: SourceCounters) {
        self.dropped.store(dropped, Ordering::Relaxed);
        self.reconnects.store(source.reconnects, Ordering::Relaxed);
        let us = (source.outage_s.max(0.0) * 1e6).round() as u64;
        self.outage_us.store(us, Ordering::Relaxed);
    }

    /// Time since the last processed frame, or since the start when there was none.
    pub fn silence(&self) -> Duration {
        let now = self.started.elapsed();
        match self.last_frame_us.load(Ordering::Relaxed) {
            0 => now,
            t => now.saturating_sub(Duration::from_micros(t - 1)),
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let cam = format!("camera=\"{}\"", escape(&self.camera));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let counters = [
            (
                "kestrel_frames_total",
                "Frames processed.",
                load(&self.frames),
            ),
            (
                "kestrel_frames_dropped_total",
                "Frames the source delivered that inference never saw (a newer one came first).",
                load(&self.dropped),
            ),
            (
                "kestrel_bad_frames_total",
                "Frames that could not be converted and were skipped.",
                load(&self.bad_frames),
            ),
            (
                "kestrel_source_reconnects_total",
                "Times the source was reopened.",
                load(&self.reconnects),
            ),
            (
                "kestrel_source_outage_seconds_total",
                "Time without a source, summed over the outages.",
                load(&self.outage_us) / 1e6,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{cam}}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP kestrel_model_reloads_total Model reloads (SIGHUP, or the file changed): \
             swapped in, or failed with the old model kept.\n\
             # TYPE kestrel_model_reloads_total counter"
        );
        for (result, n) in ["ok", "failed"].into_iter().zip(&self.reloads) {
            let _ = writeln!(
                out,
                "kestrel_model_reloads_total{{{cam},result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kestrel_last_frame_age_seconds Time since the last processed frame.\n\
             # TYPE kestrel_last_frame_age_seconds gauge\n\
             kestrel_last_frame_age_seconds{{{cam}}} {}",
            self.silence().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP kestrel_latency_seconds Capture-to-result latency of each frame.\n\
             # TYPE kestrel_latency_seconds histogram"
        );
        self.latency
            .render(&mut out, "kestrel_latency_seconds", &cam);
        let _ = writeln!(
            out,
            "# HELP kestrel_stage_seconds Time of each frame in each stage of the pipeline.\n\
             # TYPE kestrel_stage_seconds histogram"
        );
        for (h, stage) in self.stages.iter().zip(STAGE_NAMES) {
            let labels = format!("{cam},stage=\"{stage}\"");
            h.render(&mut out, "kestrel_stage_seconds", &labels);
        }
        if !self.detections.is_empty() {
            let _ = writeln!(
                out,
                "# HELP kestrel_detections_total Objects detected, by class.\n\
                 # TYPE kestrel_detections_total counter"
            );
            for (i, c) in self.detections.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "kestrel_detections_total{{{cam},class=\"{}\"}} {}",
                    self.class(i),
                    c.load(Ordering::Relaxed)
                );
            }
        }
        if let Some(r) = &self.regions {
            self.render_regions(&mut out, &cam, r);
        }
        let _ = writeln!(
            out,
            "# HELP kestrel_model_info The model this process runs.\n\
             # TYPE kestrel_model_info gauge\n\
             kestrel_model_info{{{cam},model=\"{}\"}} 1\n\
             # HELP kestrel_model_load_seconds Time the model took to load and optimise.\n\
             # TYPE kestrel_model_load_seconds gauge\n\
             kestrel_model_load_seconds{{{cam}}} {}",
            escape(&self.model),
            self.model_load_seconds
        );
        let _ = writeln!(
            out,
            "# HELP kestrel_uptime_seconds Time since the run started.\n\
             # TYPE kestrel_uptime_seconds gauge\n\
             kestrel_uptime_seconds{{{cam}}} {}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

/// `/metrics` of several cameras: each family's `# HELP` and `# TYPE` once, then the samples
/// of every camera (each labelled with its `camera`), as the exposition format asks.
pub fn render_all<'a>(cameras: impl IntoIterator<Item = &'a Metrics>) -> String {
    // Families in the order they first appear: (name, header lines, sample lines).
    let mut families: Vec<(String, String, String)> = Vec::new();
    for text in cameras.into_iter().map(Metrics::render) {
        let mut current = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                let at = match families.iter().position(|(n, _, _)| n == name) {
                    Some(at) => at,
                    None => {
                        families.push((name.to_string(), String::new(), String::new()));
                        families.len() - 1
                    }
                };
                current = Some((at, families[at].1.is_empty()));
            }
            let Some((at, new)) = current else { continue };
            let (_, header, samples) = &mut families[at];
            let into = if !line.starts_with('#') {
                samples
            } else if new {
                header
            } else {
                continue;
            };
            into.push_str(line);
            into.push('\n');
        }
    }
    families
        .into_iter()
        .flat_map(|(_, header, samples)| [header, samples])
        .collect()
}

impl Metrics {
    /// The class's label value: its label, or its index when the model names none.
    fn class(&self, c: usize) -> String {
        match self.labels.get(c) {
            Some(l) if !l.is_empty() => escape(l),
            _ => c.to_string(),
        }
    }

    /// `kestrel_zone_objects` (every class ever inside a zone) and
    /// `kestrel_line_crossings_total` (every class that crossed a line, per direction).
    fn render_regions(&self, out: &mut String, cam: &str, r: &Regions) {
        let _ = writeln!(
            out,
            "# HELP kestrel_zone_objects Tracked objects inside a zone now.\n\
             # TYPE kestrel_zone_objects gauge"
        );
        for (z, name) in r.zones.iter().enumerate() {
            for c in 0..r.classes {
                let i = z * r.classes + c;
                if r.seen[i].load(Ordering::Relaxed) {
                    let _ = writeln!(
                        out,
                        "kestrel_zone_objects{{{cam},zone=\"{}\",class=\"{}\"}} {}",
                        escape(name),
                        self.class(c),
                        r.inside[i].load(Ordering::Relaxed)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP kestrel_line_crossings_total Crossings of a counting line, by direction.\n\
             # TYPE kestrel_line_crossings_total counter"
        );
        for (l, name) in r.lines.iter().enumerate() {
            for (d, direction) in ["in", "out"].into_iter().enumerate() {
                for c in 0..r.classes {
                    let v = r.crossed[(l * 2 + d) * r.classes + c].load(Ordering::Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "kestrel_line_crossings_total{{{cam},line=\"{}\",direction=\"{direction}\",class=\"{}\"}} {v}",
                            escape(name),
                            self.class(c)
                        );
                    }
                }
            }
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for s in [0.0005, 0.002, 0.002, 0.3, 20.0, f64::NAN] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "camera=\"a\"");
        assert!(
            out.contains("x_bucket{camera=\"a\",le=\"0.001\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{camera=\"a\",le=\"0.0025\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{camera=\"a\",le=\"0.25\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{camera=\"a\",le=\"0.5\"} 5\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{camera=\"a\",le=\"+Inf\"} 6\n"),
            "{out}"
        );
        assert!(out.contains("x_count{camera=\"a\"} 6\n"), "{out}");
        assert!(out.contains("x_sum{camera=\"a\"} 20.3045\n"), "{out}");
    }

    #[test]
    fn frames_and_silence_and_labels() {
        let m = Metrics::new(
            "cam \"1\"",
            "m.nnef.tgz",
            Duration::from_millis(250),
            &Task::Raw,
        );
        assert!(m.silence() < Duration::from_secs(5));
        m.frame(
            Duration::from_millis(40),
            &Stages {
                infer_ms: 30.0,
                ..Stages::default()
            },
            &TaskResult::None,
        );
        m.bad_frame();
        m.source(
            3,
            SourceCounters {
                reconnects: 2,
                outage_s: 1.5,
            },
        );
        let text = m.render();
        for want in [
            "kestrel_frames_total{camera=\"cam \\\"1\\\"\"} 1\n",
            "kestrel_bad_frames_total{camera=\"cam \\\"1\\\"\"} 1\n",
            "kestrel_frames_dropped_total{camera=\"cam \\\"1\\\"\"} 3\n",
            "kestrel_source_reconnects_total{camera=\"cam \\\"1\\\"\"} 2\n",
            "kestrel_source_outage_seconds_total{camera=\"cam \\\"1\\\"\"} 1.5\n",
            "kestrel_stage_seconds_bucket{camera=\"cam \\\"1\\\"\",stage=\"infer\",le=\"0.05\"} 1\n",
            "kestrel_model_load_seconds{camera=\"cam \\\"1\\\"\"} 0.25\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(!text.contains("kestrel_detections_total"));
        assert!(m.silence() < Duration::from_secs(5));
    }
}
