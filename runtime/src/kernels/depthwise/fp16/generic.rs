//! The portable half-precision kernel: binary16 arithmetic emulated exactly, one output at a
//! time, for tests and for computing on a host what a FEAT_FP16 core computes (it is slow:
//! a few f32 operations per multiply-add).
//!
//! [`fma`] rounds `a·b + c` once: the product of two binary16 values is exact in f32 (22
//! significant bits), the sum is rounded to f32 *to odd* (its error, from a TwoSum, decides the
//! last bit), and rounding that to binary16 is then the single rounding of the exact sum
//! (rounding to odd at 24 bits, then to nearest at 11, is exact for any target of at most 22
//! bits). Only f32 → binary16 conversions are used: the `half` crate's f64 → binary16 goes
//! through f32 on some hosts, a second rounding. [`add`] and [`mul`] of two binary16 values go through f32, which holds a product
//! exactly and a sum closely enough that the second rounding cannot land on a midpoint.

use super::{
    check, check_codes, codes, split_bias, to_f32, to_half, HalfCodes, HalfKernel, HalfPlane,
};
use crate::kernels::depthwise::Layout;

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

impl HalfKernel for Generic {
    fn name(&self) -> &'static str {
        "generic-f16"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: HalfPlane<'_>, out: &mut [f32]) {
        check(layout, &plane, out.len());
        each(layout, &plane, out, |acc| {
            layout.act.apply(to_f32(acc) + plane.bias)
        });
    }

    fn run_plane_codes(
        &self,
        layout: &Layout<'_>,
        plane: HalfPlane<'_>,
        q: &HalfCodes,
        out: &mut [i8],
    ) {
        check_codes(layout, &plane, out.len());
        let bias = split_bias(plane.bias);
        each(layout, &plane, out, |acc| codes(acc, bias, q, layout.act));
    }
}

/// `out[r·cols + c] = stage(sum of the taps at (r, c))`, each sum in binary16, taps in order.
fn each<T>(layout: &Layout<'_>, plane: &HalfPlane<'_>, out: &mut [T], stage: impl Fn(u16) -> T) {
    let cols = layout.cols;
    if cols == 0 {
        return;
    }
    for (r, row) in out.chunks_exact_mut(cols).enumerate() {
        let base = r * layout.row_step;
        for (c, o) in row.iter_mut().enumerate() {
            let mut acc = 0;
            for (&t, &w) in layout.taps.iter().zip(plane.weights) {
                acc = fma(w, plane.input[base + t + c], acc);
            }
            *o = stage(acc);
        }
    }
}

/// `a·b + c` in binary16, rounded once to nearest (ties to even), as `fmla .8h` computes it
/// (module docs). NaN results are unspecified.
#[inline]
pub fn fma(a: u16, b: u16, c: u16) -> u16 {
    let (c, p) = (to_f32(c), to_f32(a) * to_f32(b));
    let s = p + c;
    if !s.is_finite() || s == 0.0 {
        return to_half(s);
    }
    // TwoSum: `s + e` is `p + c` exactly.
    let pv = s - c;
    let e = (p - pv) + (c - (s - pv));
    let bits = s.to_bits();
    let s = if e != 0.0 && bits & 1 == 0 {
        // Round to odd: the neighbour of `s` on `e`'s side (odd, since `s` is even).
        f32::from_bits(if (s > 0.0) == (e > 0.0) {
            bits + 1
        } else {
            bits - 1
        })
    } else {
        s
    };
    to_half(s)
}

/// `a + b` in binary16, rounded to nearest.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    to_half(to_f32(a) + to_f32(b))
}

/// `a · b` in binary16, rounded to nearest.
#[inline]
pub fn mul(a: u16, b: u16) -> u16 {
    to_half(to_f32(a) * to_f32(b))
}

/// `min(a, b)` of two non-NaN binary16 values.
#[inline]
pub fn min(a: u16, b: u16) -> u16 {
    if to_f32(a) < to_f32(b) {
        a
    } else {
        b
    }
}

/// `max(a, b)` of two non-NaN binary16 values.
#[inline]
pub fn max(a: u16, b: u16) -> u16 {
    if to_f32(a) > to_f32(b) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    fn half(h: u16) -> f64 {
        half::f16::from_bits(h).to_f64()
    }

    /// A binary16 value in units of 2⁻⁴⁸ (exact: every binary16 is a multiple of 2⁻²⁴).
    fn units(h: u16) -> i128 {
        (half(h) * 2f64.powi(48)) as i128
    }

    /// `a·b + c` rounded to binary16 by integers: the exact sum in units of 2⁻⁴⁸, the nearest
    /// of the three binary16 values around its f64 approximation, ties to an even last bit.
    fn exact(a: u16, b: u16, c: u16) -> u16 {
        let sum = units(a) * units(b) / (1i128 << 48) + units(c);
        let near = half::f16::from_f64(sum as f64 * 2f64.powi(-48)).to_bits();
        let up = |h: u16| match h {
            0 | 0x8000 => 1,
            h if h & 0x8000 == 0 => h + 1,
            h => h - 1,
        };
        let down = |h: u16| match h {
            0 | 0x8000 => 0x8001,
            h if h & 0x8000 == 0 => h - 1,
            h => h + 1,
        };
        let mut best = near;
        for cand in [down(near), near, up(near)] {
            let (d, b) = ((units(cand) - sum).abs(), (units(best) - sum).abs());
            if d < b || (d == b && cand & 1 == 0) {
                best = cand;
            }
        }
        best
    }

    /// The same binary16 value (either zero for a zero: the sign of an exact zero sum is
    /// not what these tests are about).
    fn same(x: u16, y: u16) -> bool {
        x == y || (x & 0x7fff == 0 && y & 0x7fff == 0)
    }

    /// Where rounding the f64 sum to nearest and then to binary16 goes wrong (a tiny addend
    /// beside a product on a binary16 midpoint) the emulation rounds the exact value once.
    #[test]
    fn fma_rounds_once() {
        let tiny = to_half(2f32.powi(-24));
        let (x, y) = (to_half(1.5), to_half(1.0 + 2f32.powi(-10)));
        // 1.5·(1 + 2⁻¹⁰) = 1.5 + 1.5·2⁻¹⁰, the midpoint of 1.5 + 2⁻¹⁰ and 1.5 + 2⁻⁹.
        assert_eq!(to_f32(fma(x, y, tiny)), 1.5 + 2f32.powi(-9));
        assert_eq!(to_f32(fma(x, y, tiny | 0x8000)), 1.5 + 2f32.powi(-10));
        assert_eq!(to_f32(fma(x, y, 0)), 1.5 + 2f32.powi(-9), "ties to even");
        for (a, b, c) in [(x, y, tiny), (x, y, tiny | 0x8000), (x, y, 0)] {
            assert_eq!(fma(a, b, c), exact(a, b, c));
        }
    }

    #[test]
    fn fma_matches_exact_rounding_on_random_operands() {
        let mut rng = SmallRng::seed_from_u64(16);
        let h = |rng: &mut SmallRng| {
            let e: i32 = rng.random_range(-26..8);
            to_half(rng.random_range(-1.0f32..1.0) * 2f32.powi(e))
        };
        for _ in 0..200_000 {
            let (a, b, c) = (h(&mut rng), h(&mut rng), h(&mut rng));
            assert!(
                same(fma(a, b, c), exact(a, b, c)),
                "{} * {} + {}",
                to_f32(a),
                to_f32(b),
                to_f32(c)
            );
        }
    }

    #[test]
    fn add_and_mul_round_once() {
        let mut rng = SmallRng::seed_from_u64(17);
        for _ in 0..100_000 {
            let e: i32 = rng.random_range(-26..8);
            let a = to_half(rng.random_range(-1.0f32..1.0) * 2f32.powi(e));
            let b = to_half(rng.random_range(-1.0f32..1.0) * 2f32.powi(-e / 2));
            let one = to_half(1.0);
            assert!(same(add(a, b), exact(a, one, b)));
            assert!(same(mul(a, b), exact(a, b, 0)));
        }
    }
}
