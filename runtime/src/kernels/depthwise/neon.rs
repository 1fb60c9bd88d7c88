//! The aarch64 depthwise kernel (`neon`, any ARMv8 core).
//!
//! 3×3 and 5×5 jobs at stride 1 or 2, or 2 along the rows and 1 along the columns (every
//! depthwise layer of MobileNet-class models, and the text models' tall-to-wide ones) run
//! square tiles: 4 output rows at stride 1, 2 at stride 2, then 2 or 1 for the last rows, × 4,
//! 2 or 1 vectors of 4 lanes, as the row's width allows, with the job's weights held in
//! registers (four per vector, `fmla` by element) and each input row of the tile loaded once
//! for every output row that reads it.
//! Other jobs run per-tap tiles: 2 rows × 4 vectors, or 4 rows × 2 or 1 vectors on narrow
//! planes, the tile's accumulators in registers across all taps, per tap one `ld1r` weight,
//! then one load and one `fmla` per accumulator.
//!
//! Every tile adds the taps to each output in tap order (kernel row, then column), the FMA
//! sequence of [`super::reference_fma`]. The output stage is compiled once per kind of
//! activation (clamp, HardSwish, both), so a layer pays only for the operations its
//! activation has; whole tiles store without a bounds check, the partial last vector of a row
//! lane by lane.

use std::arch::aarch64::*;

use super::{opaque, DepthwiseKernel, Layout, Plane, Square};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn DepthwiseKernel {
        &Neon(())
    }
}

impl DepthwiseKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: Plane<'_>, out: &mut [f32]) {
        layout.check(&plane, out);
        let act = layout.act;
        // Clamping to (−∞, +∞) changes no value but NaN (whose propagation is unspecified).
        let clamp = act.low != f32::NEG_INFINITY || act.high != f32::INFINITY;
        let plane = Raw {
            input: plane.input.as_ptr(),
            weights: plane.weights.as_ptr(),
            bias: plane.bias,
            out: out.as_mut_ptr(),
        };
        // SAFETY: NEON is baseline on aarch64; the plane passed its check, so every read
        // (whole vectors included) is inside its input and every store inside `out`.
        unsafe {
            match (clamp, act.hardswish) {
                (_, false) => run_neon::<true, false>(layout, plane),
                (false, true) => run_neon::<false, true>(layout, plane),
                (true, true) => run_neon::<true, true>(layout, plane),
            }
        }
    }
}

/// One plane's data and output as pointers, checked against its layout.
#[derive(Clone, Copy)]
struct Raw {
    input: *const f32,
    weights: *const f32,
    bias: f32,
    out: *mut f32,
}

/// The square tiles' weights: up to 28 taps, four per vector, the last vector zero-padded.
const SQUARE_WEIGHT_VECTORS: usize = 7;

/// Stores the first `valid` (1–3) lanes of `v` at `dst`, lane by lane: no call, so nothing
/// the tile holds in registers is spilled around it.
///
/// # Safety
/// `dst` is valid for `valid` floats.
#[inline(always)]
unsafe fn store_part(dst: *mut f32, v: float32x4_t, valid: usize) {
    if valid >= 2 {
        vst1_f32(dst, vget_low_f32(v));
        if valid == 3 {
            vst1q_lane_f32::<2>(dst.add(2), v);
        }
    } else {
        vst1q_lane_f32::<0>(dst, v);
    }
}

/// What a plane's tiles read: its pointers and sizes, and the output stage's constants in
/// registers. The tiles live in small functions (one per job shape and tile width, inlined
/// into [`run_neon`]) that take it by reference: one function holding every shape's
/// constant-index tiles takes rustc's borrow checker minutes, its time growing faster than
/// the function's size.
#[derive(Clone, Copy)]
struct Ctx {
    cols: usize,
    rows: usize,
    /// Taps of a per-tap tile.
    n: usize,
    taps: *const usize,
    weights: *const f32,
    input: *const f32,
    /// Input floats between output rows.
    step: usize,
    out: *mut f32,
    bias: f32,
    low: float32x4_t,
    high: float32x4_t,
    sixth: float32x4_t,
    half: float32x4_t,
    zero: float32x4_t,
    one: float32x4_t,
    /// A square job's weights.
    wv: [float32x4_t; SQUARE_WEIGHT_VECTORS],
}

/// The activation on four sums: the clamp if `CLAMP`, then HardSwish if `HS`.
#[inline(always)]
unsafe fn apply<const CLAMP: bool, const HS: bool>(x: &Ctx, acc: float32x4_t) -> float32x4_t {
    let v = if CLAMP {
        vminq_f32(vmaxq_f32(acc, x.low), x.high)
    } else {
        acc
    };
    if HS {
        let t = vaddq_f32(vmulq_f32(v, x.sixth), x.half);
        vmulq_f32(v, vminq_f32(vmaxq_f32(t, x.zero), x.one))
    } else {
        v
    }
}

// One vector (output row `r`, columns `col..col + 4`) through the activation into `out`;
// `$part`: the vector may reach past the row's end (stores only its columns there), else it
// is known to lie inside the row.
macro_rules! put {
    ($x:ident, $v:expr, $r:expr, $col:expr, $part:tt) => {{
        let (v, r, col) = ($v, $r, $col);
        let dst = $x.out.add(r * $x.cols + col);
        if !$part || col + 4 <= $x.cols {
            vst1q_f32(dst, apply::<CLAMP, HS>($x, v));
        } else if col < $x.cols {
            store_part(dst, apply::<CLAMP, HS>($x, v), $x.cols - col);
        }
    }};
}
macro_rules! put_row {
    ($x:ident, $a:ident, $r:expr, $c:expr, $i:tt, [$($j:tt)*], $part:tt) => {{
        $( put!($x, $a[$i][$j], $r + $i, $c + 4 * $j, $part); )*
    }};
}
// The tile's rows `$is` (accumulators `$a[i][j]`: output row r + i, columns c + 4j..), every
// index a constant (a tile indexed at run time lives in memory, a store after every `fmla`):
// whole tiles without a bounds check, else vector by vector.
macro_rules! store_tile {
    ($x:ident, $a:ident, $r:expr, $c:expr, [$($i:tt)*], $js:tt, $v:expr) => {{
        let (r, c) = ($r, $c);
        if c + 4 * $v <= $x.cols {
            $( put_row!($x, $a, r, c, $i, $js, false); )*
        } else {
            $( put_row!($x, $a, r, c, $i, $js, true); )*
        }
    }};
}
// Per-tap tile: rows r..r+R × V vectors from column c.
macro_rules! tile {
    ($x:ident, $r:expr, $c:expr, $rows:literal, $vecs:literal, $is:tt, $js:tt) => {{
        let (r, c) = ($r, $c);
        let mut acc = [[vdupq_n_f32($x.bias); $vecs]; $rows];
        for t in 0..$x.n {
            let w = vld1q_dup_f32($x.weights.add(t));
            let p = $x.input.add(r * $x.step + *$x.taps.add(t) + c);
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, a) in row.iter_mut().enumerate() {
                    *a = vfmaq_f32(*a, w, vld1q_f32(p.add(i * $x.step + 4 * j)));
                }
            }
        }
        store_tile!($x, acc, r, c, $is, $js, $vecs);
    }};
}

/// Every row of the column block at `c` in per-tap tiles of `R` rows × `V` vectors, then
/// single rows (a function per tile: macros inside).
macro_rules! tap_rows_fn {
    ($name:ident, $rows:literal, $vecs:literal, $is:tt, $js:tt) => {
        #[inline(always)]
        unsafe fn $name<const CLAMP: bool, const HS: bool>(x: &Ctx, c: usize) {
            let mut r = 0;
            while r + $rows <= x.rows {
                tile!(x, r, c, $rows, $vecs, $is, $js);
                r += $rows;
            }
            while r < x.rows {
                tile!(x, r, c, 1, $vecs, [0], $js);
                r += 1;
            }
        }
    };
}
// Always at least four accumulators for the `fmla` latency.
tap_rows_fn!(tap_rows4, 2, 4, [0 1], [0 1 2 3]);
tap_rows_fn!(tap_rows2, 4, 2, [0 1 2 3], [0 1]);
tap_rows_fn!(tap_rows1, 4, 1, [0 1 2 3], [0]);

// One step of a square tile: input row `u` (counted from the tile's first output row's first
// input row), kernel column `kx`, its `V` vectors loaded once; output row `i` of the tile
// reads that row as kernel row `ky = u − s·i` and adds tap `K·ky + kx` when `0 ≤ ky < K`
// (known when compiling: the tap is a lane of a weight register). Kernel column `kx` reads
// phase plane `kx % s` at column `kx / s` (`square`), so a step addresses its row's phase
// start plus a constant: one pointer per phase and input row.
macro_rules! sq_step {
    ($x:ident, $a:ident, $p0:ident, $p1:ident, $k:literal, ($s:literal, $sx:literal),
     $v:literal, [$($i:literal)*], $u:literal, $kx:literal) => {{
        let p = if $kx % $sx == 0 { $p0 } else { $p1 }.add($kx / $sx);
        let xs: [float32x4_t; $v] = std::array::from_fn(|j| vld1q_f32(p.add(4 * j)));
        $({
            const KY: usize = ($u as usize).wrapping_sub($s * $i);
            const T: usize = if KY < $k { $k * KY + $kx } else { 0 };
            if KY < $k {
                for j in 0..$v {
                    $a[$i][j] =
                        vfmaq_laneq_f32::<{ (T % 4) as i32 }>($a[$i][j], xs[j], $x.wv[T / 4]);
                }
            }
        })*
    }};
}
macro_rules! sq_row {
    ($x:ident, $a:ident, $base:expr, $ld:expr, $col:expr, $k:literal, ($s:literal, $sx:literal),
     $v:literal, $is:tt, $u:literal, [$($kx:literal)*]) => {{
        let pu = $base.add($u * $ld);
        let (p0, p1) = (pu.add($col[0]), pu.add($col[$sx - 1]));
        $( sq_step!($x, $a, p0, p1, $k, ($s, $sx), $v, $is, $u, $kx); )*
    }};
}
// A square tile: output rows r..r+R (`$is` = [0 1] or [0]) × V vectors from column c, input
// rows `$us`, kernel columns `$kxs`.
macro_rules! sq_tile {
    ($x:ident, $r:expr, $c:expr, $ld:expr, $col:expr, $k:literal, $s:tt, $rows:literal,
     $is:tt, $v:literal, $js:tt, [$($u:literal)*], $kxs:tt) => {{
        let (r, c) = ($r, $c);
        let mut a = [[vdupq_n_f32($x.bias); $v]; $rows];
        let base = opaque($x.input.add(r * $x.step + c));
        $( sq_row!($x, a, base, $ld, $col, $k, $s, $v, $is, $u, $kxs); )*
        store_tile!($x, a, r, c, $is, $js, $v);
    }};
}

/// Every row of one column block of a square job, pairs of rows then an odd last row: one
/// function per tile width `V` (`v4`, `v2`, `v1`) in a module per job shape (K, row stride,
/// column stride), `run` choosing the width. `$u2`, `$u1`: the input rows of a two- and a
/// one-row tile; `$kxs`: the kernel columns. Small functions keep the build quick: rustc
/// checks each function body whole before inlining, and one body holding every shape's
/// unrolled tiles took minutes to borrow-check.
macro_rules! square_job {
    ($name:ident, $k:literal, $s:tt, $u4:tt, $u2:tt, $u1:tt, $kxs:tt) => {
        mod $name {
            use super::*;

            square_job!(@width v4, 4, [0 1 2 3], $k, $s, $u4, $u2, $u1, $kxs);
            square_job!(@width v2, 2, [0 1], $k, $s, $u4, $u2, $u1, $kxs);
            square_job!(@width v1, 1, [0], $k, $s, $u4, $u2, $u1, $kxs);

            /// The column block at `c`, `v` vectors wide.
            #[inline(always)]
            pub(super) unsafe fn run<const CLAMP: bool, const HS: bool>(
                x: &Ctx,
                c: usize,
                v: usize,
                sq: &Square,
            ) {
                match v {
                    4 => v4::<CLAMP, HS>(x, c, sq),
                    2 => v2::<CLAMP, HS>(x, c, sq),
                    _ => v1::<CLAMP, HS>(x, c, sq),
                }
            }
        }
    };
    // Four-row tiles from row `r` while four rows remain, for a shape that has them.
    (@quad $x:ident, $r:ident, $c:ident, $ld:ident, $col:ident, $k:literal, $s:tt, $v:literal,
     $js:tt, [], $kxs:tt) => {};
    (@quad $x:ident, $r:ident, $c:ident, $ld:ident, $col:ident, $k:literal, $s:tt, $v:literal,
     $js:tt, $u4:tt, $kxs:tt) => {
        while $r + 4 <= $x.rows {
            sq_tile!($x, $r, $c, $ld, $col, $k, $s, 4, [0 1 2 3], $v, $js, $u4, $kxs);
            $r += 4;
        }
    };
    (@width $name:ident, $v:literal, $js:tt, $k:literal, $s:tt, $u4:tt, $u2:tt, $u1:tt, $kxs:tt) => {
        // `kx % s` is `kx % 1` for stride 1.
        #[allow(clippy::modulo_one)]
        // One function per shape and width, not inlined: LLVM optimises each alone (a body
        // holding them all grows its time faster than its size) and spreads them over
        // codegen units; a call per column block of a plane.
        #[inline(never)]
        unsafe fn $name<const CLAMP: bool, const HS: bool>(x: &Ctx, c: usize, sq: &Square) {
            let (ld, col) = (sq.ld, sq.column);
            let mut r = 0;
            square_job!(@quad x, r, c, ld, col, $k, $s, $v, $js, $u4, $kxs);
            while r + 2 <= x.rows {
                sq_tile!(x, r, c, ld, col, $k, $s, 2, [0 1], $v, $js, $u2, $kxs);
                r += 2;
            }
            if r < x.rows {
                sq_tile!(x, r, c, ld, col, $k, $s, 1, [0], $v, $js, $u1, $kxs);
            }
        }
    };
}
/// Every square job shape's module (`square_job!`) and [`square_block`], which runs a column
/// block of the shape `sq` has.
macro_rules! square_jobs {
    ($($name:ident, $k:literal, ($s:literal, $sx:literal), $u4:tt, $u2:tt, $u1:tt, $kxs:tt;)*) => {
        $( square_job!($name, $k, ($s, $sx), $u4, $u2, $u1, $kxs); )*

        /// The column block at `c`, `v` vectors wide, of a square job; false (nothing run)
        /// for a shape without square tiles.
        #[inline(always)]
        unsafe fn square_block<const CLAMP: bool, const HS: bool>(
            x: &Ctx,
            c: usize,
            v: usize,
            sq: &Square,
        ) -> bool {
            match (sq.k, sq.stride, sq.column_stride) {
                $( ($k, $s, $sx) => $name::run::<CLAMP, HS>(x, c, v, sq), )*
                _ => return false,
            }
            true
        }
    };
}
super::square_shapes!(square_jobs);

/// Computes `plane` laid out as `layout` (the module's tiles). `CLAMP`: the activation clamps
/// to `[low, high]`; `HS`: HardSwish after it.
///
/// # Safety
/// The plane passed [`Layout::check`].
#[target_feature(enable = "neon")]
unsafe fn run_neon<const CLAMP: bool, const HS: bool>(layout: &Layout<'_>, plane: Raw) {
    let act = layout.act;
    let zero = vdupq_n_f32(0.0);
    let weights = plane.weights;
    // Square jobs: the weights in registers, K² of them (the last vector's first lane alone
    // is read).
    let square = layout.square;
    let wv: [float32x4_t; SQUARE_WEIGHT_VECTORS] = match square {
        Some(Square { k, .. }) => std::array::from_fn(|i| {
            if 4 * i + 4 <= k * k {
                vld1q_f32(weights.add(4 * i))
            } else if 4 * i < k * k {
                vld1q_dup_f32(weights.add(4 * i))
            } else {
                zero
            }
        }),
        None => [zero; SQUARE_WEIGHT_VECTORS],
    };
    let x = Ctx {
        cols: layout.cols,
        rows: layout.rows,
        n: layout.taps.len(),
        taps: layout.taps.as_ptr(),
        weights,
        input: plane.input,
        step: layout.row_step,
        out: plane.out,
        bias: plane.bias,
        low: vdupq_n_f32(act.low),
        high: vdupq_n_f32(act.high),
        sixth: vdupq_n_f32(1.0 / 6.0),
        half: vdupq_n_f32(0.5),
        zero,
        one: vdupq_n_f32(1.0),
        wv,
    };
    // Vectors per tile row of the column block at c: 4 where 13+ columns are left, 2 for
    // 5–12, else 1.
    let vecs = |c: usize| match x.cols - c {
        13.. => 4,
        5..=12 => 2,
        _ => 1,
    };
    let mut c = 0;
    while c < x.cols {
        let v = vecs(c);
        let squared = match &square {
            Some(sq) => square_block::<CLAMP, HS>(&x, c, v, sq),
            None => false,
        };
        if !squared {
            match v {
                4 => tap_rows4::<CLAMP, HS>(&x, c),
                2 => tap_rows2::<CLAMP, HS>(&x, c),
                _ => tap_rows1::<CLAMP, HS>(&x, c),
            }
        }
        c += 4 * v;
    }
}
