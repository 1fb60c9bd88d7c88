//! x86-64 XOR-popcount kernels: scalar `POPCNT`, AVX2 (`vpshufb` nibble lookup) and AVX-512
//! `VPOPCNTDQ`.
//!
//! # Design: rows (`xor_popcount`, binary dense)
//!
//! Both kernels tile the M×N output into register blocks of `MR` input rows × `NR` weight rows
//! and walk the `words` of the tile's rows once, so each loaded word feeds several outputs:
//!
//! * [`Popcnt`] (`x86-popcnt`): `MR = 2`, `NR = 4`, eight `u64` accumulators; per word two
//!   input loads, four weight loads, eight `xor` + `popcnt` + `add`. It is bound by `POPCNT`
//!   (one per cycle, a single port on Intel cores), i.e. 64 bit-MACs per cycle at best. Tails
//!   (odd M, N not a multiple of 4) use 1×4, 2×1 and 1×1 tiles of the same code.
//! * [`Avx2`] (`x86-avx2`): `MR = 2`, `NR = 4` over 256-bit chunks (4 words). The popcount of
//!   `v = x ^ y` is `lut[v & 0xf] + lut[(v >> 4) & 0xf]` with `vpshufb`, summed per byte into
//!   eight byte accumulators; at most 31 chunks are summed per byte (8 · 31 < 256) before a
//!   `vpsadbw` folds them into 64-bit lanes, so rows of any length are exact. A row whose
//!   length is 3 mod 4 words ends with one `vpmaskmovq` masked step (zeros past the row on
//!   both sides XOR to zero, and nothing past the slice is read); a tail of 1 or 2 words is
//!   counted with scalar `POPCNT`, which runs beside the vector ports. Per 256 bits: 8 vector
//!   µops (xor, 2 and, shift, 2 `vpshufb`, 2 add) on three vector ports, ≈ 96 bit-MACs per
//!   cycle in theory, against 64 for `POPCNT`. The last reduction transposes four tiles'
//!   lanes so a row of four outputs is stored with one 128-bit store.
//!   Short rows spend a larger share in that reduction: below [`AVX2_MIN_WORDS`] (12) words
//!   the `x86-avx2` kernel runs the `POPCNT` code instead. Measured (min of 60 runs, this
//!   Xeon): AVX2 ≈ POPCNT −8%…+9% for 8–13 words, 1.14× at 16–18 words, 1.33× at 36, 1.36×
//!   at 64 (`benches/binary_kernels.rs` has the layer shapes).
//!
//! * [`Avx512`] (`x86-avx512`): `MR = 2`, `NR = 4` over 512-bit chunks (8 words) with
//!   `vpxorq` + `vpopcntq` + `vpaddq` into u64 lanes (no narrow accumulator, no block); the last
//!   partial chunk is a masked load (`vmovdqu64{k}{z}`: masked-off words are neither read nor
//!   set), so any row length is one code path.
//!
//! # Design: lanes (`xor_popcount_lanes`, binary conv2d)
//!
//! Pixels are lanes ([`super::LaneJob`]): a tile holds `MR` vectors of consecutive output
//! positions × `NR` output channels in registers; per tap word it loads the `MR` input vectors
//! (one unaligned load each, the tap's offset applied) and broadcasts `NR` weight words, then
//! does `MR·NR` XOR + popcount + add. Counts are stored channel-major, masked at the end of
//! the lanes.
//!
//! * `x86-avx512`: `MR = 2` × 8 lanes, `NR = 8` channels: 16 zmm accumulators, 2 inputs, one
//!   broadcast. Per tap word: 2 loads, 8 `vpbroadcastq` (load port), 16 × (`vpxorq`,
//!   `vpopcntq`, `vpaddq`). The vector µops go to ports 0 and 5 (512-bit ops; `vpopcntq` on
//!   port 5 only): 1.5 cycles per 512 bit-MACs, i.e. 341 bit-MACs per cycle at best, 5.3× the
//!   `POPCNT` bound. The accumulators are u64 lanes; the fused store narrows a tile's two
//!   vectors into one vector of 16 i32 lanes with one `vpermt2d` and runs the output stage at
//!   full width ([`avx512_store16`]): one narrowing µop per 16 lanes keeps port 5 for
//!   `vpopcntq`. Channel tails use `NR = 1`, lane tails `MR = 1` (masked store).
//! * `x86-popcnt` and `x86-avx2`: scalar `POPCNT`, `MR = 2` lanes × `NR = 4` channels (eight
//!   accumulators in general registers), the same structure with one lane per "vector".
//!   (A `vpshufb` lane kernel for AVX2-only CPUs is not written: its per-lane counts need a
//!   `vpsadbw` per 31 steps, as in the row kernel; measure before adding it.)
//!
//! All are selected at run time with `is_x86_feature_detected!`; `x86-avx2` also requires
//! `popcnt` (for its fallback), `x86-avx512` requires `avx512f`, `avx512vl` and
//! `avx512vpopcntdq` (Ice Lake and later, Zen 4 and later).

use std::arch::x86_64::*;

use super::mst::{children_portable, Child, ChildJob};
use super::store::{LaneStore, StoreKind, CLASSES};
use super::{BinaryKernel, Checked, LaneJob, RawKernel, Rows, Sink};

/// Scalar `POPCNT` kernel, 2×4 register blocking. Exists only once `POPCNT` is detected.
#[derive(Debug)]
pub struct Popcnt(());

/// AVX2 `vpshufb` nibble-lookup kernel with `vpsadbw` accumulation, 2×4 register blocking.
/// Exists only once AVX2 and `POPCNT` are detected.
#[derive(Debug)]
pub struct Avx2(());

/// AVX-512 `VPOPCNTDQ` kernel: 2×4 row tiles, 3×8-lane × 8-channel lane tiles. Exists only
/// once AVX-512 F, VL and VPOPCNTDQ are detected.
#[derive(Debug)]
pub struct Avx512(());

impl Popcnt {
    /// The kernel, if this CPU has `POPCNT`.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Popcnt> = Checked(Popcnt(()));
        is_x86_feature_detected!("popcnt").then_some(&KERNEL as &dyn BinaryKernel)
    }
}

impl Avx2 {
    /// The kernel, if this CPU has AVX2 and `POPCNT`.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Avx2> = Checked(Avx2(()));
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt"))
            .then_some(&KERNEL as &dyn BinaryKernel)
    }
}

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

// SAFETY (every `unsafe` block of the three impls below): a `Popcnt`, `Avx2` or `Avx512`
// exists only after its `detect()` found its CPU features; the jobs' shapes are the callers'
// `# Safety` contracts (checked by `Checked`), which is all the drivers read and write.

impl RawKernel for Popcnt {
    const NAME: &'static str = "x86-popcnt";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe { popcnt_driver(r, out.as_mut_ptr()) }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see above the impls.
        unsafe { popcnt_lanes(job, sink) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe { popcnt_children(job, counts) }
    }
}

impl RawKernel for Avx2 {
    const NAME: &'static str = "x86-avx2";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe {
            if r.words < AVX2_MIN_WORDS {
                popcnt_driver(r, out.as_mut_ptr())
            } else {
                avx2_driver(r, out.as_mut_ptr())
            }
        }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see above the impls (POPCNT comes with the AVX2 kernel's detection).
        unsafe { popcnt_lanes(job, sink) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe { popcnt_children(job, counts) }
    }
}

impl RawKernel for Avx512 {
    const NAME: &'static str = "x86-avx512";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe { avx512_driver(r, out.as_mut_ptr()) }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see above the impls.
        unsafe { avx512_lanes(job, sink) }
    }

    unsafe fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        // SAFETY: see above the impls.
        unsafe { avx512_store_counts(counts, slots, store) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see above the impls.
        unsafe { avx512_children(job, counts) }
    }
}

/// The portable MST children loop with `POPCNT` enabled.
///
/// # Safety
/// POPCNT must be available.
#[target_feature(enable = "popcnt")]
unsafe fn popcnt_children(job: &ChildJob<'_>, counts: &mut [u32]) {
    children_portable(job, counts)
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

/// Walks the M×N output in `MR`×`NR` tiles (2×4, then the edges) and calls `$tile` on each.
/// `$tile::<MR, NR>(a_rows, b_rows, words, out_tile, out_stride)`.
macro_rules! drive_tiles {
    ($tile:ident, $a:expr, $b:expr, $words:expr, $out:expr, $m:expr, $n:expr) => {{
        let (a, b, words, out, m, n) = ($a, $b, $words, $out, $m, $n);
        let mut i = 0;
        while i < m {
            let a_tile = a.add(i * words);
            let o_tile = out.add(i * n);
            if i + 2 <= m {
                let mut j = 0;
                while j + 4 <= n {
                    $tile::<2, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 4;
                }
                while j < n {
                    $tile::<2, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 1;
                }
                i += 2;
            } else {
                let mut j = 0;
                while j + 4 <= n {
                    $tile::<1, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 4;
                }
                while j < n {
                    $tile::<1, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 1;
                }
                i += 1;
            }
        }
    }};
}

/// POPCNT lane kernel over the whole job.
///
/// # Safety
/// POPCNT must be available; the job must have passed [`LaneJob::check`] for the counts of
/// `sink` or [`LaneJob::check_store`] for its store.
#[target_feature(enable = "popcnt")]
unsafe fn popcnt_lanes(job: &LaneJob<'_>, sink: Sink<'_>) {
    // SAFETY: tiles read lanes p..p+MR (< lanes) of every tap word (inside the input by the
    // job's check) and weights of channels c..c+NR (< channels); they write channels
    // c..c+NR, lanes p..p+valid of the sink.
    unsafe { drive_lanes!(popcnt_lane_tile, 1, 2, 4, job, sink) }
}

/// One POPCNT lane tile: `MR` consecutive lanes × `NR` channels; the fused store is the
/// portable [`LaneStore::put`] on the accumulators.
///
/// # Safety
/// POPCNT must be available; `input + taps[t] + w·plane + r` readable for r < MR, `weights`
/// for `NR` channel rows of `row` words, channels `c0..c0 + NR`, lanes `p..p + valid` of
/// `sink` writable (valid ≤ MR).
#[target_feature(enable = "popcnt")]
#[inline]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn popcnt_lane_tile<const MR: usize, const NR: usize>(
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
    let mut acc = [[0u64; NR]; MR];
    for (t, &tap) in taps.iter().enumerate() {
        for w in 0..words {
            // SAFETY: the caller's contract covers these reads.
            let src = unsafe { input.add(tap + w * plane) };
            let x: [u64; MR] = std::array::from_fn(|r| unsafe { *src.add(r) });
            for c in 0..NR {
                let y = unsafe { *weights.add(c * row + t * words + w) };
                for r in 0..MR {
                    acc[r][c] += u64::from((x[r] ^ y).count_ones());
                }
            }
        }
    }
    for c in 0..NR {
        for r in 0..valid.min(MR) {
            match sink {
                // SAFETY: r < valid, c < NR: writable by the caller's contract.
                Sink::Counts { out, ld } => unsafe {
                    *out.add((c0 + c) * ld + p + r) = acc[r][c] as u32
                },
                Sink::Store(s) => s.put(c0 + c, p + r, acc[r][c] as u32),
            }
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
        StoreKind::Packed { threshold, flip } if NR == 8 && c0.is_multiple_of(8) => {
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

/// POPCNT kernel over the whole output.
///
/// # Safety
/// POPCNT must be available; `rows` as `check_dims` returns them, `out` valid for m·n
/// elements.
#[target_feature(enable = "popcnt")]
unsafe fn popcnt_driver(rows: Rows<'_>, out: *mut u32) {
    let (a, b, words) = (rows.a.as_ptr(), rows.b.as_ptr(), rows.words);
    let (m, n) = (rows.m, rows.n);
    // SAFETY: every tile reads rows i..i+MR of a and j..j+NR of b (in range: the driver keeps
    // i + MR <= m, j + NR <= n) and writes out[(i+r)·n + j + c] for r < MR, c < NR.
    unsafe { drive_tiles!(popcnt_tile, a, b, words, out, m, n) }
}

/// One `MR`×`NR` tile with scalar POPCNT: `out[r·ldo + c] = Σ_l popcnt(a[r·words+l] ^ b[c·words+l])`.
///
/// # Safety
/// POPCNT must be available; `a` valid for MR·words, `b` for NR·words reads, and
/// `out[r·ldo + c]` writable for r < MR, c < NR.
#[target_feature(enable = "popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn popcnt_tile<const MR: usize, const NR: usize>(
    a: *const u64,
    b: *const u64,
    words: usize,
    out: *mut u32,
    ldo: usize,
) {
    let mut acc = [[0u64; NR]; MR];
    for l in 0..words {
        let mut x = [0u64; MR];
        for r in 0..MR {
            // SAFETY: r < MR, l < words: inside the MR rows of a (caller's contract).
            x[r] = unsafe { *a.add(r * words + l) };
        }
        for c in 0..NR {
            // SAFETY: c < NR, l < words: inside the NR rows of b (caller's contract).
            let y = unsafe { *b.add(c * words + l) };
            for r in 0..MR {
                acc[r][c] += u64::from((x[r] ^ y).count_ones());
            }
        }
    }
    for r in 0..MR {
        for c in 0..NR {
            // SAFETY: r < MR, c < NR: writable by the caller's contract. (The trait's
            // counts are u32, as in the generic kernel.)
            unsafe { *out.add(r * ldo + c) = acc[r][c] as u32 };
        }
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

    #[test]
    fn detection_matches_the_cpu() {
        assert_eq!(
            Popcnt::detect().is_some(),
            is_x86_feature_detected!("popcnt")
        );
        assert_eq!(
            Avx2::detect().is_some(),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
        );
    }

    use crate::kernels::binary::generic;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn transpose8x8_moves_every_bit() {
        for i in 0..8 {
            for j in 0..8 {
                let x = 1u64 << (8 * i + j);
                assert_eq!(transpose8x8(x), 1u64 << (8 * j + i), "byte {i} bit {j}");
            }
        }
    }

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
                // SAFETY: AVX2 and POPCNT are present (checked); the vectors hold m·words,
                // n·words and m·n elements.
                let rows = Rows {
                    a: &a,
                    b: &b,
                    words,
                    m,
                    n,
                };
                unsafe { avx2_driver(rows, got.as_mut_ptr()) };
                assert_eq!(got, want, "avx2 tiles: M={m} N={n} words={words}");
            }
        }
    }
}
