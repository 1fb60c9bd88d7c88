//! Running statistics of a `kestrel run`: frame count, rate, drops, source health, and the
//! latency of the whole path and of each stage over a fixed window of the most recent frames
//! (fixed capacity: no growth, and no allocation per frame, on a months-long run).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::camera::SourceCounters;
use crate::latency::Latency;

/// Frames whose latencies the windows keep.
pub const WINDOW: usize = 4096;

/// Where one frame's time went, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stages {
    /// From the capture timestamp until the frame's bytes are in the pipeline's hands
    /// (reading a pipe or file, or copying a camera buffer).
    pub capture_ms: f64,
    /// In the mailbox, waiting for inference to be free.
    pub wait_ms: f64,
    /// Pixel conversion to RGB (YUV, JPEG decoding); 0 for RGB and gray frames.
    pub convert_ms: f64,
    /// Resize and normalise into the model's input tensor.
    pub resize_ms: f64,
    /// The model.
    pub infer_ms: f64,
    /// Post-processing by task and writing the outputs.
    pub post_ms: f64,
}

/// How many stages [`Stages`] holds.
pub const STAGES: usize = 6;

impl Stages {
    /// The stages' times in declaration order (capture, wait, convert, resize, infer, post).
    pub fn values(&self) -> [f64; STAGES] {
        [
            self.capture_ms,
            self.wait_ms,
            self.convert_ms,
            self.resize_ms,
            self.infer_ms,
            self.post_ms,
        ]
    }
}

/// Median and 99th percentile of a stage, ms.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Per-stage percentiles over the window.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// See [`Stages::capture_ms`].
    pub capture: Percentiles,
    /// See [`Stages::wait_ms`].
    pub wait: Percentiles,
    /// See [`Stages::convert_ms`].
    pub convert: Percentiles,
    /// See [`Stages::resize_ms`].
    pub resize: Percentiles,
    /// See [`Stages::infer_ms`].
    pub infer: Percentiles,
    /// See [`Stages::post_ms`].
    pub post: Percentiles,
}

/// Counters and the latency windows.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    frames: u64,
    bad_frames: u64,
    latencies: heapless::HistoryBuffer<Duration, WINDOW>,
    stages: [heapless::HistoryBuffer<f32, WINDOW>; STAGES],
}

/// What a run reports at its end (the summary line).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Frames processed.
    pub frames: u64,
    /// Frames the source delivered that inference never saw (a newer one came first).
    pub dropped: u64,
    /// Frames that could not be converted (e.g. a corrupt JPEG) and were skipped.
    pub bad_frames: u64,
    /// Source reconnects and time without a source.
    #[serde(flatten)]
    pub source: SourceCounters,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Frames per second over the run.
    pub fps: f64,
    /// Capture-to-result latency over the last [`WINDOW`] frames, ms.
    pub latency_ms: Option<Latency>,
    /// Per-stage p50/p99 over the last [`WINDOW`] frames, ms.
    pub stages_ms: Option<StageSummary>,
    /// MQTT messages dropped because the broker could not keep up (oldest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_dropped: Option<u64>,
    /// MQTT connection attempts that failed (unreachable broker, TLS handshake, refused
    /// credentials) and connections lost: a broker problem shows here while frames go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_connection_errors: Option<u64>,
    /// Zone and line counts at the end (detection runs): see [`crate::analytics::Counts`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<serde_json::Value>,
    /// Tracks confirmed over the run (detection runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracks: Option<u64>,
    /// Events that did not fit a frame's event list (detection runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_dropped: Option<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

fn percentiles(window: &heapless::HistoryBuffer<f32, WINDOW>) -> Percentiles {
    let mut v: Vec<f32> = window.as_slice().to_vec();
    v.sort_by(f32::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        f64::from(v[i])
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
    }
}

impl Stats {
    /// Starts counting now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            frames: 0,
            bad_frames: 0,
            latencies: heapless::HistoryBuffer::new(),
            stages: std::array::from_fn(|_| heapless::HistoryBuffer::new()),
        }
    }

    /// Records one processed frame.
    pub fn record(&mut self, latency: Duration, stages: &Stages) {
        self.frames += 1;
        self.latencies.write(latency);
        for (w, v) in self.stages.iter_mut().zip(stages.values()) {
            w.write(v as f32);
        }
    }

    /// Counts a frame that was skipped.
    pub fn record_bad(&mut self) {
        self.bad_frames += 1;
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The summary so far; `dropped` and `source` come from the capture side.
    pub fn summary(&self, dropped: u64, source: SourceCounters) -> Summary {
        let seconds = self.started.elapsed().as_secs_f64();
        let mut window: Vec<Duration> = self.latencies.as_slice().to_vec();
        let s = &self.stages;
        Summary {
            frames: self.frames,
            dropped,
            bad_frames: self.bad_frames,
            source,
            seconds,
            fps: if seconds > 0.0 {
                self.frames as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Latency::from_durations(&mut window),
            stages_ms: (self.frames > 0).then(|| StageSummary {
                capture: percentiles(&s[0]),
                wait: percentiles(&s[1]),
                convert: percentiles(&s[2]),
                resize: percentiles(&s[3]),
                infer: percentiles(&s[4]),
                post: percentiles(&s[5]),
            }),
            mqtt_dropped: None,
            mqtt_connection_errors: None,
            counts: None,
            tracks: None,
            events_dropped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_the_latest() {
        let mut s = Stats::new();
        for i in 0..(WINDOW as u64 + 10) {
            let stages = Stages {
                infer_ms: i as f64,
                ..Stages::default()
            };
            s.record(Duration::from_micros(i), &stages);
        }
        let sum = s.summary(3, SourceCounters::default());
        assert_eq!((sum.frames, sum.dropped), (WINDOW as u64 + 10, 3));
        let l = sum.latency_ms.unwrap();
        assert!((l.min - 0.010).abs() < 1e-9, "{l:?}");
        let infer = sum.stages_ms.unwrap().infer;
        assert!(
            (infer.p50 - (10.0 + WINDOW as f64 / 2.0)).abs() <= 1.0,
            "{infer:?}"
        );
        assert!(infer.p99 > infer.p50);
    }
}
