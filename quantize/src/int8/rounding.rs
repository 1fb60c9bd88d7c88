//! Error-compensating weight rounding (GPTQ, Frantar et al. 2022, after Optimal Brain
//! Quantization): the weights of a 1×1 convolution or dense layer are rounded one input
//! column at a time, and each column's rounding error is spread over the columns not yet
//! rounded, weighted by the inverse of the layer's input second moments `H = Σ x·xᵀ`
//! (measured on calibration samples). What is minimised is the error of the layer's
//! *output* on those inputs, `‖(W − Ŵ)·X‖²`, not of the weights: an input channel that is
//! always large gets its weights rounded most carefully, and correlated channels correct
//! each other.
//!
//! Nearest rounding is optimal per weight but blind to the inputs. Once a layer's inputs are
//! 16-bit (see `kestrel_int8_linear`), its weights' rounding is what is left of its error.
//! The scales stay those of nearest rounding (`max |w| / 127` per output channel): only the
//! choice between the two neighbouring codes moves, within `[−127, 127]`.
//!
//! GPTQ fits the inputs it measured: where `H` has a direction the calibration samples
//! barely reach (a channel only a face lights up, on few of them), it hides rounding error
//! there, and a new picture that lights that direction up pays for it. Two guards:
//! - a channel never seen non-zero keeps its nearest-rounded weights (GPTQ's reference code
//!   zeroes them: "they read nothing"; on BlazeFace a channel zero on half the calibration
//!   pictures and up to ~1000 on a face made that 368× nearest rounding's error);
//! - [`gptq_cross_validated`] fits on each half of the samples and measures on the other,
//!   for each damping of [`DAMPINGS`]: GPTQ is kept only if it beats nearest rounding on
//!   inputs it did not see, and then refitted on both halves with the best damping.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::qparams::QWeights;

/// Relative dampings tried on `H`'s diagonal (its mean times this; GPTQ uses 0.01): damping
/// keeps the inverse stable when inputs are (nearly) collinear and limits how much error is
/// moved onto rarely seen directions.
pub const DAMPINGS: [f64; 3] = [0.01, 0.1, 1.0];

/// Accumulates `H = Σ x·xᵀ` over input vectors of `k` channels.
#[derive(Debug, Clone)]
pub struct SecondMoments {
    k: usize,
    h: Vec<f64>,
    count: usize,
}

impl SecondMoments {
    /// Empty, for `k` input channels.
    pub fn new(k: usize) -> SecondMoments {
        SecondMoments {
            k,
            h: vec![0.0; k * k],
            count: 0,
        }
    }

    /// The moments of both `self`'s and `other`'s columns.
    pub fn merged(&self, other: &SecondMoments) -> SecondMoments {
        assert_eq!(self.k, other.k, "second moments of different widths");
        SecondMoments {
            k: self.k,
            h: self.h.iter().zip(&other.h).map(|(a, b)| a + b).collect(),
            count: self.count + other.count,
        }
    }

    /// Adds the columns of `x` (f32, its `k` channels on `axis`), at most `max_columns` of
    /// them evenly spread.
    pub fn add(&mut self, x: &Tensor, axis: usize, max_columns: usize) -> TractResult<()> {
        let view = x.to_plain_array_view::<f32>()?;
        ensure!(
            view.shape().get(axis) == Some(&self.k),
            "second moments: axis {axis} of {:?} is not {} channels",
            view.shape(),
            self.k
        );
        // Columns as rows of a [positions, k] matrix.
        let moved = view.view().permuted_axes(move_last(view.ndim(), axis));
        let columns = moved.len() / self.k.max(1);
        let flat = moved.as_standard_layout();
        let flat = flat.as_slice().unwrap_or(&[]);
        let step = columns.div_ceil(max_columns.max(1)).max(1);
        let mut col = vec![0f64; self.k];
        for c in (0..columns).step_by(step) {
            for (v, x) in col.iter_mut().zip(&flat[c * self.k..(c + 1) * self.k]) {
                *v = *x as f64;
            }
            for i in 0..self.k {
                let xi = col[i];
                if xi == 0.0 {
                    continue;
                }
                let row = &mut self.h[i * self.k..(i + 1) * self.k];
                for (h, xj) in row.iter_mut().zip(&col) {
                    *h += xi * xj;
                }
            }
            self.count += 1;
        }
        Ok(())
    }
}

/// The axis order that moves `axis` last.
fn move_last(rank: usize, axis: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rank).filter(|a| *a != axis).collect();
    order.push(axis);
    order
}

/// Lower Cholesky factor of the symmetric positive definite `a` (`n`×`n`, row-major), or
/// `None` when it is not positive definite.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// The inverse of `a` from its lower Cholesky factor `l` (`a⁻¹ = L⁻ᵀ·L⁻¹`).
fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // L⁻¹ by forward substitution, column by column.
    let mut li = vec![0f64; n * n];
    for c in 0..n {
        for i in c..n {
            let s: f64 = (c..i).map(|k| l[i * n + k] * li[k * n + c]).sum();
            let rhs = if i == c { 1.0 } else { 0.0 };
            li[i * n + c] = (rhs - s) / l[i * n + i];
        }
    }
    let mut inv = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (i..n).map(|k| li[k * n + i] * li[k * n + j]).sum();
            inv[i * n + j] = s;
            inv[j * n + i] = s;
        }
    }
    inv
}

/// Why [`gptq_cross_validated`] kept nearest rounding.
#[derive(Debug, Clone, PartialEq)]
pub enum Nearest {
    /// `H` cannot be inverted even damped, or a half measured no column.
    Singular,
    /// GPTQ fitted on one half of the samples did no better than nearest rounding on the
    /// other, at any damping: the summed output errors `Σ ΔWᵀ·H·ΔW` of both folds.
    Overfits { gptq: f64, nearest: f64 },
}

/// GPTQ weights, and the damping chosen by two-fold cross-validation on the halves `a` and
/// `b`; `Err` says why nearest rounding (`rtn`) stands (see the module docs).
pub fn gptq_cross_validated(
    weights: &Tensor,
    out_axis: usize,
    rtn: &QWeights,
    a: &SecondMoments,
    b: &SecondMoments,
) -> TractResult<Result<(QWeights, f64), Nearest>> {
    if a.count == 0 || b.count == 0 {
        return Ok(Err(Nearest::Singular));
    }
    let nearest =
        output_error(weights, out_axis, rtn, a)? + output_error(weights, out_axis, rtn, b)?;
    let mut best: Option<(f64, f64)> = None;
    for damping in DAMPINGS {
        let (Some(on_a), Some(on_b)) = (
            gptq(weights, out_axis, rtn, a, damping)?,
            gptq(weights, out_axis, rtn, b, damping)?,
        ) else {
            continue;
        };
        let e =
            output_error(weights, out_axis, &on_a, b)? + output_error(weights, out_axis, &on_b, a)?;
        if best.is_none_or(|(_, b)| e < b) {
            best = Some((damping, e));
        }
    }
    let Some((damping, error)) = best else {
        return Ok(Err(Nearest::Singular));
    };
    if error >= nearest {
        return Ok(Err(Nearest::Overfits {
            gptq: error,
            nearest,
        }));
    }
    Ok(gptq(weights, out_axis, rtn, &a.merged(b), damping)?
        .map(|q| (q, damping))
        .ok_or(Nearest::Singular))
}

/// `Σ_o (w_o − ŵ_o)ᵀ·H·(w_o − ŵ_o)`: the summed squared output error of the rounded weights
/// `q` on the inputs `moments` measured.
pub fn output_error(
    weights: &Tensor,
    out_axis: usize,
    q: &QWeights,
    moments: &SecondMoments,
) -> TractResult<f64> {
    let k = moments.k;
    let w = weights.to_plain_array_view::<f32>()?;
    let v = q.values.to_plain_array_view::<i8>()?;
    ensure!(
        w.ndim() == 2 && w.shape() == v.shape() && w.shape()[1 - out_axis] == k,
        "output error: weights {:?}, codes {:?}, {k} input channels",
        w.shape(),
        v.shape()
    );
    let o = w.shape()[out_axis];
    let mut total = 0f64;
    let mut d = vec![0f64; k];
    for r in 0..o {
        let s = q.scales[r] as f64;
        for (c, d) in d.iter_mut().enumerate() {
            let idx = if out_axis == 0 { [r, c] } else { [c, r] };
            *d = w[idx] as f64 - v[idx] as f64 * s;
        }
        for i in 0..k {
            let row = &moments.h[i * k..(i + 1) * k];
            total += d[i] * row.iter().zip(&d).map(|(h, d)| h * d).sum::<f64>();
        }
    }
    Ok(total)
}

/// `weights` (`[O, K]` or `[K, O]`: output channels on `out_axis`) rounded to i8 with the
/// per-channel scales `rtn.scales` (those of nearest rounding, `rtn`), compensating each
/// rounding error over the later columns through `H` + `damping`·mean(diag H)·I (see the
/// module docs). `None` when `H` cannot be inverted even damped (then nearest rounding
/// stands).
pub fn gptq(
    weights: &Tensor,
    out_axis: usize,
    rtn: &QWeights,
    moments: &SecondMoments,
    damping: f64,
) -> TractResult<Option<QWeights>> {
    let k = moments.k;
    let view = weights.to_plain_array_view::<f32>()?;
    ensure!(
        view.ndim() == 2,
        "GPTQ rounds 2-D weights, got {:?}",
        view.shape()
    );
    let o = view.shape()[out_axis];
    ensure!(
        view.shape()[1 - out_axis] == k && rtn.scales.len() == o,
        "GPTQ: weights {:?} against {k} input channels",
        view.shape()
    );
    if moments.count == 0 {
        return Ok(None);
    }
    let w: Vec<f64> = (0..o * k)
        .map(|i| {
            let (r, c) = (i / k, i % k);
            let v = if out_axis == 0 {
                view[[r, c]]
            } else {
                view[[c, r]]
            };
            v as f64
        })
        .collect();
    // Columns in order of decreasing input energy (GPTQ's "act-order"): the largest inputs'
    // weights are rounded first, while every other column can still absorb their error.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| moments.h[b * k + b].total_cmp(&moments.h[a * k + a]));
    let mut h: Vec<f64> = (0..k * k)
        .map(|i| moments.h[order[i / k] * k + order[i % k]])
        .collect();
    let mut w: Vec<f64> = (0..o * k).map(|i| w[i / k * k + order[i % k]]).collect();
    // A channel never seen non-zero is independent of the others in `H` (unit diagonal, no
    // cross terms): no error moves onto it or from it, and its weights round to nearest.
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = mean_diag.max(f64::MIN_POSITIVE);
        }
    }
    (0..k).for_each(|i| h[i * k + i] += damping * mean_diag);
    let Some(l) = cholesky(&h, k) else {
        return Ok(None);
    };
    let inv = inverse_from_cholesky(&l, k);
    // Upper factor U of H⁻¹ = Uᵀ·U: the transpose of the lower factor of H⁻¹.
    let Some(lower) = cholesky(&inv, k) else {
        return Ok(None);
    };
    let u = |i: usize, j: usize| lower[j * k + i];
    let mut q = vec![0i8; o * k];
    for c in 0..k {
        let d = u(c, c);
        for r in 0..o {
            let s = rtn.scales[r] as f64;
            let v = w[r * k + c];
            let code = (v / s).round().clamp(-127.0, 127.0);
            q[r * k + order[c]] = code as i8;
            let err = (v - code * s) / d;
            for j in c + 1..k {
                w[r * k + j] -= err * u(c, j);
            }
        }
    }
    let values = if out_axis == 0 {
        tract_ndarray::Array2::from_shape_vec((o, k), q)?
    } else {
        tract_ndarray::Array2::from_shape_vec((o, k), q)?
            .reversed_axes()
            .as_standard_layout()
            .to_owned()
    };
    Ok(Some(QWeights {
        values: values.into_tensor(),
        scales: rtn.scales.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::qparams::quantize_weights;

    /// Uniform in [−1, 1) from a 64-bit LCG (deterministic test data).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn cholesky_inverts() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        let inv = inverse_from_cholesky(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!(
                    (p - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12,
                    "{i} {j} {p}"
                );
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    /// On correlated inputs with one large channel, GPTQ's output error is below nearest
    /// rounding's, and its codes stay within one step of the weights' own.
    #[test]
    fn gptq_lowers_the_output_error_of_nearest_rounding() {
        let mut rng = Lcg(3);
        let (o, k, n) = (8usize, 24usize, 600usize);
        let w: Vec<f32> = (0..o * k).map(|_| rng.next()).collect();
        let weights = Tensor::from_shape(&[o, k], &w).unwrap();
        // x = a shared factor + noise, channel 3 ten times larger.
        let mut x = vec![0f32; k * n];
        for c in 0..n {
            let f: f32 = rng.next();
            for i in 0..k {
                let v = f + 0.3 * rng.next();
                x[i * n + c] = if i == 3 { 10.0 * v } else { v };
            }
        }
        let input = Tensor::from_shape(&[1, k, n], &x).unwrap();
        let mut m = SecondMoments::new(k);
        m.add(&input, 1, usize::MAX).unwrap();
        let rtn = quantize_weights(&weights, 0, true).unwrap();
        let g = gptq(&weights, 0, &rtn, &m, 0.01).unwrap().unwrap();
        let error = |q: &QWeights| -> f64 {
            let v = q.values.to_plain_array_view::<i8>().unwrap();
            let mut e = 0.0;
            for r in 0..o {
                for c in 0..n {
                    let d: f64 = (0..k)
                        .map(|i| {
                            (w[r * k + i] as f64 - v[[r, i]] as f64 * q.scales[r] as f64)
                                * x[i * n + c] as f64
                        })
                        .sum();
                    e += d * d;
                }
            }
            e
        };
        let (e_rtn, e_gptq) = (error(&rtn), error(&g));
        assert!(
            e_gptq < 0.7 * e_rtn,
            "GPTQ {e_gptq:.4e}, nearest {e_rtn:.4e}"
        );
        // Transposed weights ([K, O]) give the same codes.
        let t = weights.clone().permute_axes(&[1, 0]).unwrap();
        let rtn_t = quantize_weights(&t, 1, true).unwrap();
        let g_t = gptq(&t, 1, &rtn_t, &m, 0.01).unwrap().unwrap();
        assert_eq!(g_t.values.permute_axes(&[1, 0]).unwrap(), g.values);
    }

    /// A channel that is zero on every fitted sample keeps its nearest-rounded weights (not
    /// zero), and cross-validation keeps nearest rounding when that channel lights up on the
    /// other half only.
    #[test]
    fn an_unseen_channel_keeps_its_weights_and_cross_validation_guards_it() {
        let mut rng = Lcg(7);
        let (o, k, n) = (4usize, 6usize, 200usize);
        let w: Vec<f32> = (0..o * k).map(|_| rng.next()).collect();
        let weights = Tensor::from_shape(&[o, k], &w).unwrap();
        let rtn = quantize_weights(&weights, 0, true).unwrap();
        let half = |lit: bool, rng: &mut Lcg| {
            let mut x = vec![0f32; k * n];
            for c in 0..n {
                for i in 0..k {
                    x[i * n + c] = match i {
                        5 if lit => 50.0 * rng.next(),
                        5 => 0.0,
                        _ => rng.next(),
                    };
                }
            }
            let mut m = SecondMoments::new(k);
            m.add(&Tensor::from_shape(&[1, k, n], &x).unwrap(), 1, usize::MAX)
                .unwrap();
            m
        };
        let (dark, lit) = (half(false, &mut rng), half(true, &mut rng));
        let g = gptq(&weights, 0, &rtn, &dark, 0.01).unwrap().unwrap();
        let (gv, rv) = (
            g.values.to_plain_array_view::<i8>().unwrap(),
            rtn.values.to_plain_array_view::<i8>().unwrap(),
        );
        for r in 0..o {
            assert_eq!(
                gv[[r, 5]],
                rv[[r, 5]],
                "row {r}: the unseen column rounds to nearest"
            );
        }
        // On both halves, GPTQ generalises; whatever it picks beats nearest on both.
        if let Ok((q, _)) = gptq_cross_validated(&weights, 0, &rtn, &dark, &lit).unwrap() {
            for m in [&dark, &lit] {
                let (e_q, e_n) = (
                    output_error(&weights, 0, &q, m).unwrap(),
                    output_error(&weights, 0, &rtn, m).unwrap(),
                );
                assert!(e_q <= e_n * 1.5, "GPTQ {e_q:.3e} against nearest {e_n:.3e}");
            }
        }
        // With a half that measured nothing, nearest stands.
        let empty = SecondMoments::new(k);
        assert!(matches!(
            gptq_cross_validated(&weights, 0, &rtn, &dark, &empty).unwrap(),
            Err(Nearest::Singular)
        ));
    }
}
