//! The FEAT_FP16 depthwise kernel (`neon-fp16`: Cortex-A76, A78AE and later).
//!
//! The f32 NEON kernel's tiles ([`crate::kernels::depthwise::neon`]) on vectors of eight
//! binary16 lanes: 3×3 and 5×5 jobs run square tiles of 4 output rows at stride 1, 2 at
//! stride 2 (then 2 or 1 for the last rows) × 4, 2 or 1 vectors (32, 16 or 8 columns) with the
//! 9 or 25 weights in four registers of `v0`–`v15` (`fmla .8h` by element takes its element
//! from those), each input row loaded once for every output row that reads it;
//! other jobs run per-tap tiles (2 rows × 4 vectors, or 4 rows × 2 or 1). A tile's sums widen
//! to f32 (`fcvtl`, `fcvtl2`) for the bias, the f32 kernels' activation and the store. Rust has no stable
//! binary16 intrinsics, so each binary16 instruction is a one-instruction `asm!` the compiler
//! schedules and allocates like an intrinsic (`pure`, `nomem`).
//!
//! Taps are added in tap order, one rounding per `fmla`: the bits of the portable kernel
//! ([`super::generic`]).

use std::arch::aarch64::*;
use std::arch::asm;

use super::pad::{HalfFill, SIX, SIXTH, THREE};
use super::{check, check_codes, split_bias, HalfCodes, HalfKernel, HalfPlane};
use crate::kernels::depthwise::{opaque, Layout, Square};

/// The FEAT_FP16 kernel.
#[derive(Debug)]
pub struct NeonFp16(());

impl NeonFp16 {
    /// The kernel, if this core has FEAT_FP16 arithmetic.
    pub fn detect() -> Option<&'static dyn HalfKernel> {
        std::arch::is_aarch64_feature_detected!("fp16").then_some(&NeonFp16(()) as _)
    }
}

impl HalfKernel for NeonFp16 {
    fn name(&self) -> &'static str {
        "neon-fp16"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: HalfPlane<'_>, out: &mut [f32]) {
        check(layout, &plane, out.len());
        let raw = Raw {
            input: plane.input.as_ptr(),
            weights: plane.weights.as_ptr(),
            bias: plane.bias,
            out: out.as_mut_ptr(),
            codes: std::ptr::null_mut(),
            q: None,
            halves: (0, 0),
        };
        // SAFETY: the kernel exists only where the core has FEAT_FP16 (`detect`); the plane
        // passed its check, so every read (whole vectors included) is inside its input and
        // every store inside `out`.
        unsafe { dispatch::<false>(layout, raw) }
    }

    fn run_plane_codes(
        &self,
        layout: &Layout<'_>,
        plane: HalfPlane<'_>,
        q: &HalfCodes,
        out: &mut [i8],
    ) {
        check_codes(layout, &plane, out.len());
        let raw = Raw {
            input: plane.input.as_ptr(),
            weights: plane.weights.as_ptr(),
            bias: plane.bias,
            out: std::ptr::null_mut(),
            codes: out.as_mut_ptr(),
            q: Some(*q),
            halves: split_bias(plane.bias),
        };
        // SAFETY: as `run_plane`, the stores inside `out` (codes).
        unsafe { dispatch::<true>(layout, raw) }
    }

    fn fill(&self, fill: &HalfFill, buf: &mut [u16], src: &[f32]) {
        fill.check(buf, src);
        // SAFETY: FEAT_FP16 (`detect`); the placement fits the buffer and the plane (`new`,
        // `check`).
        unsafe {
            if fill.hardswish {
                fill_unchecked::<true>(fill, buf, src)
            } else {
                fill_unchecked::<false>(fill, buf, src)
            }
        }
    }
}

/// One plane's data and output as pointers, checked against its layout: f32 out, or int8
/// codes (`codes`, with the stage's constants `q`).
#[derive(Clone, Copy)]
struct Raw {
    input: *const u16,
    weights: *const u16,
    bias: f32,
    out: *mut f32,
    codes: *mut i8,
    q: Option<HalfCodes>,
    /// The bias's two binary16 parts ([`split_bias`]; for the codes stage).
    halves: (u16, u16),
}

/// [`run`] for the layer's activation.
///
/// # Safety
/// As [`run`].
unsafe fn dispatch<const CODES: bool>(layout: &Layout<'_>, raw: Raw) {
    let act = layout.act;
    // SAFETY: the caller's.
    unsafe {
        match (act.clamps(), act.hardswish) {
            (_, false) => run::<true, false, CODES>(layout, raw),
            (false, true) => run::<false, true, CODES>(layout, raw),
            (true, true) => run::<true, true, CODES>(layout, raw),
        }
    }
}

/// `a + x·w[L]` on eight binary16 lanes, one rounding (`w` in `v0`–`v15`, as the by-element
/// form requires).
#[inline(always)]
unsafe fn fmla_lane<const L: i32>(a: uint16x8_t, x: uint16x8_t, w: uint16x8_t) -> uint16x8_t {
    let mut a = a;
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        asm!("fmla {a:v}.8h, {x:v}.8h, {w:v}.h[{l}]", a = inout(vreg) a, x = in(vreg) x,
             w = in(vreg_low16) w, l = const L, options(pure, nomem, nostack, preserves_flags));
    }
    a
}

/// `a + x·w` on eight binary16 lanes, one rounding.
#[inline(always)]
unsafe fn fmla(a: uint16x8_t, x: uint16x8_t, w: uint16x8_t) -> uint16x8_t {
    let mut a = a;
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        asm!("fmla {a:v}.8h, {x:v}.8h, {w:v}.8h", a = inout(vreg) a, x = in(vreg) x,
             w = in(vreg) w, options(pure, nomem, nostack, preserves_flags));
    }
    a
}

/// Two-operand binary16 instructions on eight lanes, one rounding each (FEAT_FP16 is the
/// caller's).
macro_rules! half_op {
    ($($name:ident $ins:literal;)*) => {$(
        #[inline(always)]
        unsafe fn $name(a: uint16x8_t, b: uint16x8_t) -> uint16x8_t {
            let o;
            // SAFETY: register arithmetic.
            unsafe {
                asm!(concat!($ins, " {o:v}.8h, {a:v}.8h, {b:v}.8h"), o = lateout(vreg) o,
                     a = in(vreg) a, b = in(vreg) b,
                     options(pure, nomem, nostack, preserves_flags));
            }
            o
        }
    )*};
}
half_op! {
    hadd "fadd";
    hmul "fmul";
    hmin "fmin";
    hmax "fmax";
}

/// Eight binary16 lanes to i16, rounded to nearest (ties to even), saturating.
#[inline(always)]
unsafe fn to_i16(v: uint16x8_t) -> int16x8_t {
    let o;
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        asm!("fcvtns {o:v}.8h, {v:v}.8h", o = lateout(vreg) o, v = in(vreg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// The low four binary16 lanes of `v` as f32 (exact).
#[inline(always)]
unsafe fn widen_lo(v: uint16x8_t) -> float32x4_t {
    let o;
    // SAFETY: register arithmetic (base ARMv8).
    unsafe {
        asm!("fcvtl {o:v}.4s, {v:v}.4h", o = lateout(vreg) o, v = in(vreg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// The high four binary16 lanes of `v` as f32 (exact).
#[inline(always)]
unsafe fn widen_hi(v: uint16x8_t) -> float32x4_t {
    let o;
    // SAFETY: register arithmetic (base ARMv8).
    unsafe {
        asm!("fcvtl2 {o:v}.4s, {v:v}.8h", o = lateout(vreg) o, v = in(vreg) v,
             options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// `a` then `b` rounded to binary16 (to nearest), in one vector.
#[inline(always)]
unsafe fn narrow(a: float32x4_t, b: float32x4_t) -> uint16x8_t {
    let o;
    // SAFETY: register arithmetic (base ARMv8); `out` keeps `o` off `b`, read after `o` is
    // first written.
    unsafe {
        asm!("fcvtn {o:v}.4h, {a:v}.4s", "fcvtn2 {o:v}.8h, {b:v}.4s", o = out(vreg) o,
             a = in(vreg) a, b = in(vreg) b, options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// tract's HardSwish steps on eight binary16 lanes ([`super::pad::hardswish`]).
#[inline(always)]
unsafe fn hardswish(x: uint16x8_t, k: &HsConst) -> uint16x8_t {
    let t;
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        asm!(
            "fadd {t:v}.8h, {x:v}.8h, {three:v}.8h",
            "fmin {t:v}.8h, {t:v}.8h, {six:v}.8h",
            "fmax {t:v}.8h, {t:v}.8h, {zero:v}.8h",
            "fmul {t:v}.8h, {t:v}.8h, {x:v}.8h",
            "fmul {t:v}.8h, {t:v}.8h, {sixth:v}.8h",
            t = out(vreg) t, x = in(vreg) x, three = in(vreg) k.three, six = in(vreg) k.six,
            zero = in(vreg) k.zero, sixth = in(vreg) k.sixth,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    t
}

/// The HardSwish constants, in registers for a whole fill.
#[derive(Clone, Copy)]
struct HsConst {
    three: uint16x8_t,
    six: uint16x8_t,
    zero: uint16x8_t,
    sixth: uint16x8_t,
}

/// Stores the first `valid` (1–3) lanes of `v` at `dst`, lane by lane.
///
/// # Safety
/// `dst` is valid for `valid` floats.
#[inline(always)]
unsafe fn store_part(dst: *mut f32, v: float32x4_t, valid: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if valid >= 2 {
            vst1_f32(dst, vget_low_f32(v));
            if valid == 3 {
                vst1q_lane_f32::<2>(dst.add(2), v);
            }
        } else {
            vst1q_lane_f32::<0>(dst, v);
        }
    }
}

/// Stores the first `n` (below 8) codes of `b` at `dst`: the eight codes moved to a general
/// register, then 4, 2 and 1 of them as `n`'s bits say (no call: a `memcpy` would spill every
/// register the tile holds around it).
///
/// # Safety
/// `dst` is valid for `n` bytes.
#[inline(always)]
unsafe fn store_codes_part(dst: *mut i8, b: int8x8_t, n: usize) {
    let mut x = vget_lane_u64::<0>(vreinterpret_u64_s8(b));
    let mut d = dst.cast::<u8>();
    // SAFETY: the bytes written are `dst[..n]`, in order.
    unsafe {
        if n & 4 != 0 {
            d.cast::<u32>().write_unaligned(x as u32);
            (x, d) = (x >> 32, d.add(4));
        }
        if n & 2 != 0 {
            d.cast::<u16>().write_unaligned(x as u16);
            (x, d) = (x >> 16, d.add(2));
        }
        if n & 1 != 0 {
            d.write(x as u8);
        }
    }
}

/// Vectors per tile row of a column block with `left` columns left: 4 where 25+ are left, 2
/// for 9–24, else 1 (reads stay within 7 values past the row: inside the layout's slack).
#[inline(always)]
fn vectors(left: usize) -> usize {
    match left {
        25.. => 4,
        9..=24 => 2,
        _ => 1,
    }
}

/// What a plane's tiles read: its pointers and sizes, and the output stages' constants in
/// registers. The tiles live in small functions (one per job shape and tile width, inlined
/// into [`run`]) that take it by reference: one function holding every shape's
/// constant-index tiles takes rustc's borrow checker minutes, its time growing faster than
/// the function's size.
#[derive(Clone, Copy)]
struct Ctx {
    cols: usize,
    rows: usize,
    /// Taps of a per-tap tile.
    n: usize,
    taps: *const usize,
    weights: *const u16,
    input: *const u16,
    /// Input values between output rows.
    step: usize,
    out: *mut f32,
    codes: *mut i8,
    zero16: uint16x8_t,
    // The f32 stage: bias, clamp, HardSwish.
    bias: float32x4_t,
    low: float32x4_t,
    high: float32x4_t,
    sixth: float32x4_t,
    half: float32x4_t,
    zero: float32x4_t,
    one: float32x4_t,
    // The codes stage (module docs of `super`).
    bias_hi: uint16x8_t,
    bias_lo: uint16x8_t,
    low16: uint16x8_t,
    high16: uint16x8_t,
    k16: uint16x8_t,
    zp: int16x8_t,
    hs_k: HsConst,
    /// A square job's weights, eight per vector, zero-padded.
    wv: [uint16x8_t; 4],
}

/// The bias, then the activation, of four widened sums.
#[inline(always)]
unsafe fn apply<const CLAMP: bool, const HS: bool>(x: &Ctx, acc: float32x4_t) -> float32x4_t {
    let acc = vaddq_f32(acc, x.bias);
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

/// Eight sums through the codes stage: eight codes.
#[inline(always)]
unsafe fn codes<const CLAMP: bool, const HS: bool>(x: &Ctx, acc: uint16x8_t) -> int8x8_t {
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        let mut v = hadd(hadd(acc, x.bias_hi), x.bias_lo);
        if CLAMP {
            v = hmin(hmax(v, x.low16), x.high16);
        }
        let y = if HS {
            hardswish(v, &x.hs_k)
        } else {
            hmul(v, x.k16)
        };
        vqmovn_s16(vqaddq_s16(to_i16(y), x.zp))
    }
}

// One vector of sums (output row `r`, columns `col..col + 8`) stored as codes or as floats;
// `$part`: the vector may reach past the row's end (stores only its columns there), else it
// is known to lie inside the row.
macro_rules! put {
    ($x:ident, $v:expr, $r:expr, $col:expr, $part:tt) => {{
        let (v, r, col) = ($v, $r, $col);
        let cols = $x.cols;
        if CODES {
            let dst = $x.codes.add(r * cols + col);
            if !$part || col + 8 <= cols {
                vst1_s8(dst, codes::<CLAMP, HS>($x, v));
            } else if col < cols {
                store_codes_part(dst, codes::<CLAMP, HS>($x, v), cols - col);
            }
        } else {
            let dst = $x.out.add(r * cols + col);
            if !$part || col + 8 <= cols {
                vst1q_f32(dst, apply::<CLAMP, HS>($x, widen_lo(v)));
                vst1q_f32(dst.add(4), apply::<CLAMP, HS>($x, widen_hi(v)));
            } else {
                for (h, col) in [(0, col), (1, col + 4)] {
                    let d = dst.add(4 * h);
                    let w = if h == 0 { widen_lo(v) } else { widen_hi(v) };
                    if col + 4 <= cols {
                        vst1q_f32(d, apply::<CLAMP, HS>($x, w));
                    } else if col < cols {
                        store_part(d, apply::<CLAMP, HS>($x, w), cols - col);
                    }
                }
            }
        }
    }};
}
macro_rules! put_row {
    ($x:ident, $a:ident, $r:expr, $c:expr, $i:tt, [$($j:tt)*], $part:tt) => {{
        $( put!($x, $a[$i][$j], $r + $i, $c + 8 * $j, $part); )*
    }};
}
// The tile's rows `$is` (accumulators `$a[i][j]`: output row r + i, columns c + 8j..), every
// index a constant (a tile indexed at run time lives in memory, a store after every `fmla`):
// whole tiles without a bounds check, else vector by vector.
macro_rules! store_tile {
    ($x:ident, $a:ident, $r:expr, $c:expr, [$($i:tt)*], $js:tt, $v:expr) => {{
        let (r, c) = ($r, $c);
        if c + 8 * $v <= $x.cols {
            $( put_row!($x, $a, r, c, $i, $js, false); )*
        } else {
            $( put_row!($x, $a, r, c, $i, $js, true); )*
        }
    }};
}

/// Every row of the column block at `c` in per-tap tiles of `R` rows × `V` vectors (rows
/// r..r+R from column c), then single rows.
macro_rules! tap_rows_fn {
    ($name:ident, $rows:literal, $vecs:literal, $is:tt, $js:tt) => {
        #[inline(always)]
        unsafe fn $name<const CLAMP: bool, const HS: bool, const CODES: bool>(x: &Ctx, c: usize) {
            // SAFETY: the caller's ([`run`]).
            unsafe {
                let mut r = 0;
                while r + $rows <= x.rows {
                    tap_rows_fn!(@tile x, r, c, $rows, $vecs, $is, $js);
                    r += $rows;
                }
                while r < x.rows {
                    tap_rows_fn!(@tile x, r, c, 1, $vecs, [0], $js);
                    r += 1;
                }
            }
        }
    };
    (@tile $x:ident, $r:expr, $c:expr, $rows:literal, $vecs:literal, $is:tt, $js:tt) => {{
        let (r, c) = ($r, $c);
        let mut acc = [[$x.zero16; $vecs]; $rows];
        for t in 0..$x.n {
            let w = vld1q_dup_u16($x.weights.add(t));
            let p = $x.input.add(r * $x.step + *$x.taps.add(t) + c);
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, a) in row.iter_mut().enumerate() {
                    *a = fmla(*a, vld1q_u16(p.add(i * $x.step + 8 * j)), w);
                }
            }
        }
        store_tile!($x, acc, r, c, $is, $js, $vecs);
    }};
}
tap_rows_fn!(tap_rows4, 2, 4, [0 1], [0 1 2 3]);
tap_rows_fn!(tap_rows2, 4, 2, [0 1 2 3], [0 1]);
tap_rows_fn!(tap_rows1, 4, 1, [0 1 2 3], [0]);

// One step of a square tile (the f32 kernel's `sq_step`): input row `u`, kernel column `kx`,
// its `V` vectors loaded once, added to each output row `i` that reads it as kernel row
// `u − s·i`.
macro_rules! sq_step {
    ($x:ident, $a:ident, $p0:ident, $p1:ident, $k:literal, ($s:literal, $sx:literal),
     $v:literal, [$($i:literal)*], $u:literal, $kx:literal) => {{
        let p = if $kx % $sx == 0 { $p0 } else { $p1 }.add($kx / $sx);
        let mut xs = [$x.zero16; $v];
        for (j, v) in xs.iter_mut().enumerate() {
            *v = vld1q_u16(p.add(8 * j));
        }
        $({
            const KY: usize = ($u as usize).wrapping_sub($s * $i);
            const T: usize = if KY < $k { $k * KY + $kx } else { 0 };
            if KY < $k {
                for j in 0..$v {
                    $a[$i][j] = fmla_lane::<{ (T % 8) as i32 }>($a[$i][j], xs[j], $x.wv[T / 8]);
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
macro_rules! sq_tile {
    ($x:ident, $r:expr, $c:expr, $ld:expr, $col:expr, $k:literal, $s:tt, $rows:literal,
     $is:tt, $v:literal, $js:tt, [$($u:literal)*], $kxs:tt) => {{
        let (r, c) = ($r, $c);
        let mut a = [[$x.zero16; $v]; $rows];
        let base = opaque($x.input.add(r * $x.step + c));
        $( sq_row!($x, a, base, $ld, $col, $k, $s, $v, $is, $u, $kxs); )*
        store_tile!($x, a, r, c, $is, $js, $v);
    }};
}

/// Every row of one column block of a square job, pairs of rows then an odd last row: one
/// function per tile width (`v4`, `v2`, `v1`) in a module per job shape (K, row stride,
/// column stride), `run` choosing the width (the f32 kernel's `square_job`).
macro_rules! square_job {
    ($name:ident, $k:literal, $s:tt, $u4:tt, $u2:tt, $u1:tt, $kxs:tt) => {
        mod $name {
            use super::*;

            square_job!(@width v4, 4, [0 1 2 3], $k, $s, $u4, $u2, $u1, $kxs);
            square_job!(@width v2, 2, [0 1], $k, $s, $u4, $u2, $u1, $kxs);
            square_job!(@width v1, 1, [0], $k, $s, $u4, $u2, $u1, $kxs);

            /// The column block at `c`, `v` vectors wide.
            #[inline(always)]
            pub(super) unsafe fn run<const CLAMP: bool, const HS: bool, const CODES: bool>(
                x: &Ctx,
                c: usize,
                v: usize,
                sq: &Square,
            ) {
                // SAFETY: the caller's ([`super::run`]).
                unsafe {
                    match v {
                        4 => v4::<CLAMP, HS, CODES>(x, c, sq),
                        2 => v2::<CLAMP, HS, CODES>(x, c, sq),
                        _ => v1::<CLAMP, HS, CODES>(x, c, sq),
                    }
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
        #[target_feature(enable = "neon,fp16")]
        unsafe fn $name<const CLAMP: bool, const HS: bool, const CODES: bool>(
            x: &Ctx,
            c: usize,
            sq: &Square,
        ) {
            let (ld, col) = (sq.ld, sq.column);
            // SAFETY: the caller's ([`super::run`]).
            unsafe {
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
        ///
        /// # Safety
        /// [`run`]'s.
        #[inline(always)]
        unsafe fn square_block<const CLAMP: bool, const HS: bool, const CODES: bool>(
            x: &Ctx,
            c: usize,
            v: usize,
            sq: &Square,
        ) -> bool {
            // SAFETY: the caller's ([`run`]).
            unsafe {
                match (sq.k, sq.stride, sq.column_stride) {
                    $( ($k, $s, $sx) => $name::run::<CLAMP, HS, CODES>(x, c, v, sq), )*
                    _ => return false,
                }
            }
            true
        }
    };
}
crate::kernels::depthwise::square_shapes!(square_jobs);

/// Computes `plane` laid out as `layout` (the module's tiles). Closures here would not inline
/// (a closure takes this function's FEAT_FP16, and a std generic calling it does not have
/// it): loops, macros and `#[inline(always)]` functions only. `CLAMP`: the activation clamps
/// to `[low, high]`; `HS`: HardSwish after it.
///
/// # Safety
/// The core has FEAT_FP16; the plane passed [`check`].
#[target_feature(enable = "neon,fp16")]
unsafe fn run<const CLAMP: bool, const HS: bool, const CODES: bool>(
    layout: &Layout<'_>,
    plane: Raw,
) {
    let act = layout.act;
    let zero16 = vdupq_n_u16(0);
    let weights = plane.weights;
    // The codes stage's constants (module docs of `super`).
    let q = plane.q.unwrap_or(HalfCodes {
        low: 0,
        high: 0,
        k: 0,
        zp: 0,
    });
    let k16 = vdupq_n_u16(q.k);
    // Square jobs: the K² weights in four registers, eight per vector (K² is 9 or 25, so the
    // last vector's first lane alone is read).
    let square = layout.square;
    let mut wv = [zero16; 4];
    if let Some(Square { k, .. }) = square {
        for (i, v) in wv.iter_mut().enumerate() {
            // SAFETY: inside a square job's K² weights.
            unsafe {
                if 8 * i + 8 <= k * k {
                    *v = vld1q_u16(weights.add(8 * i));
                } else if 8 * i < k * k {
                    *v = vld1q_dup_u16(weights.add(8 * i));
                }
            }
        }
    }
    let x = Ctx {
        cols: layout.cols,
        rows: layout.rows,
        n: layout.taps.len(),
        taps: layout.taps.as_ptr(),
        weights,
        input: plane.input,
        step: layout.row_step,
        out: plane.out,
        codes: plane.codes,
        zero16,
        bias: vdupq_n_f32(plane.bias),
        low: vdupq_n_f32(act.low),
        high: vdupq_n_f32(act.high),
        sixth: vdupq_n_f32(1.0 / 6.0),
        half: vdupq_n_f32(0.5),
        zero: vdupq_n_f32(0.0),
        one: vdupq_n_f32(1.0),
        bias_hi: vdupq_n_u16(plane.halves.0),
        bias_lo: vdupq_n_u16(plane.halves.1),
        low16: vdupq_n_u16(q.low),
        high16: vdupq_n_u16(q.high),
        k16,
        zp: vdupq_n_s16(q.zp),
        // HardSwish's steps with `k` for its `· ⅙`.
        hs_k: HsConst {
            three: vdupq_n_u16(THREE),
            six: vdupq_n_u16(SIX),
            zero: zero16,
            sixth: k16,
        },
        wv,
    };
    let mut c = 0;
    while c < x.cols {
        let v = vectors(x.cols - c);
        // SAFETY: the caller's.
        unsafe {
            let squared = match &square {
                Some(sq) => square_block::<CLAMP, HS, CODES>(&x, c, v, sq),
                None => false,
            };
            if !squared {
                match v {
                    4 => tap_rows4::<CLAMP, HS, CODES>(&x, c),
                    2 => tap_rows2::<CLAMP, HS, CODES>(&x, c),
                    _ => tap_rows1::<CLAMP, HS, CODES>(&x, c),
                }
            }
        }
        c += 8 * v;
    }
}

/// [`HalfKernel::fill`] without the checks.
///
/// # Safety
/// FEAT_FP16; `fill`'s placement fits `buf` and `src` (its `new` and `check` passed).
#[inline(never)]
#[target_feature(enable = "neon,fp16")]
unsafe fn fill_unchecked<const HS: bool>(fill: &HalfFill, buf: &mut [u16], src: &[f32]) {
    let k = HsConst {
        three: vdupq_n_u16(THREE),
        six: vdupq_n_u16(SIX),
        zero: vdupq_n_u16(0),
        sixth: vdupq_n_u16(SIXTH),
    };
    let [h, w] = fill.hw;
    let (dst, src) = (buf.as_mut_ptr(), src.as_ptr());
    // SAFETY: the placement check bounds every row's writes inside `buf` and the reads to
    // `h·w` values of `src`.
    unsafe {
        fill.at.walk(
            dst,
            h,
            |y, d| copy::<HS>(d, src.add(y * w), w, &k),
            |y, e, o| split::<HS>(e, o, src.add(y * w), w, &k),
        )
    }
}

/// Eight values rounded to binary16, through the HardSwish if `HS`.
#[inline(always)]
unsafe fn map<const HS: bool>(a: float32x4_t, b: float32x4_t, k: &HsConst) -> uint16x8_t {
    // SAFETY: register arithmetic; FEAT_FP16 is the caller's.
    unsafe {
        let v = narrow(a, b);
        if HS {
            hardswish(v, k)
        } else {
            v
        }
    }
}

/// Copies `n` values; a row of 8 or more ends with a vector overlapping the one before it,
/// a shorter one goes by 4 lanes (overlapping) or one by one.
///
/// # Safety
/// `s` readable for `n` floats, `d` writable for `n` values; FEAT_FP16.
#[inline(always)]
unsafe fn copy<const HS: bool>(d: *mut u16, s: *const f32, n: usize, k: &HsConst) {
    // SAFETY (all): pointers within the `n` values of each side.
    unsafe {
        if n >= 8 {
            let (mut d, mut s, mut left) = (d, s, n);
            // Two vectors per turn: the loop's four instructions per 16 values, not per 8.
            while left >= 16 {
                vst1q_u16(d, map::<HS>(vld1q_f32(s), vld1q_f32(s.add(4)), k));
                vst1q_u16(
                    d.add(8),
                    map::<HS>(vld1q_f32(s.add(8)), vld1q_f32(s.add(12)), k),
                );
                (s, d, left) = (s.add(16), d.add(16), left - 16);
            }
            if left >= 8 {
                vst1q_u16(d, map::<HS>(vld1q_f32(s), vld1q_f32(s.add(4)), k));
                (s, d, left) = (s.add(8), d.add(8), left - 8);
            }
            if left > 0 {
                let (d, s) = (d.add(left).sub(8), s.add(left).sub(8));
                vst1q_u16(d, map::<HS>(vld1q_f32(s), vld1q_f32(s.add(4)), k));
            }
        } else if n >= 4 {
            let a = vld1q_f32(s);
            vst1_u16(d, vget_low_u16(map::<HS>(a, a, k)));
            let b = vld1q_f32(s.add(n - 4));
            vst1_u16(d.add(n - 4), vget_low_u16(map::<HS>(b, b, k)));
        } else {
            for i in 0..n {
                let v = vdupq_n_f32(*s.add(i));
                vst1q_lane_u16::<0>(d.add(i), map::<HS>(v, v, k));
            }
        }
    }
}

/// Writes `s[2i]` to `e[i]` and `s[2i + 1]` to `o[i]` for the `n` floats of `s`, rounded (`e`
/// gets `⌈n/2⌉`, `o` `⌊n/2⌋`).
///
/// # Safety
/// `s` readable for `n` floats, `e` writable for `⌈n/2⌉` values and `o` for `⌊n/2⌋`; FEAT_FP16.
#[inline(always)]
unsafe fn split<const HS: bool>(e: *mut u16, o: *mut u16, s: *const f32, n: usize, k: &HsConst) {
    let pairs = n / 2;
    // SAFETY (all): pair indices below `pairs`, element indices below `n`.
    unsafe {
        // Eight pairs from `s`: evens to `e`, odds to `o`.
        let eight = |e: *mut u16, o: *mut u16, s: *const f32| {
            let (v, w) = (vld2q_f32(s), vld2q_f32(s.add(8)));
            vst1q_u16(e, map::<HS>(v.0, w.0, k));
            vst1q_u16(o, map::<HS>(v.1, w.1, k));
        };
        // Four pairs.
        let four = |e: *mut u16, o: *mut u16, s: *const f32| {
            let v = vld2q_f32(s);
            vst1_u16(e, vget_low_u16(map::<HS>(v.0, v.0, k)));
            vst1_u16(o, vget_low_u16(map::<HS>(v.1, v.1, k)));
        };
        if pairs >= 8 {
            let (mut e, mut o, mut s, mut left) = (e, o, s, pairs);
            while left >= 8 {
                eight(e, o, s);
                (s, e, o, left) = (s.add(16), e.add(8), o.add(8), left - 8);
            }
            if left > 0 {
                let back = 8 - left;
                eight(e.sub(back), o.sub(back), s.sub(2 * back));
            }
        } else if pairs >= 4 {
            four(e, o, s);
            let back = pairs - 4;
            four(e.add(back), o.add(back), s.add(2 * back));
        } else {
            for i in 0..pairs {
                let v = vdupq_n_f32(*s.add(2 * i));
                vst1q_lane_u16::<0>(e.add(i), map::<HS>(v, v, k));
                let v = vdupq_n_f32(*s.add(2 * i + 1));
                vst1q_lane_u16::<0>(o.add(i), map::<HS>(v, v, k));
            }
        }
        if n % 2 == 1 {
            let v = vdupq_n_f32(*s.add(n - 1));
            vst1q_lane_u16::<0>(e.add(pairs), map::<HS>(v, v, k));
        }
    }
}
