//! Cutting a byte stream (a pipe, a command's stdout, a file) into frames.
//!
//! Raw formats have a fixed frame size (`--pixel-format` × `--size`): the reader fills one
//! preallocated frame buffer with `read` calls. Motion-JPEG frames have no size field, so the
//! reader walks the JPEG marker structure (segment lengths, then the entropy-coded data up to
//! the next real marker) to find where each image ends; an `FF D9` inside an APP segment
//! (an EXIF thumbnail) does not end the frame. Buffers grow to the largest frame seen and
//! are then reused: no allocation per frame in steady state.

use std::io::{self, Read};
use std::time::Instant;

use super::{CameraError, Frame, PixelFormat, SourceOptions};

/// What one [`FrameReader::read_frame`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A whole frame is ready ([`FrameReader::frame`]).
    Frame,
    /// The stream ended cleanly between frames.
    End,
    /// The stream ended inside a frame after this many bytes of it.
    Partial(usize),
}

/// Cuts frames of one format and size out of a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    format: PixelFormat,
    width: usize,
    height: usize,
    buf: Vec<u8>,
    /// Valid bytes are `buf[start..end]`; for raw formats `start` is always 0.
    start: usize,
    end: usize,
    /// The current frame: `buf[frame.0..frame.1]`.
    frame: (usize, usize),
    /// Size of the current JPEG (from its SOF marker).
    jpeg_size: (usize, usize),
    captured: Instant,
    last_read: Instant,
    total: u64,
}

const CHUNK: usize = 64 * 1024;

impl FrameReader {
    /// A reader of `format` frames of `width × height` (the size of MJPEG frames is read from
    /// each JPEG).
    pub fn new(format: PixelFormat, width: usize, height: usize) -> FrameReader {
        let buf = match format.frame_bytes(width, height) {
            Some(n) => vec![0; n],
            None => vec![0; 4 * CHUNK],
        };
        let now = Instant::now();
        FrameReader {
            format,
            width,
            height,
            buf,
            start: 0,
            end: 0,
            frame: (0, 0),
            jpeg_size: (width, height),
            captured: now,
            last_read: now,
            total: 0,
        }
    }

    /// A reader for the format and size in `options`; the URI is for the error message.
    pub fn from_options(uri: &str, options: &SourceOptions) -> Result<FrameReader, CameraError> {
        super::check_size(uri, options)?;
        let format = options.pixel_format.ok_or_else(|| CameraError::BadUri {
            uri: uri.into(),
            reason: "raw frames need --pixel-format (i420, nv12, yuyv, rgb24, gray or mjpeg) \
                     and --size WxH"
                .into(),
        })?;
        Ok(FrameReader::new(format, options.width, options.height))
    }

    /// Forgets buffered bytes (the stream was replaced, e.g. a respawned command).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.total = 0;
    }

    /// Bytes read since the start (or the last [`FrameReader::reset`]).
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes of one raw frame; `None` for MJPEG.
    pub fn frame_bytes(&self) -> Option<usize> {
        self.format.frame_bytes(self.width, self.height)
    }

    /// Reads the next frame from `input`.
    pub fn read_frame<R: Read + ?Sized>(&mut self, input: &mut R) -> io::Result<Step> {
        match self.frame_bytes() {
            Some(n) => self.read_raw(input, n),
            None => self.read_jpeg(input),
        }
    }

    /// The frame the last [`Step::Frame`] delivered.
    pub fn frame(&self, seq: u64) -> Frame<'_> {
        let (width, height) = match self.format {
            PixelFormat::Mjpeg => self.jpeg_size,
            _ => (self.width, self.height),
        };
        Frame {
            data: &self.buf[self.frame.0..self.frame.1],
            width,
            height,
            format: self.format,
            seq,
            captured: self.captured,
        }
    }

    /// The error for a stream that ended `received` bytes into a frame.
    pub fn size_error(&self, uri: &str, received: usize) -> CameraError {
        let expected = self.frame_bytes().unwrap_or(0);
        let mut hint = format!("; the stream carried {} bytes in all", self.total);
        if let Some((w, h, f)) = guess_size(self.total, self.format) {
            hint +=
                &format!(", a whole number of {w}x{h} {f} frames: check --size and --pixel-format");
        }
        CameraError::FrameSize {
            uri: uri.into(),
            expected,
            received,
            width: self.width,
            height: self.height,
            format: self.format,
            hint,
        }
    }

    fn read_raw<R: Read + ?Sized>(&mut self, input: &mut R, n: usize) -> io::Result<Step> {
        let mut got = 0;
        while got < n {
            match input.read(&mut self.buf[got..n]) {
                Ok(0) => {
                    return Ok(if got == 0 {
                        Step::End
                    } else {
                        Step::Partial(got)
                    })
                }
                Ok(k) => {
                    if got == 0 {
                        self.captured = Instant::now();
                    }
                    got += k;
                    self.total += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.frame = (0, n);
        Ok(Step::Frame)
    }

    fn read_jpeg<R: Read + ?Sized>(&mut self, input: &mut R) -> io::Result<Step> {
        // The previous frame is consumed.
        self.start = self.start.max(self.frame.1);
        self.frame = (self.start, self.start);
        self.captured = if self.start < self.end {
            self.last_read
        } else {
            Instant::now()
        };
        let mut first_read = self.start >= self.end;
        loop {
            match find_jpeg(&self.buf[self.start..self.end]) {
                Scan::Found { skip, len, size } => {
                    let s = self.start + skip;
                    self.frame = (s, s + len);
                    self.jpeg_size = size;
                    return Ok(Step::Frame);
                }
                Scan::Garbage(skip) => {
                    log::warn!("skipping {skip} bytes that are not a JPEG image");
                    self.start += skip;
                    continue;
                }
                Scan::NeedMore => {}
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < CHUNK {
                let grown = (self.buf.len() * 2).max(self.end + CHUNK);
                self.buf.resize(grown, 0);
            }
            let k = loop {
                match input.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if k == 0 {
                let left = self.end - self.start;
                self.start = self.end;
                self.frame = (self.end, self.end);
                return Ok(if left == 0 {
                    Step::End
                } else {
                    Step::Partial(left)
                });
            }
            self.last_read = Instant::now();
            if first_read {
                self.captured = self.last_read;
                first_read = false;
            }
            self.end += k;
            self.total += k as u64;
        }
    }
}

/// Common frame sizes, for the hint of a size error.
const COMMON_SIZES: [(usize, usize); 10] = [
    (160, 120),
    (320, 240),
    (640, 360),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1280, 960),
    (1640, 1232),
    (1920, 1080),
];

fn guess_size(total: u64, asked: PixelFormat) -> Option<(usize, usize, PixelFormat)> {
    // A wrong --size is likelier than a wrong --pixel-format: the asked format first, then
    // the others; the largest frame that divides the stream wins.
    let formats =
        std::iter::once(asked).chain(PixelFormat::ALL.into_iter().filter(|&f| f != asked));
    for f in formats {
        let fits = COMMON_SIZES.iter().rev().find(|&&(w, h)| {
            f.frame_bytes(w, h)
                .is_some_and(|n| total > 0 && total.is_multiple_of(n as u64))
        });
        if let Some(&(w, h)) = fits {
            return Some((w, h, f));
        }
    }
    None
}

/// Result of looking for one JPEG at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// An image of `len` bytes after `skip` bytes of padding, with its (width, height).
    Found {
        skip: usize,
        len: usize,
        size: (usize, usize),
    },
    /// This many leading bytes are not the start of a JPEG and can be dropped.
    Garbage(usize),
    /// The buffer ends inside an image.
    NeedMore,
}

/// Finds the first whole JPEG image in `b`.
pub(crate) fn find_jpeg(b: &[u8]) -> Scan {
    // Padding between images (some encoders pad to a block size) is skipped.
    let Some(s) = b.windows(2).position(|w| w == [0xFF, 0xD8]) else {
        // Keep a trailing 0xFF: it may be the first half of the next SOI.
        let keep = usize::from(b.last() == Some(&0xFF));
        return match b.len() - keep {
            0 => Scan::NeedMore,
            n => Scan::Garbage(n),
        };
    };
    if s > 0 {
        return Scan::Garbage(s);
    }
    let mut size = (0, 0);
    let mut i = 2;
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        while i < b.len() && b[i] == 0xFF && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 1 >= b.len() {
            return Scan::NeedMore;
        }
        if b[i] != 0xFF {
            // Not a marker where one must be: resynchronise at the next SOI.
            return Scan::Garbage(1);
        }
        let m = b[i + 1];
        match m {
            0xD9 => {
                return Scan::Found {
                    skip: 0,
                    len: i + 2,
                    size,
                }
            }
            0x01 | 0xD0..=0xD7 => {
                i += 2;
                continue;
            }
            _ => {}
        }
        if i + 3 >= b.len() {
            return Scan::NeedMore;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let is_sof = matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            if i + 9 > b.len() {
                return Scan::NeedMore;
            }
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            size = (usize::from(w), usize::from(h));
        }
        i += 2 + len;
        if m == 0xDA {
            // Entropy-coded data: stuffed 0xFF 0x00 and restart markers are data.
            loop {
                if i + 1 >= b.len() {
                    return Scan::NeedMore;
                }
                if b[i] == 0xFF && !matches!(b[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                    break;
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal marker skeleton of a JPEG: SOI, APP1 holding a fake thumbnail (FF D8 … FF D9),
    /// SOF0 (w × h), SOS, entropy data with stuffing and a restart marker, EOI.
    pub(crate) fn fake_jpeg(w: u16, h: u16, fill: u8) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend([0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xD8, 0x00, 0x00, 0xFF, 0xD9]);
        j.extend([0xFF, 0xC0, 0x00, 0x0B, 8]);
        j.extend(h.to_be_bytes());
        j.extend(w.to_be_bytes());
        j.extend([1, 1, 0x11, 0]);
        j.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
        j.extend([fill, 0xFF, 0x00, fill, 0xFF, 0xD3, fill, fill]);
        j.extend([0xFF, 0xD9]);
        j
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn raw_frames_and_a_short_tail() {
        let data: Vec<u8> = (0..30u8).collect();
        let mut r = FrameReader::new(PixelFormat::Rgb24, 2, 2);
        let mut input = Trickle {
            data: &data,
            step: 5,
        };
        assert_eq!(r.read_frame(&mut input).unwrap(), Step::Frame);
        assert_eq!(r.frame(0).data, &data[..12]);
        assert_eq!(r.read_frame(&mut input).unwrap(), Step::Frame);
        assert_eq!(r.frame(1).data, &data[12..24]);
        assert_eq!(r.read_frame(&mut input).unwrap(), Step::Partial(6));
        let e = r.size_error("pipe:", 6).to_string();
        assert!(
            e.contains("expected 12 bytes") && e.contains("received 6 bytes"),
            "{e}"
        );
        assert!(e.contains("30 bytes in all"), "{e}");
        let mut empty = Trickle { data: &[], step: 1 };
        assert_eq!(r.read_frame(&mut empty).unwrap(), Step::End);
    }

    #[test]
    fn size_error_suggests_the_real_size() {
        let r = {
            let mut r = FrameReader::new(PixelFormat::Yuyv, 640, 480);
            r.total = 5 * 320 * 240 * 2;
            r
        };
        let e = r.size_error("pipe:", 100).to_string();
        assert!(e.contains("614400") && e.contains("320x240"), "{e}");
    }

    #[test]
    fn mjpeg_stream_is_cut_at_the_real_eoi() {
        let a = fake_jpeg(64, 48, 1);
        let b = fake_jpeg(32, 16, 2);
        let mut stream = vec![0u8, 0]; // padding before the first image
        stream.extend(&a);
        stream.extend(&b);
        stream.extend(&a[..7]); // a cut-off third image
        for step in [1, 3, 4096] {
            let mut r = FrameReader::new(PixelFormat::Mjpeg, 0, 0);
            let mut input = Trickle {
                data: &stream,
                step,
            };
            assert_eq!(r.read_frame(&mut input).unwrap(), Step::Frame);
            let f = r.frame(0);
            assert_eq!((f.data, f.width, f.height), (&a[..], 64, 48));
            assert_eq!(r.read_frame(&mut input).unwrap(), Step::Frame);
            let f = r.frame(1);
            assert_eq!((f.data, f.width, f.height), (&b[..], 32, 16));
            assert_eq!(r.read_frame(&mut input).unwrap(), Step::Partial(7));
        }
    }

    #[test]
    fn jpeg_scan_needs_more_and_skips_garbage() {
        let a = fake_jpeg(8, 8, 3);
        assert_eq!(find_jpeg(&a[..a.len() - 1]), Scan::NeedMore);
        assert_eq!(find_jpeg(&[1, 2, 3, 0xFF]), Scan::Garbage(3));
        assert_eq!(find_jpeg(&[]), Scan::NeedMore);
    }
}
