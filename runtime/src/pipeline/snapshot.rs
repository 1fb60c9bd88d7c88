//! `--snapshot DIR --every SECS`: now and then, the frame being processed written as an
//! annotated JPEG (`DIR/kestrel-SEQ.jpg`) — for checking what the camera sees and what the
//! model makes of it, without a display on the board.
//!
//! Annotations: detections as boxes (a colour per track, or per class before a track is
//! confirmed) with a caption `LABEL SCORE #TRACK` in an 8×8 bitmap font; zones as outlines
//! with their name; lines with their name and a tick on their `in` side; for a classifier, a
//! bar along the top whose length is the best class's score and the best label.
//! Files are written atomically (temp file, then rename). A snapshot allocates (encoder,
//! canvas) but only once per period; a failed write is logged, never fatal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jpeg_encoder::{ColorType, Encoder};

use super::convert::Converter;
use super::tasks::{Task, TaskResult};
use crate::analytics::Analytics;
use crate::camera::{Frame, PixelFormat};
use crate::error::RuntimeError;
use crate::io::atomic::AtomicFile;

/// Writes annotated frames every so often.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    every: Duration,
    last: Option<Instant>,
    annotator: Annotator,
    written: u64,
}

/// Draws a frame's results on it and encodes it as JPEG, reusing its buffers.
#[derive(Debug, Default)]
pub struct Annotator {
    converter: Converter,
    canvas: Vec<u8>,
}

impl Annotator {
    /// An annotator; its buffers grow on first use.
    pub fn new() -> Annotator {
        Annotator {
            converter: Converter::new(),
            canvas: Vec::new(),
        }
    }

    /// Writes `frame` annotated with `result` (and the zones and lines of `analytics`) to
    /// `out` as a JPEG of quality 85.
    pub fn jpeg<W: std::io::Write>(
        &mut self,
        frame: &Frame<'_>,
        task: &Task,
        result: &TaskResult,
        analytics: Option<&Analytics>,
        out: W,
    ) -> anyhow::Result<()> {
        let rgb = self.converter.convert(frame)?;
        let (w, h) = (rgb.width, rgb.height);
        self.canvas.clear();
        match rgb.format {
            PixelFormat::Gray8 => self.canvas.extend(rgb.data.iter().flat_map(|&v| [v, v, v])),
            _ => self.canvas.extend_from_slice(rgb.data),
        }
        let mut canvas = Canvas {
            rgb: &mut self.canvas,
            w,
            h,
        };
        if let Some(a) = analytics {
            canvas.regions(a);
        }
        canvas.annotate(task, result);
        let (w16, h16) = (u16::try_from(w)?, u16::try_from(h)?);
        Encoder::new(out, 85).encode(&self.canvas, w16, h16, ColorType::Rgb)?;
        Ok(())
    }
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
            annotator: Annotator::new(),
            written: 0,
        })
    }

    /// Snapshots written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes `frame` annotated with `result` if a period has passed since the last one.
    /// Returns the file written, if any.
    pub fn offer(
        &mut self,
        frame: &Frame<'_>,
        task: &Task,
        result: &TaskResult,
        analytics: Option<&Analytics>,
    ) -> Option<PathBuf> {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        match self.write(frame, task, result, analytics) {
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

    fn write(
        &mut self,
        frame: &Frame<'_>,
        task: &Task,
        result: &TaskResult,
        analytics: Option<&Analytics>,
    ) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("kestrel-{:08}.jpg", frame.seq));
        let mut out = AtomicFile::create(&path)?;
        let file = std::io::BufWriter::new(out.file_mut());
        self.annotator.jpeg(frame, task, result, analytics, file)?;
        out.commit()?;
        Ok(path)
    }
}

const ZONE: [u8; 3] = [255, 200, 0];
const LINE: [u8; 3] = [0, 220, 255];
const TEXT: [u8; 3] = [0, 0, 0];

/// An RGB image to draw on.
struct Canvas<'a> {
    rgb: &'a mut [u8],
    w: usize,
    h: usize,
}

impl Canvas<'_> {
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..self.w as i64).contains(&x) && (0..self.h as i64).contains(&y) {
            let i = (y as usize * self.w + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Relative coordinates to pixels.
    fn px(&self, p: [f32; 2]) -> (i64, i64) {
        let f = |v: f32, n: usize| (v.clamp(0.0, 1.0) * (n.max(1) - 1) as f32).round() as i64;
        (f(p[0], self.w), f(p[1], self.h))
    }

    /// Text scale: 8×8 glyphs up to 960 pixels wide, 16×16 above.
    fn scale(&self) -> i64 {
        if self.w > 960 {
            2
        } else {
            1
        }
    }

    /// A line `thick` pixels wide (Bresenham, a square pen).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), thick: i64, c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for ty in 0..thick {
                for tx in 0..thick {
                    self.put(x + tx - thick / 2, y + ty - thick / 2, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// `text` on a filled background, its top-left corner at `(x, y)`.
    fn text(&mut self, x: i64, y: i64, text: &str, bg: [u8; 3]) {
        let s = self.scale();
        let n = text.chars().count() as i64;
        for yy in y - 1..y + 8 * s + 1 {
            for xx in x - 1..x + n * 8 * s + 1 {
                self.put(xx, yy, bg);
            }
        }
        for (i, ch) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
            for (gy, row) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if row & (1 << gx) != 0 {
                        for k in 0..s * s {
                            self.put(
                                x + (i as i64 * 8 + gx) * s + k % s,
                                y + gy as i64 * s + k / s,
                                TEXT,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Zones (outlines) and lines (with a tick on their `in` side), named.
    fn regions(&mut self, a: &Analytics) {
        for (i, poly) in a.zone_polygons().enumerate() {
            for k in 0..poly.len() {
                let (p, q) = (self.px(poly[k]), self.px(poly[(k + 1) % poly.len()]));
                self.line(p, q, 2, ZONE);
            }
            let (x, y) = self.px(poly[0]);
            self.text(x + 3, y + 3, a.zone_name(i), ZONE);
        }
        for (i, (pa, pb)) in a.line_ends().enumerate() {
            let (p, q) = (self.px(pa), self.px(pb));
            self.line(p, q, 3, LINE);
            // The `in` side is the right-hand side of a→b on the image: (−dy, dx) rotated.
            let (dx, dy) = ((q.0 - p.0) as f32, (q.1 - p.1) as f32);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let tick = 12.0 * self.scale() as f32;
            let mid = ((p.0 + q.0) / 2, (p.1 + q.1) / 2);
            let end = (
                mid.0 + (-dy / len * tick) as i64,
                mid.1 + (dx / len * tick) as i64,
            );
            self.line(mid, end, 3, LINE);
            self.text(end.0 + 2, end.1 + 2, "in", LINE);
            self.text(p.0 + 3, p.1 + 3, a.line_name(i), LINE);
        }
    }

    /// Detections with captions, or the classifier's bar.
    fn annotate(&mut self, task: &Task, result: &TaskResult) {
        match result {
            TaskResult::Detections(found) => {
                for d in found.iter() {
                    let key = d.track.map_or(d.class as usize, |t| t as usize);
                    let c = COLOURS[key % COLOURS.len()];
                    let (x0, y0) = self.px([d.bbox[0], d.bbox[1]]);
                    let (x1, y1) = self.px([d.bbox[2], d.bbox[3]]);
                    for (p, q) in [
                        ((x0, y0), (x1, y0)),
                        ((x1, y0), (x1, y1)),
                        ((x1, y1), (x0, y1)),
                        ((x0, y1), (x0, y0)),
                    ] {
                        self.line(p, q, 2, c);
                    }
                    let mut caption = heapless::String::<64>::new();
                    let label = task.label(d.class);
                    let _ = match (label, d.track) {
                        (Some(l), Some(t)) => write!(caption, "{l} {:.2} #{t}", d.score),
                        (Some(l), None) => write!(caption, "{l} {:.2}", d.score),
                        (None, Some(t)) => write!(caption, "{} {:.2} #{t}", d.class, d.score),
                        (None, None) => write!(caption, "{} {:.2}", d.class, d.score),
                    };
                    let th = 8 * self.scale() + 2;
                    let y = if y0 >= th { y0 - th } else { y0 + 2 };
                    self.text(x0 + 1, y, &caption, c);
                }
            }
            TaskResult::Classes(top) => {
                if let Some(best) = top.first() {
                    let w = self.w;
                    let len = (best.score.clamp(0.0, 1.0) * w as f32) as i64;
                    let c = COLOURS[best.index as usize % COLOURS.len()];
                    for y in 0..(self.h as i64 / 40).max(2) {
                        for x in 0..len {
                            self.put(x, y, c);
                        }
                    }
                    let mut caption = heapless::String::<64>::new();
                    let _ = match task.label(best.index) {
                        Some(l) => write!(caption, "{l} {:.2}", best.score),
                        None => write!(caption, "{} {:.2}", best.index, best.score),
                    };
                    let y = (self.h as i64 / 40).max(2) + 2;
                    self.text(2, y, &caption, c);
                }
            }
            TaskResult::Raw { .. } | TaskResult::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::zones::{AnchorPoint, LineSpec, ZoneSpec};
    use crate::analytics::AnalyticsConfig;
    use crate::pipeline::detect::Detection;

    fn decode(path: &Path, w: usize, h: usize) -> Vec<u8> {
        let jpeg = std::fs::read(path).unwrap();
        let back = Frame {
            data: &jpeg,
            width: w,
            height: h,
            format: PixelFormat::Mjpeg,
            seq: 0,
            captured: Instant::now(),
        };
        Converter::new().convert(&back).unwrap().data.to_vec()
    }

    #[test]
    fn writes_annotated_jpegs_at_most_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Snapshots::new(&dir.path().join("snaps"), 3600.0).unwrap();
        let (w, h) = (200, 150);
        let data = vec![0u8; w * h * 3];
        let mut frame = Frame {
            data: &data,
            width: w,
            height: h,
            format: PixelFormat::Rgb24,
            seq: 7,
            captured: Instant::now(),
        };
        let labels = vec!["background".to_string(), "person".to_string()];
        let task = Task::classify(labels.clone(), 1);
        let mut found = heapless::Vec::new();
        found
            .push(Detection {
                class: 1,
                score: 0.9,
                bbox: [0.25, 0.4, 0.75, 0.9],
                track: Some(3),
            })
            .unwrap();
        let config = AnalyticsConfig {
            zones: vec![ZoneSpec {
                name: "door".into(),
                polygon: vec![[0.05, 0.05], [0.2, 0.05], [0.2, 0.3]],
                classes: vec![],
                anchor: AnchorPoint::Bottom,
            }],
            lines: vec![LineSpec {
                name: "gate".into(),
                a: [0.9, 0.1],
                b: [0.9, 0.9],
                classes: vec![],
                anchor: AnchorPoint::Bottom,
            }],
            ..AnalyticsConfig::default()
        };
        let analytics = Analytics::new(&config, &labels, 2).unwrap();
        let result = TaskResult::Detections(Box::new(found));
        let path = s.offer(&frame, &task, &result, Some(&analytics)).unwrap();
        assert!(path.ends_with("kestrel-00000007.jpg"));
        frame.seq = 8;
        assert!(
            s.offer(&frame, &task, &result, Some(&analytics)).is_none(),
            "within the period"
        );
        assert_eq!(s.written(), 1);
        let rgb = decode(&path, w, h);
        let at = |x: usize, y: usize| {
            let p = &rgb[(y * w + x) * 3..][..3];
            [p[0], p[1], p[2]]
        };
        // The box's right edge (track 3's colour: yellow), mid-height.
        let edge = at(149, 100);
        assert!(edge[0] > 150 && edge[1] > 150 && edge[2] < 100, "{edge:?}");
        // The caption sits above the box: a coloured band with dark glyph pixels in it.
        let band: Vec<[u8; 3]> = (50..150).map(|x| at(x, 55)).collect();
        assert!(band.iter().any(|p| p[0] > 150), "caption background");
        assert!(band.iter().any(|p| p[0] < 60), "caption glyphs");
        // The zone's top edge and the line.
        let z = at(25, 7);
        assert!(z[0] > 150 && z[2] < 100, "zone outline: {z:?}");
        let l = at(179, 75);
        assert!(l[1] > 150 && l[2] > 150 && l[0] < 100, "line: {l:?}");
        // Far from everything the frame stays black.
        assert!(at(100, 20).iter().all(|&v| v < 40));
        assert!(Snapshots::new(dir.path(), f64::NAN).is_err());
    }
}
