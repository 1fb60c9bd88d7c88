//! x86-64 bit-packing kernels: `x86-avx2` (8 lanes) and `x86-avx512` (AVX-512F, 16 lanes).
//!
//! Planes: blocks of 8 vectors of 8 pixels (64 pixels: each channel row is read 256 bytes at a
//! time, which keeps the 64 rows a word reads from thrashing the cache when planes are a power
//! of two apart), then single vectors, the last pixels by the portable code. Per channel and
//! vector: one load, one `!(x ≥ 0)` compare (`_CMP_NGE_UQ`, true for NaN) and the accumulate
//! `acc = 2·acc + bit` as `acc + acc − mask` (the mask is −1 where the bit is set). The
//! AVX-512 kernel packs planes with these 256-bit vectors too: with 16 lanes (compare into a
//! mask register, masked add) the same loop ran 1.2–1.5× slower (`cargo bench --bench bitpack`).
//! Rows: one compare and `movemask` per 8 values, or a 16-lane compare into a mask register.

use std::arch::x86_64::*;

use super::{planes_with, row_with, BitpackKernel};
use crate::ops::packing::WORD_BITS;

/// AVX2.
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if the CPU has AVX2.
    pub fn detect() -> Option<&'static dyn BitpackKernel> {
        is_x86_feature_detected!("avx2").then_some(&Avx2(()) as &dyn BitpackKernel)
    }
}

/// AVX-512F.
#[derive(Debug)]
pub struct Avx512(());

impl Avx512 {
    /// The kernel, if the CPU has AVX-512F (and AVX2, for the planes).
    pub fn detect() -> Option<&'static dyn BitpackKernel> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2"))
            .then_some(&Avx512(()) as &dyn BitpackKernel)
    }
}

impl BitpackKernel for Avx2 {
    fn name(&self) -> &'static str {
        "x86-avx2"
    }

    fn pack_planes(&self, src: &[f32], channels: usize, out: &mut [u64]) {
        // SAFETY: `Avx2` exists only where `detect` found AVX2; `planes_avx2` reads pixels
        // < `plane` of channels < `channels` and writes `out[p·words + j]` within them.
        unsafe { planes_with(planes_avx2, src, channels, out) }
    }

    fn pack_row(&self, src: &[f32], out: &mut [u64]) {
        // SAFETY: as above; `row_avx2` reads whole 64-value chunks, writes one word each.
        unsafe { row_with(row_avx2, src, out) }
    }
}

impl BitpackKernel for Avx512 {
    fn name(&self) -> &'static str {
        "x86-avx512"
    }

    fn pack_planes(&self, src: &[f32], channels: usize, out: &mut [u64]) {
        // SAFETY: as for `Avx2` (`Avx512::detect` checks AVX2 too). 256-bit vectors: faster
        // here than 512-bit ones (module docs).
        unsafe { planes_with(planes_avx2, src, channels, out) }
    }

    fn pack_row(&self, src: &[f32], out: &mut [u64]) {
        // SAFETY: as for `Avx2`, with AVX-512F detected.
        unsafe { row_with(row_avx512, src, out) }
    }
}

/// Stores the words of `v` (pixels `p..p+N`) at `out[(p + i)·words + j]`.
#[inline(always)]
unsafe fn store_words<const N: usize>(
    out: *mut u64,
    words: usize,
    j: usize,
    p: usize,
    v: [u64; N],
) {
    for (i, w) in v.into_iter().enumerate() {
        *out.add((p + i) * words + j) = w;
    }
}

/// The channel loop of one half-word (module docs): `n` channels of `U` vectors of 8 pixels
/// starting at `first`, channel `c` at `first + c·plane`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn half_avx2<const U: usize>(first: *const f32, plane: usize, n: usize) -> [__m256i; U] {
    let zero = _mm256_setzero_ps();
    let mut acc = [_mm256_setzero_si256(); U];
    for c in (0..n).rev() {
        let row = first.add(c * plane);
        for (v, a) in acc.iter_mut().enumerate() {
            let m = _mm256_cmp_ps::<_CMP_NGE_UQ>(_mm256_loadu_ps(row.add(8 * v)), zero);
            *a = _mm256_sub_epi32(_mm256_add_epi32(*a, *a), _mm256_castps_si256(m));
        }
    }
    acc
}

/// Packs the pixels of whole blocks of `U` vectors from `p` on; returns the first pixel left.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn blocks_avx2<const U: usize>(
    src: *const f32,
    plane: usize,
    channels: usize,
    out: *mut u64,
    words: usize,
    mut p: usize,
) -> usize {
    while p + 8 * U <= plane {
        for j in 0..words {
            let group = src.add(j * WORD_BITS * plane + p);
            let n = (channels - j * WORD_BITS).min(WORD_BITS);
            let lo = half_avx2::<U>(group, plane, n.min(32));
            let hi = if n > 32 {
                half_avx2::<U>(group.add(32 * plane), plane, n - 32)
            } else {
                [_mm256_setzero_si256(); U]
            };
            for v in 0..U {
                let a = _mm256_unpacklo_epi32(lo[v], hi[v]); // pixels 0 1 | 4 5
                let b = _mm256_unpackhi_epi32(lo[v], hi[v]); // pixels 2 3 | 6 7
                let w0 = _mm256_permute2x128_si256::<0x20>(a, b);
                let w1 = _mm256_permute2x128_si256::<0x31>(a, b);
                let q = p + 8 * v;
                if words == 1 {
                    _mm256_storeu_si256(out.add(q) as *mut __m256i, w0);
                    _mm256_storeu_si256(out.add(q + 4) as *mut __m256i, w1);
                } else {
                    let mut t = [0u64; 8];
                    _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, w0);
                    _mm256_storeu_si256(t.as_mut_ptr().add(4) as *mut __m256i, w1);
                    store_words(out, words, j, q, t);
                }
            }
        }
        p += 8 * U;
    }
    p
}

#[target_feature(enable = "avx2")]
unsafe fn planes_avx2(
    src: *const f32,
    plane: usize,
    channels: usize,
    out: *mut u64,
    words: usize,
) -> usize {
    let p = blocks_avx2::<8>(src, plane, channels, out, words, 0);
    blocks_avx2::<1>(src, plane, channels, out, words, p)
}

#[target_feature(enable = "avx2")]
unsafe fn row_avx2(src: *const f32, len: usize, out: *mut u64) -> usize {
    let zero = _mm256_setzero_ps();
    let whole = len / WORD_BITS;
    for w in 0..whole {
        let chunk = src.add(w * WORD_BITS);
        let mut word = 0u64;
        for v in 0..8 {
            let m = _mm256_cmp_ps::<_CMP_NGE_UQ>(_mm256_loadu_ps(chunk.add(8 * v)), zero);
            word |= (_mm256_movemask_ps(m) as u32 as u64) << (8 * v);
        }
        *out.add(w) = word;
    }
    whole
}

#[target_feature(enable = "avx512f")]
unsafe fn row_avx512(src: *const f32, len: usize, out: *mut u64) -> usize {
    let zero = _mm512_setzero_ps();
    let whole = len / WORD_BITS;
    for w in 0..whole {
        let chunk = src.add(w * WORD_BITS);
        let mut word = 0u64;
        for v in 0..4 {
            let k = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(_mm512_loadu_ps(chunk.add(16 * v)), zero);
            word |= (k as u64) << (16 * v);
        }
        *out.add(w) = word;
    }
    whole
}
