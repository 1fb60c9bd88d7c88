//! `--snapshot DIR --every SECS`: now and then, the frame being processed written as an
//! annotated JPEG (`DIR/kestrel-SEQ.jpg`) — for checking what the camera sees and what the
//! model makes of it, without a display on the board.
//!
//! Annotations: detections as boxes (a colour per class); for a classifier, a bar along the
//! top whose length is the best class's score. Labels are in the JSON line of the same `seq`.
//! Files are written atomically (temp file, then rename). A snapshot allocates (encoder,
//! canvas) but only once per period; a failed write is logged, never fatal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder};

use super::convert::Converter;
use super::tasks::TaskResult;
use crate::camera::{Frame, PixelFormat};
use crate::error::RuntimeError;
use crate::io::atomic::AtomicFile;

/// Writes annotated frames every so often.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    every: Duration,
    last: Option<Instant>,
    converter: Converter,
    canvas: Vec<u8>,
    written: u64,
}

const COLOURS: [[u8; 3]; 6] = [
    [255, 64, 64],
    [64, 255, 64],
    [64, 128, 255],
    [255, 255, 0],
    [255, 0, 255],
    [0, 255, 255],
];

impl Snapshots {
    /// Snapshots into `dir` (created if missing) every `every_s` seconds.
    pub fn new(dir: &Path, every_s: f64) -> Result<Snapshots, RuntimeError> {
        if !(every_s.is_finite() && every_s >= 0.0) {
            return Err(RuntimeError::Io {
                path: dir.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--every must be a number of seconds ≥ 0",
                ),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
            path: dir.into(),
            source,
        })?;
        Ok(Snapshots {
            dir: dir.into(),
            every: Duration::from_secs_f64(every_s),
            last: None,
            converter: Converter::new(),
            canvas: Vec::new(),
            written: 0,
        })
    }

    /// Snapshots written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes `frame` annotated with `result` if a period has passed since the last one.
    /// Returns the file written, if any.
    pub fn offer(&mut self, frame: &Frame<'_>, result: &TaskResult) -> Option<PathBuf> {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        match self.write(frame, result) {
            Ok(path) => {
                self.written += 1;
                Some(path)
            }
            Err(e) => {
                log::warn!("snapshot: {e:#}");
                None
            }
        }
    }

    fn write(&mut self, frame: &Frame<'_>, result: &TaskResult) -> anyhow::Result<PathBuf> {
        let rgb = self.converter.convert(frame)?;
        let (w, h) = (rgb.width, rgb.height);
        self.canvas.clear();
        match rgb.format {
            PixelFormat::Gray8 => self.canvas.extend(rgb.data.iter().flat_map(|&v| [v, v, v])),
            _ => self.canvas.extend_from_slice(rgb.data),
        }
        annotate(&mut self.canvas, w, h, result);
        let path = self.dir.join(format!("kestrel-{:08}.jpg", frame.seq));
        let mut out = AtomicFile::create(&path)?;
        let (w16, h16) = (u16::try_from(w)?, u16::try_from(h)?);
        Encoder::new(std::io::BufWriter::new(out.file_mut()), 85).encode(
            &self.canvas,
            w16,
            h16,
            ColorType::Rgb,
        )?;
        out.commit()?;
        Ok(path)
    }
}

/// Draws `result` onto the RGB image.
fn annotate(rgb: &mut [u8], w: usize, h: usize, result: &TaskResult) {
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < w && y < h {
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&c);
        }
    };
    match result {
        TaskResult::Detections(found) => {
            for d in found.iter() {
                let c = COLOURS[d.class as usize % COLOURS.len()];
                let px = |v: f32, n: usize| (v.clamp(0.0, 1.0) * (n - 1) as f32) as usize;
                let (x0, y0, x1, y1) = (
                    px(d.bbox[0], w),
                    px(d.bbox[1], h),
                    px(d.bbox[2], w),
                    px(d.bbox[3], h),
                );
                for t in 0..2 {
                    for x in x0..=x1 {
                        put(x, y0 + t, c);
                        put(x, y1.saturating_sub(t), c);
                    }
                    for y in y0..=y1 {
                        put(x0 + t, y, c);
                        put(x1.saturating_sub(t), y, c);
                    }
                }
            }
        }
        TaskResult::Classes(top) => {
            if let Some(best) = top.first() {
                let len = (best.score.clamp(0.0, 1.0) * w as f32) as usize;
                let c = COLOURS[best.index as usize % COLOURS.len()];
                for y in 0..(h / 40).max(2) {
                    for x in 0..len {
                        put(x, y, c);
                    }
                }
            }
        }
        TaskResult::Raw { .. } | TaskResult::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::detect::Detection;

    #[test]
    fn writes_annotated_jpegs_at_most_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Snapshots::new(&dir.path().join("snaps"), 3600.0).unwrap();
        let data = vec![0u8; 32 * 16 * 3];
        let mut frame = Frame {
            data: &data,
            width: 32,
            height: 16,
            format: PixelFormat::Rgb24,
            seq: 7,
            captured: Instant::now(),
        };
        let mut found = heapless::Vec::new();
        found
            .push(Detection {
                class: 0,
                score: 0.9,
                bbox: [0.25, 0.25, 0.75, 0.75],
            })
            .unwrap();
        let path = s
            .offer(&frame, &TaskResult::Detections(Box::new(found.clone())))
            .unwrap();
        assert!(path.ends_with("kestrel-00000007.jpg"));
        frame.seq = 8;
        assert!(
            s.offer(&frame, &TaskResult::Detections(Box::new(found)))
                .is_none(),
            "within the period"
        );
        assert_eq!(s.written(), 1);
        // The box is drawn: decode and look at its top-left corner.
        let jpeg = std::fs::read(&path).unwrap();
        let back = Frame {
            data: &jpeg,
            format: PixelFormat::Mjpeg,
            ..frame
        };
        let mut c = Converter::new();
        let rgb = c.convert(&back).unwrap();
        let (x, y) = (8, 4);
        let px = &rgb.data[(y * 32 + x) * 3..][..3];
        assert!(px[0] > 150 && px[1] < 120, "{px:?}");
        assert!(
            rgb.data[..3].iter().all(|&v| v < 40),
            "outside the box stays black"
        );
        assert!(Snapshots::new(dir.path(), f64::NAN).is_err());
    }
}
