//! `x86-avx512`: `VPOPCNTDQ` row, lane, MST and fused-store kernels (see the parent module's
//! design).
//!
//! Every `unsafe` block of its `RawKernel` impl relies on the same two facts: a value of the
//! kernel type exists only after its `detect()` found the CPU features, and the job's shapes
//! are the callers' `# Safety` contract (checked by the safe front, `Checked`), which is all
//! the drivers read and write.

use std::arch::x86_64::*;

use super::super::mst::{Child, ChildJob};
use super::super::store::{LaneStore, StoreKind, CLASSES};
use super::super::{BinaryKernel, Checked, LaneJob, RawKernel, Rows, Sink};

/// AVX-512 `VPOPCNTDQ` kernel: 2×4 row tiles, 3×8-lane × 8-channel lane tiles. Exists only
/// once AVX-512 F, VL and VPOPCNTDQ are detected.
#[derive(Debug)]
pub struct Avx512(());

impl Avx512 {
    /// The kernel, if this CPU has AVX-512 F, VL and VPOPCNTDQ.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Avx512> = Checked(Avx512(()));
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vpopcntdq"))
        .then_some(&KERNEL as &dyn BinaryKernel)
    }
}

impl RawKernel for Avx512 {
    const NAME: &'static str = "x86-avx512";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe { avx512_driver(r, out.as_mut_ptr()) }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see the module docs.
        unsafe { avx512_lanes(job, sink) }
    }

    unsafe fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        // SAFETY: see the module docs.
        unsafe { avx512_store_counts(counts, slots, store) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe { avx512_children(job, counts) }
    }
}

/// AVX-512 MST children: per child, tiles of 4 vectors × 8 lanes (then single vectors, the
/// last one masked) accumulate `vpopcntq(vpternlogq(x, w_child, m))` over the child's
/// differing words in u64 lanes; the tile's counts are narrowed, doubled, added to the
/// parent's (masked load) minus the Hamming distance, and stored (masked).
///
/// # Safety
/// AVX-512 F, VL and VPOPCNTDQ must be available; the job must have passed
/// [`ChildJob::check`] for `counts` (whose `LANE_SLACK` covers the last vector's loads).
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
unsafe fn avx512_children(job: &ChildJob<'_>, counts: &mut [u32]) {
    let lanes = job.lanes;
    let base = counts.as_mut_ptr();
    for (i, ch) in job.children.iter().enumerate() {
        // SAFETY: the child's and its parent's slots are rows of `counts` (checked); the tiles
        // read the child's differing planes at lanes < lanes + 8 (inside LANE_SLACK) and
        // write lanes < lanes of the child's row only.
        unsafe {
            let out = base.add((job.first + i) * lanes);
            let parent = base.add(ch.parent_slot as usize * lanes).cast_const();
            let mut p = 0;
            while p + 32 <= lanes {
                avx512_child_tile::<4>(job, ch, p, parent.add(p), out.add(p), 32);
                p += 32;
            }
            while p < lanes {
                avx512_child_tile::<1>(job, ch, p, parent.add(p), out.add(p), lanes - p);
                p += 8;
            }
        }
    }
}

/// One AVX-512 child tile: `MR` vectors of 8 lanes from lane `p` (see [`avx512_children`]).
///
/// # Safety
/// The features must be available; `job` checked; `parent` readable and `out` writable for
/// `min(valid, 8·MR)` lanes; `input + offsets[d] + p + [0, 8·MR)` readable.
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
#[inline]
unsafe fn avx512_child_tile<const MR: usize>(
    job: &ChildJob<'_>,
    ch: &Child,
    p: usize,
    parent: *const u32,
    out: *mut u32,
    valid: usize,
) {
    let range = ch.start as usize..ch.end as usize;
    let input = job.input.as_ptr();
    let mut acc = [_mm512_setzero_si512(); MR];
    for ((&off, &y), &m) in job.offsets[range.clone()]
        .iter()
        .zip(&job.child_words[range.clone()])
        .zip(&job.masks[range])
    {
        let (y, m) = (_mm512_set1_epi64(y as i64), _mm512_set1_epi64(m as i64));
        // SAFETY: the caller's contract.
        let src = unsafe { input.add(off + p) };
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm512_loadu_si512(src.add(8 * r).cast()) };
            // (x ^ y) & m: truth table 0b0010_1000 over (x, y, m).
            let v = _mm512_ternarylogic_epi64::<0x28>(x, y, m);
            *acc = _mm512_add_epi64(*acc, _mm512_popcnt_epi64(v));
        }
    }
    let bits = _mm256_set1_epi32(ch.bits as i32);
    for (r, acc) in acc.iter().enumerate() {
        let n = valid.saturating_sub(8 * r).min(8);
        if n == 0 {
            break;
        }
        let mask = (((1u16 << n) - 1) & 0xff) as __mmask8;
        let twice = _mm256_slli_epi32::<1>(_mm512_cvtepi64_epi32(*acc));
        // SAFETY: lanes 8r..8r+n of the parent and the child exist (caller's contract); the
        // masked load and store touch no other lane.
        unsafe {
            let q = _mm256_maskz_loadu_epi32(mask, parent.add(8 * r).cast());
            let v = _mm256_sub_epi32(_mm256_add_epi32(q, twice), bits);
            _mm256_mask_storeu_epi32(out.add(8 * r).cast(), mask, v);
        }
    }
}

/// AVX-512 lane kernel over the whole job.
///
/// # Safety
/// AVX-512 F, VL and VPOPCNTDQ must be available; the job must have passed
/// [`LaneJob::check`] for the counts of `sink` or [`LaneJob::check_store`] for its store
/// (the input's `LANE_SLACK` covers the last partial vector's loads).
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
unsafe fn avx512_lanes(job: &LaneJob<'_>, sink: Sink<'_>) {
    // SAFETY: as in popcnt_lanes; vector loads of a partial last vector read at most 7 words
    // past the last lane, inside LANE_SLACK.
    unsafe { drive_lanes!(avx512_lane_tile, 8, 2, 8, job, sink) }
}

/// One AVX-512 lane tile: `MR` vectors of 8 lanes × `NR` channels (see the module docs).
///
/// # Safety
/// The features must be available; `input + taps[t] + w·plane + [0, 8·MR)` readable,
/// `weights` for `NR` channel rows of `row` words, channels `c0..c0 + NR`, lanes
/// `p..p + valid` of `sink` writable.
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
#[inline]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn avx512_lane_tile<const MR: usize, const NR: usize>(
    input: *const u64,
    taps: &[usize],
    words: usize,
    plane: usize,
    weights: *const u64,
    row: usize,
    valid: usize,
    sink: Sink<'_>,
    c0: usize,
    p: usize,
) {
    let zero = _mm512_setzero_si512();
    let mut acc = [[zero; NR]; MR];
    for (t, &tap) in taps.iter().enumerate() {
        // SAFETY (loads below): the caller's contract.
        let w_tap = unsafe { weights.add(t * words) };
        for w in 0..words {
            let src = unsafe { input.add(tap + w * plane) };
            let x: [__m512i; MR] =
                std::array::from_fn(|r| unsafe { _mm512_loadu_si512(src.add(8 * r).cast()) });
            for c in 0..NR {
                let y = _mm512_set1_epi64(unsafe { *w_tap.add(c * row + w) } as i64);
                for r in 0..MR {
                    let v = _mm512_popcnt_epi64(_mm512_xor_si512(x[r], y));
                    acc[r][c] = _mm512_add_epi64(acc[r][c], v);
                }
            }
        }
    }
    match sink {
        Sink::Counts { out, ld } => {
            for c in 0..NR {
                for r in 0..MR {
                    let n = valid.saturating_sub(8 * r).min(8);
                    let counts = _mm512_cvtepi64_epi32(acc[r][c]);
                    // SAFETY: lanes p + 8r..p + 8r + n of channel c0 + c are writable (caller's
                    // contract); the masked store writes no other lane.
                    unsafe {
                        let dst = out.add((c0 + c) * ld + p + 8 * r);
                        if n == 8 {
                            _mm256_storeu_si256(dst.cast(), counts);
                        } else if n > 0 {
                            _mm256_mask_storeu_epi32(dst.cast(), lane_mask(n), counts);
                        }
                    }
                }
            }
        }
        Sink::Store(s) => {
            // The tile's counts as one vector of 16 i32 lanes in lane order: two vectors
            // narrowed with one `vpermt2d` (two `vpmovqd` would cost four port-5 µops, the
            // port `vpopcntq` needs), one with `vpmovqd`; then the epilogue at full width.
            const { assert!(MR <= 2, "a tile is at most 16 lanes") };
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let counts: [__m512i; NR] = std::array::from_fn(|c| {
                if MR == 2 {
                    _mm512_permutex2var_epi32(acc[0][c], even, acc[MR - 1][c])
                } else {
                    _mm512_zextsi256_si512(_mm512_cvtepi64_epi32(acc[0][c]))
                }
            });
            // SAFETY: the caller's contract (`valid` ≤ 8·MR lanes of the tile).
            unsafe { avx512_store16::<NR>(s, &counts, valid, c0, p) };
        }
    }
}

// The class tables are one zmm of i32 (`vpermd` indices 0..16).
const _: () = assert!(CLASSES == 16);

/// The first `n` (≤ 8) lanes.
#[inline]
fn lane_mask(n: usize) -> __mmask8 {
    ((1u16 << n) - 1) as __mmask8
}

/// The fused output stage (see [`super::store`]) of up to 16 lanes × `NR` channels, one
/// vector of 16 i32 counts per channel: `dot = k − 2·n`, minus the channel's class table
/// permuted by the lanes' classes (`vpermd`) when a lane is on a border; float: `vcvtdq2ps`,
/// `vmulps`, `vaddps` and one (masked) store into the channel's output row; packed, for a
/// block of 8 channels starting on a byte: compare masks transposed (two 8×8 bit transposes)
/// into one byte per lane, stored; other packed blocks go through [`LaneStore::put`]. Used by
/// every AVX-512 lane tile and by `store_counts`. At 512-bit width it takes half the µops of
/// the earlier 8-lane epilogue, which on a 3×3 64→64 layer cost about a quarter of the
/// kernel's port-0/5 work.
///
/// # Safety
/// The features must be available; channels `c0..c0 + NR`, lanes `p..p + valid` of `s`,
/// `1 ≤ valid ≤ 16`.
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn avx512_store16<const NR: usize>(
    s: &LaneStore<'_>,
    counts: &[__m512i; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    debug_assert!((1..=16).contains(&valid));
    let k = _mm512_set1_epi32(s.k());
    let mut classes = [0u8; 16];
    classes[..valid].copy_from_slice(&s.classes()[p..][..valid]);
    let border = u128::from_le_bytes(classes) != 0;
    // SAFETY: a 16-byte stack array.
    let idx = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(classes.as_ptr().cast()) });
    let mask = ((1u32 << valid) - 1) as __mmask16;
    let dot = |c: usize| -> __m512i {
        let dot = _mm512_sub_epi32(k, _mm512_slli_epi32::<1>(counts[c]));
        if border {
            // SAFETY: the table holds CLASSES = 16 i32.
            let table = unsafe { _mm512_loadu_si512(s.table(c0 + c).as_ptr().cast()) };
            _mm512_sub_epi32(dot, _mm512_permutexvar_epi32(idx, table))
        } else {
            dot
        }
    };
    let (out, ld) = s.out();
    match s.kind() {
        StoreKind::Float { mul, bias } => {
            for c in 0..NR {
                let (m, b) = (_mm512_set1_ps(mul[c0 + c]), _mm512_set1_ps(bias[c0 + c]));
                let y = _mm512_add_ps(_mm512_mul_ps(m, _mm512_cvtepi32_ps(dot(c))), b);
                // SAFETY: lanes p..p + valid of channel c0 + c (caller's contract).
                unsafe {
                    let dst = out.cast::<f32>().add((c0 + c) * ld + p);
                    if valid == 16 {
                        _mm512_storeu_ps(dst, y);
                    } else {
                        _mm512_mask_storeu_ps(dst, mask, y);
                    }
                }
            }
        }
        StoreKind::Packed {
            threshold, flip, ..
        } if NR == 8 && c0.is_multiple_of(8) => {
            // Byte c of `lo` / `hi`: channel c0 + c's bits over lanes 0..8 / 8..16.
            let (mut lo, mut hi) = (0u64, 0u64);
            for c in 0..NR {
                let t = _mm512_set1_epi32(threshold[c0 + c]);
                let f: u16 = if flip[c0 + c] != 0 { 0xffff } else { 0 };
                let bits = _mm512_cmplt_epi32_mask(dot(c), t) ^ f;
                lo |= u64::from(bits & 0xff) << (8 * c);
                hi |= u64::from(bits >> 8) << (8 * c);
            }
            let (lo, hi) = (
                transpose8x8(lo).to_le_bytes(),
                transpose8x8(hi).to_le_bytes(),
            );
            for j in 0..valid {
                let byte = if j < 8 { lo[j] } else { hi[j - 8] };
                // SAFETY: byte c0 / 8 of pixel p + j, inside its ld words; this block of 8
                // channels owns that byte.
                unsafe { *out.add((p + j) * ld * 8 + c0 / 8) = byte };
            }
        }
        StoreKind::Packed { .. } => {
            for c in 0..NR {
                let mut lanes = [0u32; 16];
                // SAFETY: a 16-lane stack buffer.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), counts[c]) };
                for (j, &v) in lanes[..valid].iter().enumerate() {
                    s.put(c0 + c, p + j, v);
                }
            }
        }
    }
}

/// [`BinaryKernel::store_counts`] with AVX-512: blocks of 8 channels (then single channels) ×
/// 16 lanes, loaded (masked at the end of the lanes) from the channels' rows and put through
/// the lane tiles' fused store, [`avx512_store16`].
///
/// # Safety
/// The features must be available; `counts` checked with [`check_counts`].
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
unsafe fn avx512_store_counts(counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
    let lanes = store.lanes();
    let row = |c: usize| counts[slots.map_or(c, |s| s[c] as usize) * lanes..][..lanes].as_ptr();
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
    #[inline]
    unsafe fn block<const NR: usize>(
        store: &LaneStore<'_>,
        row: &dyn Fn(usize) -> *const u32,
        c0: usize,
        p: usize,
    ) {
        let valid = (store.lanes() - p).min(16);
        let mask = ((1u32 << valid) - 1) as __mmask16;
        let v: [__m512i; NR] = std::array::from_fn(|c| {
            // SAFETY: lanes p..p + valid of the channel's row (masked load).
            unsafe { _mm512_maskz_loadu_epi32(mask, row(c0 + c).add(p).cast()) }
        });
        // SAFETY: channels c0..c0 + NR, lanes p..p + valid of the store.
        unsafe { avx512_store16::<NR>(store, &v, valid, c0, p) }
    }
    let channels = store.channels();
    let mut c0 = 0;
    while c0 < channels {
        let wide = c0 + 8 <= channels;
        for p in (0..lanes).step_by(16) {
            // SAFETY: the caller's contract; blocks stay inside channels and lanes.
            unsafe {
                if wide {
                    block::<8>(store, &row, c0, p)
                } else {
                    block::<1>(store, &row, c0, p)
                }
            }
        }
        c0 += if wide { 8 } else { 1 };
    }
}

/// Transposes an 8×8 bit matrix held as 8 bytes (byte `i`, bit `j` → byte `j`, bit `i`).
#[inline]
fn transpose8x8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// AVX-512 row kernel over the whole output.
///
/// # Safety
/// AVX-512 F, VL and VPOPCNTDQ must be available; `rows` as `check_dims` returns them, `out`
/// valid for m·n elements.
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
unsafe fn avx512_driver(rows: Rows<'_>, out: *mut u32) {
    let (a, b, words) = (rows.a.as_ptr(), rows.b.as_ptr(), rows.words);
    let (m, n) = (rows.m, rows.n);
    // SAFETY: as in popcnt_driver: tiles stay within the M×N output and their rows.
    unsafe { drive_tiles!(avx512_tile, a, b, words, out, m, n) }
}

/// One `MR`×`NR` row tile with AVX-512 (see the module docs).
///
/// # Safety
/// The features must be available; `a` valid for MR·words, `b` for NR·words reads, and
/// `out[r·ldo + c]` writable for r < MR, c < NR.
#[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn avx512_tile<const MR: usize, const NR: usize>(
    a: *const u64,
    b: *const u64,
    words: usize,
    out: *mut u32,
    ldo: usize,
) {
    let zero = _mm512_setzero_si512();
    let mut acc = [[zero; NR]; MR];
    let mut k = 0;
    while k < words {
        let left = words - k;
        let mask: __mmask8 = if left >= 8 { 0xff } else { (1u8 << left) - 1 };
        // SAFETY: the masked loads read words k..k+min(8, left) of each row only.
        let x: [__m512i; MR] = std::array::from_fn(|r| unsafe {
            _mm512_maskz_loadu_epi64(mask, a.add(r * words + k).cast())
        });
        for c in 0..NR {
            let y = unsafe { _mm512_maskz_loadu_epi64(mask, b.add(c * words + k).cast()) };
            for r in 0..MR {
                let v = _mm512_popcnt_epi64(_mm512_xor_si512(x[r], y));
                acc[r][c] = _mm512_add_epi64(acc[r][c], v);
            }
        }
        k += 8;
    }
    for r in 0..MR {
        for c in 0..NR {
            // SAFETY: r < MR, c < NR: writable by the caller's contract.
            unsafe { *out.add(r * ldo + c) = _mm512_reduce_add_epi64(acc[r][c]) as u32 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose8x8;

    #[test]
    fn transpose8x8_moves_every_bit() {
        for i in 0..8 {
            for j in 0..8 {
                let x = 1u64 << (8 * i + j);
                assert_eq!(transpose8x8(x), 1u64 << (8 * j + i), "byte {i} bit {j}");
            }
        }
    }
}
