//! `v4l2:/dev/videoN`: a V4L2 camera (USB UVC webcams, the Pi's legacy/ISP nodes, Jetson USB
//! cameras), mmap streaming through the pure-Rust [`linuxvideo`] crate.
//!
//! Why `linuxvideo` and not the `v4l` crate: `v4l` always builds its bindings with bindgen
//! (`v4l2-sys-mit`, or `v4l-sys` for libv4l), which needs libclang on the build machine and
//! target headers for every cross build; neither of its feature sets avoids it. `linuxvideo`
//! declares the V4L2 ABI in Rust (deps: libc, bitflags, log, uoctl), so `cargo build --target
//! aarch64-unknown-linux-gnu` needs nothing beyond the cross linker.
//!
//! Negotiation ([`negotiate`], pure and unit-tested): the pixel format is `--pixel-format` if
//! given (it must be offered), else the first offered of YUYV, NV12, I420, GREY, MJPEG, RGB24
//! (cheapest to convert first); the size is the offered one nearest `--size`; the frame
//! interval nearest `--fps` is requested. Rows padded by the driver (`bytesperline`) are
//! packed; MJPEG buffers are sliced to `bytesused`. Before each frame, buffers already
//! filled are drained so the frame handed on is the newest (latency does not build up).
//! Capture timestamps are taken when the filled buffer is dequeued (monotonic clock), so the
//! capture stage is the copy out of the driver's buffer.
//!
//! A device that fails (unplugged) is reopened with backoff, its outage counted, unless
//! `--exit-on-source-error`.

use std::path::PathBuf;
use std::time::Instant;

use linuxvideo::format::{FrameSizes, PixFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, Device, Fract};

use super::{Backoff, CameraError, Frame, FrameSource, PixelFormat, SourceCounters, SourceOptions};

/// What a device offers for one pixel format: discrete sizes, or a stepwise/continuous range.
#[derive(Debug, Clone, PartialEq)]
pub enum Sizes {
    /// These sizes only.
    Discrete(Vec<(u32, u32)>),
    /// Any size in the range, in steps.
    Range {
        /// Smallest (width, height).
        min: (u32, u32),
        /// Largest (width, height).
        max: (u32, u32),
        /// Steps (width, height).
        step: (u32, u32),
    },
}

/// The formats preferred when none is forced, cheapest to convert first.
pub const PREFERENCE: [PixelFormat; 6] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::I420,
    PixelFormat::Gray8,
    PixelFormat::Mjpeg,
    PixelFormat::Rgb24,
];

/// The V4L2 fourcc of a format.
pub fn fourcc(format: PixelFormat) -> [u8; 4] {
    *match format {
        PixelFormat::Yuyv => b"YUYV",
        PixelFormat::Nv12 => b"NV12",
        PixelFormat::I420 => b"YU12",
        PixelFormat::Gray8 => b"GREY",
        PixelFormat::Mjpeg => b"MJPG",
        PixelFormat::Rgb24 => b"RGB3",
    }
}

/// The format of a V4L2 fourcc, if Kestrel reads it.
pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
    PixelFormat::ALL.into_iter().find(|&f| fourcc(f) == code)
}

/// Picks a pixel format and size from what the device offers (`offered`: each format with
/// its sizes, in the driver's order).
pub fn negotiate(
    offered: &[(PixelFormat, Sizes)],
    forced: Option<PixelFormat>,
    want: (u32, u32),
) -> Result<(PixelFormat, (u32, u32)), String> {
    let names = || {
        offered
            .iter()
            .map(|(f, _)| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (format, sizes) = match forced {
        Some(f) => offered
            .iter()
            .find(|(o, _)| *o == f)
            .ok_or_else(|| format!("the device does not offer {f} (it offers: {})", names()))?,
        None => PREFERENCE
            .iter()
            .find_map(|p| offered.iter().find(|(o, _)| o == p))
            .ok_or("the device offers no pixel format Kestrel reads (YUYV, NV12, YU12, GREY, MJPG, RGB3)")?,
    };
    let size = match sizes {
        Sizes::Discrete(list) => *list
            .iter()
            .min_by_key(|(w, h)| {
                // Nearest by area difference, then by aspect difference.
                let area =
                    (u64::from(*w) * u64::from(*h)).abs_diff(u64::from(want.0) * u64::from(want.1));
                (area, w.abs_diff(want.0) + h.abs_diff(want.1))
            })
            .ok_or("the device lists no frame size")?,
        Sizes::Range { min, max, step } => {
            let fit = |v: u32, lo: u32, hi: u32, st: u32| {
                let v = v.clamp(lo, hi);
                let st = st.max(1);
                lo + (v - lo) / st * st
            };
            (
                fit(want.0, min.0, max.0, step.0),
                fit(want.1, min.1, max.1, step.1),
            )
        }
    };
    Ok((*format, size))
}

/// The frame interval asking for `fps` (as a fraction of seconds).
pub fn interval(fps: f64) -> Option<(u32, u32)> {
    (fps > 0.0 && fps.is_finite()).then(|| (1000, (fps * 1000.0).round().max(1.0) as u32))
}

struct Open {
    stream: ReadStream,
    format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
}

/// A V4L2 capture device.
pub struct V4l2Source {
    uri: String,
    path: PathBuf,
    options: SourceOptions,
    open: Option<Open>,
    buf: Vec<u8>,
    len: usize,
    geometry: (usize, usize, PixelFormat),
    captured: Instant,
    seq: u64,
    backoff: Backoff,
    counters: SourceCounters,
    outage_since: Option<Instant>,
}

impl V4l2Source {
    /// Opens the device (the part of the URI after `v4l2:`) and starts streaming.
    pub fn open(uri: &str, path: &str, options: &SourceOptions) -> Result<V4l2Source, CameraError> {
        super::check_size(uri, options)?;
        if path.is_empty() {
            return Err(CameraError::BadUri {
                uri: uri.into(),
                reason: "v4l2: needs a device, e.g. v4l2:/dev/video0".into(),
            });
        }
        let mut s = V4l2Source {
            uri: uri.into(),
            path: path.into(),
            options: *options,
            open: None,
            buf: Vec::new(),
            len: 0,
            geometry: (0, 0, PixelFormat::Gray8),
            captured: Instant::now(),
            seq: 0,
            backoff: Backoff::new(),
            counters: SourceCounters::default(),
            outage_since: None,
        };
        // The first open must work: a wrong path or an unsupported format is the user's to fix.
        let open = s.start().map_err(|reason| CameraError::BadUri {
            uri: uri.into(),
            reason,
        })?;
        s.open = Some(open);
        Ok(s)
    }

    fn start(&self) -> Result<Open, String> {
        let p = self.path.display();
        let device = Device::open(&self.path).map_err(|e| format!("{p}: {e}"))?;
        let mut offered = Vec::new();
        for desc in device.formats(BufType::VIDEO_CAPTURE) {
            let desc = desc.map_err(|e| format!("{p}: listing formats: {e}"))?;
            let code = desc.pixel_format();
            let Some(format) = from_fourcc(code.as_fourcc()) else {
                continue;
            };
            let sizes = match device.frame_sizes(code) {
                Ok(FrameSizes::Discrete(list)) => {
                    Sizes::Discrete(list.iter().map(|s| (s.width(), s.height())).collect())
                }
                Ok(FrameSizes::Stepwise(s)) | Ok(FrameSizes::Continuous(s)) => Sizes::Range {
                    min: (s.min_width(), s.min_height()),
                    max: (s.max_width(), s.max_height()),
                    step: (s.step_width(), s.step_height()),
                },
                // Some drivers do not enumerate sizes: ask for the wanted one.
                Err(_) => Sizes::Discrete(vec![(
                    self.options.width as u32,
                    self.options.height as u32,
                )]),
            };
            offered.push((format, sizes));
        }
        let want = (self.options.width as u32, self.options.height as u32);
        let (format, (w, h)) = negotiate(&offered, self.options.pixel_format, want)
            .map_err(|e| format!("{p}: {e}"))?;
        let capture = device
            .video_capture(PixFormat::new(
                w,
                h,
                linuxvideo::format::PixelFormat::from_fourcc(fourcc(format)),
            ))
            .map_err(|e| format!("{p}: setting {w}x{h} {format}: {e}"))?;
        if let Some((num, den)) = interval(self.options.fps) {
            if let Err(e) = capture.set_frame_interval(Fract::new(num, den)) {
                log::info!("{p}: the driver keeps its frame rate ({e})");
            }
        }
        let got = capture.format();
        let format = from_fourcc(got.pixel_format().as_fourcc())
            .ok_or_else(|| format!("{p}: the driver switched to an unknown format"))?;
        let (width, height) = (got.width() as usize, got.height() as usize);
        let stride = got.bytes_per_line() as usize;
        log::info!("{p}: streaming {width}x{height} {format}, {stride} bytes per line");
        let stream = capture
            .into_stream()
            .map_err(|e| format!("{p}: starting the stream: {e}"))?;
        Ok(Open {
            stream,
            format,
            width,
            height,
            stride,
        })
    }

    /// Dequeues the newest filled buffer into `self.buf`.
    fn grab(&mut self) -> std::io::Result<()> {
        let open = self.open.as_mut().expect("open");
        while !open.stream.will_block()? {
            open.stream.dequeue(|_| Ok(()))?;
        }
        let (format, w, h, stride) = (open.format, open.width, open.height, open.stride);
        let buf = &mut self.buf;
        let captured = &mut self.captured;
        let len = open.stream.dequeue(|view| {
            *captured = Instant::now();
            let data: &[u8] = &view;
            let packed = format.frame_bytes(w, h);
            // Rows padded by the driver are packed (only the luma stride is reported; the
            // packed formats and single-plane 4:2:0 follow it).
            let row = match format {
                PixelFormat::Yuyv => w * 2,
                PixelFormat::Rgb24 => w * 3,
                _ => w,
            };
            match packed {
                Some(n)
                    if stride > row
                        && matches!(
                            format,
                            PixelFormat::Yuyv | PixelFormat::Rgb24 | PixelFormat::Gray8
                        ) =>
                {
                    buf.resize(n, 0);
                    for (y, out) in buf.chunks_exact_mut(row).enumerate().take(h) {
                        let src = data.get(y * stride..y * stride + row).ok_or_else(short)?;
                        out.copy_from_slice(src);
                    }
                    Ok(n)
                }
                Some(n) => {
                    let src = data.get(..n).ok_or_else(short)?;
                    buf.resize(n, 0);
                    buf.copy_from_slice(src);
                    Ok(n)
                }
                None => {
                    buf.resize(data.len(), 0);
                    buf.copy_from_slice(data);
                    Ok(data.len())
                }
            }
        })?;
        self.len = len;
        self.geometry = (w, h, format);
        Ok(())
    }
}

fn short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "buffer shorter than the frame",
    )
}

impl FrameSource for V4l2Source {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        loop {
            if self.open.is_none() {
                match self.start() {
                    Ok(open) => self.open = Some(open),
                    Err(e) => {
                        let delay = self.backoff.next_delay();
                        log::warn!(
                            "source '{}': {e}; retrying in {} ms",
                            self.uri,
                            delay.as_millis()
                        );
                        std::thread::sleep(delay);
                        continue;
                    }
                }
            }
            match self.grab() {
                Ok(()) => break,
                Err(e) => {
                    self.open = None;
                    if self.options.exit_on_error {
                        return Err(CameraError::Capture {
                            uri: self.uri.clone(),
                            reason: format!("capture failed: {e}"),
                        });
                    }
                    log::warn!("source '{}': capture failed ({e}); reopening", self.uri);
                    self.outage_since.get_or_insert_with(Instant::now);
                    self.counters.reconnects += 1;
                }
            }
        }
        if let Some(t) = self.outage_since.take() {
            self.counters.outage_s += t.elapsed().as_secs_f64();
        }
        self.backoff.reset();
        self.seq += 1;
        let (width, height, format) = self.geometry;
        Ok(Some(Frame {
            data: &self.buf[..self.len],
            width,
            height,
            format,
            seq: self.seq - 1,
            captured: self.captured,
        }))
    }

    fn counters(&self) -> SourceCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discrete(list: &[(u32, u32)]) -> Sizes {
        Sizes::Discrete(list.to_vec())
    }

    #[test]
    fn preference_and_forcing() {
        let offered = vec![
            (PixelFormat::Mjpeg, discrete(&[(1920, 1080), (640, 480)])),
            (PixelFormat::Yuyv, discrete(&[(640, 480), (320, 240)])),
        ];
        assert_eq!(
            negotiate(&offered, None, (640, 480)).unwrap(),
            (PixelFormat::Yuyv, (640, 480))
        );
        assert_eq!(
            negotiate(&offered, Some(PixelFormat::Mjpeg), (1600, 900)).unwrap(),
            (PixelFormat::Mjpeg, (1920, 1080))
        );
        let e = negotiate(&offered, Some(PixelFormat::Nv12), (640, 480)).unwrap_err();
        assert!(e.contains("nv12") && e.contains("mjpeg, yuyv"), "{e}");
        assert!(negotiate(&[], None, (640, 480)).is_err());
    }

    #[test]
    fn nearest_size_discrete_and_stepwise() {
        let offered = vec![(
            PixelFormat::Yuyv,
            discrete(&[(160, 120), (352, 288), (640, 480)]),
        )];
        assert_eq!(negotiate(&offered, None, (320, 240)).unwrap().1, (352, 288));
        let range = vec![(
            PixelFormat::Nv12,
            Sizes::Range {
                min: (64, 64),
                max: (1920, 1080),
                step: (16, 8),
            },
        )];
        assert_eq!(negotiate(&range, None, (650, 487)).unwrap().1, (640, 480));
        assert_eq!(negotiate(&range, None, (4000, 10)).unwrap().1, (1920, 64));
    }

    #[test]
    fn fourccs_round_trip_and_intervals() {
        for f in PixelFormat::ALL {
            assert_eq!(from_fourcc(fourcc(f)), Some(f));
        }
        assert_eq!(from_fourcc(*b"H264"), None);
        assert_eq!(interval(30.0), Some((1000, 30000)));
        assert_eq!(interval(0.0), None);
    }

    /// Runs only where a camera exists (CI has none): opens the first `/dev/video*` and reads
    /// a few frames.
    #[test]
    fn a_real_device_if_present() {
        let Some(dev) = (0..8)
            .map(|i| format!("/dev/video{i}"))
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("no /dev/video* here: real-device test skipped");
            return;
        };
        let opts = SourceOptions {
            width: 320,
            height: 240,
            ..SourceOptions::default()
        };
        match V4l2Source::open(&format!("v4l2:{dev}"), &dev, &opts) {
            Ok(mut s) => {
                for seq in 0..3 {
                    let f = s.next_frame().unwrap().unwrap();
                    assert_eq!(f.seq, seq);
                    assert!(!f.data.is_empty());
                }
            }
            // Metadata nodes and busy devices exist; they must fail with a message, not panic.
            Err(e) => eprintln!("{dev}: {e}"),
        }
    }
}
