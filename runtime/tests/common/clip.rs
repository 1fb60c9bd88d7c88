//! A clip made from a real photograph: scikit-image's "camera" picture (a man with a camera
//! on a tripod; public domain), scaled into a sprite that walks across a plain background,
//! left to right. Written as RGB frames, and as Y4M (I420) for `--source file:`.

use std::io::Write;
use std::path::Path;

use kestrel_runtime::io::npy;

/// Frame size of the clip.
pub const WIDTH: usize = 640;
/// Frame size of the clip.
pub const HEIGHT: usize = 360;
/// Side of the sprite, pixels.
pub const SPRITE: usize = 260;

/// The photograph, 300×300 RGB (`tests/fixtures/ref/ssdlite.images.npy`, image 1).
fn photo() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ref/ssdlite.images.npy");
    let (_, t) = npy::read_arrays(&path).unwrap().remove(0);
    assert_eq!(t.shape(), &[4, 300, 300, 3]);
    let t = t.slice(0, 1, 2).unwrap();
    let view = t.try_as_plain_ram().unwrap();
    view.as_slice::<u8>().unwrap().to_vec()
}

/// Bilinear resize of a square RGB image.
fn resize(src: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut out = vec![0u8; to * to * 3];
    let scale = from as f32 / to as f32;
    for oy in 0..to {
        let y = ((oy as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
        let (y0, wy) = (y.floor() as usize, y.fract());
        let y1 = (y0 + 1).min(from - 1);
        for ox in 0..to {
            let x = ((ox as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
            let (x0, wx) = (x.floor() as usize, x.fract());
            let x1 = (x0 + 1).min(from - 1);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| src[(yy * from + xx) * 3 + c] as f32;
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * wx;
                let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * wx;
                out[(oy * to + ox) * 3 + c] = (top + (bottom - top) * wy).round() as u8;
            }
        }
    }
    out
}

/// `frames` RGB24 frames: the sprite at the bottom of the frame, its left edge moving from 0
/// to `WIDTH − SPRITE` in equal steps.
pub fn rgb_frames(frames: usize) -> Vec<Vec<u8>> {
    let sprite = resize(&photo(), 300, SPRITE);
    (0..frames)
        .map(|i| {
            let mut f = vec![0u8; WIDTH * HEIGHT * 3];
            for (p, px) in f.chunks_exact_mut(3).enumerate() {
                let x = p % WIDTH;
                px.copy_from_slice(&[110, 110, (90 + 70 * x / WIDTH) as u8]);
            }
            let left = i * (WIDTH - SPRITE) / (frames - 1).max(1);
            let top = HEIGHT - SPRITE;
            for y in 0..SPRITE {
                let row = (top + y) * WIDTH + left;
                f[row * 3..(row + SPRITE) * 3]
                    .copy_from_slice(&sprite[y * SPRITE * 3..(y + 1) * SPRITE * 3]);
            }
            f
        })
        .collect()
}

/// BT.601 limited-range I420 of an RGB24 frame (2×2 chroma averages).
pub fn i420(rgb: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h * 3 / 2];
    let px = |x: usize, y: usize| {
        let p = &rgb[(y * w + x) * 3..][..3];
        (p[0] as f32, p[1] as f32, p[2] as f32)
    };
    for y in 0..h {
        for x in 0..w {
            let (r, g, b) = px(x, y);
            out[y * w + x] = (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round() as u8;
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    for y in 0..ch {
        for x in 0..cw {
            let (mut u, mut v) = (0.0, 0.0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (r, g, b) = px(2 * x + dx, 2 * y + dy);
                u += 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                v += 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
            }
            out[w * h + y * cw + x] = (u / 4.0).round().clamp(0.0, 255.0) as u8;
            out[w * h + cw * ch + y * cw + x] = (v / 4.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Writes the clip of `frames` frames as a Y4M file at `fps`.
pub fn write_y4m(path: &Path, frames: usize, fps: u32) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg").unwrap();
    for rgb in rgb_frames(frames) {
        f.write_all(b"FRAME\n").unwrap();
        f.write_all(&i420(&rgb, WIDTH, HEIGHT)).unwrap();
    }
    f.flush().unwrap();
}
