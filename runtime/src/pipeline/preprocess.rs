//! Frame → model input: bilinear resize and per-channel normalisation in one pass, written
//! straight into the input tensor's buffer. The interpolation tables are built once per frame
//! size, so steady-state frames allocate nothing.

use crate::camera::{Frame, PixelFormat};
use crate::model::TensorSpec;
use tract_nnef::internal::DatumType;

/// Per-channel affine normalisation of 8-bit pixels: `out = px * scale[c] + offset[c]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Normalize {
    /// The usual form: `(px / 255 − mean[c]) / std[c]`.
    pub fn from_mean_std(mean: [f32; 3], std: [f32; 3]) -> Normalize {
        let mut n = Normalize {
            scale: [0.0; 3],
            offset: [0.0; 3],
        };
        for c in 0..3 {
            n.scale[c] = 1.0 / (255.0 * std[c]);
            n.offset[c] = -mean[c] / std[c];
        }
        n
    }

    /// Pixels scaled to [0, 1].
    pub fn unit() -> Normalize {
        Normalize::from_mean_std([0.0; 3], [1.0; 3])
    }
}

/// Memory layout of the model's image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, C, H, W]`
    Nchw,
    /// `[1, H, W, C]`
    Nhwc,
}

/// Errors building a pre-processor.
#[derive(Debug, thiserror::Error)]
#[error("input '{name}' ({shape:?} {dt:?}) is not an image input: {reason}")]
pub struct NotAnImage {
    name: String,
    shape: Vec<usize>,
    dt: DatumType,
    reason: &'static str,
}

/// Resizes and normalises frames into a model's f32 image input.
#[derive(Debug)]
pub struct Preprocessor {
    layout: Layout,
    channels: usize,
    out_w: usize,
    out_h: usize,
    normalize: Normalize,
    /// Source size the tables were built for.
    src: (usize, usize),
    x_tab: Vec<Tap>,
    y_tab: Vec<Tap>,
}

/// One output coordinate's two source taps and the weight of the second.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w1: f32,
}

fn taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|o| {
            // Pixel centres aligned (OpenCV / PIL "half pixel" convention).
            let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (x.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            Tap {
                i0,
                i1,
                w1: x - i0 as f32,
            }
        })
        .collect()
}

/// The layout, channels, height and width of an image input: `[1, 3|1, H, W]` (NCHW) or
/// `[1, H, W, 3|1]` (NHWC), f32.
pub fn image_input(input: &TensorSpec) -> Result<(Layout, usize, usize, usize), NotAnImage> {
    let err = |reason| NotAnImage {
        name: input.name.clone(),
        shape: input.shape.clone(),
        dt: input.datum_type,
        reason,
    };
    if input.datum_type != DatumType::F32 {
        return Err(err("only f32 image inputs are fed from frames for now"));
    }
    let s = &input.shape;
    if s.len() != 4 || s[0] != 1 {
        return Err(err("expected a rank-4 input with batch 1"));
    }
    // Channels are 1 or 3; a trailing 3 with a leading non-3 reads as NHWC (an RGB image
    // 1 pixel tall is not a thing a camera model takes), otherwise NCHW wins ties.
    let (layout, channels, h, w) = match (s[1], s[3]) {
        (c, 3) if c != 3 => (Layout::Nhwc, 3, s[1], s[2]),
        (1 | 3, _) => (Layout::Nchw, s[1], s[2], s[3]),
        (_, 1) => (Layout::Nhwc, 1, s[1], s[2]),
        _ => return Err(err("expected 1 or 3 channels in NCHW or NHWC")),
    };
    if w == 0 || h == 0 {
        return Err(err("empty spatial size"));
    }
    Ok((layout, channels, h, w))
}

impl Preprocessor {
    /// A pre-processor for `input`: `[1, 3|1, H, W]` (NCHW) or `[1, H, W, 3|1]` (NHWC), f32.
    pub fn new(input: &TensorSpec, normalize: Normalize) -> Result<Preprocessor, NotAnImage> {
        let (layout, channels, h, w) = image_input(input)?;
        Ok(Preprocessor {
            layout,
            channels,
            out_w: w,
            out_h: h,
            normalize,
            src: (0, 0),
            x_tab: Vec::with_capacity(w),
            y_tab: Vec::with_capacity(h),
        })
    }

    /// The input layout found.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Writes `frame` (RGB24 or gray: see `pipeline::convert`), resized and normalised, into
    /// `out` (the input tensor's elements).
    pub fn run(&mut self, frame: &Frame<'_>, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.channels * self.out_w * self.out_h,
            "input buffer size"
        );
        if self.src != (frame.width, frame.height) {
            self.x_tab = taps(frame.width, self.out_w);
            self.y_tab = taps(frame.height, self.out_h);
            self.src = (frame.width, frame.height);
        }
        let bpp = match frame.format {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb24 => 3,
            other => panic!("the pre-processor takes converted frames (RGB or gray), got {other}"),
        };
        let stride = frame.width * bpp;
        let plane = self.out_w * self.out_h;
        let n = self.normalize;
        // Decided once per frame, not per pixel: which source byte feeds each model channel
        // (gray frames feed every channel from luma; RGB frames feed a 1-channel model from
        // their green, a cheap luma stand-in), and the strides of the output layout.
        let mut source = [0usize; 3];
        for (c, s) in source.iter_mut().enumerate().take(self.channels) {
            *s = match (frame.format, self.channels) {
                (PixelFormat::Gray8, _) => 0,
                (_, 1) => 1,
                _ => c,
            };
        }
        let (c_stride, px_stride) = match self.layout {
            Layout::Nchw => (plane, 1),
            Layout::Nhwc => (1, self.channels),
        };
        for (oy, ty) in self.y_tab.iter().enumerate() {
            let r0 = &frame.data[ty.i0 * stride..][..stride];
            let r1 = &frame.data[ty.i1 * stride..][..stride];
            for (ox, tx) in self.x_tab.iter().enumerate() {
                let (x0, x1) = (tx.i0 * bpp, tx.i1 * bpp);
                let pixel = (oy * self.out_w + ox) * px_stride;
                for (c, &sc) in source.iter().enumerate().take(self.channels) {
                    let (a, b) = (r0[x0 + sc] as f32, r0[x1 + sc] as f32);
                    let (d, e) = (r1[x0 + sc] as f32, r1[x1 + sc] as f32);
                    let top = a + (b - a) * tx.w1;
                    let bottom = d + (e - d) * tx.w1;
                    let v = top + (bottom - top) * ty.w1;
                    out[c * c_stride + pixel] = v * n.scale[c] + n.offset[c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spec(shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datum_type: DatumType::F32,
            shape: shape.to_vec(),
        }
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    fn frame(data: &[u8], w: usize, h: usize, format: PixelFormat) -> Frame<'_> {
        Frame {
            data,
            width: w,
            height: h,
            format,
            seq: 0,
            captured: Instant::now(),
        }
    }

    #[test]
    fn identity_size_copies_and_normalises_nchw() {
        let data: Vec<u8> = (0..2 * 2 * 3).map(|i| (i * 20) as u8).collect();
        let mut p = Preprocessor::new(&spec(&[1, 3, 2, 2]), Normalize::unit()).unwrap();
        let mut out = vec![0f32; 12];
        p.run(&frame(&data, 2, 2, PixelFormat::Rgb24), &mut out);
        // channel 0 plane = R of the 4 pixels
        let r: Vec<f32> = [0, 3, 6, 9]
            .iter()
            .map(|&i| data[i] as f32 / 255.0)
            .collect();
        close(&out[..4], &r);
        close(&out[4..5], &[data[1] as f32 / 255.0]);
    }

    #[test]
    fn downscale_by_two_averages_pairs() {
        // 4x1 gray row 0, 100, 200, 255 -> 2 pixels: half-pixel centres land between pairs.
        let data = [0u8, 100, 200, 255];
        let mut p = Preprocessor::new(&spec(&[1, 1, 1, 2]), Normalize::unit()).unwrap();
        let mut out = [0f32; 2];
        p.run(&frame(&data, 4, 1, PixelFormat::Gray8), &mut out);
        assert!((out[0] - 50.0 / 255.0).abs() < 1e-6, "{out:?}");
        assert!((out[1] - 227.5 / 255.0).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn nhwc_layout_is_detected_and_interleaved() {
        let mut p = Preprocessor::new(&spec(&[1, 1, 2, 3]), Normalize::unit()).unwrap();
        assert_eq!(p.layout(), Layout::Nhwc);
        let data = [10u8, 20, 30, 40, 50, 60];
        let mut out = [0f32; 6];
        p.run(&frame(&data, 2, 1, PixelFormat::Rgb24), &mut out);
        let want: Vec<f32> = data.iter().map(|&v| v as f32 / 255.0).collect();
        close(&out, &want);
    }

    #[test]
    fn mean_std() {
        let n = Normalize::from_mean_std([0.5; 3], [0.5; 3]);
        let mut p = Preprocessor::new(&spec(&[1, 3, 1, 1]), n).unwrap();
        let mut out = [0f32; 3];
        p.run(&frame(&[0, 255, 51], 1, 1, PixelFormat::Rgb24), &mut out);
        assert!((out[0] + 1.0).abs() < 1e-6 && (out[1] - 1.0).abs() < 1e-6);
        assert!((out[2] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn non_image_inputs_are_refused() {
        assert!(Preprocessor::new(&spec(&[1, 10]), Normalize::unit()).is_err());
        assert!(Preprocessor::new(&spec(&[1, 5, 8, 8]), Normalize::unit()).is_err());
        let mut s = spec(&[1, 3, 8, 8]);
        s.datum_type = DatumType::U8;
        assert!(Preprocessor::new(&s, Normalize::unit()).is_err());
    }
}
