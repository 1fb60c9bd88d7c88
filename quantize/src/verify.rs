//! Verification of a written graph against its source.
//!
//! The tolerance is relative to each output's magnitude: an output passes when
//! `max |converted − source| ≤ tol · max |source|` (exact equality when the source output
//! is all zeros). Per-element relative error would fail on values near zero that any change
//! of summation order perturbs; this is the form ONNX Runtime's and tract's own comparisons
//! take in spirit.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::ensure;

/// How one output compared.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct OutputDiff {
    /// Output name.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Largest magnitude in the source output.
    pub max_abs_source: f64,
    /// `max_abs_diff / max_abs_source` (or `max_abs_diff` when the source is all zeros).
    pub relative: f64,
    /// Whether the arg-max of the flattened outputs agree.
    pub argmax_agrees: bool,
}

/// Compares `got` with `want` (same shape required).
pub fn compare(name: &str, want: &Tensor, got: &Tensor) -> TractResult<OutputDiff> {
    ensure!(
        want.shape() == got.shape(),
        "output '{name}': shape {:?} in the converted graph, {:?} in the source",
        got.shape(),
        want.shape()
    );
    let want = want.cast_to::<f64>()?;
    let got = got.cast_to::<f64>()?;
    let want_view = want.try_as_plain_ram()?;
    let got_view = got.try_as_plain_ram()?;
    let (w, g) = (want_view.as_slice::<f64>()?, got_view.as_slice::<f64>()?);
    let mut max_abs_diff = 0f64;
    let mut max_abs_source = 0f64;
    for (a, b) in w.iter().zip(g) {
        let d = (a - b).abs();
        max_abs_diff = if d.is_nan() {
            f64::INFINITY
        } else {
            max_abs_diff.max(d)
        };
        max_abs_source = max_abs_source.max(a.abs());
    }
    let relative = if max_abs_source > 0.0 {
        max_abs_diff / max_abs_source
    } else {
        max_abs_diff
    };
    Ok(OutputDiff {
        name: name.to_string(),
        max_abs_diff,
        max_abs_source,
        relative,
        argmax_agrees: argmax(w) == argmax(g),
    })
}

fn argmax(v: &[f64]) -> Option<usize> {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_magnitude() {
        let a = tensor1(&[10f32, -20., 0.0]);
        let b = tensor1(&[10f32, -20.001, 0.0001]);
        let d = compare("y", &a, &b).unwrap();
        assert!((d.max_abs_diff - 0.001).abs() < 1e-5);
        assert!((d.relative - 0.001 / 20.0).abs() < 1e-6);
        assert!(d.argmax_agrees);
    }

    #[test]
    fn shape_mismatch_and_nan_are_caught() {
        assert!(compare("y", &tensor1(&[1f32, 2.]), &tensor1(&[1f32])).is_err());
        let d = compare("y", &tensor1(&[1f32, 2.]), &tensor1(&[1f32, f32::NAN])).unwrap();
        assert!(d.relative.is_infinite());
    }
}
