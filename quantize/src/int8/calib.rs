//! Activation range estimation: min/max, percentile, and entropy (KL divergence, as
//! TensorRT's and ncnn's calibrators).
//!
//! An [`Observer`] watches one tensor over the calibration set. Pass 1 records min and max;
//! the histogram methods then need pass 2 over the same samples, filling a 2048-bin signed
//! histogram on [min, max] (percentile) and a 2048-bin histogram of |x| on [0, max |x|]
//! (entropy). [`Observer::range`] returns the clipping range the method picks.

use std::str::FromStr;

use serde::Serialize;

/// Histogram resolution.
pub const BINS: usize = 2048;

/// How activation ranges are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Method {
    /// The observed minimum and maximum.
    MinMax,
    /// The P-th and (100−P)-th percentiles of the values (P in (50, 100]).
    Percentile(f64),
    /// The |x| clipping threshold minimising the KL divergence between the float histogram
    /// and its quantized version.
    Entropy,
}

impl FromStr for Method {
    type Err = String;

    /// `minmax`, `percentile` (99.99), `percentile:P`, `entropy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "entropy" | "kl" => Ok(Method::Entropy),
            "percentile" => Ok(Method::Percentile(99.99)),
            _ => {
                let p = s
                    .strip_prefix("percentile:")
                    .ok_or_else(|| format!("'{s}': expected minmax, percentile[:P] or entropy"))?;
                let p: f64 = p
                    .parse()
                    .map_err(|_| format!("'{s}': P must be a number, e.g. percentile:99.9"))?;
                if !(p > 50.0 && p <= 100.0) {
                    return Err(format!("'{s}': P must be in (50, 100]"));
                }
                Ok(Method::Percentile(p))
            }
        }
    }
}

impl Method {
    /// Whether the method needs the histogram pass.
    pub fn needs_histogram(&self) -> bool {
        !matches!(self, Method::MinMax)
    }
}

/// Statistics of one tensor over the calibration set.
#[derive(Debug, Clone)]
pub struct Observer {
    min: f32,
    max: f32,
    signed: Vec<u64>,
    magnitude: Vec<u64>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            signed: vec![],
            magnitude: vec![],
        }
    }
}

impl Observer {
    /// Pass 1: records the range of `values` (non-finite values ignored).
    pub fn observe_range(&mut self, values: &[f32]) {
        for v in values.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(*v);
            self.max = self.max.max(*v);
        }
    }

    /// Pass 2: fills the histograms (after every sample went through pass 1).
    pub fn observe_histogram(&mut self, values: &[f32]) {
        if self.signed.is_empty() {
            self.signed = vec![0; BINS];
            self.magnitude = vec![0; BINS];
        }
        let (lo, hi) = (self.min, self.max);
        let abs = self.abs_max();
        let width = (hi - lo).max(f32::MIN_POSITIVE);
        for v in values.iter().filter(|v| v.is_finite()) {
            let s = (((v - lo) / width) * BINS as f32) as usize;
            self.signed[s.min(BINS - 1)] += 1;
            let m = ((v.abs() / abs.max(f32::MIN_POSITIVE)) * BINS as f32) as usize;
            self.magnitude[m.min(BINS - 1)] += 1;
        }
    }

    fn abs_max(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    /// The observed (min, max); (0, 0) when nothing finite was seen.
    pub fn min_max(&self) -> (f32, f32) {
        if self.min > self.max {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        }
    }

    /// The clipping range chosen by `method`.
    pub fn range(&self, method: Method) -> (f32, f32) {
        let (lo, hi) = self.min_max();
        if self.signed.is_empty() || lo == hi {
            return (lo, hi);
        }
        match method {
            Method::MinMax => (lo, hi),
            Method::Percentile(p) => {
                let width = (hi - lo) / BINS as f32;
                let total: u64 = self.signed.iter().sum();
                let at = |q: f64| -> f32 {
                    let target = (q / 100.0 * total as f64).ceil() as u64;
                    let mut seen = 0;
                    for (ix, c) in self.signed.iter().enumerate() {
                        seen += c;
                        if seen >= target.max(1) {
                            return lo + width * (ix as f32 + 1.0);
                        }
                    }
                    hi
                };
                let low = if lo < 0.0 {
                    (at(100.0 - p) - width).max(lo)
                } else {
                    lo
                };
                (low, at(p).min(hi))
            }
            Method::Entropy => {
                let levels = if lo >= 0.0 { 255 } else { 128 };
                let t = kl_threshold(&self.magnitude, levels) * self.abs_max();
                (lo.max(-t), hi.min(t))
            }
        }
    }
}

/// The clipping threshold, as a fraction of the histogram's range, that minimises
/// KL(P‖Q) where P is the histogram clipped at the threshold (outliers added to the last
/// bin) and Q is P quantized to `levels` levels (TensorRT's entropy calibration).
pub fn kl_threshold(hist: &[u64], levels: usize) -> f32 {
    let n = hist.len();
    if n <= levels {
        return 1.0;
    }
    let mut best = (f64::INFINITY, n);
    for i in levels..=n {
        let mut p: Vec<f64> = hist[..i].iter().map(|c| *c as f64).collect();
        let outliers: f64 = hist[i..].iter().map(|c| *c as f64).sum();
        p[i - 1] += outliers;
        let total: f64 = p.iter().sum();
        if total == 0.0 {
            continue;
        }
        // Quantize hist[..i] into `levels` groups, then expand each group uniformly over its
        // non-empty bins.
        let mut q = vec![0f64; i];
        let group = i as f64 / levels as f64;
        for l in 0..levels {
            let start = (l as f64 * group).floor() as usize;
            let end = (((l + 1) as f64 * group).floor() as usize)
                .min(i)
                .max(start + 1);
            let sum: f64 = hist[start..end].iter().map(|c| *c as f64).sum();
            let nonzero = hist[start..end].iter().filter(|c| **c > 0).count();
            if nonzero > 0 {
                for b in start..end {
                    if hist[b] > 0 {
                        q[b] = sum / nonzero as f64;
                    }
                }
            }
        }
        let q_total: f64 = q.iter().sum();
        let mut kl = 0.0;
        for b in 0..i {
            if p[b] > 0.0 {
                let pb = p[b] / total;
                // Smoothing: a bin P has and Q lacks costs as if Q had a tiny mass there.
                let qb = if q[b] > 0.0 { q[b] / q_total } else { 1e-12 };
                kl += pb * (pb / qb).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1 as f32 / n as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observer(values: &[f32]) -> Observer {
        let mut o = Observer::default();
        o.observe_range(values);
        o.observe_histogram(values);
        o
    }

    #[test]
    fn parses_methods() {
        assert_eq!("minmax".parse::<Method>(), Ok(Method::MinMax));
        assert_eq!("entropy".parse::<Method>(), Ok(Method::Entropy));
        assert_eq!(
            "percentile".parse::<Method>(),
            Ok(Method::Percentile(99.99))
        );
        assert_eq!(
            "percentile:99.9".parse::<Method>(),
            Ok(Method::Percentile(99.9))
        );
        assert!("percentile:20".parse::<Method>().is_err());
        assert!("median".parse::<Method>().is_err());
    }

    #[test]
    fn minmax_is_the_observed_range() {
        let o = observer(&[-1.0, 0.5, 3.0, f32::NAN]);
        assert_eq!(o.range(Method::MinMax), (-1.0, 3.0));
    }

    /// 10 000 values uniform on [0, 1] and one outlier at 100.
    fn with_outlier() -> Vec<f32> {
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        v.push(100.0);
        v
    }

    #[test]
    fn percentile_clips_outliers() {
        let o = observer(&with_outlier());
        let (lo, hi) = o.range(Method::Percentile(99.9));
        assert_eq!(lo, 0.0);
        assert!(hi > 0.95 && hi < 1.2, "{hi}");
        // 100th percentile keeps everything.
        assert_eq!(o.range(Method::Percentile(100.0)).1, 100.0);
    }

    #[test]
    fn percentile_of_a_symmetric_distribution_is_symmetric() {
        let v: Vec<f32> = (-5000..=5000).map(|i| i as f32 / 5000.0).collect();
        let (lo, hi) = observer(&v).range(Method::Percentile(99.0));
        assert!(
            (lo + 0.98).abs() < 0.02 && (hi - 0.98).abs() < 0.02,
            "{lo} {hi}"
        );
    }

    #[test]
    fn entropy_clips_a_lone_outlier_but_keeps_the_bulk() {
        let o = observer(&with_outlier());
        let (lo, hi) = o.range(Method::Entropy);
        assert_eq!(lo, 0.0);
        // The search starts at 255 of 2048 bins (the u8-like levels of a non-negative
        // tensor), so the smallest threshold is 100 · 255 / 2048.
        assert!((0.9..=100.0 * 255.0 / 2048.0 + 1e-3).contains(&hi), "{hi}");
    }

    #[test]
    fn entropy_keeps_a_uniform_range() {
        let v: Vec<f32> = (0..20_000).map(|i| i as f32 / 20_000.0).collect();
        let (_, hi) = observer(&v).range(Method::Entropy);
        assert!(hi > 0.9, "{hi}");
    }

    #[test]
    fn kl_threshold_of_a_compact_histogram_is_near_its_end() {
        let mut h = vec![0u64; BINS];
        h[..512].iter_mut().for_each(|c| *c = 100);
        let t = kl_threshold(&h, 128);
        assert!((0.2..=0.3).contains(&t), "{t}");
    }
}
