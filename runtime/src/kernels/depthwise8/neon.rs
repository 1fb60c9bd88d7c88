//! The aarch64 int8 depthwise kernel (`neon`, any ARMv8 core): each output row in vectors of
//! 16 columns (8 on the last, narrow part of a row), the four i32x4 sums in registers across
//! all taps: per tap one `ld1r` weight, two loads of 8 i16 values and four widening
//! multiply-adds (`smlal`/`smlal2`). The output stage ([`Store`], compiled once per output
//! type and activation, its constants in registers) converts four lanes per instruction and
//! either stores floats (`scvtf`, `fmul`, the activation) or requantizes 16 sums at once
//! (`scvtf`, `fmul`, HardSwish's float steps if any, `fcvtns`, saturating narrows with the
//! zero point added in i16, the clamp in codes); a partial last vector goes through a stack
//! buffer.
//!
//! 3×3 and 5×5 jobs (a [`Square`]) run square tiles instead, as the float kernel does: 2
//! output rows × 16 columns with the weights in registers (`smlal` by element) and each input
//! row loaded once for both output rows (`square`).
//!
//! The kernel reads the i16 layout ([`InputFormat::Offsets`](super::InputFormat)); given
//! codes, it hands the plane to the portable kernel. The output stages and the per-tap rows
//! ([`rows`], over any [`Values`]) serve the `sdot` kernel too (`super::dot`).

use std::arch::aarch64::*;

use super::{Depthwise8Kernel, Input, Out, PlaneJob, Square};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn Depthwise8Kernel {
        &Neon(())
    }
}

impl Depthwise8Kernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &PlaneJob<'_>, out: Out<'_>) {
        job.check(out.len());
        let Input::Offsets(input) = job.input else {
            return super::generic().run(job, out);
        };
        // SAFETY: NEON is baseline on aarch64; the job passed its check, so every read (whole
        // vectors included) is inside `input`.
        unsafe { with_store(job, out, &I16Plane(input.as_ptr())) }
    }
}

/// What a kernel does with a checked plane once its output stage is chosen.
pub(super) trait Body {
    /// Computes the plane of `job` through `st`.
    ///
    /// # Safety
    /// `job` passed its check, its input is what the body reads; NEON (and the body's own
    /// features).
    unsafe fn run<S: Store>(&self, job: &PlaneJob<'_>, st: &S);
}

/// Runs `body` with the output stage for `out` and the job's activation, compiled once per
/// output type and activation.
///
/// # Safety
/// As [`Body::run`]; `out` holds the job's `rows × cols` outputs (its check).
#[inline(always)]
pub(super) unsafe fn with_store<B: Body>(job: &PlaneJob<'_>, out: Out<'_>, body: &B) {
    // Clamping to (−∞, +∞) changes no value (`f32(acc) · scale` is never NaN): skipped, as
    // in the float kernel. An int8 output clamps in codes, so only HardSwish needs the float
    // clamp there.
    let act = job.act;
    // SAFETY: the caller's contract; every store is inside the plane (`rows × cols`, partial
    // vectors through a stack buffer).
    unsafe {
        match (out, act.clamps(), act.hardswish) {
            (Out::F32(o), true, false) => body.run(job, &F32::<true, false>::new(job, o)),
            (Out::F32(o), false, false) => body.run(job, &F32::<false, false>::new(job, o)),
            (Out::F32(o), true, true) => body.run(job, &F32::<true, true>::new(job, o)),
            (Out::F32(o), false, true) => body.run(job, &F32::<false, true>::new(job, o)),
            (Out::I8 { out, inv_scale, zp }, _, false) => {
                body.run(job, &I8::<false, false>::new(job, out, inv_scale, zp))
            }
            (Out::I8 { out, inv_scale, zp }, true, true) => {
                body.run(job, &I8::<true, true>::new(job, out, inv_scale, zp))
            }
            (Out::I8 { out, inv_scale, zp }, false, true) => {
                body.run(job, &I8::<false, true>::new(job, out, inv_scale, zp))
            }
        }
    }
}

/// The `neon` kernel's body on an i16 plane: square tiles, else per-tap rows.
struct I16Plane(*const i16);

impl Body for I16Plane {
    #[inline(always)]
    unsafe fn run<S: Store>(&self, job: &PlaneJob<'_>, st: &S) {
        // SAFETY: the caller's contract.
        unsafe {
            match job.geometry.square() {
                Some(sq) => square(job, self.0, sq, *st),
                None => rows(job, I16Values(self.0), job.bias, st),
            }
        }
    }
}

/// An output stage: stores 8 or 16 sums (2 or 4 vectors of 4) of one output row at a plane
/// index, whole, or only up to the plane's end (through a stack buffer). Lanes past the row's
/// end land in the next rows, which are stored after it ([`Columns`]). Its constants live in
/// registers across a plane: implementations are inlined into the tile loops.
pub(super) trait Store: Copy {
    /// Stores `acc` (2 or 4 vectors) at plane index `at`.
    ///
    /// # Safety
    /// `at` is inside the plane; NEON.
    unsafe fn store(&self, acc: &[int32x4_t], at: usize);
}

/// The column vectors of an output row of `cols`, in order. A row of up to 16 is one vector
/// (8 or 16 lanes) whose excess lanes the following rows overwrite: rows go in order when a
/// row is one vector. A wider row is whole vectors of 16, then its end as one vector of 16
/// or 8 that overlaps the vector before it, so that no store stops inside a row; the
/// overlapping outputs are computed twice, the same values. Plain counts and positions, so
/// that the tile loops keep their registers.
#[derive(Clone, Copy)]
pub(super) struct Columns {
    cols: usize,
    /// Vectors of 16, the `i`-th at [`Columns::wide_at`].
    pub(super) wide: usize,
    /// Where a vector of 8 after them starts, if there is one.
    pub(super) narrow: Option<usize>,
}

impl Columns {
    /// The vectors of a row of `cols`.
    #[inline(always)]
    pub(super) fn of(cols: usize) -> Columns {
        let (whole, left) = (cols / 16, cols % 16);
        let (wide, narrow) = match (cols, left) {
            (..=8, _) => (0, Some(0)),
            (..=16, _) => (1, None),
            (_, 0) => (whole, None),
            (_, 9..) => (whole + 1, None),
            _ => (whole, Some(cols - 8)),
        };
        Columns { cols, wide, narrow }
    }

    /// Where the `i`-th vector of 16 starts.
    #[inline(always)]
    pub(super) fn wide_at(&self, i: usize) -> usize {
        (16 * i).min(self.cols.saturating_sub(16))
    }
}

/// `act(f32(acc) · scale)` for four sums (`PlaneJob::value`, lane by lane).
#[derive(Clone, Copy)]
struct Value<const CLAMP: bool, const HS: bool> {
    scale: float32x4_t,
    low: float32x4_t,
    high: float32x4_t,
}

impl<const CLAMP: bool, const HS: bool> Value<CLAMP, HS> {
    #[inline(always)]
    unsafe fn new(job: &PlaneJob<'_>) -> Self {
        Value {
            scale: vdupq_n_f32(job.scale),
            low: vdupq_n_f32(job.act.low),
            high: vdupq_n_f32(job.act.high),
        }
    }

    /// The clamped value, before HardSwish.
    #[inline(always)]
    unsafe fn clamped(&self, acc: int32x4_t) -> float32x4_t {
        let x = vmulq_f32(vcvtq_f32_s32(acc), self.scale);
        match CLAMP {
            true => vminq_f32(vmaxq_f32(x, self.low), self.high),
            false => x,
        }
    }

    /// HardSwish's factor of a clamped value (`hardswish_gate`).
    #[inline(always)]
    unsafe fn gate(x: float32x4_t) -> float32x4_t {
        Self::unit(vaddq_f32(
            vmulq_f32(x, vdupq_n_f32(1.0 / 6.0)),
            vdupq_n_f32(0.5),
        ))
    }

    /// `min(max(t, 0), 1)` lane by lane (`unit`).
    #[inline(always)]
    unsafe fn unit(t: float32x4_t) -> float32x4_t {
        vminq_f32(vmaxq_f32(t, vdupq_n_f32(0.0)), vdupq_n_f32(1.0))
    }
}

/// Float outputs.
#[derive(Clone, Copy)]
struct F32<const CLAMP: bool, const HS: bool> {
    out: *mut f32,
    len: usize,
    value: Value<CLAMP, HS>,
}

impl<const CLAMP: bool, const HS: bool> F32<CLAMP, HS> {
    #[inline(always)]
    unsafe fn new(job: &PlaneJob<'_>, out: &mut [f32]) -> Self {
        F32 {
            out: out.as_mut_ptr(),
            len: out.len(),
            value: Value::new(job),
        }
    }
}

impl<const CLAMP: bool, const HS: bool> Store for F32<CLAMP, HS> {
    #[inline(always)]
    unsafe fn store(&self, acc: &[int32x4_t], at: usize) {
        inside(self.out, self.len, at, acc.len() * 4, |p| {
            for (i, &a) in acc.iter().enumerate() {
                let x = self.value.clamped(a);
                let y = match HS {
                    true => vmulq_f32(x, Value::<CLAMP, HS>::gate(x)),
                    false => x,
                };
                vst1q_f32(p.add(4 * i), y);
            }
        })
    }
}

/// int8 outputs (`PlaneJob::code`, lane by lane): `fcvtns`, then saturating narrows with the
/// zero point added in i16 (`sqxtn`, `sqadd`) and the clamp in codes (`smax`, `smin`) on 16
/// lanes at once.
#[derive(Clone, Copy)]
struct I8<const CLAMP: bool, const HS: bool> {
    out: *mut i8,
    len: usize,
    value: Value<CLAMP, HS>,
    mul: float32x4_t,
    sixth: float32x4_t,
    inv: float32x4_t,
    zp: int16x8_t,
    lo: int8x16_t,
    hi: int8x16_t,
}

impl<const CLAMP: bool, const HS: bool> I8<CLAMP, HS> {
    #[inline(always)]
    unsafe fn new(job: &PlaneJob<'_>, out: &mut [i8], inv_scale: f32, zp: i32) -> Self {
        let rq = job.requant(inv_scale, zp);
        I8 {
            out: out.as_mut_ptr(),
            len: out.len(),
            value: Value::new(job),
            mul: vdupq_n_f32(rq.mul),
            sixth: vdupq_n_f32(rq.sixth),
            inv: vdupq_n_f32(rq.inv_scale),
            // In [−128, 127] (`Out::I8`); `lo`, `hi` too (`requant`).
            zp: vdupq_n_s16(rq.zp as i16),
            lo: vdupq_n_s8(rq.lo as i8),
            hi: vdupq_n_s8(rq.hi as i8),
        }
    }

    /// `round_half_even(v)` of four sums, saturated to i32.
    #[inline(always)]
    unsafe fn rounded(&self, acc: int32x4_t) -> int32x4_t {
        let v = match (HS, CLAMP) {
            (false, _) => vmulq_f32(vcvtq_f32_s32(acc), self.mul),
            (true, false) => {
                let a = vcvtq_f32_s32(acc);
                let t = vaddq_f32(vmulq_f32(a, self.sixth), vdupq_n_f32(0.5));
                vmulq_f32(vmulq_f32(a, self.mul), Value::<CLAMP, HS>::unit(t))
            }
            (true, true) => {
                let x = self.value.clamped(acc);
                vmulq_f32(vmulq_f32(x, self.inv), Value::<CLAMP, HS>::gate(x))
            }
        };
        vcvtnq_s32_f32(v)
    }

    /// Eight sums to `round(v) + zp`, saturated to i16.
    #[inline(always)]
    unsafe fn eight(&self, a: int32x4_t, b: int32x4_t) -> int16x8_t {
        let r = vqmovn_high_s32(vqmovn_s32(self.rounded(a)), self.rounded(b));
        vqaddq_s16(r, self.zp)
    }
}

impl<const CLAMP: bool, const HS: bool> Store for I8<CLAMP, HS> {
    #[inline(always)]
    unsafe fn store(&self, acc: &[int32x4_t], at: usize) {
        inside(self.out, self.len, at, acc.len() * 4, |p| {
            // With HardSwish the clamp is the whole range: the narrows saturate to it.
            let lo = vqmovn_s16(self.eight(acc[0], acc[1]));
            if acc.len() == 4 {
                let codes = vqmovn_high_s16(lo, self.eight(acc[2], acc[3]));
                let codes = match HS {
                    true => codes,
                    false => vminq_s8(vmaxq_s8(codes, self.lo), self.hi),
                };
                vst1q_s8(p, codes);
            } else {
                let codes = match HS {
                    true => lo,
                    false => vmin_s8(vmax_s8(lo, vget_low_s8(self.lo)), vget_low_s8(self.hi)),
                };
                vst1_s8(p, codes);
            }
        })
    }
}

/// Runs `write` (which writes `lanes` ≤ 16 values) on `out + at` when they fit before the
/// plane's end `len`, else on a stack buffer, and copies the part inside the plane.
///
/// # Safety
/// `out` is writable for `len` values and `at < len`.
#[inline(always)]
unsafe fn inside<T: Copy>(
    out: *mut T,
    len: usize,
    at: usize,
    lanes: usize,
    write: impl FnOnce(*mut T),
) {
    let valid = len - at;
    if valid >= lanes {
        return write(out.add(at));
    }
    let mut buf = std::mem::MaybeUninit::<[T; 16]>::uninit();
    write(buf.as_mut_ptr().cast());
    std::ptr::copy_nonoverlapping(buf.as_ptr().cast(), out.add(at), valid);
}

/// Where the per-tap rows read a plane's values, as `q − zp` (or `q`, with the bias
/// corrected) in i16 lanes.
pub(super) trait Values: Copy {
    /// 8 values from index `i`.
    unsafe fn eight(self, i: usize) -> int16x8_t;
    /// 16 values from index `i`, in two vectors.
    unsafe fn sixteen(self, i: usize) -> (int16x8_t, int16x8_t);
}

/// An i16 plane of `q − zp`.
#[derive(Clone, Copy)]
struct I16Values(*const i16);

impl Values for I16Values {
    #[inline(always)]
    unsafe fn eight(self, i: usize) -> int16x8_t {
        vld1q_s16(self.0.add(i))
    }

    #[inline(always)]
    unsafe fn sixteen(self, i: usize) -> (int16x8_t, int16x8_t) {
        (vld1q_s16(self.0.add(i)), vld1q_s16(self.0.add(i + 8)))
    }
}

/// Each output row of `job` through `st`, in vectors of 16 (8 on the last, narrow part) with
/// every tap's weight broadcast, the sums starting at `bias`, the input read through `x`.
///
/// # Safety
/// The job passed its check and `x` reads its input; NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn rows<S: Store, X: Values>(job: &PlaneJob<'_>, x: X, bias: i32, st: &S) {
    let g = job.geometry;
    let (cols, n) = (g.cols(), g.taps().len());
    let (taps, weights) = (g.taps().as_ptr(), job.weights.as_ptr());
    let bias = vdupq_n_s32(bias);
    let (st, cl) = (*st, Columns::of(cols));
    for r in 0..g.rows() {
        let base = r * g.row_step();
        let run = |c: usize, wide: bool| {
            let at = r * cols + c;
            if wide {
                let mut acc = [bias; 4];
                for t in 0..n {
                    let w = vld1q_dup_s16(weights.add(t));
                    let (x0, x1) = x.sixteen(base + *taps.add(t) + c);
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x0, w);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(x1), vget_low_s16(w));
                    acc[3] = vmlal_high_s16(acc[3], x1, w);
                }
                let out = acc;
                st.store(&out, at);
            } else {
                let mut acc = [bias; 2];
                for t in 0..n {
                    let w = vld1q_dup_s16(weights.add(t));
                    let x0 = x.eight(base + *taps.add(t) + c);
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x0, w);
                }
                let out = acc;
                st.store(&out, at);
            }
        };
        for i in 0..cl.wide {
            run(cl.wide_at(i), true);
        }
        if let Some(c) = cl.narrow {
            run(c, false);
        }
    }
}

/// The square tiles of a 3×3 or 5×5 job: 2 output rows (1 for an odd last row) × 16 columns
/// (8 where at most 8 are left), the K² weights in registers (8 per vector, `smlal` by
/// element), each input row of the tile loaded once (one pointer per phase plane and input
/// row, kernel columns as constant offsets) for every output row that reads it. `st` writes
/// one output row's accumulators (`L/4` of them for `L` columns) at a plane index.
///
/// # Safety
/// The job passed its check with `sq` its square; NEON.
// `kx % s` in the tiles' macros is `kx % 1` for stride 1.
#[allow(clippy::modulo_one)]
#[target_feature(enable = "neon")]
unsafe fn square<S: Store>(job: &PlaneJob<'_>, input: *const i16, sq: Square, st: S) {
    let g = job.geometry;
    let (rows, cols, step, ld, col) = (g.rows(), g.cols(), g.row_step(), sq.ld, sq.column);
    let bias = vdupq_n_s32(job.bias);
    // The weights, zero-padded to 4 vectors of 8.
    let mut w = [0i16; 32];
    w[..job.weights.len()].copy_from_slice(job.weights);
    let wv: [int16x8_t; 4] = std::array::from_fn(|i| vld1q_s16(w.as_ptr().add(8 * i)));
    // Input row `u` (from the tile's first output row's first input row), kernel column
    // `kx`: its `V` vectors loaded once; output row `i` of the tile reads it as kernel row
    // `ky = u − s·i` and adds tap `K·ky + kx` when `0 ≤ ky < K` (known when compiling).
    macro_rules! step {
        ($a:ident, $p0:ident, $p1:ident, $k:literal, $s:literal, $v:literal,
         [$($i:literal)*], $u:literal, $kx:literal) => {{
            let p = if $kx % $s == 0 { $p0 } else { $p1 }.add($kx / $s);
            let x: [int16x8_t; $v] = std::array::from_fn(|j| vld1q_s16(p.add(8 * j)));
            $({
                const KY: usize = ($u as usize).wrapping_sub($s * $i);
                const T: usize = if KY < $k { $k * KY + $kx } else { 0 };
                if KY < $k {
                    for j in 0..$v {
                        const L: i32 = (T % 8) as i32;
                        $a[$i][2 * j] =
                            vmlal_laneq_s16::<L>($a[$i][2 * j], vget_low_s16(x[j]), wv[T / 8]);
                        $a[$i][2 * j + 1] =
                            vmlal_high_laneq_s16::<L>($a[$i][2 * j + 1], x[j], wv[T / 8]);
                    }
                }
            })*
        }};
    }
    macro_rules! row {
        ($a:ident, $base:expr, $k:literal, $s:literal, $v:literal, $is:tt, $u:literal,
         [$($kx:literal)*]) => {{
            let pu = $base.add($u * ld);
            let (p0, p1) = (pu.add(col[0]), pu.add(col[$s - 1]));
            $( step!($a, p0, p1, $k, $s, $v, $is, $u, $kx); )*
        }};
    }
    // A tile: output rows r..r+R × 8·V columns from c.
    macro_rules! tile {
        ($r:expr, $c:expr, $k:literal, $s:literal, $rows:literal, $is:tt, $v:literal,
         [$($u:literal)*], $kxs:tt) => {{
            let (r, c) = ($r, $c);
            let mut a = [[bias; 2 * $v]; $rows];
            let base = input.add(r * step + c);
            $( row!(a, base, $k, $s, $v, $is, $u, $kxs); )*
            for i in 0..$rows {
                // A copy: the tile's accumulators never have their address taken, so they
                // stay in registers across the taps.
                let acc: [int32x4_t; 2 * $v] = a[i];
                st.store(&acc, (r + i) * cols + c);
            }
        }};
    }
    // Every row of the column block at c: pairs of rows, then an odd last row.
    macro_rules! block {
        ($c:expr, $v:literal, $k:literal, $s:literal, $u2:tt, $u1:tt, $kxs:tt) => {{
            let mut r = 0;
            while r + 2 <= rows {
                tile!(r, $c, $k, $s, 2, [0 1], $v, $u2, $kxs);
                r += 2;
            }
            if r < rows {
                tile!(r, $c, $k, $s, 1, [0], $v, $u1, $kxs);
            }
        }};
    }
    macro_rules! blocks {
        ($($rest:tt)*) => {{
            let cl = Columns::of(cols);
            for i in 0..cl.wide {
                block!(cl.wide_at(i), 2, $($rest)*);
            }
            if let Some(c) = cl.narrow {
                block!(c, 1, $($rest)*);
            }
        }};
    }
    match (sq.k, sq.stride) {
        (3, 1) => blocks!(3, 1, [0 1 2 3], [0 1 2], [0 1 2]),
        (3, _) => blocks!(3, 2, [0 1 2 3 4], [0 1 2], [0 1 2]),
        (_, 1) => blocks!(5, 1, [0 1 2 3 4 5], [0 1 2 3 4], [0 1 2 3 4]),
        _ => blocks!(5, 2, [0 1 2 3 4 5 6], [0 1 2 3 4], [0 1 2 3 4]),
    }
}
