//! The `neon-dotprod` kernel (FEAT_DotProd: Cortex-A76/A78): tile 4 rows × 16 columns over
//! [`Format::DOT4_I8`]. One weight register holds a group of 4 k for the 4 rows, one input
//! register the same group for 4 columns. Two tiles read them:
//!
//! * *column tiles* (any output): `sdot` by element multiplies the weight register by one
//!   column's 4 k (a 32-bit lane of an input register), so each of the 16 accumulators is
//!   one column whose lanes are the 4 rows, for [`super::store`]'s sinks;
//! * *row tiles* (channels-first f32, an NCHW graph's 1×1 convolutions): `sdot` by element
//!   multiplies an input register by one row's 4 k (a lane of the weight register), so each
//!   accumulator holds 4 columns of one row. The accumulators start at the rows' corrections
//!   (no `add` per vector; i32 sums wrap, so the order changes no bit), then [`RowStage`] and
//!   one store per vector: no transpose, and no clamp where it changes nothing;
//! * *narrow tiles* (a last block of at most 8 valid columns: a dense layer's one column, a
//!   7×7 plane's 49th): 4 or 8 columns against 4 or 2 row blocks at a time, `sdot` only for
//!   the valid columns, into the column sinks (the transposing one for channels-first f32).
//!
//! Each tile is indexed by constants only, so its 16 accumulators stay in registers from the
//! loop to the stores.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use super::super::{Format, Job, COLS, ROWS};
use super::store::{put_block, rows_sink, store_part, RowStage, Sink, Tiles};

/// The packing this kernel reads: groups of 4 k, signed input.
pub const FORMAT: Format = Format::DOT4_I8;
/// Bytes of one packed input block per group of 4 k.
const STEP: usize = FORMAT.step();

/// `acc + w · x.s[L]` by groups of 4 bytes (`sdot` by element; inline asm because the
/// intrinsic is unstable in Rust 1.95).
#[inline(always)]
pub(crate) unsafe fn sdot<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction of FEAT_DotProd, which the caller checked.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Runs a checked job.
///
/// # Safety
/// `job.check(FORMAT)` must hold and the core must have FEAT_DotProd.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract.
    unsafe { super::store::run::<Sdot>(job) }
}

/// The `neon-dotprod` kernel's loops.
pub struct Sdot;

impl Tiles for Sdot {
    #[inline(always)]
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S) {
        let groups = job.w.groups();
        let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
        let wide = wide_blocks(job);
        for rb in rows.clone() {
            let s = sink(rb * ROWS);
            for b in 0..wide {
                let c0 = (job.first_block + b) * COLS;
                let cols = job.cols(b);
                // SAFETY (loop): the groups of row block rb and block b lie in the packed
                // buffers (job.check); columns c0.. c0 + cols in the output (the sink's
                // contract).
                unsafe {
                    let acc = tile(
                        w.add(rb * groups * ROWS * 4),
                        x.add(b * groups * STEP),
                        groups,
                    );
                    put_block(&s, c0, cols, &acc);
                }
            }
        }
        if wide < job.blocks {
            // SAFETY: the caller's contract.
            unsafe { narrow_block(job, rows, wide, sink) }
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

/// Row tiles (module docs) of whole row blocks `rows`, stored channels first at `ptr`, row
/// `o` at `ptr + o · ldk`; `CLAMP`: the stage's clamp applies.
///
/// # Safety
/// As [`Tiles::rows_f32`]; FEAT_DotProd.
// Columns index every row's accumulators; the rows are const generics of `RowStage::row`.
#[allow(clippy::needless_range_loop)]
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
    let wide = wide_blocks(job);
    for rb in rows.clone() {
        let o0 = rb * ROWS;
        // SAFETY (all): row block rb is whole and in the stage vectors (job.check, the
        // caller); its groups and block b's lie in the packed buffers; rows o0..o0 + 4 ×
        // columns c0..c0 + cols in the output (the caller's contract).
        unsafe {
            let corr = vld1q_s32(stage.corr.as_ptr().add(o0));
            let y = RowStage::<CLAMP>::load(stage, o0);
            let dst = ptr.add(o0 * ldk);
            for b in 0..wide {
                let c0 = (job.first_block + b) * COLS;
                let acc = row_tile(
                    w.add(rb * groups * ROWS * 4),
                    x.add(b * groups * STEP),
                    groups,
                    corr,
                );
                let cols = job.cols(b);
                let at = |r: usize, q: usize| dst.add(r * ldk + c0 + 4 * q);
                if cols == COLS {
                    // One `st1` of four registers per row.
                    let row = |r: usize, v: [float32x4_t; 4]| {
                        vst1q_f32_x4(at(r, 0), float32x4x4_t(v[0], v[1], v[2], v[3]))
                    };
                    row(0, std::array::from_fn(|q| y.row::<0>(acc[q])));
                    row(1, std::array::from_fn(|q| y.row::<1>(acc[4 + q])));
                    row(2, std::array::from_fn(|q| y.row::<2>(acc[8 + q])));
                    row(3, std::array::from_fn(|q| y.row::<3>(acc[12 + q])));
                } else {
                    // The tile indexed by constants only, so it stays in registers.
                    let quad = |q: usize, v: [int32x4_t; 4]| {
                        if 4 * q < cols {
                            let n = (cols - 4 * q).min(4);
                            store_part(at(0, q), y.row::<0>(v[0]), n);
                            store_part(at(1, q), y.row::<1>(v[1]), n);
                            store_part(at(2, q), y.row::<2>(v[2]), n);
                            store_part(at(3, q), y.row::<3>(v[3]), n);
                        }
                    };
                    quad(0, [acc[0], acc[4], acc[8], acc[12]]);
                    quad(1, [acc[1], acc[5], acc[9], acc[13]]);
                    quad(2, [acc[2], acc[6], acc[10], acc[14]]);
                    quad(3, [acc[3], acc[7], acc[11], acc[15]]);
                }
            }
        }
    }
    if wide < job.blocks {
        // SAFETY: the caller's contract; the transposing sink writes the same rows and
        // columns.
        unsafe { narrow_block(job, rows, wide, |o0| rows_sink(stage, o0, ptr, ldk)) }
    }
}

/// The sums of 4 rows × 16 columns over `groups` groups of 4 k, each row's starting at its
/// lane of `corr`: `acc[4·row + q]`, lanes = columns `4q..4q + 4`.
///
/// # Safety
/// `w` must hold `groups · 16` bytes and `x` `groups · 64`; FEAT_DotProd.
#[inline(always)]
unsafe fn row_tile(w: *const i8, x: *const i8, groups: usize, corr: int32x4_t) -> [int32x4_t; 16] {
    let (mut w, mut x) = (w, x);
    let turns = groups / 4;
    // SAFETY: the caller's bounds: 4·turns ≤ groups.
    let mut acc = unsafe { row_loop(corr, &mut w, &mut x, turns) };
    for _ in 0..groups % 4 {
        // SAFETY: the caller's bounds.
        unsafe {
            let wv = vld1q_s8(w);
            let xv: [int8x16_t; 4] = std::array::from_fn(|q| vld1q_s8(x.add(16 * q)));
            for q in 0..4 {
                acc[q] = sdot::<0>(acc[q], xv[q], wv);
                acc[4 + q] = sdot::<1>(acc[4 + q], xv[q], wv);
                acc[8 + q] = sdot::<2>(acc[8 + q], xv[q], wv);
                acc[12 + q] = sdot::<3>(acc[12 + q], xv[q], wv);
            }
            (w, x) = (w.add(ROWS * 4), x.add(STEP));
        }
    }
    acc
}

/// One row of a row tile's group: accumulators `v$a0..v$a3` (columns 0–3, 4–7, … of row
/// `$r`) gain input registers `$x0..$x3` times lane `$r` of weight register `$w`.
macro_rules! sdot_row {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal, $w:literal, $r:literal,
     $x0:literal, $x1:literal, $x2:literal, $x3:literal) => {
        concat!(
            "sdot v", $a0, ".4s, v", $x0, ".16b, v", $w, ".4b[", $r, "]\n", "sdot v", $a1,
            ".4s, v", $x1, ".16b, v", $w, ".4b[", $r, "]\n", "sdot v", $a2, ".4s, v", $x2,
            ".16b, v", $w, ".4b[", $r, "]\n", "sdot v", $a3, ".4s, v", $x3, ".16b, v", $w, ".4b[",
            $r, "]\n",
        )
    };
}

/// The 16 `sdot` of one group of a row tile: accumulator `v(4r + q)` (row `r`, columns
/// `4q..4q + 4`) gains input register `x_q` times lane `r` of weight register `w`.
macro_rules! sdot_rows {
    ($w:literal, $x0:literal, $x1:literal, $x2:literal, $x3:literal) => {
        concat!(
            sdot_row!("0", "1", "2", "3", $w, "0", $x0, $x1, $x2, $x3),
            sdot_row!("4", "5", "6", "7", $w, "1", $x0, $x1, $x2, $x3),
            sdot_row!("8", "9", "10", "11", $w, "2", $x0, $x1, $x2, $x3),
            sdot_row!("12", "13", "14", "15", $w, "3", $x0, $x1, $x2, $x3),
        )
    };
}

/// The loop of [`main_loop`] and [`row_loop`]: the instructions `$init` (none, or the ones
/// that set the accumulators), then `$turns` turns of four groups, each group's 16 `sdot`
/// written by `$group` (its weight register, then its four input registers), into the 16
/// accumulators `$acc` held in v0–v15 (operands `$dir`: `inout`, or `out` where `$init` sets
/// them); v16–v27 are declared clobbered, `$more` are further operands. Label `3` follows the
/// loop, for an `$init` that skips it.
macro_rules! dot_turns {
    ($group:ident, [$($init:expr),*], $dir:ident $acc:ident, $w:ident, $x:ident, $turns:ident,
     $($more:tt)*) => {
        asm!(
            $($init,)*
            "2:",
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{w}], #64",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x}], #64",
            "ld1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{x}], #64",
            $group!("16", "20", "21", "22", "23"),
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x}], #64",
            $group!("17", "24", "25", "26", "27"),
            "ld1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{x}], #64",
            $group!("18", "20", "21", "22", "23"),
            $group!("19", "24", "25", "26", "27"),
            "subs {n}, {n}, #1",
            "b.ne 2b",
            "3:",
            w = inout(reg) *$w,
            x = inout(reg) *$x,
            n = inout(reg) $turns => _,
            $dir("v0") $acc[0],
            $dir("v1") $acc[1],
            $dir("v2") $acc[2],
            $dir("v3") $acc[3],
            $dir("v4") $acc[4],
            $dir("v5") $acc[5],
            $dir("v6") $acc[6],
            $dir("v7") $acc[7],
            $dir("v8") $acc[8],
            $dir("v9") $acc[9],
            $dir("v10") $acc[10],
            $dir("v11") $acc[11],
            $dir("v12") $acc[12],
            $dir("v13") $acc[13],
            $dir("v14") $acc[14],
            $dir("v15") $acc[15],
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            $($more)*
            options(nostack, readonly),
        )
    };
}

/// Accumulators `v$a0..v$a3` set to lane `$l` of the `corr` operand `{c}`.
macro_rules! dup_row {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal, $l:literal) => {
        concat!(
            "dup v",
            $a0,
            ".4s, {c:v}.s[",
            $l,
            "]\n",
            "dup v",
            $a1,
            ".4s, {c:v}.s[",
            $l,
            "]\n",
            "dup v",
            $a2,
            ".4s, {c:v}.s[",
            $l,
            "]\n",
            "dup v",
            $a3,
            ".4s, {c:v}.s[",
            $l,
            "]\n",
        )
    };
}

/// [`main_loop`] for row tiles: the same loads and loop, the `sdot` operands swapped, the
/// accumulators set inside the asm to the lanes of `corr` (row `r`'s four to lane `r`: 16
/// `dup`, where setting them outside left the compiler copying each into its register twice).
///
/// # Safety
/// As [`main_loop`]'s, but `turns` may be 0 (the accumulators are then `corr`'s lanes).
#[inline(always)]
unsafe fn row_loop(
    corr: int32x4_t,
    w: &mut *const i8,
    x: &mut *const i8,
    turns: usize,
) -> [int32x4_t; 16] {
    // SAFETY: NEON is always present on aarch64.
    let mut acc = [unsafe { vdupq_n_s32(0) }; 16];
    // SAFETY: the caller's bounds and features; `corr` is read before any accumulator is
    // written (operands `out`, not `lateout`, so it has a register of its own).
    unsafe {
        dot_turns!(
            sdot_rows,
            [
                dup_row!("0", "1", "2", "3", "0"),
                dup_row!("4", "5", "6", "7", "1"),
                dup_row!("8", "9", "10", "11", "2"),
                dup_row!("12", "13", "14", "15", "3"),
                "cbz {n}, 3f"
            ],
            out acc, w, x, turns,
            c = in(vreg) corr,
        )
    };
    acc
}

/// The sums of 4 rows × 16 columns over `groups` groups of 4 k: `acc[column]`, lanes = rows.
///
/// # Safety
/// `w` must hold `groups · 16` bytes and `x` `groups · 64`; FEAT_DotProd.
#[inline(always)]
unsafe fn tile(w: *const i8, x: *const i8, groups: usize) -> [int32x4_t; COLS] {
    let mut acc = [vdupq_n_s32(0); COLS];
    // Moving pointers: indexing by group recomputes both addresses every group.
    let (mut w, mut x) = (w, x);
    let turns = groups / 4;
    if turns > 0 {
        // SAFETY: the caller's bounds: 4·turns ≤ groups.
        unsafe { main_loop(&mut acc, &mut w, &mut x, turns) };
    }
    for _ in 0..groups % 4 {
        // SAFETY: the caller's bounds.
        unsafe {
            let wv = vld1q_s8(w);
            let xv: [int8x16_t; 4] = std::array::from_fn(|q| vld1q_s8(x.add(16 * q)));
            for q in 0..4 {
                acc[4 * q] = sdot::<0>(acc[4 * q], wv, xv[q]);
                acc[4 * q + 1] = sdot::<1>(acc[4 * q + 1], wv, xv[q]);
                acc[4 * q + 2] = sdot::<2>(acc[4 * q + 2], wv, xv[q]);
                acc[4 * q + 3] = sdot::<3>(acc[4 * q + 3], wv, xv[q]);
            }
            (w, x) = (w.add(ROWS * 4), x.add(STEP));
        }
    }
    acc
}

/// The 16 `sdot` of one group: accumulator `v(4q + l)` (column `4q + l`) gains weight register
/// `w` times lane `l` of input register `x_q`.
macro_rules! sdot_group {
    ($w:literal, $x0:literal, $x1:literal, $x2:literal, $x3:literal) => {
        concat!(
            "sdot v0.4s, v",
            $w,
            ".16b, v",
            $x0,
            ".4b[0]\n",
            "sdot v1.4s, v",
            $w,
            ".16b, v",
            $x0,
            ".4b[1]\n",
            "sdot v2.4s, v",
            $w,
            ".16b, v",
            $x0,
            ".4b[2]\n",
            "sdot v3.4s, v",
            $w,
            ".16b, v",
            $x0,
            ".4b[3]\n",
            "sdot v4.4s, v",
            $w,
            ".16b, v",
            $x1,
            ".4b[0]\n",
            "sdot v5.4s, v",
            $w,
            ".16b, v",
            $x1,
            ".4b[1]\n",
            "sdot v6.4s, v",
            $w,
            ".16b, v",
            $x1,
            ".4b[2]\n",
            "sdot v7.4s, v",
            $w,
            ".16b, v",
            $x1,
            ".4b[3]\n",
            "sdot v8.4s, v",
            $w,
            ".16b, v",
            $x2,
            ".4b[0]\n",
            "sdot v9.4s, v",
            $w,
            ".16b, v",
            $x2,
            ".4b[1]\n",
            "sdot v10.4s, v",
            $w,
            ".16b, v",
            $x2,
            ".4b[2]\n",
            "sdot v11.4s, v",
            $w,
            ".16b, v",
            $x2,
            ".4b[3]\n",
            "sdot v12.4s, v",
            $w,
            ".16b, v",
            $x3,
            ".4b[0]\n",
            "sdot v13.4s, v",
            $w,
            ".16b, v",
            $x3,
            ".4b[1]\n",
            "sdot v14.4s, v",
            $w,
            ".16b, v",
            $x3,
            ".4b[2]\n",
            "sdot v15.4s, v",
            $w,
            ".16b, v",
            $x3,
            ".4b[3]\n",
        )
    };
}

/// `turns` × 4 groups of [`tile`] in one loop: per turn one 4-register weight load (4 groups
/// × 4 rows × 4 k, post-incremented), four 4-register input loads (16 columns × 4 k each),
/// 64 `sdot` and the loop's two instructions — 71 instructions for 1 024 multiply-adds, where
/// the group-at-a-time loop spends 22 per 16 `sdot`. Advances `w` and `x` past the groups it
/// ran.
///
/// # Safety
/// `turns > 0`; `w` holds `4·turns · 16` bytes and `x` `4·turns · 64`; FEAT_DotProd.
#[inline(always)]
unsafe fn main_loop(
    acc: &mut [int32x4_t; COLS],
    w: &mut *const i8,
    x: &mut *const i8,
    turns: usize,
) {
    // SAFETY: the caller's bounds and features.
    unsafe { dot_turns!(sdot_group, [], inout acc, w, x, turns,) }
}

/// Columns a block may have at most to take narrow tiles ([`narrow_block`]).
const NARROW: usize = 8;

/// The job's blocks that take the 16-column tiles: all but a last block of at most
/// [`NARROW`] valid columns (a 7×7 plane's 49th column, a dense layer's one column).
#[inline(always)]
fn wide_blocks(job: &Job<'_>) -> usize {
    match job.blocks {
        0 => 0,
        b if job.cols(b - 1) <= NARROW => b - 1,
        b => b,
    }
}

/// Block `b` (at most [`NARROW`] valid columns) × row blocks `rows`, by narrow tiles: the
/// block's first 4 or 8 columns (the first 16 or 32 bytes of each packed group) against 4
/// or 2 row blocks at a time (16 accumulators at most), `sdot` by element only for the
/// valid columns. A 16-column tile would compute 16 columns for one: a dense layer's `sdot`
/// count drops 16×, a 7×7 plane's (49 columns) by a quarter.
///
/// # Safety
/// As [`Tiles::blocks`]; `b < job.blocks`, `job.cols(b) ≤ NARROW`; FEAT_DotProd.
#[inline(always)]
unsafe fn narrow_block<S: Sink>(
    job: &Job<'_>,
    rows: Range<usize>,
    b: usize,
    sink: impl Fn(usize) -> S,
) {
    // SAFETY (all): the caller's contract; NC is the block's valid columns.
    unsafe {
        match job.cols(b) {
            1 => narrow_cols::<1, 4, S>(job, rows, b, sink),
            2 => narrow_cols::<2, 4, S>(job, rows, b, sink),
            3 => narrow_cols::<3, 4, S>(job, rows, b, sink),
            4 => narrow_cols::<4, 4, S>(job, rows, b, sink),
            5 => narrow_cols::<5, 2, S>(job, rows, b, sink),
            6 => narrow_cols::<6, 2, S>(job, rows, b, sink),
            7 => narrow_cols::<7, 2, S>(job, rows, b, sink),
            _ => narrow_cols::<8, 2, S>(job, rows, b, sink),
        }
    }
}

/// [`narrow_block`] for `NC` valid columns, `RB` row blocks per tile.
///
/// # Safety
/// As [`narrow_block`], `NC = job.cols(b)`.
#[inline(always)]
unsafe fn narrow_cols<const NC: usize, const RB: usize, S: Sink>(
    job: &Job<'_>,
    rows: Range<usize>,
    b: usize,
    sink: impl Fn(usize) -> S,
) {
    let groups = job.w.groups();
    let stride = groups * ROWS * 4;
    let c0 = (job.first_block + b) * COLS;
    // The NC columns as the first of a block's 16 (constant indices: still registers).
    let put = |s: S, acc: [int32x4_t; NC]| {
        // SAFETY: NEON is always present on aarch64.
        let mut tile = [unsafe { vdupq_n_s32(0) }; COLS];
        tile[..NC].copy_from_slice(&acc);
        // SAFETY: columns c0..c0 + NC lie in the output (the sinks' contract).
        unsafe { put_block(&s, c0, NC, &tile) }
    };
    // SAFETY (all): row blocks in `rows` and block b lie in the packed buffers (job.check).
    unsafe {
        let (w, x) = (
            job.w.data().as_ptr(),
            (job.x.as_ptr() as *const i8).add(b * groups * STEP),
        );
        let mut rb = rows.start;
        while rb + RB <= rows.end {
            let acc = narrow_tile::<RB, NC>(w.add(rb * stride), stride, x, groups);
            for (r, acc) in acc.into_iter().enumerate() {
                put(sink((rb + r) * ROWS), acc);
            }
            rb += RB;
        }
        for rb in rb..rows.end {
            let [acc] = narrow_tile::<1, NC>(w.add(rb * stride), stride, x, groups);
            put(sink(rb * ROWS), acc);
        }
    }
}

/// The sums of `RB` row blocks (row block `r`'s groups at `w + r · stride`) × the first
/// `NC ≤ 8` columns of a packed block `x`: `acc[r][c]`, lanes = the row block's 4 rows. Per
/// group one or two 16-byte input loads (4 columns × 4 k each) serve every row block.
///
/// # Safety
/// Each row block's `groups · 16` bytes readable, and `x`'s `groups · 64`; FEAT_DotProd.
#[inline(always)]
unsafe fn narrow_tile<const RB: usize, const NC: usize>(
    w: *const i8,
    stride: usize,
    x: *const i8,
    groups: usize,
) -> [[int32x4_t; NC]; RB] {
    // SAFETY: NEON is always present on aarch64.
    let mut acc = [[unsafe { vdupq_n_s32(0) }; NC]; RB];
    for g in 0..groups {
        // SAFETY: the caller's bounds; `sdot` by a lane below 4 of register c / 4 < 2.
        unsafe {
            let xg = x.add(g * STEP);
            let xv = [
                vld1q_s8(xg),
                if NC > 4 {
                    vld1q_s8(xg.add(16))
                } else {
                    vdupq_n_s8(0)
                },
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = vld1q_s8(w.add(r * stride + g * ROWS * 4));
                for (c, a) in acc.iter_mut().enumerate() {
                    let xv = xv[c / 4];
                    *a = match c % 4 {
                        0 => sdot::<0>(*a, wv, xv),
                        1 => sdot::<1>(*a, wv, xv),
                        2 => sdot::<2>(*a, wv, xv),
                        _ => sdot::<3>(*a, wv, xv),
                    };
                }
            }
        }
    }
    acc
}
