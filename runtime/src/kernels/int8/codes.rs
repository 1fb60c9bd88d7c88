//! Quantizing a float slice to i8 codes: each value exactly as [`super::quantize`] does it
//! (the quantization [`super::pack_f32`] fuses into packing), for an op that moves the codes
//! around before packing them (`kestrel_int8_conv` quantizes its image once, then builds its
//! columns from the codes: a quarter of the bytes of floats, and each value quantized once
//! rather than once per tap).
//!
//! NEON: 16 values per step with the packers' steps (`fmul`, `fadd`, `fmaxnm`, `fminnm`,
//! `fcvtns`, two narrows). x86-64: 16 per step on SSE2, baseline there (`mulps`, `addps`,
//! `maxps` with the bound as its second operand so a NaN gives −128, `minps`, `cvtps2dq`
//! rounding half to even under the default MXCSR, two saturating packs). The rest of a slice
//! of 16 or more is one more step over its last 16 values; shorter slices, and other targets,
//! go value by value.

use super::{quantize, Quantizer};

/// `out[i] = quantize(x[i])` with `q` (see the module docs). Panics if the lengths differ.
pub fn quantize_codes(x: &[f32], q: Quantizer, out: &mut [i8]) {
    assert_eq!(x.len(), out.len(), "quantize_codes: lengths differ");
    let done = simd(x, q, out);
    if done > 0 && done < x.len() {
        // The tail as one more step over the last 16 values: the ones it overlaps get the
        // same codes again (a plane of 19² would otherwise end with 9 scalar values).
        let at = x.len() - 16;
        simd(&x[at..], q, &mut out[at..]);
    } else {
        quantize_portable(&x[done..], q, &mut out[done..]);
    }
}

/// [`quantize_codes`] one value at a time: the reference.
pub fn quantize_portable(x: &[f32], q: Quantizer, out: &mut [i8]) {
    let zp = q.zp as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize(v, q.inv_scale, zp);
    }
}

/// The whole 16-value steps of `x`; returns how many values were written.
#[cfg(target_arch = "aarch64")]
fn simd(x: &[f32], q: Quantizer, out: &mut [i8]) -> usize {
    use super::neon::{narrow16, quantize_s32};
    use std::arch::aarch64::*;
    let steps = x.len() / 16;
    // SAFETY: step i reads x[16i .. 16i + 16] and writes out[16i .. 16i + 16], both within
    // the (equal) lengths; NEON is baseline on aarch64.
    unsafe {
        let (inv, zp) = (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32));
        for i in 0..steps {
            let s = x.as_ptr().add(16 * i);
            let v: [int32x4_t; 4] =
                std::array::from_fn(|j| quantize_s32(vld1q_f32(s.add(4 * j)), inv, zp));
            vst1q_s8(out.as_mut_ptr().add(16 * i), narrow16(v));
        }
    }
    16 * steps
}

/// The whole 16-value steps of `x`; returns how many values were written.
#[cfg(target_arch = "x86_64")]
fn simd(x: &[f32], q: Quantizer, out: &mut [i8]) -> usize {
    use std::arch::x86_64::*;
    let steps = x.len() / 16;
    // SAFETY: as the aarch64 twin; SSE2 is baseline on x86-64.
    unsafe {
        let (inv, zp) = (_mm_set1_ps(q.inv_scale), _mm_set1_ps(q.zp as f32));
        let (lo, hi) = (_mm_set1_ps(-128.0), _mm_set1_ps(127.0));
        let code = |v: __m128| {
            // `maxps` returns its second operand when either is NaN: a NaN gives −128.
            let v = _mm_min_ps(_mm_max_ps(_mm_add_ps(_mm_mul_ps(v, inv), zp), lo), hi);
            _mm_cvtps_epi32(v)
        };
        for i in 0..steps {
            let s = x.as_ptr().add(16 * i);
            let v: [__m128i; 4] = std::array::from_fn(|j| code(_mm_loadu_ps(s.add(4 * j))));
            let bytes = _mm_packs_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
            _mm_storeu_si128(out.as_mut_ptr().add(16 * i) as *mut __m128i, bytes);
        }
    }
    16 * steps
}

/// No vector steps on other targets.
#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
fn simd(_: &[f32], _: Quantizer, _: &mut [i8]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_quantized_as_the_reference() {
        let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect();
        // Ties at both parities, the clamps, and what is not a number.
        x.extend([
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            1e9,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -0.0,
        ]);
        for q in [
            Quantizer {
                inv_scale: 1.0,
                zp: 0,
            },
            Quantizer {
                inv_scale: 0.73,
                zp: -17,
            },
            Quantizer {
                inv_scale: 3.1,
                zp: 100,
            },
        ] {
            for len in [0, 5, 16, 17, 1011] {
                let x = &x[x.len() - len..];
                let mut got = vec![0i8; len];
                let mut want = vec![0i8; len];
                quantize_codes(x, q, &mut got);
                quantize_portable(x, q, &mut want);
                assert_eq!(got, want, "{q:?} len {len}");
            }
        }
    }
}
