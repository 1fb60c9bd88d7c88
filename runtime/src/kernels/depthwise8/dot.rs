//! The aarch64 int8 depthwise kernel for cores with FEAT_DotProd (`neon-dotprod`: Pi 5's
//! Cortex-A76, Jetson Orin's A78AE), on the i8 codes layout ([`InputFormat::Codes`]).
//!
//! `sdot` adds four byte products into each 32-bit lane: 16 multiply-adds per instruction,
//! where `smlal` on i16 does 4. A 3×3 or 5×5 job groups each kernel row's taps by four (3×3:
//! the row's 3 taps and a zero weight; 5×5: 4, then 1 and three zeros), so an output takes 3
//! (3×3) or 10 (5×5) lanes of `sdot` instead of 9 or 25 `smlal` lanes. The bytes an output
//! reads for a group are not contiguous in the plane (they overlap the next output's, and
//! at stride 2 alternate between the phase planes), so a square tile, per input row,
//! loads 32 bytes per phase plane from its column (16 for a block of 8 columns) and builds
//! each group's vector of 4 outputs × 4 bytes with one `tbl` from constant index vectors;
//! the tile's two output rows share those vectors, as the `neon` kernel's tiles share their
//! loads. At stride 1 the second group of a 5×5 row for outputs `4j..` is the first group
//! for outputs `4j + 4..`, one `tbl` for both. Weights are grouped once per plane, four
//! groups per register, picked by lane.
//!
//! The sums run over the codes `q`, not `q − zp`: they start at `bias − zp · Σ w`
//! ([`PlaneJob::codes_bias`]), and the padding holds `zp`, so every sum is the one the
//! definition gives. The output stages are the `neon` kernel's; jobs without a 3×3 or 5×5
//! square run its per-tap rows on the codes widened by `sxtl`.

use std::arch::aarch64::*;

use super::neon::{rows, with_store, Body, Columns, Store, Values};
use super::{Depthwise8Kernel, Input, InputFormat, Out, PlaneJob, Square};
use crate::kernels::int8::neon::sdot::sdot;

/// The `sdot` kernel; a value exists only through [`NeonDot::detect`], so only on a core with
/// FEAT_DotProd.
#[derive(Debug)]
pub struct NeonDot(());

impl NeonDot {
    /// The kernel, if the core has FEAT_DotProd.
    pub fn detect() -> Option<&'static dyn Depthwise8Kernel> {
        std::arch::is_aarch64_feature_detected!("dotprod")
            .then_some(&NeonDot(()) as &dyn Depthwise8Kernel)
    }
}

impl Depthwise8Kernel for NeonDot {
    fn name(&self) -> &'static str {
        "neon-dotprod"
    }

    fn format(&self) -> InputFormat {
        InputFormat::Codes
    }

    fn run(&self, job: &PlaneJob<'_>, out: Out<'_>) {
        job.check(out.len());
        let Input::Codes(input, zp) = job.input else {
            return super::neon::Neon::detect().run(job, out);
        };
        let body = CodesPlane {
            input: input.as_ptr(),
            bias: job.codes_bias(zp),
        };
        // SAFETY: the core has FEAT_DotProd (a value of `NeonDot` exists); the job passed its
        // check, so its codes hold `CODES_SLACK` values past every read the tiles need.
        unsafe { with_store(job, out, &body) }
    }
}

/// A codes plane and the bias that makes its sums the definition's.
struct CodesPlane {
    input: *const i8,
    bias: i32,
}

impl Body for CodesPlane {
    #[inline(always)]
    unsafe fn run<S: Store>(&self, job: &PlaneJob<'_>, st: &S) {
        // SAFETY: the caller's contract (FEAT_DotProd, a checked codes plane).
        unsafe {
            match job.geometry.square() {
                Some(sq) => square(job, self.input, self.bias, sq, *st),
                None => rows(job, Codes(self.input), self.bias, st),
            }
        }
    }
}

/// Codes widened to i16 (`sxtl`) for the per-tap rows.
#[derive(Clone, Copy)]
struct Codes(*const i8);

impl Values for Codes {
    #[inline(always)]
    unsafe fn eight(self, i: usize) -> int16x8_t {
        vmovl_s8(vld1_s8(self.0.add(i)))
    }

    #[inline(always)]
    unsafe fn sixteen(self, i: usize) -> (int16x8_t, int16x8_t) {
        let v = vld1q_s8(self.0.add(i));
        (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v))
    }
}

/// `tbl` indices `[group][vector]`: lane `4l + b` of vector `j` is byte `b` of output
/// `4j + l`'s group `g`, kernel column `kx = 4g + b` (columns past the kernel meet a zero
/// weight and read any byte). Stride 1: the row's bytes from the tile's column, `4j + l + kx`.
const STRIDE1: [[[u8; 16]; 4]; 2] = indices(1, 0);
/// Stride 2, 16 columns: the even phase's 32 bytes, then the odd phase's.
const STRIDE2_WIDE: [[[u8; 16]; 4]; 2] = indices(2, 32);
/// Stride 2, 8 columns: the even phase's 16 bytes, then the odd phase's.
const STRIDE2_NARROW: [[[u8; 16]; 4]; 2] = indices(2, 16);

/// The index vectors for `stride`, the phases `phase` bytes apart in the table (stride 2):
/// kernel column `kx` reads phase `kx mod 2` at `4j + l + ⌊kx / 2⌋`.
const fn indices(stride: usize, phase: usize) -> [[[u8; 16]; 4]; 2] {
    let mut out = [[[0u8; 16]; 4]; 2];
    let mut i = 0;
    while i < 2 * 4 * 16 {
        let (g, j, l, b) = (i / 64, i / 16 % 4, i / 4 % 4, i % 4);
        let kx = 4 * g + b;
        out[g][j][4 * l + b] = (match stride {
            1 => 4 * j + l + kx,
            _ => kx % 2 * phase + 4 * j + l + kx / 2,
        }) as u8;
        i += 1;
    }
    out
}

/// One input row's bytes for a tile: `load(even, odd)` from where the row's two phase planes
/// (one plane at stride 1: `even`) meet the tile's column; `look` is one `tbl`.
trait Table: Copy {
    unsafe fn load(even: *const i8, odd: *const i8) -> Self;
    unsafe fn look(self, index: uint8x16_t) -> int8x16_t;
}

/// Stride 1, 8 columns: 16 bytes.
#[derive(Clone, Copy)]
struct Row16(int8x16_t);
/// Stride 1, 16 columns: 32 bytes.
#[derive(Clone, Copy)]
struct Row32(int8x16x2_t);
/// Stride 2, 8 columns: 16 bytes of each phase.
#[derive(Clone, Copy)]
struct Phases16(int8x16x2_t);
/// Stride 2, 16 columns: 32 bytes of each phase.
#[derive(Clone, Copy)]
struct Phases32(int8x16x4_t);

impl Table for Row16 {
    #[inline(always)]
    unsafe fn load(even: *const i8, _: *const i8) -> Self {
        Row16(vld1q_s8(even))
    }
    #[inline(always)]
    unsafe fn look(self, index: uint8x16_t) -> int8x16_t {
        vqtbl1q_s8(self.0, index)
    }
}

impl Table for Row32 {
    #[inline(always)]
    unsafe fn load(even: *const i8, _: *const i8) -> Self {
        Row32(vld1q_s8_x2(even))
    }
    #[inline(always)]
    unsafe fn look(self, index: uint8x16_t) -> int8x16_t {
        vqtbl2q_s8(self.0, index)
    }
}

impl Table for Phases16 {
    #[inline(always)]
    unsafe fn load(even: *const i8, odd: *const i8) -> Self {
        Phases16(int8x16x2_t(vld1q_s8(even), vld1q_s8(odd)))
    }
    #[inline(always)]
    unsafe fn look(self, index: uint8x16_t) -> int8x16_t {
        vqtbl2q_s8(self.0, index)
    }
}

impl Table for Phases32 {
    #[inline(always)]
    unsafe fn load(even: *const i8, odd: *const i8) -> Self {
        let (e, o) = (vld1q_s8_x2(even), vld1q_s8_x2(odd));
        Phases32(int8x16x4_t(e.0, e.1, o.0, o.1))
    }
    #[inline(always)]
    unsafe fn look(self, index: uint8x16_t) -> int8x16_t {
        vqtbl4q_s8(self.0, index)
    }
}

/// What a square job's tiles read, for the per-geometry functions.
#[derive(Clone, Copy)]
struct Tiles {
    input: *const i8,
    rows: usize,
    cols: usize,
    /// Between output rows' first input rows.
    step: usize,
    /// Between kernel rows.
    ld: usize,
    /// Kernel columns 0 and 1: where the two phase planes start (stride 2).
    even: usize,
    odd: usize,
    bias: int32x4_t,
    /// The weight groups, four per register.
    wv: [int8x16_t; 3],
}

/// The square tiles of a 3×3 or 5×5 job on codes: 2 output rows (1 for an odd last row) × 16
/// columns (8 where at most 8 are left), sums from `bias`, `st` storing each output row.
/// One function per kernel size and stride, so that each keeps its own constants (index
/// vectors, weights) in registers.
///
/// # Safety
/// The job passed its check with `sq` its square and `input` its codes; FEAT_DotProd.
#[target_feature(enable = "neon,dotprod")]
unsafe fn square<S: Store>(job: &PlaneJob<'_>, input: *const i8, bias: i32, sq: Square, st: S) {
    let g = job.geometry;
    let w = match sq.k {
        3 => grouped::<3, 1>(job.weights),
        _ => grouped::<5, 2>(job.weights),
    };
    let p = Tiles {
        input,
        rows: g.rows(),
        cols: g.cols(),
        step: g.row_step(),
        ld: sq.ld,
        even: sq.column[0],
        odd: sq.column[sq.stride - 1],
        bias: vdupq_n_s32(bias),
        wv: std::array::from_fn(|i| vld1q_s8(w.as_ptr().add(16 * i))),
    };
    match (sq.k, sq.stride) {
        (3, 1) => square3s1(p, st),
        (3, _) => square3s2(p, st),
        (_, 1) => square5s1(p, st),
        _ => square5s2(p, st),
    }
}

/// A K×K kernel's weights (in `[−127, 127]`, the job's contract) by groups of 4 taps: kernel
/// row `ky`'s group `gr` (`G` per row) is 32-bit lane `ky · G + gr`, columns past the kernel
/// zero (3 lanes for 3×3, 10 for 5×5).
#[inline(always)]
fn grouped<const K: usize, const G: usize>(weights: &[i16]) -> [i8; 48] {
    let w = &weights[..K * K];
    let mut out = [0i8; 48];
    for ky in 0..K {
        for kx in 0..K {
            out[4 * (ky * G + kx / 4) + kx % 4] = w[K * ky + kx] as i8;
        }
    }
    out
}

// Input row `u` (from the tile's first output row's first input row), group `gr`: its `V`
// vectors built once; output row `i` of the tile reads the row as kernel row `ky = u − s·i`
// and adds its lane `ky · ⌈K/4⌉ + gr` when `0 ≤ ky < K` (known when compiling).
macro_rules! group {
    ($p:ident, $a:ident, $t:ident, $ix:ident, $k:literal, $s:literal, $v:literal,
     [$($i:literal)*], $u:literal, $gr:literal) => {{
        let x: [int8x16_t; $v] = std::array::from_fn(|j| $t.look($ix[$gr][j]));
        $({
            const KY: usize = ($u as usize).wrapping_sub($s * $i);
            const T: usize = if KY < $k { KY * ($k as usize).div_ceil(4) + $gr } else { 0 };
            if KY < $k {
                for j in 0..$v {
                    const L: i32 = (T % 4) as i32;
                    $a[$i][j] = sdot::<L>($a[$i][j], x[j], $p.wv[T / 4]);
                }
            }
        })*
    }};
}

// One input row `u` of a tile: its table loaded, then each group.
macro_rules! row {
    ($p:ident, $a:ident, $table:ty, $ix:ident, $base:expr, $k:literal, $s:literal, $v:literal,
     $is:tt, $u:literal, [$($gr:literal)*]) => {{
        let pu = $base.add($u * $p.ld);
        let t = <$table>::load(pu.add($p.even), pu.add($p.odd));
        $( group!($p, $a, t, $ix, $k, $s, $v, $is, $u, $gr); )*
    }};
}

// A tile: output rows r..r+R × 4·V columns from c.
macro_rules! tile {
    ($p:ident, $st:ident, $r:expr, $c:expr, $table:ty, $ix:ident, $k:literal, $s:literal,
     $rows:literal, $is:tt, $v:literal, [$($u:literal)*], $grs:tt) => {{
        let (r, c) = ($r, $c);
        let mut a = [[$p.bias; $v]; $rows];
        let base = $p.input.add(r * $p.step + c);
        $( row!($p, a, $table, $ix, base, $k, $s, $v, $is, $u, $grs); )*
        for i in 0..$rows {
            // A copy: the accumulators never have their address taken, so they stay in
            // registers across the taps.
            let acc: [int32x4_t; $v] = a[i];
            $st.store(&acc, (r + i) * $p.cols + c);
        }
    }};
}

// Every row of the column block at c: pairs of rows, then an odd last row.
macro_rules! block {
    ($p:ident, $st:ident, $c:expr, $table:ty, $ix:ident, $v:literal, $k:literal, $s:literal,
     $u2:tt, $u1:tt, $grs:tt) => {{
        let mut r = 0;
        while r + 2 <= $p.rows {
            tile!($p, $st, r, $c, $table, $ix, $k, $s, 2, [0 1], $v, $u2, $grs);
            r += 2;
        }
        if r < $p.rows {
            tile!($p, $st, r, $c, $table, $ix, $k, $s, 1, [0], $v, $u1, $grs);
        }
    }};
}

// A function running every column block of one kernel size and stride; the index vectors
// are its constants.
macro_rules! geometry {
    ($(#[$doc:meta])* $name:ident, $wide:ty, $narrow:ty, $iw:expr, $in:expr, $k:literal,
     $s:literal, $u2:tt, $u1:tt, $grs:tt) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As [`square`]'s.
        #[target_feature(enable = "neon,dotprod")]
        #[inline(never)]
        unsafe fn $name<S: Store>(p: Tiles, st: S) {
            let load = |t: &[[[u8; 16]; 4]; 2]| -> [[uint8x16_t; 4]; 2] {
                std::array::from_fn(|gr| std::array::from_fn(|j| vld1q_u8(t[gr][j].as_ptr())))
            };
            let cl = Columns::of(p.cols);
            if cl.wide > 0 {
                let ix = load(&$iw);
                for i in 0..cl.wide {
                    block!(p, st, cl.wide_at(i), $wide, ix, 4, $k, $s, $u2, $u1, $grs);
                }
            }
            if let Some(c) = cl.narrow {
                let ix = load(&$in);
                block!(p, st, c, $narrow, ix, 2, $k, $s, $u2, $u1, $grs);
            }
        }
    };
}

geometry!(
    /// 3×3, stride 1.
    square3s1, Row32, Row16, STRIDE1, STRIDE1, 3, 1, [0 1 2 3], [0 1 2], [0]
);
geometry!(
    /// 3×3, stride 2.
    square3s2, Phases32, Phases16, STRIDE2_WIDE, STRIDE2_NARROW, 3, 2, [0 1 2 3 4], [0 1 2], [0]
);
geometry!(
    /// 5×5, stride 1.
    square5s1, Row32, Row16, STRIDE1, STRIDE1, 5, 1, [0 1 2 3 4 5], [0 1 2 3 4], [0 1]
);
geometry!(
    /// 5×5, stride 2.
    square5s2,
    Phases32,
    Phases16,
    STRIDE2_WIDE,
    STRIDE2_NARROW,
    5,
    2,
    [0 1 2 3 4 5 6],
    [0 1 2 3 4],
    [0 1]
);
