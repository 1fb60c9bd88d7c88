//! The columns of a 2-D convolution as a matrix: for output rows `rows` of one image, row
//! `k = (c·KH + ky)·KW + kx` of the matrix holds, for every output position `(y, x)` of
//! those rows (row-major), the input value the tap `(c, ky, kx)` reads there, or 0 in the
//! padding. A `[O, C·KH·KW]` weight matrix times it is the convolution of those rows
//! (`kestrel_conv`).
//!
//! Pure data movement: every layout of it gives the same bits. Per matrix row and output
//! row the valid columns are one run (stride 1: a slice copy; stride 2: every other input
//! value, four at a time through de-interleaving vector loads); the padding on either side
//! is the caller's zeros, left in place (see [`im2col`]).

use std::ops::Range;

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

/// Writes the matrix of output rows `rows` of the image `x` (`[C, H, W]`) into `out`, matrix
/// row `k` at `out[k · ld ..]` (`ld ≥ rows.len()·out_w`). Panics if `x` or `out` is too short.
///
/// The columns left and right of each run (`x` outside [`Window::valid`], the same for every
/// output row of a kernel column) are not written: `out` holds zeros there already. A caller
/// zero-fills its buffer once and builds every chunk of rows of the window with the same
/// `ld`; no chunk writes those places, so they stay zero (rows wholly in the top or bottom
/// padding are written, as zeros).
pub(crate) fn im2col(x: &[f32], g: &Window, rows: Range<usize>, out: &mut [f32], ld: usize) {
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
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[(iy - top) * w..][..w];
                    let n = valid.len();
                    let first = valid.start * sx + kx - g.padding[1];
                    let d = &mut d[valid.clone()];
                    match sx {
                        1 => d.copy_from_slice(&src[first..first + n]),
                        2 => every_other(d, &src[first..first + 2 * n - 1]),
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
/// baseline there), the rest one by one: LLVM's own vectorisation of the loop gathers lane
/// by lane.
#[inline]
fn every_other(d: &mut [f32], src: &[f32]) {
    let n = d.len();
    assert!(src.len() + 1 >= 2 * n, "every_other: source too short");
    // Steps of 4 whose 8 source values are all inside `src`.
    let steps = (src.len() / 8).min(n / 4);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: step i reads src[8i .. 8i + 8] (8i + 8 ≤ src.len()) and writes d[4i .. 4i + 4]
    // (4i + 4 ≤ n); NEON is baseline on aarch64.
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
    }
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    let steps = 0;
    for j in 4 * steps..n {
        d[j] = src[2 * j];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one value at a time.
    fn reference(x: &[f32], g: &Window, rows: Range<usize>) -> Vec<f32> {
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
                                0.0
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
    fn every_window_matches_the_definition() {
        for (kernel, stride, padding, input) in [
            ([3, 3], [2, 2], [1, 1, 1, 1], [3, 9, 11]),
            ([3, 3], [1, 1], [1, 1, 1, 1], [2, 5, 6]),
            ([5, 5], [2, 2], [2, 2, 2, 2], [2, 7, 7]),
            ([3, 3], [2, 2], [0, 0, 1, 1], [1, 8, 8]),
            ([2, 3], [1, 2], [0, 1, 0, 0], [2, 4, 9]),
            ([7, 7], [2, 2], [3, 3, 3, 3], [1, 3, 3]),
            ([1, 1], [1, 1], [0, 0, 0, 0], [4, 2, 3]),
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
            // One zeroed buffer through chunks of rows, as the op uses it: the last chunk
            // first, then the whole image, then one row.
            let ld = oh * ow;
            let mut got = vec![0f32; g.k() * ld];
            for rows in [oh / 2..oh, 0..oh, 0..1] {
                let want = reference(&x, &g, rows.clone());
                let cols = rows.len() * ow;
                im2col(&x, &g, rows.clone(), &mut got, ld);
                let got: Vec<f32> = got.chunks(ld).flat_map(|r| &r[..cols]).copied().collect();
                assert_eq!(got, want, "{g:?} rows {rows:?}");
            }
        }
    }
}
