//! Writes one f32 input plane into the half-precision padded layout: the f32 layout of
//! [`crate::kernels::depthwise::pad`] (same placement, in binary16 values instead of floats),
//! each value rounded to binary16 (to nearest, ties to even), then through tract's HardSwish
//! steps in binary16 when the op has an input HardSwish: `t = min(x + 3, 6)`, `t = max(t, 0)`,
//! `(t · x) · h(1/6)`, each operation rounded to binary16 (the f32 fill's steps, on eight lanes
//! per instruction on a FEAT_FP16 core).
//!
//! The portable fill ([`fill_portable`]) defines the bits; the NEON one (`neon-fp16`'s
//! [`super::HalfKernel::fill`]) gives the same (tested under qemu as a Cortex-A76).

use super::generic::{add, max, min, mul};
use super::to_half;
use crate::kernels::depthwise::pad::Placement;

/// binary16 3.
pub const THREE: u16 = 0x4200;
/// binary16 6.
pub const SIX: u16 = 0x4600;
/// binary16 1/6, rounded to nearest (0.16663).
pub const SIXTH: u16 = 0x3155;

/// tract's HardSwish of one binary16 value, each step rounded to binary16 (module docs).
#[inline]
pub fn hardswish(x: u16) -> u16 {
    hardswish_by(x, SIXTH)
}

/// tract's HardSwish steps with `k` for the final `· ⅙`: `(min(max(x + 3, 0), 6) · x) · k`,
/// each step rounded to binary16.
#[inline]
pub fn hardswish_by(x: u16, k: u16) -> u16 {
    let t = max(min(add(x, THREE), SIX), 0);
    mul(mul(t, x), k)
}

/// The fill of every plane of a layer: the placement checked once against the buffer's and
/// each plane's size.
#[derive(Debug, Clone, Copy)]
pub struct HalfFill {
    pub(crate) at: Placement,
    pub(crate) hw: [usize; 2],
    pub(crate) buf_len: usize,
    pub(crate) hardswish: bool,
}

impl HalfFill {
    /// Fills of `[h, w]` planes into buffers of `buf_len` values at `at`, through the
    /// HardSwish if `hardswish`. Panics unless a plane fits.
    pub fn new(at: Placement, hw: [usize; 2], buf_len: usize, hardswish: bool) -> HalfFill {
        at.check(buf_len, hw[0] * hw[1], hw);
        HalfFill {
            at,
            hw,
            buf_len,
            hardswish,
        }
    }

    /// Panics unless `buf` holds the length given to [`HalfFill::new`] and `src` a whole
    /// plane.
    #[inline]
    pub fn check(&self, buf: &[u16], src: &[f32]) {
        let [h, w] = self.hw;
        assert!(
            buf.len() == self.buf_len && src.len() >= h * w,
            "depthwise f16 pad: a buffer of {} (not {}) or a plane of {} < {h}x{w}",
            buf.len(),
            self.buf_len,
            src.len()
        );
    }
}

/// The fill, value by value: the definition the vector fill is tested against.
pub fn fill_portable(fill: &HalfFill, buf: &mut [u16], src: &[f32]) {
    fill.check(buf, src);
    let ([h, w], at) = (fill.hw, &fill.at);
    let f = |x: f32| {
        let x = to_half(x);
        if fill.hardswish {
            hardswish(x)
        } else {
            x
        }
    };
    for (y, row) in src[..h * w].chunks_exact(w.max(1)).enumerate() {
        let start = (y + at.top) * at.ld;
        for (i, &x) in row.iter().enumerate() {
            let j = at.left + i;
            buf[(j % at.stride) * at.phase_len + start + j / at.stride] = f(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::depthwise::fp16::to_f32;

    #[test]
    fn constants_are_the_rounded_values() {
        assert_eq!(THREE, to_half(3.0));
        assert_eq!(SIX, to_half(6.0));
        assert_eq!(SIXTH, to_half(1.0 / 6.0));
    }

    /// Within binary16's rounding of tract's f32 HardSwish, and exactly its shape.
    #[test]
    fn hardswish_is_tracts_in_half_precision() {
        for i in -800..800 {
            let x = i as f32 / 64.0;
            let h = to_f32(hardswish(to_half(x)));
            let f = crate::kernels::depthwise::pad::hardswish(x);
            assert!(
                (h - f).abs() <= 3.0 * 2f32.powi(-11) * f.abs().max(1e-3),
                "{x}: {h} {f}"
            );
        }
        assert_eq!(to_f32(hardswish(to_half(-3.5))), 0.0);
        // 24 · h(1/6) = 4 − 2⁻¹⁰, the midpoint of 4 − 2⁻⁹ and 4: ties to even, 4.
        assert_eq!(to_f32(hardswish(to_half(4.0))), 4.0);
    }

    /// Every padded position of every small shape: the plane's value where it belongs (the
    /// f32 fill's placement), nothing else written.
    #[test]
    fn places_values_as_the_f32_fill() {
        for stride in 1..=2usize {
            for (h, w) in [(1, 1), (3, 5), (4, 9), (7, 7), (2, 16)] {
                for left in 0..3 {
                    let ld = (w + left + 2usize).div_ceil(stride) + 16;
                    let phase_len = (h + 2) * ld;
                    let at = Placement {
                        ld,
                        phase_len,
                        top: 1,
                        left,
                        stride,
                    };
                    let src: Vec<f32> = (0..h * w).map(|i| i as f32 * 0.25 - 3.0).collect();
                    let mut f32_buf = vec![f32::NAN; stride * phase_len];
                    crate::kernels::depthwise::pad::fill_portable(
                        &mut f32_buf,
                        &src,
                        [h, w],
                        &at,
                        false,
                    );
                    let fill = HalfFill::new(at, [h, w], stride * phase_len, false);
                    let mut buf = vec![0x7e00u16; stride * phase_len];
                    fill_portable(&fill, &mut buf, &src);
                    for (i, (&a, &b)) in f32_buf.iter().zip(&buf).enumerate() {
                        if a.is_nan() {
                            assert_eq!(b, 0x7e00, "{i} written");
                        } else {
                            assert_eq!(b, to_half(a), "{i}");
                        }
                    }
                }
            }
        }
    }
}
