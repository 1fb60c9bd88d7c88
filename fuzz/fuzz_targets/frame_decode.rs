//! The frame converter (`kestrel_runtime::pipeline::convert::Converter`: YUYV, NV12, I420
//! through the `yuv` crate, MJPEG through zune-jpeg, RGB24/gray pass-through) on frames of
//! any declared size with any number of bytes: wrong sizes, truncated planes, broken JPEGs.
//!
//! Input: `[format: u8][width: u8][height: u8][pixel bytes...]`; the converter is reused for
//! two frames so its buffer-reuse path runs too.
#![no_main]

use std::time::Instant;

use kestrel_runtime::camera::{Frame, PixelFormat};
use kestrel_runtime::pipeline::convert::Converter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [f, w, h, pixels @ ..] = data else { return };
    let format = PixelFormat::ALL[*f as usize % PixelFormat::ALL.len()];
    let mut converter = Converter::new();
    for (width, height) in [(*w as usize, *h as usize), (*h as usize, *w as usize)] {
        let frame = Frame {
            data: pixels,
            width,
            height,
            format,
            seq: 0,
            captured: Instant::now(),
        };
        if let Ok(rgb) = converter.convert(&frame) {
            let bytes = if rgb.format == PixelFormat::Gray8 { 1 } else { 3 };
            assert!(rgb.data.len() >= rgb.width * rgb.height * bytes);
        }
    }
});
