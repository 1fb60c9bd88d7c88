//! Verification of a written graph against its source.
//!
//! The tolerance is relative to each output's magnitude: an output passes when
//! `max |converted − source| ≤ tol · max |source|` (exact equality when the source output
//! is all zeros), or within [`NOISE_FACTOR`] times the source graph's own *rounding
//! sensitivity* when that is larger: how far the source's output moves when its inputs move
//! by a few ulps ([`OutputDiff::noise_floor`]). A graph whose float ops merely sum in another
//! order (Kestrel's depthwise convolution, say) differs from the source by about that much;
//! on an ill-conditioned input (a text detector fed white noise, every sigmoid saturated near
//! 0) that is far above `tol · max |source|`, and a real conversion error far above both.
//! Per-element relative error would fail on values near zero that any change of summation
//! order perturbs; this is the form ONNX Runtime's and tract's own comparisons take in spirit.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::ensure;

/// How many times the source's rounding sensitivity a difference may reach. One perturbation
/// samples the source's rounding noise once; another summation order is another sample, whose
/// maximum over an output can exceed the first by a small factor (PP-OCR det on noise at
/// 320×320: 1.2×). A conversion error is orders of magnitude above either.
pub const NOISE_FACTOR: f64 = 4.0;

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
    /// Largest change of the source output when the inputs are scaled by `1 + 2⁻²⁰` (about
    /// eight ulps): differences this small are rounding, not conversion errors (0 when not
    /// measured).
    pub noise_floor: f64,
}

impl OutputDiff {
    /// The largest difference allowed at relative tolerance `tol ≥ 0`.
    pub fn allowed(&self, tol: f64) -> f64 {
        let scaled = if self.max_abs_source > 0.0 {
            tol * self.max_abs_source
        } else {
            tol
        };
        scaled.max(NOISE_FACTOR * self.noise_floor)
    }

    /// `max_abs_diff / allowed(tol)`: above 1 fails (NaN differences are infinite). A
    /// negative tolerance accepts nothing (infinite), the way to see the failure path.
    pub fn excess(&self, tol: f64) -> f64 {
        if tol < 0.0 {
            return f64::INFINITY;
        }
        if self.max_abs_diff == 0.0 {
            return 0.0;
        }
        self.max_abs_diff / self.allowed(tol)
    }
}

/// How far `perturbed` (the source's outputs on slightly scaled inputs) is from `want`.
pub fn noise_floor(want: &Tensor, perturbed: &Tensor) -> TractResult<f64> {
    let (w, p) = (want.cast_to::<f64>()?, perturbed.cast_to::<f64>()?);
    let (w, p) = (w.try_as_plain_ram()?, p.try_as_plain_ram()?);
    Ok(w.as_slice::<f64>()?
        .iter()
        .zip(p.as_slice::<f64>()?)
        .map(|(a, b)| (a - b).abs())
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max))
}

/// `input` with every float scaled by `1 + 2⁻²⁰` (other types unchanged), for
/// [`noise_floor`].
pub fn perturb(input: &Tensor) -> TractResult<Tensor> {
    let mut t = input.clone();
    if t.datum_type() == f32::datum_type() {
        t.try_as_plain_ram_mut()?
            .as_slice_mut::<f32>()?
            .iter_mut()
            .for_each(|x| *x *= 1.0 + 1.0 / (1 << 20) as f32);
    }
    Ok(t)
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
        noise_floor: 0.0,
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
    fn the_source_rounding_sensitivity_widens_the_tolerance_and_nothing_else() {
        // Saturated outputs (~1e-6): a rounding-level change is far above 1e-4 relative.
        let want = tensor1(&[1.0e-6f32, 2.0e-6]);
        let got = tensor1(&[1.05e-6f32, 2.0e-6]);
        let moved = tensor1(&[1.08e-6f32, 2.0e-6]);
        let mut d = compare("y", &want, &got).unwrap();
        assert!(d.excess(1e-4) > 1.0, "{d:?}");
        d.noise_floor = noise_floor(&want, &moved).unwrap();
        assert!(d.excess(1e-4) <= 1.0, "{d:?}");
        // A real error stays one; a negative tolerance accepts nothing; exact passes at 0.
        let wrong = tensor1(&[5.0e-6f32, 2.0e-6]);
        let mut e = compare("y", &want, &wrong).unwrap();
        e.noise_floor = d.noise_floor;
        assert!(e.excess(1e-4) > 1.0, "{e:?}");
        assert!(d.excess(-1.0) > 1.0);
        assert_eq!(compare("y", &want, &want).unwrap().excess(0.0), 0.0);
        // Another sample of the same noise may exceed the measured one by a small factor.
        let near = tensor1(&[1.0e-6f32 + 1.2 * 0.08e-6, 2.0e-6]);
        let mut n = compare("y", &want, &near).unwrap();
        n.noise_floor = d.noise_floor;
        assert!(n.excess(1e-4) <= 1.0, "{n:?}");
        let far = tensor1(&[1.0e-6f32 + 2.0 * NOISE_FACTOR as f32 * 0.08e-6, 2.0e-6]);
        let mut f = compare("y", &want, &far).unwrap();
        f.noise_floor = d.noise_floor;
        assert!(f.excess(1e-4) > 1.0, "{f:?}");
    }

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
