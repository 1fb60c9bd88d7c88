//! The `neon` kernel (ARMv8.0: Cortex-A72, A57, A53): tile 4 rows × 4 columns over
//! [`Format::K16_I8`], products through i16 (`smull`, `smlal2`, `sadalp`; see the parent
//! module). The accumulators start from the first group's products (`saddlp`) instead of
//! being zeroed, and end as one vector per column whose lanes are the 4 rows, for
//! [`super::store`]'s sinks — or, for channels-first f32 (an NCHW graph's 1×1 convolutions),
//! as one vector per row whose lanes are 4 columns, stored with no transpose.

use std::arch::aarch64::*;

use std::ops::Range;

use super::super::{Format, Job, COLS, ROWS};
use super::store::{rows_sink, RowStage, Sink, Tiles};

/// The packing this kernel reads: 16 k per register, signed input.
pub const FORMAT: Format = Format::K16_I8;
/// Bytes of one packed input block per group of 16 k.
const STEP: usize = FORMAT.step();
/// Bytes of one packed weight row block per group of 16 k.
const W_STEP: usize = ROWS * 16;

/// Runs a checked job.
///
/// # Safety
/// `job.check(FORMAT)` must hold.
#[target_feature(enable = "neon")]
pub unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract.
    unsafe { super::store::run::<Smull>(job) }
}

/// The `neon` kernel's loops.
pub struct Smull;

impl Tiles for Smull {
    #[inline(always)]
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S) {
        let groups = job.w.groups();
        let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
        for rb in rows {
            let o0 = rb * ROWS;
            let s = sink(o0);
            // SAFETY (loop): row block rb's and block b's groups lie in the packed buffers
            // (job.check); columns c < cols ≤ 16 of the block.
            unsafe {
                let wb = w.add(rb * groups * W_STEP);
                for b in 0..job.blocks {
                    let c0 = (job.first_block + b) * COLS;
                    let cols = job.cols(b);
                    let xb = x.add(b * groups * STEP);
                    let mut c = 0;
                    while c + 4 <= cols {
                        s.put(c0 + c, reduce(full_tile(wb, xb.add(c * 16), groups)));
                        c += 4;
                    }
                    put_tail(&s, c0 + c, cols - c, wb, xb.add(c * 16), groups);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn rows_f32<const CLAMP: bool>(
        job: &Job<'_>,
        rows: Range<usize>,
        ptr: *mut f32,
        ldk: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe { row_tiles::<CLAMP>(job, rows, ptr, ldk) }
    }
}

/// Channels-first f32 output of whole row blocks `rows` (row `o` at `ptr + o · ldk`): each
/// 4 × 4 tile reduced into one vector per row whose lanes are its 4 columns
/// ([`reduce_rows`]), the row's correction added, [`RowStage`] and one store per row — no
/// transpose. A block's last 1–3 columns go through the transposing sink. `CLAMP`: the
/// stage's clamp applies.
///
/// # Safety
/// As [`Tiles::rows_f32`].
#[inline(always)]
unsafe fn row_tiles<const CLAMP: bool>(
    job: &Job<'_>,
    rows: Range<usize>,
    ptr: *mut f32,
    ldk: usize,
) {
    let stage = &job.stage;
    let groups = job.w.groups();
    let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
    for rb in rows {
        let o0 = rb * ROWS;
        // SAFETY (all): row block rb is whole and in the stage vectors (job.check, the
        // caller); its groups and block b's lie in the packed buffers; rows o0..o0 + 4 ×
        // columns c0..c0 + cols in the output (the caller's contract).
        unsafe {
            let c = vld1q_s32(stage.corr.as_ptr().add(o0));
            let corr = [
                vdupq_laneq_s32::<0>(c),
                vdupq_laneq_s32::<1>(c),
                vdupq_laneq_s32::<2>(c),
                vdupq_laneq_s32::<3>(c),
            ];
            let y = RowStage::<CLAMP>::load(stage, o0);
            let dst = ptr.add(o0 * ldk);
            let wb = w.add(rb * groups * W_STEP);
            for b in 0..job.blocks {
                let c0 = (job.first_block + b) * COLS;
                let cols = job.cols(b);
                let xb = x.add(b * groups * STEP);
                let mut c = 0;
                while c + 4 <= cols {
                    let acc = full_tile(wb, xb.add(c * 16), groups);
                    let v = reduce_rows(acc);
                    let at = |r: usize| dst.add(r * ldk + c0 + c);
                    vst1q_f32(at(0), y.row::<0>(vaddq_s32(v[0], corr[0])));
                    vst1q_f32(at(1), y.row::<1>(vaddq_s32(v[1], corr[1])));
                    vst1q_f32(at(2), y.row::<2>(vaddq_s32(v[2], corr[2])));
                    vst1q_f32(at(3), y.row::<3>(vaddq_s32(v[3], corr[3])));
                    c += 4;
                }
                if c < cols {
                    let s = rows_sink(stage, o0, ptr, ldk);
                    put_tail(&s, c0 + c, cols - c, wb, xb.add(c * 16), groups);
                }
            }
        }
    }
}

/// A tile of 4 columns: [`tile4`], or [`tile`] without groups.
///
/// # Safety
/// As [`tile`] with `NC = 4`.
#[inline(always)]
unsafe fn full_tile(w: *const i8, x: *const i8, groups: usize) -> [[int32x4_t; 4]; ROWS] {
    // SAFETY: the caller's contract.
    unsafe {
        if groups > 0 {
            tile4(w, x, groups)
        } else {
            tile::<4>(w, x, groups)
        }
    }
}

/// The last `n` (0–3) columns of a block, from column `c` (their input groups at `x`), into
/// the sink.
///
/// # Safety
/// As [`tile`]'s bounds for those columns; the sink's contract for them.
#[inline(always)]
unsafe fn put_tail<S: Sink>(s: &S, c: usize, n: usize, w: *const i8, x: *const i8, groups: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        match n {
            1 => s.put(c, reduce(tile::<1>(w, x, groups))),
            2 => s.put(c, reduce(tile::<2>(w, x, groups))),
            3 => s.put(c, reduce(tile::<3>(w, x, groups))),
            _ => {}
        }
    }
}

/// The products of row registers `w` and column registers `x` (16 k each), 8 pairs of
/// products per i16 lane pair.
#[inline(always)]
unsafe fn products(w: int8x16_t, x: int8x16_t) -> int16x8_t {
    vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x)
}

/// The sums of 4 rows × `NC` columns over `groups` groups of 16 k, each as 4 partial sums:
/// `acc[r][c]`.
///
/// # Safety
/// `w` must hold `groups · 64` bytes and `x` `(groups − 1) · 256 + NC · 16`.
// `inline(always)` (so no `target_feature`, NEON is baseline on aarch64): outlined, the
// tile returns its 16 accumulators through memory.
#[inline(always)]
unsafe fn tile<const NC: usize>(
    w: *const i8,
    x: *const i8,
    groups: usize,
) -> [[int32x4_t; NC]; ROWS] {
    // SAFETY: the caller's bounds.
    let load = |w: *const i8, x: *const i8| unsafe {
        let wr: [int8x16_t; ROWS] = std::array::from_fn(|r| vld1q_s8(w.add(16 * r)));
        let xr: [int8x16_t; NC] = std::array::from_fn(|c| vld1q_s8(x.add(16 * c)));
        (wr, xr)
    };
    if groups == 0 {
        return [[vdupq_n_s32(0); NC]; ROWS];
    }
    let (wr, xr) = load(w, x);
    let mut acc: [[int32x4_t; NC]; ROWS] =
        std::array::from_fn(|r| std::array::from_fn(|c| vpaddlq_s16(products(wr[r], xr[c]))));
    for g in 1..groups {
        // SAFETY: group g < groups.
        let (wr, xr) = load(unsafe { w.add(g * W_STEP) }, unsafe { x.add(g * STEP) });
        for r in 0..ROWS {
            for c in 0..NC {
                acc[r][c] = vpadalq_s16(acc[r][c], products(wr[r], xr[c]));
            }
        }
    }
    acc
}

/// One group of [`tile4`]: for each (row `r`, column `c`) pair, eight at a time, `smull` and
/// `smlal2` of row register `v(16 + r)` and column register `v(20 + c)` into temporary
/// `v24`–`v31`, then `op` (`saddlp` to start a sum, `sadalp` to add to it) into `v(4r + c)`.
macro_rules! group {
    ($op:literal) => {
        concat!(
            "smull v24.8h, v16.8b, v20.8b\n",
            "smull v25.8h, v16.8b, v21.8b\n",
            "smull v26.8h, v16.8b, v22.8b\n",
            "smull v27.8h, v16.8b, v23.8b\n",
            "smull v28.8h, v17.8b, v20.8b\n",
            "smull v29.8h, v17.8b, v21.8b\n",
            "smull v30.8h, v17.8b, v22.8b\n",
            "smull v31.8h, v17.8b, v23.8b\n",
            "smlal2 v24.8h, v16.16b, v20.16b\n",
            "smlal2 v25.8h, v16.16b, v21.16b\n",
            "smlal2 v26.8h, v16.16b, v22.16b\n",
            "smlal2 v27.8h, v16.16b, v23.16b\n",
            "smlal2 v28.8h, v17.16b, v20.16b\n",
            "smlal2 v29.8h, v17.16b, v21.16b\n",
            "smlal2 v30.8h, v17.16b, v22.16b\n",
            "smlal2 v31.8h, v17.16b, v23.16b\n",
            $op,
            " v0.4s, v24.8h\n",
            $op,
            " v1.4s, v25.8h\n",
            $op,
            " v2.4s, v26.8h\n",
            $op,
            " v3.4s, v27.8h\n",
            $op,
            " v4.4s, v28.8h\n",
            $op,
            " v5.4s, v29.8h\n",
            $op,
            " v6.4s, v30.8h\n",
            $op,
            " v7.4s, v31.8h\n",
            "smull v24.8h, v18.8b, v20.8b\n",
            "smull v25.8h, v18.8b, v21.8b\n",
            "smull v26.8h, v18.8b, v22.8b\n",
            "smull v27.8h, v18.8b, v23.8b\n",
            "smull v28.8h, v19.8b, v20.8b\n",
            "smull v29.8h, v19.8b, v21.8b\n",
            "smull v30.8h, v19.8b, v22.8b\n",
            "smull v31.8h, v19.8b, v23.8b\n",
            "smlal2 v24.8h, v18.16b, v20.16b\n",
            "smlal2 v25.8h, v18.16b, v21.16b\n",
            "smlal2 v26.8h, v18.16b, v22.16b\n",
            "smlal2 v27.8h, v18.16b, v23.16b\n",
            "smlal2 v28.8h, v19.16b, v20.16b\n",
            "smlal2 v29.8h, v19.16b, v21.16b\n",
            "smlal2 v30.8h, v19.16b, v22.16b\n",
            "smlal2 v31.8h, v19.16b, v23.16b\n",
            $op,
            " v8.4s, v24.8h\n",
            $op,
            " v9.4s, v25.8h\n",
            $op,
            " v10.4s, v26.8h\n",
            $op,
            " v11.4s, v27.8h\n",
            $op,
            " v12.4s, v28.8h\n",
            $op,
            " v13.4s, v29.8h\n",
            $op,
            " v14.4s, v30.8h\n",
            $op,
            " v15.4s, v31.8h\n",
        )
    };
}

/// [`tile`] of 4 columns, written out: per group one 4-register load of the 4 rows' 16 k
/// (post-incremented by 64), one of the 4 columns' (post-incremented by the group stride),
/// and for each of the 16 (row, column) pairs `smull` + `smlal2` into an i16 temporary and
/// `sadalp` into the pair's accumulator `v(4r + c)` (`saddlp` for the first group, so nothing
/// is zeroed); then `subs`, `b.ne` — 52 instructions for 256 multiply-adds, where LLVM's loop
/// spent 56. The sums are those of [`tile`] (integer
/// adds in another order: the same bits).
///
/// # Safety
/// As [`tile`] with `NC = 4`, and `groups > 0`.
#[inline(always)]
unsafe fn tile4(w: *const i8, x: *const i8, groups: usize) -> [[int32x4_t; 4]; ROWS] {
    let mut acc = [[vdupq_n_s32(0); 4]; ROWS];
    // SAFETY: the caller's bounds (groups > 0); NEON only; v16–v31 are declared clobbered.
    unsafe {
        std::arch::asm!(
            // Group 0 starts the sums (`saddlp`, no zeroing), the loop adds the others.
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{w}], #64",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x}], {xs}",
            group!("saddlp"),
            "subs {n}, {n}, #1",
            "b.eq 3f",
            "2:",
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{w}], #64",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x}], {xs}",
            group!("sadalp"),
            "subs {n}, {n}, #1",
            "b.ne 2b",
            "3:",
            w = inout(reg) w => _,
            x = inout(reg) x => _,
            xs = in(reg) STEP,
            n = inout(reg) groups => _,
            out("v0") acc[0][0],
            out("v1") acc[0][1],
            out("v2") acc[0][2],
            out("v3") acc[0][3],
            out("v4") acc[1][0],
            out("v5") acc[1][1],
            out("v6") acc[1][2],
            out("v7") acc[1][3],
            out("v8") acc[2][0],
            out("v9") acc[2][1],
            out("v10") acc[2][2],
            out("v11") acc[2][3],
            out("v12") acc[3][0],
            out("v13") acc[3][1],
            out("v14") acc[3][2],
            out("v15") acc[3][3],
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack, readonly),
        );
    }
    acc
}

/// Adds each accumulator's 4 partial sums (`addp`) into one vector per row, lanes = the
/// tile's 4 columns: [`reduce`]'s sums, transposed, for the same number of `addp`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn reduce_rows(acc: [[int32x4_t; 4]; ROWS]) -> [int32x4_t; ROWS] {
    // Written out: LLVM may leave an `array::map` closure outlined.
    let row = |a: [int32x4_t; 4]| vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
    [row(acc[0]), row(acc[1]), row(acc[2]), row(acc[3])]
}

/// Adds each accumulator's 4 partial sums (`addp`) into one vector per column, lanes = the
/// tile's 4 rows.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn reduce<const NC: usize>(acc: [[int32x4_t; NC]; ROWS]) -> [int32x4_t; NC] {
    std::array::from_fn(|j| {
        vpaddq_s32(
            vpaddq_s32(acc[0][j], acc[1][j]),
            vpaddq_s32(acc[2][j], acc[3][j]),
        )
    })
}
