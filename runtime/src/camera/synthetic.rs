//! `synthetic`: a moving test pattern (colour bars drifting sideways and a bright square
//! bouncing across them), paced at the requested frame rate. Deterministic, so runs on it
//! are reproducible; it needs no hardware, so it is the default source.

use std::time::Instant;

use super::pace::Pacer;
use super::{CameraError, Frame, FrameSource, PixelFormat, SourceOptions};

/// The synthetic source.
#[derive(Debug)]
pub struct Synthetic {
    uri: String,
    width: usize,
    height: usize,
    pacer: Pacer,
    buffer: Vec<u8>,
    seq: u64,
}

const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

impl Synthetic {
    /// A synthetic source of `options.width × options.height` RGB frames.
    pub fn new(uri: &str, options: &SourceOptions) -> Result<Synthetic, CameraError> {
        let bad = |reason: &str| CameraError::BadUri {
            uri: uri.into(),
            reason: reason.into(),
        };
        if uri != "synthetic" {
            return Err(bad(
                "the synthetic source takes no argument (use --size and --fps)",
            ));
        }
        if options.width < 8 || options.height < 8 || options.width > 8192 || options.height > 8192
        {
            return Err(bad("frame size must be between 8x8 and 8192x8192"));
        }
        if !options.fps.is_finite() || options.fps < 0.0 {
            return Err(bad("fps must be a positive number, or 0 for unpaced"));
        }
        Ok(Synthetic {
            uri: uri.into(),
            width: options.width,
            height: options.height,
            pacer: Pacer::new(options.fps),
            buffer: vec![0; options.width * options.height * 3],
            seq: 0,
        })
    }

    fn draw(&mut self) {
        let (w, h, t) = (self.width, self.height, self.seq as usize);
        let bar_width = w.div_ceil(BARS.len());
        let side = (h / 4).max(2);
        let span_x = w - side;
        let span_y = h - side;
        // Bounce: position along a triangle wave.
        let tri = |t: usize, span: usize| {
            if span == 0 {
                return 0;
            }
            let p = t % (2 * span);
            if p < span {
                p
            } else {
                2 * span - p
            }
        };
        let (sx, sy) = (tri(t * 3, span_x), tri(t * 2, span_y));
        for y in 0..h {
            let row = &mut self.buffer[y * w * 3..(y + 1) * w * 3];
            let in_square_y = y >= sy && y < sy + side;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let colour = if in_square_y && x >= sx && x < sx + side {
                    [255, 200, 0]
                } else {
                    BARS[((x + t * 2) / bar_width) % BARS.len()]
                };
                px.copy_from_slice(&colour);
            }
        }
    }
}

impl FrameSource for Synthetic {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn lossless(&self) -> bool {
        self.pacer.is_unpaced()
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        self.pacer.wait();
        let captured = Instant::now();
        self.draw();
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Frame {
            data: &self.buffer,
            width: self.width,
            height: self.height,
            format: PixelFormat::Rgb24,
            seq,
            captured,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_move_and_are_numbered() {
        let opts = SourceOptions {
            width: 64,
            height: 48,
            fps: 0.0,
            ..SourceOptions::default()
        };
        let mut s = Synthetic::new("synthetic", &opts).unwrap();
        let first = s.next_frame().unwrap().unwrap().data.to_vec();
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.width, f.height, f.seq, f.data.len()),
            (64, 48, 1, 64 * 48 * 3)
        );
        assert_ne!(first, f.data, "the pattern moves");
    }

    #[test]
    fn bad_options_are_errors() {
        let small = SourceOptions {
            width: 2,
            height: 2,
            fps: 0.0,
            ..SourceOptions::default()
        };
        assert!(Synthetic::new("synthetic", &small).is_err());
        let opts = SourceOptions::default();
        assert!(Synthetic::new("synthetic:foo", &opts).is_err());
        assert!(Synthetic::new("synthetic", &SourceOptions { fps: -1.0, ..opts }).is_err());
    }
}
