//! `x86-avx2`: the `vpshufb` nibble-lookup row kernel (see the parent module's design); its
//! lane and MST jobs, and rows shorter than [`AVX2_MIN_WORDS`], run the `POPCNT` code.
//!
//! Every `unsafe` block of its `RawKernel` impl relies on the same two facts: a value of the
//! kernel type exists only after its `detect()` found the CPU features, and the job's shapes
//! are the callers' `# Safety` contract (checked by the safe front, `Checked`), which is all
//! the drivers read and write.

use std::arch::x86_64::*;

use super::super::mst::ChildJob;
use super::super::{BinaryKernel, Checked, LaneJob, RawKernel, Rows, Sink};
use super::popcnt::{popcnt_children, popcnt_driver};
use super::popcnt_lanes::popcnt_lanes;

/// AVX2 `vpshufb` nibble-lookup kernel with `vpsadbw` accumulation, 2×4 register blocking.
/// Exists only once AVX2 and `POPCNT` are detected.
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if this CPU has AVX2 and `POPCNT`.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Avx2> = Checked(Avx2(()));
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt"))
            .then_some(&KERNEL as &dyn BinaryKernel)
    }
}

impl RawKernel for Avx2 {
    const NAME: &'static str = "x86-avx2";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe {
            if r.words < AVX2_MIN_WORDS {
                popcnt_driver(r, out.as_mut_ptr())
            } else {
                avx2_driver(r, out.as_mut_ptr())
            }
        }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see the module docs.
        unsafe { popcnt_lanes(job, sink) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe { popcnt_children(job, counts) }
    }
}

/// Below this row length the `x86-avx2` kernel runs the POPCNT code (measured: AVX2 is within
/// ±8% of POPCNT for 8..=13 words, ahead from 12 on, 1.3–1.4× ahead from 16 words on).
pub const AVX2_MIN_WORDS: usize = 12;

/// AVX2 kernel over the whole output (`words >= 4`).
///
/// # Safety
/// AVX2 and POPCNT must be available; `rows` as `check_dims` returns them, `out` valid for m·n
/// elements.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn avx2_driver(rows: Rows<'_>, out: *mut u32) {
    let (a, b, words) = (rows.a.as_ptr(), rows.b.as_ptr(), rows.words);
    let (m, n) = (rows.m, rows.n);
    // SAFETY: as in popcnt_driver: tiles stay within the M×N output and their rows.
    unsafe { drive_tiles!(avx2_tile, a, b, words, out, m, n) }
}

/// Byte-wise popcount of the 256 bits `x ^ y` (each byte 0..=8).
#[target_feature(enable = "avx2")]
#[inline]
fn popcnt_bytes(x: __m256i, y: __m256i, lut: __m256i, low: __m256i) -> __m256i {
    let v = _mm256_xor_si256(x, y);
    let lo = _mm256_and_si256(v, low);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
    _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi))
}

/// Sum of the four u64 lanes of `v`.
#[target_feature(enable = "avx2")]
#[inline]
fn hsum_epi64(v: __m256i) -> u64 {
    let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    (_mm_cvtsi128_si64(s) + _mm_extract_epi64::<1>(s)) as u64
}

/// Chunks (of 4 words) summed per byte before a `vpsadbw`: 31 · 8 = 248 ≤ 255.
const BYTE_CHUNKS: usize = 31;

/// One `MR`×`NR` tile with AVX2 (`words >= 4`; see the module docs).
///
/// # Safety
/// AVX2 and POPCNT must be available; `a` valid for MR·words, `b` for NR·words reads, and
/// `out[r·ldo + c]` writable for r < MR, c < NR.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn avx2_tile<const MR: usize, const NR: usize>(
    a: *const u64,
    b: *const u64,
    words: usize,
    out: *mut u32,
    ldo: usize,
) {
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let chunks = words / 4;
    let rem = words % 4;
    // A tail of 3 words is one masked vector step; 1 or 2 words are cheaper with POPCNT
    // (which runs beside the vector ports).
    let masked = rem == 3;
    let steps = chunks + usize::from(masked);
    let mask = _mm256_setr_epi64x(-1, -1, -1, 0);
    let mut tail = [[0u32; NR]; MR];
    if !masked {
        for l in 4 * chunks..words {
            for r in 0..MR {
                // SAFETY: l < words: inside row r of a, and row c of b.
                let x = unsafe { *a.add(r * words + l) };
                for c in 0..NR {
                    tail[r][c] += (x ^ unsafe { *b.add(c * words + l) }).count_ones();
                }
            }
        }
    }

    let mut total = [[zero; NR]; MR];
    let mut k = 0;
    while k < steps {
        let end = steps.min(k + BYTE_CHUNKS);
        let mut acc = [[zero; NR]; MR];
        for kk in k..end.min(chunks) {
            let mut x = [zero; MR];
            for r in 0..MR {
                // SAFETY: kk < chunks, so words 4kk..4kk+4 lie inside row r of a.
                x[r] = unsafe { _mm256_loadu_si256(a.add(r * words + 4 * kk).cast()) };
            }
            for c in 0..NR {
                // SAFETY: as above, inside row c of b.
                let y = unsafe { _mm256_loadu_si256(b.add(c * words + 4 * kk).cast()) };
                for r in 0..MR {
                    acc[r][c] = _mm256_add_epi8(acc[r][c], popcnt_bytes(x[r], y, lut, low));
                }
            }
        }
        if end > chunks {
            // The row's last 3 words, masked: the masked-off lane is neither read nor set.
            let mut x = [zero; MR];
            for r in 0..MR {
                // SAFETY: lanes 0..3 are words 4·chunks..words of row r, inside a.
                x[r] = unsafe { _mm256_maskload_epi64(a.add(r * words + 4 * chunks).cast(), mask) };
            }
            for c in 0..NR {
                // SAFETY: as above, inside row c of b.
                let y =
                    unsafe { _mm256_maskload_epi64(b.add(c * words + 4 * chunks).cast(), mask) };
                for r in 0..MR {
                    acc[r][c] = _mm256_add_epi8(acc[r][c], popcnt_bytes(x[r], y, lut, low));
                }
            }
        }
        for r in 0..MR {
            for c in 0..NR {
                total[r][c] = _mm256_add_epi64(total[r][c], _mm256_sad_epu8(acc[r][c], zero));
            }
        }
        k = end;
    }

    for r in 0..MR {
        if NR == 4 {
            // Transpose-reduce four tiles' u64 lanes into [s0, s1, s2, s3], store as 4 × u32.
            let t = &total[r];
            let x01 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(t[0], t[1]),
                _mm256_unpackhi_epi64(t[0], t[1]),
            );
            let x23 = _mm256_add_epi64(
                _mm256_unpacklo_epi64(t[2], t[3]),
                _mm256_unpackhi_epi64(t[2], t[3]),
            );
            let s = _mm256_add_epi64(
                _mm256_permute2x128_si256::<0x20>(x01, x23),
                _mm256_permute2x128_si256::<0x31>(x01, x23),
            );
            let packed = _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
            let t = &tail[r];
            let tails = _mm_setr_epi32(t[0] as i32, t[1] as i32, t[2] as i32, t[3] as i32);
            let sums = _mm_add_epi32(_mm256_castsi256_si128(packed), tails);
            // SAFETY: out[r·ldo .. r·ldo + 4] is writable (NR == 4, caller's contract).
            unsafe { _mm_storeu_si128(out.add(r * ldo).cast(), sums) };
        } else {
            for c in 0..NR {
                // SAFETY: r < MR, c < NR: writable by the caller's contract.
                unsafe { *out.add(r * ldo + c) = hsum_epi64(total[r][c]) as u32 + tail[r][c] };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::binary::generic;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn avx2_tiles_equal_generic_below_the_switch_length() {
        // The x86-avx2 kernel runs POPCNT below AVX2_MIN_WORDS; check its AVX2 tiles there too.
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c04);
        for words in 4..AVX2_MIN_WORDS + 8 {
            for (m, n) in [(1, 1), (1, 4), (2, 5), (3, 9), (5, 13)] {
                let a: Vec<u64> = (0..m * words).map(|_| rng.random()).collect();
                let b: Vec<u64> = (0..n * words).map(|_| rng.random()).collect();
                let mut want = vec![0u32; m * n];
                generic().xor_popcount(&a, &b, words, &mut want);
                let mut got = vec![u32::MAX; m * n];
                let rows = Rows {
                    a: &a,
                    b: &b,
                    words,
                    m,
                    n,
                };
                // SAFETY: AVX2 and POPCNT are present (checked); the vectors hold m·words,
                // n·words and m·n elements.
                unsafe { avx2_driver(rows, got.as_mut_ptr()) };
                assert_eq!(got, want, "avx2 tiles: M={m} N={n} words={words}");
            }
        }
    }
}
