//! Running statistics of a `kestrel run`: frame count, rate and latency percentiles over a
//! fixed window of the most recent frames (fixed capacity: no growth on a months-long run).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bench::Latency;

/// Frames whose latency the window keeps.
pub const WINDOW: usize = 4096;

/// Counters and the latency window.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    frames: u64,
    latencies: heapless::HistoryBuffer<Duration, WINDOW>,
}

/// What a run reports at its end (the summary line).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Frames processed.
    pub frames: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Frames per second over the run.
    pub fps: f64,
    /// Capture-to-result latency over the last [`WINDOW`] frames, ms.
    pub latency_ms: Option<Latency>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Starts counting now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            frames: 0,
            latencies: heapless::HistoryBuffer::new(),
        }
    }

    /// Records one processed frame.
    pub fn record(&mut self, latency: Duration) {
        self.frames += 1;
        self.latencies.write(latency);
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The summary so far.
    pub fn summary(&self) -> Summary {
        let seconds = self.started.elapsed().as_secs_f64();
        let mut window: Vec<Duration> = self.latencies.as_slice().to_vec();
        Summary {
            frames: self.frames,
            seconds,
            fps: if seconds > 0.0 {
                self.frames as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Latency::from_durations(&mut window),
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
            s.record(Duration::from_micros(i));
        }
        let sum = s.summary();
        assert_eq!(sum.frames, WINDOW as u64 + 10);
        let l = sum.latency_ms.unwrap();
        assert!((l.min - 0.010).abs() < 1e-9, "{l:?}");
    }
}
