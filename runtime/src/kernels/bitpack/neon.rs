//! The aarch64 bit-packing kernel (`neon`, any ARMv8 core).
//!
//! Planes: blocks of 8 vectors of 4 pixels (two `ld1` of four registers per channel: 128
//! bytes of a channel row per visit), then single vectors, the last pixels by the portable
//! code. A half-word's channels are unrolled: per channel and vector one `fcmge #0` and one
//! `sli #c` into the accumulator (bit `c` and above take the channel's mask; later channels
//! overwrite all but bit `c`), one `bic` at the end that inverts the masks and cuts them to
//! the half-word's channels. Rows: per 4 values one `fcmge #0`, one `bic` against the bit
//! weights 1, 2, 4, 8 and one `addv`.

use std::arch::aarch64::*;

use super::{planes_with, row_with, BitpackKernel};
use crate::ops::packing::WORD_BITS;

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn BitpackKernel {
        &Neon(())
    }
}

impl BitpackKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn pack_planes(&self, src: &[f32], channels: usize, out: &mut [u64]) {
        // SAFETY: NEON is baseline on aarch64; `planes_neon` reads pixels < `plane` of
        // channels < `channels` and writes `out[p·words + j]` within them.
        unsafe { planes_with(planes_neon, src, channels, out) }
    }

    fn pack_row(&self, src: &[f32], out: &mut [u64]) {
        // SAFETY: as above; `row_neon` reads whole 64-value chunks, writes one word each.
        unsafe { row_with(row_neon, src, out) }
    }
}

/// The channel loop of one half-word: `n ≤ 32` channels of `U` vectors of 4 pixels starting
/// at `first`, channel `c` at `first + c·plane`; returns the bits (masked to `n`).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn half<const U: usize>(first: *const f32, plane: usize, n: usize) -> [uint32x4_t; U] {
    if n == 32 {
        half_of::<U, true>(first, plane, n)
    } else {
        half_of::<U, false>(first, plane, n)
    }
}

/// [`half`]: channel `c`'s `fcmge` mask shifted in at bit `c` by `sli #c`, in channel order,
/// so bits c..32 take its value and the later channels overwrite all but bit c. The shift is
/// an immediate, so the 32 channels are unrolled, each run when `c < n` (`ALL`: n = 32, no
/// test). The masks are the complement of the bits (a bit is set for x < 0 and for NaN):
/// one `bic` against the `n` valid bits inverts them and drops the bits from `n` on.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn half_of<const U: usize, const ALL: bool>(
    first: *const f32,
    plane: usize,
    n: usize,
) -> [uint32x4_t; U] {
    let mut acc = [vdupq_n_u32(0); U];
    macro_rules! channels {
        ($($c:literal)*) => {$(
            if ALL || $c < n {
                channel::<U, $c>(&mut acc, first.add($c * plane));
            }
        )*};
    }
    channels!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    let valid = vdupq_n_u32(if n >= 32 { u32::MAX } else { (1u32 << n) - 1 });
    acc.map(|a| vbicq_u32(valid, a))
}

/// Channel `C`'s `x ≥ 0` masks into bit `C` of `acc` and above (see [`half_of`]): `U`
/// vectors of 4 pixels at `row`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn channel<const U: usize, const C: i32>(acc: &mut [uint32x4_t; U], row: *const f32) {
    if U.is_multiple_of(4) {
        for q in 0..U / 4 {
            let x = vld1q_f32_x4(row.add(16 * q));
            let a = &mut acc[4 * q..4 * q + 4];
            a[0] = vsliq_n_u32::<C>(a[0], vcgezq_f32(x.0));
            a[1] = vsliq_n_u32::<C>(a[1], vcgezq_f32(x.1));
            a[2] = vsliq_n_u32::<C>(a[2], vcgezq_f32(x.2));
            a[3] = vsliq_n_u32::<C>(a[3], vcgezq_f32(x.3));
        }
    } else {
        for (v, a) in acc.iter_mut().enumerate() {
            *a = vsliq_n_u32::<C>(*a, vcgezq_f32(vld1q_f32(row.add(4 * v))));
        }
    }
}

/// Packs the pixels of whole blocks of `U` vectors from `p` on; returns the first pixel left.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn blocks<const U: usize>(
    src: *const f32,
    plane: usize,
    channels: usize,
    out: *mut u64,
    words: usize,
    mut p: usize,
) -> usize {
    while p + 4 * U <= plane {
        for j in 0..words {
            let group = src.add(j * WORD_BITS * plane + p);
            let n = (channels - j * WORD_BITS).min(WORD_BITS);
            let lo = half::<U>(group, plane, n.min(32));
            let hi = if n > 32 {
                half::<U>(group.add(32 * plane), plane, n - 32)
            } else {
                [vdupq_n_u32(0); U]
            };
            for v in 0..U {
                let w0 = vreinterpretq_u64_u32(vzip1q_u32(lo[v], hi[v])); // pixels 0 1
                let w1 = vreinterpretq_u64_u32(vzip2q_u32(lo[v], hi[v])); // pixels 2 3
                let q = p + 4 * v;
                if words == 1 {
                    vst1q_u64(out.add(q), w0);
                    vst1q_u64(out.add(q + 2), w1);
                } else {
                    *out.add(q * words + j) = vgetq_lane_u64::<0>(w0);
                    *out.add((q + 1) * words + j) = vgetq_lane_u64::<1>(w0);
                    *out.add((q + 2) * words + j) = vgetq_lane_u64::<0>(w1);
                    *out.add((q + 3) * words + j) = vgetq_lane_u64::<1>(w1);
                }
            }
        }
        p += 4 * U;
    }
    p
}

#[target_feature(enable = "neon")]
unsafe fn planes_neon(
    src: *const f32,
    plane: usize,
    channels: usize,
    out: *mut u64,
    words: usize,
) -> usize {
    let p = blocks::<8>(src, plane, channels, out, words, 0);
    blocks::<1>(src, plane, channels, out, words, p)
}

#[target_feature(enable = "neon")]
unsafe fn row_neon(src: *const f32, len: usize, out: *mut u64) -> usize {
    let weights = vld1q_u32([1u32, 2, 4, 8].as_ptr());
    let whole = len / WORD_BITS;
    for w in 0..whole {
        let chunk = src.add(w * WORD_BITS);
        let mut word = 0u64;
        for v in 0..16 {
            let ge = vcgezq_f32(vld1q_f32(chunk.add(4 * v)));
            word |= (vaddvq_u32(vbicq_u32(weights, ge)) as u64) << (4 * v);
        }
        *out.add(w) = word;
    }
    whole
}
