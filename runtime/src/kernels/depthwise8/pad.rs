//! Writes one input plane into the padded layouts the int8 depthwise kernels read (the parent
//! module): as i16 `q − zp` ([`fill`]) or as the i8 codes `q` ([`fill_codes`]), at the same
//! placement as the float layout ([`Placement`]: rows `ld` apart, stride 2 as two phase
//! planes). Only the interior is written: the op fills the buffer with the padding first
//! (0 for offsets, once per task; `zp` for codes, whenever the zero point changes).
//!
//! The source is the previous layer's int8 codes (`q − zp` is one subtraction), or floats
//! quantized on the way, straight to `q − zp` ([`offset_code`]):
//!
//! ```text
//! q − zp = min(max(round_half_even(x · inv), −128 − zp), 127 − zp)    rounding saturated, NaN → 0
//! ```
//!
//! (the zero point never enters the float arithmetic), optionally through a HardSwish first:
//! tract's steps (`t = max(min(x + 3, 6), 0)`, then `t · x`, as
//! [`crate::kernels::depthwise::pad::hardswish`]) with its final `· ⅙` folded into the
//! quantization's multiply, `round(t · x · (inv · ⅙))` ([`hardswish_offset_code`]): one
//! multiply fewer, and a HardSwish the layer alone reads is never written out.
//!
//! A code is the offset plus `zp` (in `[−128, 127]` by the clamp). Every variant gives the
//! same bits. The portable one goes a row at a time through safe slices; the NEON one
//! converts 8 values per step, two steps a loop turn (`fmul`, `fcvtns`, a saturating narrow
//! and the clamp in i16; `sxtl` for codes; for a codes layout the zero point added back and
//! one narrow), splits stride-2 rows by `ld2`, and ends a row with an overlapping last vector
//! instead of a scalar tail. A row shorter than a vector (7×7 planes, stride-2 rows of 15 or fewer) is one vector
//! too: it reads on into the next source row and writes the padding value in the lanes past
//! its end, which land in the row's padding; only rows near the plane's end, where that read
//! would leave the plane, go value by value.

use crate::kernels::depthwise::pad::hardswish_product;
pub use crate::kernels::depthwise::pad::Placement;

/// `q − zp` of a float quantized with `1 / inv` and zero point `zp` (module docs): in
/// `[−128 − zp, 127 − zp]`, 0 for NaN.
#[inline(always)]
pub fn offset_code(x: f32, inv: f32, zp: i32) -> i16 {
    let r = super::round_i32(x * inv);
    r.max(-128 - zp).min(127 - zp) as i16
}

/// `q − zp` of HardSwish(x) (module docs): tract's steps up to `t · x`, whose `· ⅙` joins the
/// quantization's multiply, `inv6 = inv · ⅙` (computed once per plane).
#[inline(always)]
pub fn hardswish_offset_code(x: f32, inv6: f32, zp: i32) -> i16 {
    offset_code(hardswish_product(x), inv6, zp)
}

/// `inv · ⅙`: the multiplier of [`hardswish_offset_code`].
#[inline(always)]
pub fn hardswish_inv(inv: f32) -> f32 {
    inv * (1.0 / 6.0)
}

/// A plane to lay out.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// int8 codes with this zero point.
    I8(&'a [i8], i32),
    /// Floats quantized with `1 / scale` and this zero point.
    F32(&'a [f32], f32, i32),
    /// Floats through tract's HardSwish, then quantized as [`Source::F32`].
    HardSwishF32(&'a [f32], f32, i32),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::I8(s, _) => s.len(),
            Source::F32(s, ..) | Source::HardSwishF32(s, ..) => s.len(),
        }
    }

    /// The zero point: the code the plane's padding holds in a codes layout.
    pub fn zero_point(&self) -> i32 {
        match *self {
            Source::I8(_, zp) | Source::F32(_, _, zp) | Source::HardSwishF32(_, _, zp) => zp,
        }
    }
}

/// Writes the `[h, w]` plane `src` into `buf` at `at` as `q − zp` (portable, or NEON on
/// aarch64).
pub fn fill(buf: &mut [i16], src: Source<'_>, hw: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), hw);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the placement was just checked.
    unsafe {
        neon::fill_unchecked(
            buf.as_mut_ptr(),
            neon::ToOffsets::new(src.zero_point()),
            src,
            hw,
            at,
        )
    }
    #[cfg(not(target_arch = "aarch64"))]
    fill_portable(buf, src, hw, at)
}

/// Writes the `[h, w]` plane `src` into `buf` at `at` as its codes `q` (portable, or NEON on
/// aarch64). The padding, `src`'s zero point, is the caller's to write.
pub fn fill_codes(buf: &mut [i8], src: Source<'_>, hw: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), hw);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the placement was just checked.
    unsafe {
        match src {
            // Codes at the plane's own zero point: the bytes as they are.
            Source::I8(s, _) => neon::copy_unchecked(buf.as_mut_ptr(), s.as_ptr(), hw, at),
            _ => neon::fill_unchecked(
                buf.as_mut_ptr(),
                neon::ToCodes::new(src.zero_point()),
                src,
                hw,
                at,
            ),
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    fill_codes_portable(buf, src, hw, at)
}

/// [`fill`] row by row with safe slices: the reference the NEON variant is tested against.
pub fn fill_portable(buf: &mut [i16], src: Source<'_>, hw: [usize; 2], at: &Placement) {
    portable(buf, src, hw, at, |v| v)
}

/// [`fill_codes`] row by row with safe slices.
pub fn fill_codes_portable(buf: &mut [i8], src: Source<'_>, hw: [usize; 2], at: &Placement) {
    let zp = src.zero_point() as i16;
    // The offset is in `[−128 − zp, 127 − zp]`: the code fits.
    portable(buf, src, hw, at, |v| (v + zp) as i8)
}

/// The portable fills: each value's offset through `to`.
#[inline(always)]
fn portable<T: Copy>(
    buf: &mut [T],
    src: Source<'_>,
    [h, w]: [usize; 2],
    at: &Placement,
    to: impl Fn(i16) -> T,
) {
    at.check(buf.len(), src.len(), [h, w]);
    if w == 0 {
        return;
    }
    // One loop per kind of source, so no value pays for a match.
    match src {
        Source::I8(s, zp) => rows(buf, at, [h, w], |i| to(i16::from(s[i]) - zp as i16)),
        Source::F32(s, inv, zp) => rows(buf, at, [h, w], |i| to(offset_code(s[i], inv, zp))),
        Source::HardSwishF32(s, inv, zp) => {
            let inv6 = hardswish_inv(inv);
            rows(buf, at, [h, w], |i| {
                to(hardswish_offset_code(s[i], inv6, zp))
            })
        }
    }
}

/// Every row of an `[h, w]` plane, `f(i)` for its element `i`.
#[inline(always)]
fn rows<T: Copy>(buf: &mut [T], at: &Placement, [h, w]: [usize; 2], f: impl Fn(usize) -> T) {
    for y in 0..h {
        put(buf, at, (y + at.top) * at.ld, w, |x| f(y * w + x));
    }
}

/// One row of `n` values (`f(i)` for column `i`) into its padded row starting at `start`
/// (both phases at stride 2).
#[inline(always)]
fn put<T: Copy>(buf: &mut [T], at: &Placement, start: usize, n: usize, f: impl Fn(usize) -> T) {
    let pl = at.left;
    if at.stride == 1 {
        for (i, d) in buf[start + pl..][..n].iter_mut().enumerate() {
            *d = f(i);
        }
        return;
    }
    // Stride 2: padded column `i + pl` goes to phase `(i + pl) mod 2`, position
    // `⌊(i + pl)/2⌋`; even `i` land in one phase, odd `i` in the other.
    let (first, second) = buf.split_at_mut(at.phase_len);
    let (even, odd) = if pl.is_multiple_of(2) {
        (&mut first[start + pl / 2..], &mut second[start + pl / 2..])
    } else {
        (
            &mut second[start + pl / 2..],
            &mut first[start + pl.div_ceil(2)..],
        )
    };
    let pairs = n / 2;
    for (i, (e, o)) in even[..pairs].iter_mut().zip(&mut odd[..pairs]).enumerate() {
        *e = f(2 * i);
        *o = f(2 * i + 1);
    }
    if n % 2 == 1 {
        even[pairs] = f(n - 1);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{Placement, Source};

    /// How 8 source values become 8 values of `q − zp`.
    trait Convert: Copy {
        type Elem: Copy;

        /// Whether [`Convert::eight`] and [`Convert::pairs`] give offsets in range (else
        /// `round(x · inv)` saturated to i16, for the destination to clamp).
        const CLAMPED: bool;

        /// Element `i` of the row at `s`, its offset `q − zp`.
        unsafe fn one(self, s: *const Self::Elem, i: usize) -> i16;

        /// 8 contiguous values at `s`.
        unsafe fn eight(self, s: *const Self::Elem) -> int16x8_t;

        /// The 8 even and 8 odd values of the 16 at `s`.
        unsafe fn pairs(self, s: *const Self::Elem) -> (int16x8_t, int16x8_t);
    }

    #[derive(Clone, Copy)]
    struct Codes {
        zp: int16x8_t,
        zp_scalar: i16,
    }

    impl Convert for Codes {
        type Elem = i8;
        const CLAMPED: bool = true;

        #[inline(always)]
        unsafe fn one(self, s: *const i8, i: usize) -> i16 {
            // SAFETY: the caller's element.
            i16::from(unsafe { *s.add(i) }) - self.zp_scalar
        }

        #[inline(always)]
        unsafe fn eight(self, s: *const i8) -> int16x8_t {
            // SAFETY: 8 bytes at `s`; NEON.
            unsafe { vsubq_s16(vmovl_s8(vld1_s8(s)), self.zp) }
        }

        #[inline(always)]
        unsafe fn pairs(self, s: *const i8) -> (int16x8_t, int16x8_t) {
            // SAFETY: 16 bytes at `s`; NEON.
            unsafe {
                let v = vld2_s8(s);
                (
                    vsubq_s16(vmovl_s8(v.0), self.zp),
                    vsubq_s16(vmovl_s8(v.1), self.zp),
                )
            }
        }
    }

    /// Floats quantized (after HardSwish with `HS`, `inv` then `inv · ⅙`).
    #[derive(Clone, Copy)]
    struct Floats<const HS: bool> {
        inv: float32x4_t,
        inv_scalar: f32,
        zp_scalar: i32,
    }

    impl<const HS: bool> Floats<HS> {
        /// `v`, or `t · v` of its HardSwish (`super::hardswish_offset_code`; the `· ⅙` is in
        /// `inv`).
        #[inline(always)]
        unsafe fn map(self, v: float32x4_t) -> float32x4_t {
            if !HS {
                return v;
            }
            // SAFETY: NEON.
            unsafe {
                let t = vaddq_f32(v, vdupq_n_f32(3.0));
                let t = vmaxq_f32(vminq_f32(t, vdupq_n_f32(6.0)), vdupq_n_f32(0.0));
                vmulq_f32(t, v)
            }
        }

        /// 8 floats in two vectors to `round(x · inv)`, saturated to i16.
        #[inline(always)]
        unsafe fn rounded(self, a: float32x4_t, b: float32x4_t) -> int16x8_t {
            // SAFETY: NEON.
            unsafe {
                let qa = vcvtnq_s32_f32(vmulq_f32(self.map(a), self.inv));
                let qb = vcvtnq_s32_f32(vmulq_f32(self.map(b), self.inv));
                vqmovn_high_s32(vqmovn_s32(qa), qb)
            }
        }
    }

    impl<const HS: bool> Convert for Floats<HS> {
        type Elem = f32;
        const CLAMPED: bool = false;

        #[inline(always)]
        unsafe fn one(self, s: *const f32, i: usize) -> i16 {
            // SAFETY: the caller's element.
            let x = unsafe { *s.add(i) };
            match HS {
                true => super::hardswish_offset_code(x, self.inv_scalar, self.zp_scalar),
                false => super::offset_code(x, self.inv_scalar, self.zp_scalar),
            }
        }

        #[inline(always)]
        unsafe fn eight(self, s: *const f32) -> int16x8_t {
            // SAFETY: 8 floats at `s`; NEON.
            unsafe { self.rounded(vld1q_f32(s), vld1q_f32(s.add(4))) }
        }

        #[inline(always)]
        unsafe fn pairs(self, s: *const f32) -> (int16x8_t, int16x8_t) {
            // SAFETY: 16 floats at `s`; NEON.
            unsafe {
                let (v, w) = (vld2q_f32(s), vld2q_f32(s.add(8)));
                (self.rounded(v.0, w.0), self.rounded(v.1, w.1))
            }
        }
    }

    /// Where 8 converted values go, as offsets or as codes. Both clamp an unclamped
    /// conversion's values in the same two instructions.
    pub(super) trait Dest: Copy {
        type Elem: Copy;

        /// Writes 8 values at `d`: offsets in range (`clamped`, a constant of the
        /// conversion), or `round(x · inv)` to clamp to the codes.
        unsafe fn eight(self, d: *mut Self::Elem, v: int16x8_t, clamped: bool);

        /// Writes one offset (in range) at `d`.
        unsafe fn one(self, d: *mut Self::Elem, v: i16);
    }

    /// The i16 layout: offsets, clamped to `[−128 − zp, 127 − zp]` (`smax`, `smin`).
    #[derive(Clone, Copy)]
    pub(super) struct ToOffsets {
        lo: int16x8_t,
        hi: int16x8_t,
    }

    impl ToOffsets {
        /// For a zero point in `[−128, 127]` (both ends then fit i16).
        pub(super) fn new(zp: i32) -> ToOffsets {
            // SAFETY: NEON is baseline on aarch64.
            unsafe {
                ToOffsets {
                    lo: vdupq_n_s16((-128 - zp) as i16),
                    hi: vdupq_n_s16((127 - zp) as i16),
                }
            }
        }
    }

    impl Dest for ToOffsets {
        type Elem = i16;

        #[inline(always)]
        unsafe fn eight(self, d: *mut i16, v: int16x8_t, clamped: bool) {
            // SAFETY: the caller's 8 values at `d`; NEON.
            unsafe {
                let v = match clamped {
                    true => v,
                    false => vminq_s16(vmaxq_s16(v, self.lo), self.hi),
                };
                vst1q_s16(d, v)
            }
        }

        #[inline(always)]
        unsafe fn one(self, d: *mut i16, v: i16) {
            // SAFETY: the caller's value at `d`.
            unsafe { *d = v }
        }
    }

    /// The codes layout: the zero point added back and narrowed, saturating where the value
    /// is not yet clamped (`sqadd`, `sqxtn`: the clamp to `[−128, 127]` for free), plainly
    /// otherwise (`add`, `xtn`).
    #[derive(Clone, Copy)]
    pub(super) struct ToCodes {
        zp: int16x8_t,
        zp_scalar: i16,
    }

    impl ToCodes {
        /// For a zero point in `[−128, 127]`.
        pub(super) fn new(zp: i32) -> ToCodes {
            ToCodes {
                // SAFETY: NEON is baseline on aarch64.
                zp: unsafe { vdupq_n_s16(zp as i16) },
                zp_scalar: zp as i16,
            }
        }
    }

    impl Dest for ToCodes {
        type Elem = i8;

        #[inline(always)]
        unsafe fn eight(self, d: *mut i8, v: int16x8_t, clamped: bool) {
            // SAFETY: the caller's 8 values at `d`; NEON.
            unsafe {
                let codes = match clamped {
                    true => vmovn_s16(vaddq_s16(v, self.zp)),
                    false => vqmovn_s16(vqaddq_s16(v, self.zp)),
                };
                vst1_s8(d, codes)
            }
        }

        #[inline(always)]
        unsafe fn one(self, d: *mut i8, v: i16) {
            // SAFETY: the caller's value at `d`.
            unsafe { *d = (v + self.zp_scalar) as i8 }
        }
    }

    /// [`super::fill_codes`] of codes (the plane's zero point the layout's): the bytes of
    /// each row copied, or split into the two phases of a stride-2 layout by `ld2` 32 at a
    /// time; without the placement check.
    ///
    /// # Safety
    /// `at.check(len, h · w, [h, w])` passes for a buffer of `len` codes at `buf`, and `s`
    /// holds `h · w` codes.
    pub(super) unsafe fn copy_unchecked(
        buf: *mut i8,
        s: *const i8,
        [h, w]: [usize; 2],
        at: &Placement,
    ) {
        // SAFETY: the walk writes rows `top..top + h` of each phase inside the buffer, `w`
        // values (stride 1) or `⌈w/2⌉` and `⌊w/2⌋` (stride 2) per row, reading row `y`'s `w`.
        unsafe {
            at.walk(
                buf,
                h,
                |y, d| std::ptr::copy_nonoverlapping(s.add(y * w), d, w),
                |y, e, o| split_row(e, o, s.add(y * w), w),
            )
        }
    }

    /// Byte `2i` of the `n` at `s` to `e[i]`, `2i + 1` to `o[i]`.
    ///
    /// # Safety
    /// `s` readable for `n` bytes, `e` writable for `⌈n/2⌉` and `o` for `⌊n/2⌋`; NEON.
    #[inline(always)]
    unsafe fn split_row(e: *mut i8, o: *mut i8, s: *const i8, n: usize) {
        // SAFETY (all): pairs `p..p + 16` with `2p + 32 ≤ n`, and single bytes below `n`.
        unsafe {
            if n < 32 {
                for i in 0..n {
                    let dst = if i % 2 == 0 { e } else { o };
                    *dst.add(i / 2) = *s.add(i);
                }
                return;
            }
            let mut p = 0;
            while 2 * p + 32 <= n {
                let v = vld2q_s8(s.add(2 * p));
                vst1q_s8(e.add(p), v.0);
                vst1q_s8(o.add(p), v.1);
                p += 16;
            }
            if 2 * p < n {
                let p = n / 2 - 16;
                let v = vld2q_s8(s.add(2 * p));
                vst1q_s8(e.add(p), v.0);
                vst1q_s8(o.add(p), v.1);
                if n % 2 == 1 {
                    *e.add(n / 2) = *s.add(n - 1);
                }
            }
        }
    }

    /// NEON [`super::fill`] (through `to`) without the placement check.
    ///
    /// # Safety
    /// `at.check(len, src.len(), [h, w])` passes for a buffer of `len` values at `buf`.
    pub(super) unsafe fn fill_unchecked<D: Dest>(
        buf: *mut D::Elem,
        to: D,
        src: Source<'_>,
        hw: [usize; 2],
        at: &Placement,
    ) {
        // SAFETY: NEON is baseline on aarch64; the caller checked the placement.
        unsafe {
            match src {
                Source::I8(s, zp) => {
                    let c = Codes {
                        zp: vdupq_n_s16(zp as i16),
                        zp_scalar: zp as i16,
                    };
                    plane(buf, to, s.as_ptr(), hw, at, c)
                }
                Source::F32(s, inv, zp) => {
                    plane(buf, to, s.as_ptr(), hw, at, floats::<false>(inv, zp))
                }
                Source::HardSwishF32(s, inv, zp) => {
                    plane(buf, to, s.as_ptr(), hw, at, floats::<true>(inv, zp))
                }
            }
        }
    }

    /// The conversion of floats quantized with `inv` (after HardSwish with `HS`, whose `· ⅙`
    /// joins `inv`).
    fn floats<const HS: bool>(inv: f32, zp: i32) -> Floats<HS> {
        let inv = if HS { super::hardswish_inv(inv) } else { inv };
        Floats {
            // SAFETY: NEON is baseline on aarch64.
            inv: unsafe { vdupq_n_f32(inv) },
            inv_scalar: inv,
            zp_scalar: zp,
        }
    }

    /// Every row of the plane at `src`.
    ///
    /// # Safety
    /// The placement check passes for `buf`, the plane and `hw`; NEON.
    #[inline(always)]
    unsafe fn plane<D: Dest, C: Convert>(
        dst: *mut D::Elem,
        to: D,
        src: *const C::Elem,
        [h, w]: [usize; 2],
        at: &Placement,
        c: C,
    ) {
        // Whether a vector of 8 fits in a padded row from where its values start: a short
        // row may then be written as one vector, zeros past its end.
        let room = at.ld >= at.left.div_ceil(at.stride) + 8;
        // SAFETY: the placement check bounds every row's writes inside `buf` (rows `top..top
        // + h` of a phase, `left + w` values at stride 1 and `⌈(left + w)/2⌉` per phase at
        // stride 2, all within `ld`; 8 from the row's start with `room`), and reads `h·w`
        // values of `src` (row `y` reads at most the `(h − y)·w` from its start).
        unsafe {
            at.walk(
                dst,
                h,
                move |y, d| {
                    let ahead = if room { (h - y) * w } else { 0 };
                    row(d, to, src.add(y * w), w, ahead, c)
                },
                move |y, e, o| {
                    let ahead = if room { (h - y) * w } else { 0 };
                    split(e, o, to, src.add(y * w), w, ahead, c)
                },
            )
        }
    }

    /// The first `n` lanes of `v`, the others 0.
    #[inline(always)]
    unsafe fn first(v: int16x8_t, n: usize) -> int16x8_t {
        const LANES: [u16; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
        // SAFETY: NEON; 8 lanes from a constant.
        unsafe {
            let keep = vcltq_u16(vld1q_u16(LANES.as_ptr()), vdupq_n_u16(n as u16));
            vandq_s16(v, vreinterpretq_s16_u16(keep))
        }
    }

    /// Converts `n` values from `s` to `d`; the last vector overlaps the one before it. A row
    /// shorter than 8 with `ahead ≥ 8` is one vector with its lanes past `n` the padding
    /// (offset 0).
    ///
    /// # Safety
    /// `s` readable for `max(n, ahead)` values; `d` writable for `n`, and for 8 when
    /// `ahead ≥ 8`.
    #[inline(always)]
    unsafe fn row<D: Dest, C: Convert>(
        d: *mut D::Elem,
        to: D,
        s: *const C::Elem,
        n: usize,
        ahead: usize,
        c: C,
    ) {
        // SAFETY (all): indices below `n` on both sides, or 8 with `ahead ≥ 8`.
        unsafe {
            if n < 8 {
                if ahead >= 8 {
                    to.eight(d, first(c.eight(s), n), C::CLAMPED);
                    return;
                }
                for i in 0..n {
                    to.one(d.add(i), c.one(s, i));
                }
                return;
            }
            let mut i = 0;
            // Two vectors a turn: half the loop's counting and branching per value.
            while i + 16 <= n {
                let (a, b) = (c.eight(s.add(i)), c.eight(s.add(i + 8)));
                to.eight(d.add(i), a, C::CLAMPED);
                to.eight(d.add(i + 8), b, C::CLAMPED);
                i += 16;
            }
            if i + 8 <= n {
                to.eight(d.add(i), c.eight(s.add(i)), C::CLAMPED);
                i += 8;
            }
            if i < n {
                to.eight(d.add(n - 8), c.eight(s.add(n - 8)), C::CLAMPED);
            }
        }
    }

    /// Writes value `2i` of the `n` at `s` to `e[i]` and `2i + 1` to `o[i]` (`e` gets
    /// `⌈n/2⌉`, `o` `⌊n/2⌋`); the last 8 pairs overlap the ones before them. A row of fewer
    /// than 16 with `ahead ≥ 16` is one pair of vectors with their lanes past the row zeroed.
    ///
    /// # Safety
    /// `s` readable for `max(n, ahead)` values, `e` writable for `⌈n/2⌉` and `o` for
    /// `⌊n/2⌋`, both for 8 when `ahead ≥ 16`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn split<D: Dest, C: Convert>(
        e: *mut D::Elem,
        o: *mut D::Elem,
        to: D,
        s: *const C::Elem,
        n: usize,
        ahead: usize,
        c: C,
    ) {
        let pairs = n / 2;
        // SAFETY (all): pair indices below `pairs`, element indices below `n`, or 8 and 16
        // with `ahead ≥ 16`.
        unsafe {
            if n < 16 && ahead >= 16 {
                let (ev, od) = c.pairs(s);
                to.eight(e, first(ev, n.div_ceil(2)), C::CLAMPED);
                to.eight(o, first(od, pairs), C::CLAMPED);
                return;
            }
            if pairs >= 8 {
                let mut i = 0;
                while i + 8 <= pairs {
                    let (ev, od) = c.pairs(s.add(2 * i));
                    to.eight(e.add(i), ev, C::CLAMPED);
                    to.eight(o.add(i), od, C::CLAMPED);
                    i += 8;
                }
                if i < pairs {
                    let back = pairs - 8;
                    let (ev, od) = c.pairs(s.add(2 * back));
                    to.eight(e.add(back), ev, C::CLAMPED);
                    to.eight(o.add(back), od, C::CLAMPED);
                }
            } else {
                for i in 0..pairs {
                    to.one(e.add(i), c.one(s, 2 * i));
                    to.one(o.add(i), c.one(s, 2 * i + 1));
                }
            }
            if n % 2 == 1 {
                to.one(e.add(pairs), c.one(s, n - 1));
            }
        }
    }
}
