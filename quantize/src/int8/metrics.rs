//! Error measures of int8 against float: SQNR, cosine similarity, top-1 agreement (classifier
//! rows), top-k agreement (per-anchor or per-pixel scores).

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

/// Indices of the `k` largest values, largest first (lower index first among equals).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut ix: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    if k == 0 {
        return vec![];
    }
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    ix.select_nth_unstable_by(k - 1, cmp);
    ix.truncate(k);
    ix.sort_unstable_by(cmp);
    ix
}

/// How many of the reference's `k` highest entries are among `got`'s `k` highest, and `k`.
pub fn top_k_overlap(reference: &[f32], got: &[f32], k: usize) -> (usize, usize) {
    let r = top_k(reference, k);
    let g = top_k(got, k);
    (r.iter().filter(|i| g.contains(i)).count(), r.len())
}

/// |max(reference) − max(got)|: how far the best score moved.
pub fn max_difference(reference: &[f32], got: &[f32]) -> f64 {
    let m = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if reference.is_empty() {
        return 0.0;
    }
    (m(reference) - m(got)).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_and_overlap() {
        let r = [0.1, 0.9, 0.5, 0.7, 0.7];
        assert_eq!(top_k(&r, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&r, 9), vec![1, 3, 4, 2, 0]);
        let g = [0.1, 0.9, 0.8, 0.7, 0.2];
        assert_eq!(top_k_overlap(&r, &g, 3), (2, 3));
        assert!((max_difference(&r, &[0.5, 0.6]) - 0.3).abs() < 1e-6);
    }

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
