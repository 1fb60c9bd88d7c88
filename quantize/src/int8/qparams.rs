//! Quantization parameters: asymmetric i8 activations, symmetric per-channel i8 weights, i32
//! biases at scale `s_in · s_w`.
//!
//! Activations are signed 8-bit with a zero point (`real = (q − zp) · scale`, q ∈ [−128, 127]):
//! tract's int8 matrix kernels multiply i8 × i8, so an i8 activation avoids the extra
//! u8 → i8 offset pass tract inserts for u8 inputs. The range always contains 0 (so zero padding
//! is exact) and a ReLU output gets `zp = −128`, which makes the output clamp do the ReLU.

use serde::Serialize;
use tract_onnx::prelude::*;

/// How many times the calibrated range a 16-bit input covers. Inputs with long tails (a
/// detector's peaks) exceed on new pictures what the calibration pictures reached, and a
/// clipped peak is the signal itself; 16 bits pay for the headroom. Measured on BlazeFace
/// (its 8×8 blocks' 1×1 layers alone with 16-bit inputs, 41 held-out pictures): ×1 21.3 dB
/// (clipped), ×4 41.1 dB, ×16 33.1 dB (rounding).
pub const WIDE_HEADROOM: f32 = 4.0;

/// Affine parameters of an int8 activation tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActQ {
    /// Zero point, in [−128, 127].
    pub zero_point: i32,
    /// Step between two codes.
    pub scale: f32,
}

impl ActQ {
    /// Parameters covering `[lo, hi]` (widened to contain 0).
    pub fn from_range(lo: f32, hi: f32) -> ActQ {
        let lo = lo.min(0.0);
        let mut hi = hi.max(0.0);
        if !(hi - lo).is_finite() || hi - lo < 1e-8 {
            hi = lo + 1e-8;
        }
        let scale = nnef_exact((hi - lo) / 255.0);
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        ActQ { zero_point, scale }
    }

    /// The tract datum type of a tensor with these parameters.
    pub fn datum_type(&self) -> DatumType {
        DatumType::QI8(QParams::ZpScale {
            zero_point: self.zero_point,
            scale: self.scale,
        })
    }

    /// The 16-bit parameters over the same range widened [`WIDE_HEADROOM`] times (zero
    /// point in `[−32768, 32767]`), for a layer that reads its input quantized to 16 bits
    /// (`kestrel_int8_linear` with `input_bits = 16`): a step 257 / `WIDE_HEADROOM` times
    /// finer.
    pub fn wide(&self) -> ActQ {
        let lo = (-128 - self.zero_point) as f32 * self.scale * WIDE_HEADROOM;
        let hi = (127 - self.zero_point) as f32 * self.scale * WIDE_HEADROOM;
        let scale = nnef_exact((hi - lo) / 65535.0);
        let zero_point = (-32768.0 - lo / scale).round().clamp(-32768.0, 32767.0) as i32;
        ActQ { zero_point, scale }
    }

    /// Quantizes then dequantizes one value (what int8 storage does to it).
    pub fn fake(&self, x: f32) -> f32 {
        let q = (x / self.scale).round() + self.zero_point as f32;
        (q.clamp(-128.0, 127.0) - self.zero_point as f32) * self.scale
    }
}

/// `scale` moved to the nearest value tract's NNEF writer keeps exactly. tract 0.23.9 writes a
/// quantized tensor's scale in `graph.quant` with 9 decimals (`{scale:.9}`), not as the
/// shortest exact form: 0.0080163255 comes back as 0.008016326, the reloaded graph quantizes
/// a few values to the neighbouring code and, through a deep network (PP-OCR's recognizer),
/// its output drifts by ~19%. A scale that already has at most 9 decimals survives the
/// text exactly; the error this rounding adds is at most 5e-10 in absolute terms (a relative
/// 1e-7 for a typical 0.005 step). Never 0: the smallest scale is 1e-9.
pub fn nnef_exact(scale: f32) -> f32 {
    let snapped: f32 = format!("{scale:.9}").parse().unwrap_or(scale);
    if snapped > 0.0 {
        snapped
    } else {
        1e-9
    }
}

/// Weights quantized to i8, symmetric (zero point 0), one scale per output channel (or one
/// for the whole tensor).
#[derive(Debug, Clone)]
pub struct QWeights {
    /// i8 values, same shape as the float weights.
    pub values: Tensor,
    /// Scale per output channel (all equal when per-tensor).
    pub scales: Vec<f32>,
}

/// The smallest step of a channel's weights, as a fraction of the step of the layer's largest
/// channel (per-channel weights). A channel whose weights are all far below the others' (a
/// channel training switched off: SSDLite-MobileNetV2's `expanded_conv_1/expand` has one at
/// 7·10⁻⁸ of its largest) would otherwise get a step so fine that its bias code `b / (s_in ·
/// s_w)` overflows the i32 sums and the whole layer stays float. At this floor such a channel's
/// weights move by at most 1/(2·4096) of the largest channel's step, and what they add to its
/// output varies by less than 1/4096 of what the largest channel's do: below one step of
/// an 8-bit output that spans the layer's channels.
pub const WEIGHT_STEP_FLOOR: f32 = 1.0 / 4096.0;

/// Quantizes `weights` symmetrically to [−127, 127] along `axis` (output channels); per
/// channel, no channel's step below [`WEIGHT_STEP_FLOOR`] of the largest one's.
pub fn quantize_weights(weights: &Tensor, axis: usize, per_channel: bool) -> TractResult<QWeights> {
    let view = weights.to_plain_array_view::<f32>()?;
    let channels = view.shape()[axis];
    let mut max_abs: Vec<f32> = (0..channels)
        .map(|o| {
            view.index_axis(tract_ndarray::Axis(axis), o)
                .iter()
                .fold(0f32, |m, w| m.max(w.abs()))
        })
        .collect();
    let all = max_abs.iter().copied().fold(0f32, f32::max);
    // Per tensor every channel takes the largest range; per channel a zero channel keeps
    // step 1 (any step is exact for it, and a large one keeps its bias code small).
    let floor = if per_channel {
        all * WEIGHT_STEP_FLOOR
    } else {
        all
    };
    max_abs
        .iter_mut()
        .filter(|m| !per_channel || **m > 0.0)
        .for_each(|m| *m = m.max(floor));
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|m| if *m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let mut q = tract_ndarray::ArrayD::<i8>::zeros(view.shape());
    for (o, scale) in scales.iter().enumerate() {
        let src = view.index_axis(tract_ndarray::Axis(axis), o);
        let mut dst = q.index_axis_mut(tract_ndarray::Axis(axis), o);
        dst.zip_mut_with(&src, |d, w| {
            *d = (w / scale).round().clamp(-127.0, 127.0) as i8
        });
    }
    Ok(QWeights {
        values: q.into_tensor(),
        scales,
    })
}

/// The i32 bias of a layer: `round(b / (s_in · s_w[o]))`, saturated.
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    quantize_bias_each(bias, |_| input_scale, weight_scales)
}

/// [`quantize_bias`] with an input scale per channel, `input_scale(o)` (a depthwise layer
/// quantizing its input per channel).
pub fn quantize_bias_each(
    bias: &[f32],
    input_scale: impl Fn(usize) -> f32,
    weight_scales: &[f32],
) -> Vec<i32> {
    bias.iter()
        .zip(weight_scales)
        .enumerate()
        .map(|(o, (b, sw))| {
            let q = (*b as f64 / (input_scale(o) as f64 * *sw as f64)).round();
            q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// Whether a layer's i32 accumulator cannot overflow: the quantized bias plus `k` products of
/// at most 127·255 (k = weights per output channel) stay inside i32. A tiny input scale (an
/// almost constant input) makes `b / (s_in·s_w)` huge; such a layer stays float.
pub fn accumulator_fits(bias: &[f32], input_scale: f32, weights: &QWeights, k: usize) -> bool {
    accumulator_fits_each(bias, |_| input_scale, weights, k)
}

/// [`accumulator_fits`] with an input scale per channel, `input_scale(o)`.
pub fn accumulator_fits_each(
    bias: &[f32],
    input_scale: impl Fn(usize) -> f32,
    weights: &QWeights,
    k: usize,
) -> bool {
    let products = k as f64 * 127.0 * 255.0;
    bias.iter()
        .zip(&weights.scales)
        .enumerate()
        .all(|(o, (b, sw))| {
            let q = (*b as f64 / (input_scale(o) as f64 * *sw as f64)).abs();
            q.is_finite() && q + products < i32::MAX as f64 / 2.0
        })
}

/// Whether every quantized bias `b / (s_in · s_w)` fits an i32 (a 16-bit input sums in i64,
/// but its bias is still stored as i32).
pub fn bias_fits(bias: &[f32], input_scale: f32, weights: &QWeights) -> bool {
    bias.iter().zip(&weights.scales).all(|(b, sw)| {
        let q = (*b as f64 / (input_scale as f64 * *sw as f64)).abs();
        q.is_finite() && q < i32::MAX as f64 / 2.0
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn scales_survive_tract_s_nnef_text_exactly() {
        for scale in [
            0.0080163255f32,
            0.0173,
            4.901859e-7,
            1.0 / 255.0,
            3.3,
            1e-12,
        ] {
            let snapped = nnef_exact(scale);
            // What tract writes in graph.quant, read back.
            let reread: f32 = format!("{snapped:.9}").parse().unwrap();
            assert_eq!(reread.to_bits(), snapped.to_bits(), "{scale}");
            assert!(snapped > 0.0);
            let bound = 5e-10 + f32::EPSILON * scale;
            assert!(
                (snapped - scale).abs() <= bound || scale < 1e-9,
                "{scale} -> {snapped}"
            );
        }
        let q = ActQ::from_range(-1.0, 1.044163); // scale 0.0080163255 before snapping
        assert_eq!(nnef_exact(q.scale), q.scale);
    }

    use super::*;

    #[test]
    fn relu_range_puts_zero_at_the_bottom() {
        let q = ActQ::from_range(0.0, 6.0);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 6.0 / 255.0).abs() < 1e-7);
        assert_eq!(q.fake(-1.0), 0.0);
        assert!((q.fake(6.0) - 6.0).abs() < 1e-5);
    }

    #[test]
    fn range_always_contains_zero_exactly() {
        for (lo, hi) in [(-1.0, 1.0), (2.0, 3.0), (-5.0, -1.0), (-0.3, 7.1)] {
            let q = ActQ::from_range(lo, hi);
            assert_eq!(q.fake(0.0), 0.0, "{lo} {hi}");
            assert!((-128..=127).contains(&q.zero_point));
        }
    }

    #[test]
    fn wide_parameters_cover_the_range_with_headroom() {
        let q = ActQ::from_range(-1.0, 40.0);
        let w = q.wide();
        assert!((-32768..=32767).contains(&w.zero_point));
        let ratio = q.scale / w.scale;
        assert!((ratio - 257.0 / WIDE_HEADROOM).abs() < 0.01, "{ratio}");
        // Zero is a code; the range times the headroom spans the codes.
        let code = |x: f32| (x / w.scale).round() as i32 + w.zero_point;
        assert_eq!(code(0.0), w.zero_point);
        let h = WIDE_HEADROOM;
        let lo = (-128 - q.zero_point) as f32 * q.scale;
        let hi = (127 - q.zero_point) as f32 * q.scale;
        assert!((code(lo * h) + 32768).abs() <= 2, "{}", code(lo * h));
        assert!((code(hi * h) - 32767).abs() <= 2, "{}", code(hi * h));
    }

    #[test]
    fn degenerate_range_is_finite() {
        let q = ActQ::from_range(0.0, 0.0);
        assert!(q.scale > 0.0 && q.scale.is_finite());
    }

    #[test]
    fn weights_per_channel_use_the_full_range() {
        let w = tensor2(&[[0.5f32, -1.0], [0.005, 0.02]]);
        let q = quantize_weights(&w, 0, true).unwrap();
        assert_eq!(q.values, tensor2(&[[64i8, -127], [32, 127]]));
        let t = quantize_weights(&w, 0, false).unwrap();
        assert_eq!(t.scales[0], t.scales[1]);
        assert_eq!(t.values, tensor2(&[[64i8, -127], [1, 3]]));
    }

    #[test]
    fn a_switched_off_channel_gets_the_floor_step_and_its_bias_fits() {
        // Channel 1's weights are 10⁻⁸ of channel 0's: at its own step its bias code would be
        // ~10¹² (input step 0.01).
        let w = tensor2(&[[1.0f32, -0.5], [1e-8, -2e-8]]);
        let q = quantize_weights(&w, 0, true).unwrap();
        assert_eq!(q.scales[0], 1.0 / 127.0);
        assert_eq!(q.scales[1], WEIGHT_STEP_FLOOR / 127.0);
        assert_eq!(q.values, tensor2(&[[127i8, -64], [0, 0]]));
        assert!(accumulator_fits(&[0.0, -1.1], 0.01, &q, 2));
        // A zero channel keeps step 1; a channel above the floor keeps its own step.
        let w = tensor2(&[[1.0f32], [0.0]]);
        assert_eq!(quantize_weights(&w, 0, true).unwrap().scales[1], 1.0);
        let w = tensor2(&[[1.0f32], [0.001]]);
        assert_eq!(
            quantize_weights(&w, 0, true).unwrap().scales[1],
            0.001 / 127.0
        );
    }

    #[test]
    fn accumulator_overflow_is_detected() {
        let w = quantize_weights(&tensor2(&[[1f32, 1.0]]), 0, true).unwrap();
        assert!(accumulator_fits(&[1.0], 0.01, &w, 2));
        assert!(!accumulator_fits(&[1.0], 1e-12, &w, 2));
    }

    #[test]
    fn bias_at_input_times_weight_scale() {
        assert_eq!(
            quantize_bias(&[1.0, -0.5], 0.5, &[0.1, 0.01]),
            vec![20, -100]
        );
    }
}
