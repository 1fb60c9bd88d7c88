//! The float semantics the binary operators must equal exactly, written the plain way (NCHW
//! floats, ±1 values, f32 sums). Used by the property tests and by the converter to check a
//! binarised layer against the float layer it replaces.

use super::bconv::{ConvGeometry, PadMode};
use super::output_stage::affine;

/// b(x): +1 when `x ≥ 0`, −1 otherwise (NaN included).
#[inline]
pub fn binarize(x: f32) -> f32 {
    if x >= 0.0 {
        1.0
    } else {
        -1.0
    }
}

/// Dot products of a binary convolution: `input` f32 `[n, c_in, h, w]`, `weights` f32
/// `[c_out, c_in, kh, kw]` (both binarised here), result `[n, c_out, oh, ow]` as f32 sums.
pub fn conv_dots(
    input: &[f32],
    n: usize,
    h: usize,
    w: usize,
    weights: &[f32],
    g: &ConvGeometry,
) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = g.output_size(h, w).expect("geometry fits");
    let [kh, kw] = g.kernel;
    let mut out = vec![0f32; n * g.c_out * oh * ow];
    for b in 0..n {
        for co in 0..g.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f32;
                    for ci in 0..g.c_in {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let wv =
                                    binarize(weights[((co * g.c_in + ci) * kh + ky) * kw + kx]);
                                let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                    - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                    - g.padding[1] as isize;
                                let inside =
                                    iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w;
                                let xv = if inside {
                                    binarize(
                                        input[((b * g.c_in + ci) * h + iy as usize) * w
                                            + ix as usize],
                                    )
                                } else {
                                    match g.pad_mode {
                                        PadMode::Zero => 0.0,
                                        PadMode::One => 1.0,
                                    }
                                };
                                acc += xv * wv;
                            }
                        }
                    }
                    out[((b * g.c_out + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    (out, oh, ow)
}

/// Dot products of a binary dense layer: `input` f32 `[n, k]`, `weights` f32 `[n_out, k]`.
pub fn dense_dots(input: &[f32], n: usize, k: usize, weights: &[f32], n_out: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * n_out];
    for b in 0..n {
        for o in 0..n_out {
            out[b * n_out + o] = (0..k)
                .map(|i| binarize(input[b * k + i]) * binarize(weights[o * k + i]))
                .sum();
        }
    }
    out
}

/// The float output stage on reference dots laid out with the channel at `channel_of(i)`.
pub fn output_stage(
    dots: &[f32],
    mul: &[f32],
    bias: &[f32],
    channel_of: impl Fn(usize) -> usize,
) -> Vec<f32> {
    dots.iter()
        .enumerate()
        .map(|(i, &d)| {
            let c = channel_of(i);
            affine(mul[c], bias[c], d as i32)
        })
        .collect()
}

/// Max-pool of binarised values, NCHW, padded taps ignored.
pub fn max_pool(
    input: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> (Vec<f32>, usize, usize) {
    let oh = (h + padding[0] + padding[2] - kernel[0]) / stride[0] + 1;
    let ow = (w + padding[1] + padding[3] - kernel[1]) / stride[1] + 1;
    let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = &mut out[((b * c + ch) * oh + oy) * ow + ox];
                    for ky in 0..kernel[0] {
                        for kx in 0..kernel[1] {
                            let iy = (oy * stride[0] + ky) as isize - padding[0] as isize;
                            let ix = (ox * stride[1] + kx) as isize - padding[1] as isize;
                            if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                let v = binarize(
                                    input[((b * c + ch) * h + iy as usize) * w + ix as usize],
                                );
                                *o = o.max(v);
                            }
                        }
                    }
                }
            }
        }
    }
    (out, oh, ow)
}
