//! The columns of a 2-D convolution as a matrix: for output rows `rows` of one image, row
//! `k = (c·KH + ky)·KW + kx` of the matrix holds, for every output position `(y, x)` of
//! those rows (row-major), the input value the tap `(c, ky, kx)` reads there, or 0 in the
//! padding. A `[O, C·KH·KW]` weight matrix times it is the convolution of those rows
//! (`kestrel_conv`).
//!
//! Pure data movement, on floats (`kestrel_conv`) or i8 codes (`kestrel_int8_conv`, whose
//! padding is the code of zero): every layout of it gives the same values. Per matrix row
//! and output row the valid columns are one run (stride 1: a slice copy; stride 2: every
//! other input value, through de-interleaving vector loads, 4 floats or 16 codes a step);
//! the padding on either side is the caller's, left in place (see [`im2col`]).

use std::ops::Range;

use tract_nnef::internal::*;

/// Where a convolution's taps read: kernel height and width, strides, zero padding (top,
/// left, bottom, right), input `[C, H, W]` and output width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (≥ 1).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// Input channels, height and width.
    pub input: [usize; 3],
    /// Output width.
    pub out_w: usize,
}

impl Window {
    /// The window of a convolution on `c` channels with `kernel`, `stride` and `padding` over
    /// an input of `shape` (`[N, C, H, W]` or `[C, H, W]`): `(images, window, output
    /// height)`, or an error naming `op` (another rank or channel count, a plane the kernel
    /// does not fit).
    pub fn of_input(
        op: &str,
        (c, kernel, stride, padding): (usize, [usize; 2], [usize; 2], [usize; 4]),
        shape: &[usize],
    ) -> TractResult<(usize, Window, usize)> {
        let r = shape.len();
        ensure!(
            (3..=4).contains(&r) && shape[r - 3] == c,
            "{op}: input must be [N, {c}, H, W] or [{c}, H, W], got {shape:?}"
        );
        let hw = [shape[r - 2], shape[r - 1]];
        let [oh, ow] = super::window::fitted_hw(op, hw, padding, kernel, stride)?;
        let images = if r == 4 { shape[0] } else { 1 };
        let input = [c, hw[0], hw[1]];
        Ok((
            images,
            Window {
                kernel,
                stride,
                padding,
                input,
                out_w: ow,
            },
            oh,
        ))
    }

    /// Matrix rows (C·KH·KW).
    pub fn k(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1]
    }

    /// The output columns `x` whose tap at kernel column `kx` reads inside the input:
    /// `0 ≤ x·s + kx − left < W`.
    fn valid(&self, kx: usize) -> Range<usize> {
        let (s, left, w) = (self.stride[1], self.padding[1], self.input[2]);
        let first = left.saturating_sub(kx).div_ceil(s);
        let end = if w + left > kx {
            ((w + left - kx - 1) / s + 1).min(self.out_w)
        } else {
            0
        };
        first..end.max(first)
    }
}

/// A value [`im2col`] moves: f32, or an i8 code.
pub(crate) trait Gather: Copy {
    /// `d[j] = src[2j]` (`src` holds `2·d.len() − 1` values).
    fn every_other(d: &mut [Self], src: &[Self]);
}

impl Gather for f32 {
    fn every_other(d: &mut [f32], src: &[f32]) {
        every_other(d, src)
    }
}

impl Gather for i8 {
    fn every_other(d: &mut [i8], src: &[i8]) {
        every_other_i8(d, src)
    }
}

/// Writes the matrix of output rows `rows` of the image `x` (`[C, H, W]`) into `out`, matrix
/// row `k` at `out[k · ld ..]` (`ld ≥ rows.len()·out_w`); the padding's value is `pad(c)` for
/// input channel `c` (0.0 for floats, the channel's zero point for codes). Panics if `x` or
/// `out` is too short.
///
/// The columns left and right of each run (`x` outside [`Window::valid`], the same for every
/// output row of a kernel column) are not written: `out` holds the padding there already. A
/// caller fills its buffer once (each matrix row with its channel's padding) and builds every
/// chunk of rows of the window with the same `ld`; no chunk writes those places, so they keep
/// it (rows wholly in the top or bottom padding are written, with the padding).
pub(crate) fn im2col<T: Gather>(
    x: &[T],
    g: &Window,
    rows: Range<usize>,
    out: &mut [T],
    ld: usize,
    pad: impl Fn(usize) -> T,
) {
    let [c, h, w] = g.input;
    let [kh, kw] = g.kernel;
    let (sy, sx) = (g.stride[0], g.stride[1]);
    let top = g.padding[0];
    let wo = g.out_w;
    let cols = rows.len() * wo;
    assert!(
        x.len() >= c * h * w,
        "im2col: input of {} < {c}x{h}x{w}",
        x.len()
    );
    assert!(
        ld >= cols && out.len() >= (g.k() - 1) * ld + cols,
        "im2col: output too short"
    );
    let mut k = 0;
    for ci in 0..c {
        let plane = &x[ci * h * w..][..h * w];
        let zero = pad(ci);
        for ky in 0..kh {
            for kx in 0..kw {
                let valid = g.valid(kx);
                let dst_k = &mut out[k * ld..][..cols];
                k += 1;
                if valid.is_empty() {
                    continue;
                }
                for (i, r) in rows.clone().enumerate() {
                    let d = &mut dst_k[i * wo..][..wo];
                    let iy = r * sy + ky;
                    if iy < top || iy - top >= h {
                        d.fill(zero);
                        continue;
                    }
                    let src = &plane[(iy - top) * w..][..w];
                    let n = valid.len();
                    let first = valid.start * sx + kx - g.padding[1];
                    let d = &mut d[valid.clone()];
                    match sx {
                        1 => d.copy_from_slice(&src[first..first + n]),
                        2 => T::every_other(d, &src[first..first + 2 * n - 1]),
                        _ => {
                            let src = &src[first..first + (n - 1) * sx + 1];
                            for (j, v) in d.iter_mut().enumerate() {
                                *v = src[j * sx];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `d[j] = src[2j]` (`src` holds `2·d.len() − 1` values). Four values per step from two
/// vectors (aarch64: one de-interleaving `ld2`; x86-64: two loads and a `shufps`, SSE being
/// baseline there), and a row of 5 or more ends with one overlapping step: the last 8 values
/// of `src` from an odd start, whose odd lanes are the last 4 outputs. LLVM's own
/// vectorisation of the loop gathers lane by lane.
#[inline]
fn every_other(d: &mut [f32], src: &[f32]) {
    let n = d.len();
    assert!(src.len() + 1 >= 2 * n, "every_other: source too short");
    // Steps of 4 whose 8 source values are all inside `src`.
    let steps = (src.len() / 8).min(n / 4);
    // The overlapping last step reads src[2n − 9 .. 2n − 1].
    let tail = 4 * steps < n && n >= 5;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: step i reads src[8i .. 8i + 8] (8i + 8 ≤ src.len()) and writes d[4i .. 4i + 4]
    // (4i + 4 ≤ n); the tail reads src[2n − 9 .. 2n − 1] (2n − 1 ≤ src.len()) and writes
    // d[n − 4 .. n]; NEON is baseline on aarch64.
    unsafe {
        use std::arch::aarch64::{vld2q_f32, vst1q_f32};
        let (mut s, mut o) = (src.as_ptr(), d.as_mut_ptr());
        for _ in 0..steps / 2 {
            let (a, b) = (vld2q_f32(s), vld2q_f32(s.add(8)));
            vst1q_f32(o, a.0);
            vst1q_f32(o.add(4), b.0);
            (s, o) = (s.add(16), o.add(8));
        }
        if steps % 2 == 1 {
            vst1q_f32(o, vld2q_f32(s).0);
        }
        if tail {
            let v = vld2q_f32(src.as_ptr().add(2 * n - 9));
            vst1q_f32(d.as_mut_ptr().add(n - 4), v.1);
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; SSE is baseline on x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_shuffle_ps, _mm_storeu_ps};
        for i in 0..steps {
            let a = _mm_loadu_ps(src.as_ptr().add(8 * i));
            let b = _mm_loadu_ps(src.as_ptr().add(8 * i + 4));
            _mm_storeu_ps(
                d.as_mut_ptr().add(4 * i),
                _mm_shuffle_ps::<0b10_00_10_00>(a, b),
            );
        }
        if tail {
            let s = src.as_ptr().add(2 * n - 9);
            let (a, b) = (_mm_loadu_ps(s), _mm_loadu_ps(s.add(4)));
            _mm_storeu_ps(
                d.as_mut_ptr().add(n - 4),
                _mm_shuffle_ps::<0b11_01_11_01>(a, b),
            );
        }
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    let (steps, tail) = (0, false);
    if !tail {
        for j in 4 * steps..n {
            d[j] = src[2 * j];
        }
    }
}

/// `d[j] = src[2j]` for i8 codes (`src` holds `2·d.len() − 1` values). 16 codes per step
/// from 32 bytes (aarch64: one de-interleaving `ld2`; x86-64: the even bytes of two vectors
/// masked and packed by `packuswb`, SSE2 being baseline), and a row of 17 or more ends with
/// one overlapping step: the last 32 bytes of `src` from an odd start, whose odd bytes are
/// the last 16 outputs. Shorter rows go one by one.
#[inline]
fn every_other_i8(d: &mut [i8], src: &[i8]) {
    let n = d.len();
    assert!(src.len() + 1 >= 2 * n, "every_other_i8: source too short");
    // Steps of 16 whose 32 source bytes are all inside `src`.
    let steps = (src.len() / 32).min(n / 16);
    // The overlapping last step reads src[2n − 33 .. 2n − 1].
    let tail = 16 * steps < n && n >= 17;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: step i reads src[32i .. 32i + 32] (32i + 32 ≤ src.len()) and writes
    // d[16i .. 16i + 16] (16i + 16 ≤ n); the tail reads src[2n − 33 .. 2n − 1] (2n − 1 ≤
    // src.len()) and writes d[n − 16 .. n]; NEON is baseline on aarch64.
    unsafe {
        use std::arch::aarch64::{vld2q_s8, vst1q_s8};
        for i in 0..steps {
            let v = vld2q_s8(src.as_ptr().add(32 * i));
            vst1q_s8(d.as_mut_ptr().add(16 * i), v.0);
        }
        if tail {
            let v = vld2q_s8(src.as_ptr().add(2 * n - 33));
            vst1q_s8(d.as_mut_ptr().add(n - 16), v.1);
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; SSE2 is baseline on x86-64.
    unsafe {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_loadu_si128, _mm_packus_epi16, _mm_set1_epi16,
            _mm_srli_epi16, _mm_storeu_si128,
        };
        let even = _mm_set1_epi16(0xFF);
        // Each 16-bit lane holds one byte in 0..=255: the unsigned saturating pack keeps it.
        for i in 0..steps {
            let s = src.as_ptr().add(32 * i) as *const __m128i;
            let a = _mm_and_si128(_mm_loadu_si128(s), even);
            let b = _mm_and_si128(_mm_loadu_si128(s.add(1)), even);
            _mm_storeu_si128(
                d.as_mut_ptr().add(16 * i) as *mut __m128i,
                _mm_packus_epi16(a, b),
            );
        }
        if tail {
            // The odd bytes: each lane's high byte, shifted down.
            let s = src.as_ptr().add(2 * n - 33) as *const __m128i;
            let a = _mm_srli_epi16::<8>(_mm_loadu_si128(s));
            let b = _mm_srli_epi16::<8>(_mm_loadu_si128(s.add(1)));
            _mm_storeu_si128(
                d.as_mut_ptr().add(n - 16) as *mut __m128i,
                _mm_packus_epi16(a, b),
            );
        }
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    let (steps, tail) = (0, false);
    if !tail {
        for j in 16 * steps..n {
            d[j] = src[2 * j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one value at a time (the padding of channel `c` is `pad(c)`).
    fn reference<T: Copy>(
        x: &[T],
        g: &Window,
        rows: Range<usize>,
        pad: impl Fn(usize) -> T,
    ) -> Vec<T> {
        let [c, h, w] = g.input;
        let [kh, kw] = g.kernel;
        let mut out = vec![];
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    for r in rows.clone() {
                        for xo in 0..g.out_w {
                            let iy = (r * g.stride[0] + ky) as isize - g.padding[0] as isize;
                            let ix = (xo * g.stride[1] + kx) as isize - g.padding[1] as isize;
                            let inside =
                                (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                            out.push(if inside {
                                x[(ci * h + iy as usize) * w + ix as usize]
                            } else {
                                pad(ci)
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_other_takes_the_even_values_at_every_length() {
        for n in 0..23 {
            let src: Vec<f32> = (0..(2 * n).max(1) - 1).map(|i| i as f32).collect();
            let mut d = vec![f32::NAN; n];
            every_other(&mut d, &src);
            let want: Vec<f32> = (0..n).map(|j| (2 * j) as f32).collect();
            assert_eq!(d, want, "n = {n}");
        }
    }

    #[test]
    fn every_other_i8_takes_the_even_codes_at_every_length() {
        for n in 0..70 {
            let src: Vec<i8> = (0..(2 * n).max(1) - 1)
                .map(|i| (i * 7 % 256) as u8 as i8)
                .collect();
            let mut d = vec![0x55; n];
            every_other_i8(&mut d, &src);
            let want: Vec<i8> = (0..n).map(|j| src[2 * j]).collect();
            assert_eq!(d, want, "n = {n}");
        }
    }

    #[test]
    fn every_window_matches_the_definition() {
        for (kernel, stride, padding, input) in [
            ([3, 3], [2, 2], [1, 1, 1, 1], [3, 9, 11]),
            ([3, 3], [1, 1], [1, 1, 1, 1], [2, 5, 6]),
            ([5, 5], [2, 2], [2, 2, 2, 2], [2, 7, 7]),
            ([3, 3], [2, 2], [0, 0, 1, 1], [1, 8, 8]),
            ([2, 3], [1, 2], [0, 1, 0, 0], [2, 4, 9]),
            ([7, 7], [2, 2], [3, 3, 3, 3], [1, 3, 3]),
            ([1, 1], [1, 1], [0, 0, 0, 0], [4, 2, 3]),
            // Rows long enough for the vector steps (35 and 40 outputs).
            ([3, 3], [2, 2], [1, 1, 1, 1], [2, 9, 70]),
            ([3, 3], [1, 1], [1, 1, 1, 1], [1, 4, 40]),
        ] {
            let [c, h, w] = input;
            let (oh, ow) = super::super::window::output_hw([h, w], padding, kernel, stride)
                .expect("window fits");
            let g = Window {
                kernel,
                stride,
                padding,
                input,
                out_w: ow,
            };
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            // Codes with a padding of its own per channel (a per-channel zero point).
            let codes: Vec<i8> = (0..c * h * w).map(|i| (i * 37 % 251) as u8 as i8).collect();
            let zp = |ci: usize| -(ci as i8) - 3;
            // One buffer through chunks of rows, as the ops use it (filled once with the
            // padding): the last chunk first, then the whole image, then one row.
            let ld = oh * ow;
            let mut got = vec![0f32; g.k() * ld];
            let mut got8: Vec<i8> = (0..g.k() * ld)
                .map(|i| zp(i / ld / (g.kernel[0] * g.kernel[1])))
                .collect();
            for rows in [oh / 2..oh, 0..oh, 0..1] {
                let cols = rows.len() * ow;
                let want = reference(&x, &g, rows.clone(), |_| 0.0);
                im2col(&x, &g, rows.clone(), &mut got, ld, |_| 0.0);
                let flat: Vec<f32> = got.chunks(ld).flat_map(|r| &r[..cols]).copied().collect();
                assert_eq!(flat, want, "{g:?} rows {rows:?}");
                let want = reference(&codes, &g, rows.clone(), zp);
                im2col(&codes, &g, rows.clone(), &mut got8, ld, zp);
                let flat: Vec<i8> = got8.chunks(ld).flat_map(|r| &r[..cols]).copied().collect();
                assert_eq!(flat, want, "i8 {g:?} rows {rows:?}");
            }
        }
    }
}
