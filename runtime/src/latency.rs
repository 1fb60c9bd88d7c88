//! Latency summaries: the percentiles `kestrel bench` and the pipeline's status report give.
//! Nearest-rank percentiles (the smallest sample with at least p% of the samples at or below
//! it), so every figure is a measured duration, never an interpolation.

use std::time::Duration;

use serde::Serialize;

/// Latency summary, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Fastest run.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest run.
    pub max: f64,
}

impl Latency {
    /// Summarises durations (sorts them in place). `None` for an empty slice.
    pub fn from_durations(samples: &mut [Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total: Duration = samples.iter().sum();
        Some(Latency {
            min: ms(samples[0]),
            median: ms(percentile(samples, 50.0)),
            mean: ms(total) / samples.len() as f64,
            p90: ms(percentile(samples, 90.0)),
            p99: ms(percentile(samples, 99.0)),
            max: ms(samples[samples.len() - 1]),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7u32], 99.0), 7);
    }

    #[test]
    fn latency_summary() {
        let mut d: Vec<Duration> = [4, 1, 3, 2]
            .iter()
            .map(|&m| Duration::from_millis(m))
            .collect();
        let l = Latency::from_durations(&mut d).unwrap();
        assert_eq!((l.min, l.median, l.max), (1.0, 2.0, 4.0));
        assert!((l.mean - 2.5).abs() < 1e-9);
        assert!(Latency::from_durations(&mut []).is_none());
    }
}
