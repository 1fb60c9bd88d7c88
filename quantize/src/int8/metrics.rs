//! Error measures of int8 against float: SQNR, cosine similarity, top-1 agreement.

/// Sums over a pair of tensors, accumulated across samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorSums {
    signal: f64,
    noise: f64,
    dot: f64,
    norm_ref: f64,
    norm_got: f64,
}

impl ErrorSums {
    /// Adds one sample: `reference` (float) and `got` (int8, dequantized).
    pub fn add(&mut self, reference: &[f32], got: &[f32]) {
        for (r, g) in reference.iter().zip(got) {
            let (r, g) = (*r as f64, *g as f64);
            self.signal += r * r;
            self.noise += (r - g) * (r - g);
            self.dot += r * g;
            self.norm_ref += r * r;
            self.norm_got += g * g;
        }
    }

    /// Signal-to-quantization-noise ratio in dB: 10·log10(Σx² / Σ(x−y)²), capped at 200 dB
    /// for an exact match; 0 dB for an all-zero reference that the int8 graph misses.
    pub fn sqnr_db(&self) -> f64 {
        if self.noise == 0.0 {
            return 200.0;
        }
        if self.signal == 0.0 {
            return 0.0;
        }
        (10.0 * (self.signal / self.noise).log10()).min(200.0)
    }

    /// Cosine similarity of the flattened tensors (1 when both are zero).
    pub fn cosine(&self) -> f64 {
        let d = (self.norm_ref * self.norm_got).sqrt();
        if d == 0.0 {
            if self.norm_ref == self.norm_got {
                1.0
            } else {
                0.0
            }
        } else {
            self.dot / d
        }
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (ix, v)| match best {
            Some((_, b)) if b >= *v => best,
            _ => Some((ix, *v)),
        })
        .map(|(ix, _)| ix)
}

/// Rows (vectors along the last axis of size `row`) whose arg-max agrees, and the row count:
/// one row for a classifier's `[1, classes]`, one per time step for a sequence model's
/// `[1, T, symbols]`.
pub fn row_agreement(reference: &[f32], got: &[f32], row: usize) -> (usize, usize) {
    let row = row.max(1);
    let agree = reference
        .chunks(row)
        .zip(got.chunks(row))
        .filter(|(r, g)| argmax(r) == argmax(g))
        .count();
    (agree, reference.len().div_ceil(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_of_a_known_error() {
        let mut e = ErrorSums::default();
        e.add(&[1.0, -1.0, 1.0, -1.0], &[1.1, -1.1, 0.9, -0.9]);
        // signal 4, noise 4·0.01 → 20 dB
        assert!((e.sqnr_db() - 20.0).abs() < 1e-5);
        assert!(e.cosine() > 0.99);
    }

    #[test]
    fn exact_and_collapsed() {
        let mut e = ErrorSums::default();
        e.add(&[1.0, 2.0], &[1.0, 2.0]);
        assert_eq!(e.sqnr_db(), 200.0);
        let mut c = ErrorSums::default();
        c.add(&[1.0, -1.0], &[0.0, 0.0]);
        assert_eq!(c.sqnr_db(), 0.0);
        assert_eq!(c.cosine(), 0.0);
    }

    #[test]
    fn agreement_per_row_of_the_last_axis() {
        let r = [0.0, 1.0, 5.0, 0.0, 2.0, 3.0];
        let g = [0.0, 1.0, 0.0, 5.0, 2.0, 3.0];
        assert_eq!(row_agreement(&r, &g, 2), (2, 3));
        assert_eq!(row_agreement(&r, &g, 6), (0, 1));
    }

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }
}
