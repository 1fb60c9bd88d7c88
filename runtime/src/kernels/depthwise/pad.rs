//! Writes one input plane into the padded layout the depthwise kernels read (see the parent
//! module): at stride 1 each input row goes to its padded row, `left` floats in; at stride 2
//! its even and odd padded columns go to the two phase planes. Only the interior is written:
//! the padding is zeroed once per buffer by the op, and every plane of a layer has the same.
//!
//! Pure moves, so every variant gives the same bits. The portable one copies row by row
//! through `copy_from_slice` (a `memcpy` call per row); the NEON one moves whole planes with
//! no call and no per-row bounds checks (`ld1`/`st1` pairs, `ld2` for the stride-2 split, an
//! overlapping last vector instead of a scalar tail), after checking the whole plane's
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

/// Writes the `[h, w]` plane `src` into `buf` at `at` (portable, or NEON on aarch64).
pub fn fill(buf: &mut [f32], src: &[f32], hw: [usize; 2], at: &Placement) {
    #[cfg(target_arch = "aarch64")]
    {
        neon::fill(buf, src, hw, at)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        fill_portable(buf, src, hw, at)
    }
}

/// [`fill`] row by row with safe slices: the reference the NEON variant is tested against.
pub fn fill_portable(buf: &mut [f32], src: &[f32], [h, w]: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), [h, w]);
    for (y, row) in src[..h * w].chunks_exact(w.max(1)).enumerate() {
        let start = (y + at.top) * at.ld;
        if at.stride == 1 {
            buf[start + at.left..][..w].copy_from_slice(row);
        } else {
            deinterleave(buf, at.phase_len, start, at.left, row);
        }
    }
}

/// Copies one input row into the two phase planes of a stride-2 layout: padded column
/// `i + pl` goes to phase `(i + pl) mod 2`, position `⌊(i + pl)/2⌋` of the row starting at
/// `at` in each phase. Even `i` land in one phase, odd `i` in the other.
fn deinterleave(buf: &mut [f32], phase_len: usize, at: usize, pl: usize, row: &[f32]) {
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
        *e = p[0];
        *o = p[1];
    }
    if let Some(v) = last {
        even[n] = v;
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::Placement;

    /// NEON [`super::fill`].
    pub fn fill(buf: &mut [f32], src: &[f32], [h, w]: [usize; 2], at: &Placement) {
        at.check(buf.len(), src.len(), [h, w]);
        let (dst, src) = (buf.as_mut_ptr(), src.as_ptr());
        // SAFETY: `check` bounds every row's writes inside `buf` (rows `top..top + h` of a
        // phase, `left + w` floats at stride 1 and `⌈(left + w)/2⌉` per phase at stride 2, all
        // within `ld`), and reads `h·w` floats of `src`. NEON is baseline on aarch64.
        unsafe {
            if at.stride == 1 {
                for y in 0..h {
                    copy(dst.add((y + at.top) * at.ld + at.left), src.add(y * w), w);
                }
            } else {
                let (first, second) = (dst, dst.add(at.phase_len));
                let half = at.left / 2;
                let (even, odd) = if at.left.is_multiple_of(2) {
                    (first.add(half), second.add(half))
                } else {
                    (second.add(half), first.add(half + 1))
                };
                for y in 0..h {
                    let row = (y + at.top) * at.ld;
                    split(even.add(row), odd.add(row), src.add(y * w), w);
                }
            }
        }
    }

    /// Copies `n` floats; the last vector overlaps the one before it instead of a scalar tail.
    ///
    /// # Safety
    /// `s` readable and `d` writable for `n` floats.
    #[inline(always)]
    unsafe fn copy(d: *mut f32, s: *const f32, n: usize) {
        // SAFETY (all): indices below `n`, the caller's contract.
        unsafe {
            if n < 4 {
                for i in 0..n {
                    *d.add(i) = *s.add(i);
                }
                return;
            }
            let mut i = 0;
            while i + 8 <= n {
                let (a, b) = (vld1q_f32(s.add(i)), vld1q_f32(s.add(i + 4)));
                vst1q_f32(d.add(i), a);
                vst1q_f32(d.add(i + 4), b);
                i += 8;
            }
            if i + 4 <= n {
                vst1q_f32(d.add(i), vld1q_f32(s.add(i)));
                i += 4;
            }
            if i < n {
                vst1q_f32(d.add(n - 4), vld1q_f32(s.add(n - 4)));
            }
        }
    }

    /// Writes `s[2i]` to `e[i]` and `s[2i + 1]` to `o[i]` for the `n` floats of `s` (`e`
    /// gets `⌈n/2⌉`, `o` `⌊n/2⌋`).
    ///
    /// # Safety
    /// `s` readable for `n` floats, `e` writable for `⌈n/2⌉` and `o` for `⌊n/2⌋`.
    #[inline(always)]
    unsafe fn split(e: *mut f32, o: *mut f32, s: *const f32, n: usize) {
        let pairs = n / 2;
        // SAFETY (all): pair indices below `pairs`, element indices below `n`.
        unsafe {
            if pairs >= 4 {
                let mut i = 0;
                while i + 4 <= pairs {
                    let v = vld2q_f32(s.add(2 * i));
                    vst1q_f32(e.add(i), v.0);
                    vst1q_f32(o.add(i), v.1);
                    i += 4;
                }
                if i < pairs {
                    let v = vld2q_f32(s.add(2 * (pairs - 4)));
                    vst1q_f32(e.add(pairs - 4), v.0);
                    vst1q_f32(o.add(pairs - 4), v.1);
                }
            } else {
                for i in 0..pairs {
                    *e.add(i) = *s.add(2 * i);
                    *o.add(i) = *s.add(2 * i + 1);
                }
            }
            if n % 2 == 1 {
                *e.add(pairs) = *s.add(n - 1);
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
                        let src: Vec<f32> = (0..h * w).map(|i| i as f32 + 1.0).collect();
                        let mut want = vec![-1.0f32; stride * phase_len];
                        for y in 0..h {
                            for x in 0..w {
                                want[index(&at, top + y, left + x)] = src[y * w + x];
                            }
                        }
                        for (name, f) in [
                            (
                                "fill",
                                fill as fn(&mut [f32], &[f32], [usize; 2], &Placement),
                            ),
                            ("fill_portable", fill_portable),
                        ] {
                            let mut got = vec![-1.0f32; stride * phase_len];
                            f(&mut got, &src, [h, w], &at);
                            assert_eq!(got, want, "{name} {at:?} {h}x{w}");
                        }
                    }
                }
            }
        }
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
        fill(&mut [0.0; 16], &[0.0; 16], [4, 4], &at);
    }
}
