//! Camera pixels → RGB24 (or gray), into a buffer kept across frames.
//!
//! YUYV, NV12 and I420 go through the [`yuv`] crate (SSE/AVX2 on x86-64, NEON on aarch64,
//! picked at run time); MJPEG through [`zune_jpeg`]. RGB24 and gray frames pass through
//! untouched (the resize reads them directly). YUV is read as BT.601 limited range, what
//! UVC webcams, `rpicam-vid --codec yuv420` and GStreamer (at SD sizes) produce.
//!
//! Allocation: the RGB buffer grows to the largest frame once and is reused. The JPEG
//! decoder keeps per-image state (Huffman tables, component buffers) that `zune-jpeg`
//! allocates per image: MJPEG frames allocate, raw formats do not.

use yuv::{
    YuvBiPlanarImage, YuvConversionMode, YuvPackedImage, YuvPlanarImage, YuvRange,
    YuvStandardMatrix,
};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::camera::{Frame, PixelFormat};

/// The largest image an MJPEG frame may decode to (8K UHD): a JPEG header is untrusted, and
/// zune-jpeg's own limit (16384x16384) still lets one frame ask for 768 MB of RGB before a
/// single pixel is checked.
pub const MAX_JPEG_PIXELS: usize = 7680 * 4320;

/// A frame that could not be converted (a broken JPEG, a size the format cannot have).
#[derive(Debug, thiserror::Error)]
#[error("frame {seq} ({width}x{height} {format}): {reason}")]
pub struct ConvertError {
    seq: u64,
    width: usize,
    height: usize,
    format: PixelFormat,
    reason: String,
}

/// Converts frames to RGB24, reusing its buffer.
#[derive(Debug, Default)]
pub struct Converter {
    rgb: Vec<u8>,
}

impl Converter {
    /// A converter with no buffer yet (it grows on the first frame).
    pub fn new() -> Converter {
        Converter::default()
    }

    /// `frame` as RGB24 or gray: itself if it already is, else converted into this
    /// converter's buffer.
    pub fn convert<'a>(&'a mut self, frame: &Frame<'a>) -> Result<Frame<'a>, ConvertError> {
        let err = |reason: String| ConvertError {
            seq: frame.seq,
            width: frame.width,
            height: frame.height,
            format: frame.format,
            reason,
        };
        let (w, h) = (frame.width, frame.height);
        if w == 0 || h == 0 {
            return Err(err("empty frame".into()));
        }
        if let Some(n) = frame.format.frame_bytes(w, h) {
            if frame.data.len() < n {
                return Err(err(format!("{} bytes, expected {n}", frame.data.len())));
            }
        }
        let (w32, h32) = (w as u32, h as u32);
        let range = YuvRange::Limited;
        let matrix = YuvStandardMatrix::Bt601;
        let yuv_err = |e: yuv::YuvError| err(e.to_string());
        let (mut width, mut height) = (w, h);
        match frame.format {
            PixelFormat::Rgb24 | PixelFormat::Gray8 => return Ok(*frame),
            PixelFormat::Yuyv => {
                self.rgb.resize(w * h * 3, 0);
                let image = YuvPackedImage {
                    yuy: frame.data,
                    yuy_stride: (w.div_ceil(2) * 4) as u32,
                    width: w32,
                    height: h32,
                };
                yuv::yuyv422_to_rgb(&image, &mut self.rgb, w32 * 3, range, matrix)
                    .map_err(yuv_err)?;
            }
            PixelFormat::Nv12 => {
                self.rgb.resize(w * h * 3, 0);
                let (y, uv) = frame.data.split_at(w * h);
                let image = YuvBiPlanarImage {
                    y_plane: y,
                    y_stride: w32,
                    uv_plane: uv,
                    uv_stride: (w.div_ceil(2) * 2) as u32,
                    width: w32,
                    height: h32,
                };
                yuv::yuv_nv12_to_rgb(
                    &image,
                    &mut self.rgb,
                    w32 * 3,
                    range,
                    matrix,
                    YuvConversionMode::Balanced,
                )
                .map_err(yuv_err)?;
            }
            PixelFormat::I420 => {
                self.rgb.resize(w * h * 3, 0);
                let chroma = w.div_ceil(2) * h.div_ceil(2);
                let (y, rest) = frame.data.split_at(w * h);
                let (u, rest) = rest.split_at(chroma);
                let image = YuvPlanarImage {
                    y_plane: y,
                    y_stride: w32,
                    u_plane: u,
                    u_stride: w.div_ceil(2) as u32,
                    v_plane: &rest[..chroma],
                    v_stride: w.div_ceil(2) as u32,
                    width: w32,
                    height: h32,
                };
                yuv::yuv420_to_rgb(&image, &mut self.rgb, w32 * 3, range, matrix)
                    .map_err(yuv_err)?;
            }
            PixelFormat::Mjpeg => {
                let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
                let mut decoder = JpegDecoder::new_with_options(ZCursor::new(frame.data), options);
                decoder
                    .decode_headers()
                    .map_err(|e| err(format!("JPEG: {e:?}")))?;
                let (dw, dh) = decoder
                    .dimensions()
                    .ok_or_else(|| err("JPEG: no size".into()))?;
                if dw.saturating_mul(dh) > MAX_JPEG_PIXELS {
                    return Err(err(format!(
                        "JPEG: header says {dw}x{dh}, more than {MAX_JPEG_PIXELS} pixels (8K)"
                    )));
                }
                let n = decoder
                    .output_buffer_size()
                    .ok_or_else(|| err("JPEG: no size".into()))?;
                if n != dw * dh * 3 {
                    return Err(err(format!("JPEG: unexpected output of {n} bytes")));
                }
                self.rgb.resize(n, 0);
                decoder
                    .decode_into(&mut self.rgb)
                    .map_err(|e| err(format!("JPEG: {e:?}")))?;
                (width, height) = (dw, dh);
            }
        }
        Ok(Frame {
            data: &self.rgb[..width * height * 3],
            width,
            height,
            format: PixelFormat::Rgb24,
            seq: frame.seq,
            captured: frame.captured,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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

    /// BT.601 limited range: Y 16 is black, 235 white; (Y 81, U 90, V 240) is red.
    #[test]
    fn yuv_formats_agree_on_known_colours() {
        let (w, h) = (4, 2);
        let cases: [([u8; 3], [u8; 3]); 3] = [
            ([16, 128, 128], [0, 0, 0]),
            ([235, 128, 128], [255, 255, 255]),
            ([81, 90, 240], [255, 0, 0]),
        ];
        for ([y, u, v], rgb) in cases {
            let yuyv: Vec<u8> = [y, u, y, v].repeat(w * h / 2);
            let mut i420 = vec![y; w * h];
            i420.extend([u; 2]);
            i420.extend([v; 2]);
            let mut nv12 = vec![y; w * h];
            nv12.extend([u, v, u, v]);
            for (data, f) in [
                (&yuyv, PixelFormat::Yuyv),
                (&i420, PixelFormat::I420),
                (&nv12, PixelFormat::Nv12),
            ] {
                let mut c = Converter::new();
                let out = c.convert(&frame(data, w, h, f)).unwrap();
                assert_eq!(
                    (out.format, out.data.len()),
                    (PixelFormat::Rgb24, w * h * 3)
                );
                for px in out.data.chunks_exact(3) {
                    for k in 0..3 {
                        assert!(px[k].abs_diff(rgb[k]) <= 2, "{f}: {px:?} vs {rgb:?}");
                    }
                }
            }
        }
    }

    /// A small JPEG whose SOF header is patched to claim `w`x`h`.
    fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
        let rgb = [200u8; 8 * 8 * 3];
        let mut jpeg = vec![];
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&rgb, 8, 8, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let sof = jpeg
            .windows(2)
            .position(|m| m[0] == 0xFF && matches!(m[1], 0xC0..=0xC2))
            .unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        jpeg
    }

    #[test]
    fn a_jpeg_header_claiming_a_huge_image_is_refused_before_allocating() {
        let mut c = Converter::new();
        let ok = jpeg_claiming(8, 8);
        assert_eq!(
            c.convert(&frame(&ok, 8, 8, PixelFormat::Mjpeg))
                .unwrap()
                .width,
            8
        );
        let huge = jpeg_claiming(16000, 16000);
        let e = c
            .convert(&frame(&huge, 640, 480, PixelFormat::Mjpeg))
            .unwrap_err();
        assert!(e.to_string().contains("16000x16000"), "{e}");
        assert!(c.rgb.capacity() < 1 << 20, "no huge buffer");
    }

    #[test]
    fn rgb_passes_through_and_short_frames_are_errors() {
        let data = [1u8, 2, 3];
        let mut c = Converter::new();
        let f = frame(&data, 1, 1, PixelFormat::Rgb24);
        assert_eq!(c.convert(&f).unwrap().data.as_ptr(), data.as_ptr());
        let e = c
            .convert(&frame(&[0; 10], 4, 2, PixelFormat::Yuyv))
            .unwrap_err();
        assert!(e.to_string().contains("expected 16"), "{e}");
        let e = c.convert(&frame(&[0xFF, 0xD8, 0xFF, 0xD9], 4, 2, PixelFormat::Mjpeg));
        assert!(e.is_err());
    }
}
