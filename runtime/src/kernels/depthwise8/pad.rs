//! Writes one input plane into the padded i16 layout the int8 depthwise kernels read, as
//! `q − zp` (the parent module): the same placement as the float layout
//! ([`Placement`]: rows `ld` apart, stride 2 as two phase planes), only the interior written
//! (the op zeroes the buffer once per task; 0 is the padding, a real zero).
//!
//! The source is the previous layer's int8 codes (`q − zp` is one subtraction), or floats
//! quantized on the way, straight to `q − zp` ([`offset_code`]):
//!
//! ```text
//! q − zp = min(max(round_half_even(x · inv), −128 − zp), 127 − zp)    rounding saturated, NaN → 0
//! ```
//!
//! (the zero point never enters the float arithmetic), optionally through tract's HardSwish
//! first ([`crate::kernels::depthwise::pad::hardswish`], operation by operation): a HardSwish
//! the layer alone reads is then never written out.
//!
//! Every variant gives the same bits. The portable one goes a row at a time through safe
//! slices; the NEON one converts 8 values per step (`fmul`, `fcvtns`, a saturating narrow and
//! the clamp in i16; `sxtl` for codes), splits stride-2 rows by `ld2`, and ends a row with an
//! overlapping last vector instead of a scalar tail. A row shorter than a vector (7×7 planes,
//! stride-2 rows of 15 or fewer) is one vector too: it reads on into the next source row and
//! zeroes the lanes past its end, which land in the row's padding (zero anyway); only rows
//! near the plane's end, where that read would leave the plane, go value by value.

use crate::kernels::depthwise::pad::hardswish;
pub use crate::kernels::depthwise::pad::Placement;

/// `q − zp` of a float quantized with `1 / inv` and zero point `zp` (module docs): in
/// `[−128 − zp, 127 − zp]`, 0 for NaN.
#[inline(always)]
pub fn offset_code(x: f32, inv: f32, zp: i32) -> i16 {
    // `as` saturates and takes NaN to 0, as `fcvtns` does.
    let r = (x * inv).round_ties_even() as i32;
    r.max(-128 - zp).min(127 - zp) as i16
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
}

/// Writes the `[h, w]` plane `src` into `buf` at `at` as `q − zp` (portable, or NEON on
/// aarch64).
pub fn fill(buf: &mut [i16], src: Source<'_>, hw: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), hw);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the placement was just checked.
    unsafe {
        neon::fill_unchecked(buf, src, hw, at)
    }
    #[cfg(not(target_arch = "aarch64"))]
    fill_portable(buf, src, hw, at)
}

/// [`fill`] row by row with safe slices: the reference the NEON variant is tested against.
pub fn fill_portable(buf: &mut [i16], src: Source<'_>, [h, w]: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), [h, w]);
    if w == 0 {
        return;
    }
    // One loop per kind of source, so no value pays for a match.
    match src {
        Source::I8(s, zp) => rows(buf, at, [h, w], |i| i16::from(s[i]) - zp as i16),
        Source::F32(s, inv, zp) => rows(buf, at, [h, w], |i| offset_code(s[i], inv, zp)),
        Source::HardSwishF32(s, inv, zp) => {
            rows(buf, at, [h, w], |i| offset_code(hardswish(s[i]), inv, zp))
        }
    }
}

/// Every row of an `[h, w]` plane, `f(i)` for its element `i`.
#[inline(always)]
fn rows(buf: &mut [i16], at: &Placement, [h, w]: [usize; 2], f: impl Fn(usize) -> i16) {
    for y in 0..h {
        put(buf, at, (y + at.top) * at.ld, w, |x| f(y * w + x));
    }
}

/// One row of `n` values (`f(i)` for column `i`) into its padded row starting at `start`
/// (both phases at stride 2).
#[inline(always)]
fn put(buf: &mut [i16], at: &Placement, start: usize, n: usize, f: impl Fn(usize) -> i16) {
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

        /// Element `i` of the row at `s` ([`Source::value`]'s rule).
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

    /// Floats quantized (after tract's HardSwish with `HS`).
    #[derive(Clone, Copy)]
    struct Floats<const HS: bool> {
        inv: float32x4_t,
        /// `−128 − zp` and `127 − zp`.
        lo: int16x8_t,
        hi: int16x8_t,
        inv_scalar: f32,
        zp_scalar: i32,
    }

    impl<const HS: bool> Floats<HS> {
        /// `v`, or its HardSwish with the operations of `super::hardswish`.
        #[inline(always)]
        unsafe fn map(self, v: float32x4_t) -> float32x4_t {
            if !HS {
                return v;
            }
            // SAFETY: NEON.
            unsafe {
                let t = vaddq_f32(v, vdupq_n_f32(3.0));
                let t = vmaxq_f32(vminq_f32(t, vdupq_n_f32(6.0)), vdupq_n_f32(0.0));
                vmulq_f32(vmulq_f32(t, v), vdupq_n_f32(1.0 / 6.0))
            }
        }

        /// 8 floats in two vectors to `q − zp`.
        #[inline(always)]
        unsafe fn codes(self, a: float32x4_t, b: float32x4_t) -> int16x8_t {
            // SAFETY: NEON.
            unsafe {
                let qa = vcvtnq_s32_f32(vmulq_f32(self.map(a), self.inv));
                let qb = vcvtnq_s32_f32(vmulq_f32(self.map(b), self.inv));
                let q = vqmovn_high_s32(vqmovn_s32(qa), qb);
                vminq_s16(vmaxq_s16(q, self.lo), self.hi)
            }
        }
    }

    impl<const HS: bool> Convert for Floats<HS> {
        type Elem = f32;

        #[inline(always)]
        unsafe fn one(self, s: *const f32, i: usize) -> i16 {
            // SAFETY: the caller's element.
            let x = unsafe { *s.add(i) };
            let x = if HS { super::hardswish(x) } else { x };
            super::offset_code(x, self.inv_scalar, self.zp_scalar)
        }

        #[inline(always)]
        unsafe fn eight(self, s: *const f32) -> int16x8_t {
            // SAFETY: 8 floats at `s`; NEON.
            unsafe { self.codes(vld1q_f32(s), vld1q_f32(s.add(4))) }
        }

        #[inline(always)]
        unsafe fn pairs(self, s: *const f32) -> (int16x8_t, int16x8_t) {
            // SAFETY: 16 floats at `s`; NEON.
            unsafe {
                let (v, w) = (vld2q_f32(s), vld2q_f32(s.add(8)));
                (self.codes(v.0, w.0), self.codes(v.1, w.1))
            }
        }
    }

    /// NEON [`super::fill`] without the placement check.
    ///
    /// # Safety
    /// `at.check(buf.len(), src.len(), [h, w])` passes.
    pub unsafe fn fill_unchecked(buf: &mut [i16], src: Source<'_>, hw: [usize; 2], at: &Placement) {
        // SAFETY: NEON is baseline on aarch64; the caller checked the placement.
        unsafe {
            match src {
                Source::I8(s, zp) => {
                    let c = Codes {
                        zp: vdupq_n_s16(zp as i16),
                        zp_scalar: zp as i16,
                    };
                    plane(buf, s.as_ptr(), hw, at, c)
                }
                Source::F32(s, inv, zp) => plane(buf, s.as_ptr(), hw, at, floats::<false>(inv, zp)),
                Source::HardSwishF32(s, inv, zp) => {
                    plane(buf, s.as_ptr(), hw, at, floats::<true>(inv, zp))
                }
            }
        }
    }

    fn floats<const HS: bool>(inv: f32, zp: i32) -> Floats<HS> {
        // SAFETY: NEON is baseline on aarch64.
        unsafe {
            // A zero point in [−128, 127]: both ends fit i16.
            Floats {
                inv: vdupq_n_f32(inv),
                lo: vdupq_n_s16((-128 - zp) as i16),
                hi: vdupq_n_s16((127 - zp) as i16),
                inv_scalar: inv,
                zp_scalar: zp,
            }
        }
    }

    /// Every row of the plane at `src`.
    ///
    /// # Safety
    /// The placement check passes for `buf`, the plane and `hw`; NEON.
    #[inline(always)]
    unsafe fn plane<C: Convert>(
        buf: &mut [i16],
        src: *const C::Elem,
        [h, w]: [usize; 2],
        at: &Placement,
        c: C,
    ) {
        let dst = buf.as_mut_ptr();
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
                    row(d, src.add(y * w), w, ahead, c)
                },
                move |y, e, o| {
                    let ahead = if room { (h - y) * w } else { 0 };
                    split(e, o, src.add(y * w), w, ahead, c)
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
    /// shorter than 8 with `ahead ≥ 8` is one vector with its lanes past `n` zeroed.
    ///
    /// # Safety
    /// `s` readable for `max(n, ahead)` values; `d` writable for `n`, and for 8 when
    /// `ahead ≥ 8`.
    #[inline(always)]
    unsafe fn row<C: Convert>(d: *mut i16, s: *const C::Elem, n: usize, ahead: usize, c: C) {
        // SAFETY (all): indices below `n` on both sides, or 8 with `ahead ≥ 8`.
        unsafe {
            if n < 8 {
                if ahead >= 8 {
                    vst1q_s16(d, first(c.eight(s), n));
                    return;
                }
                for i in 0..n {
                    *d.add(i) = c.one(s, i);
                }
                return;
            }
            let mut i = 0;
            while i + 8 <= n {
                vst1q_s16(d.add(i), c.eight(s.add(i)));
                i += 8;
            }
            if i < n {
                vst1q_s16(d.add(n - 8), c.eight(s.add(n - 8)));
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
    unsafe fn split<C: Convert>(
        e: *mut i16,
        o: *mut i16,
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
                vst1q_s16(e, first(ev, n.div_ceil(2)));
                vst1q_s16(o, first(od, pairs));
                return;
            }
            if pairs >= 8 {
                let mut i = 0;
                while i + 8 <= pairs {
                    let (ev, od) = c.pairs(s.add(2 * i));
                    vst1q_s16(e.add(i), ev);
                    vst1q_s16(o.add(i), od);
                    i += 8;
                }
                if i < pairs {
                    let back = pairs - 8;
                    let (ev, od) = c.pairs(s.add(2 * back));
                    vst1q_s16(e.add(back), ev);
                    vst1q_s16(o.add(back), od);
                }
            } else {
                for i in 0..pairs {
                    *e.add(i) = c.one(s, 2 * i);
                    *o.add(i) = c.one(s, 2 * i + 1);
                }
            }
            if n % 2 == 1 {
                *e.add(pairs) = c.one(s, n - 1);
            }
        }
    }
}
