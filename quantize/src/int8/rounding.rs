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

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::qparams::QWeights;

/// Relative damping added to `H`'s diagonal (its mean times this), as in GPTQ: it keeps the
/// inverse stable when inputs are (nearly) collinear.
const DAMPING: f64 = 0.01;

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

/// `weights` (`[O, K]` or `[K, O]`: output channels on `out_axis`) rounded to i8 with the
/// per-channel scales `rtn.scales` (those of nearest rounding, `rtn`), compensating each
/// rounding error over the later columns through `H` (see the module docs). `None` when `H`
/// cannot be inverted even damped (then nearest rounding stands).
pub fn gptq(
    weights: &Tensor,
    out_axis: usize,
    rtn: &QWeights,
    moments: &SecondMoments,
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
    // A channel never seen non-zero reads nothing: its weights do not matter.
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = 1.0;
            (0..o).for_each(|r| w[r * k + i] = 0.0);
        }
    }
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    (0..k).for_each(|i| h[i * k + i] += DAMPING * mean_diag);
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
        let g = gptq(&weights, 0, &rtn, &m).unwrap().unwrap();
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
        let g_t = gptq(&t, 1, &rtn_t, &m).unwrap().unwrap();
        assert_eq!(g_t.values.permute_axes(&[1, 0]).unwrap(), g.values);
    }
}
