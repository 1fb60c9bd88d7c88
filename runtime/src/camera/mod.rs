//! Frame sources: where `kestrel run` gets its images.
//!
//! A [`FrameSource`] lends one frame at a time from a buffer it owns (no copy, no allocation
//! per frame in steady state); the frame is valid until the next call. Sources are opened from
//! a URI by [`open`], each backend in its own module:
//!
//! | URI | module | what |
//! | --- | --- | --- |
//! | `synthetic` | [`synthetic`] | a moving test pattern (the default) |
//! | `pipe:` | [`pipe`] | raw frames on stdin (`--pixel-format`, `--size`) |
//! | `cmd:COMMAND` | [`cmd`] | raw frames from `sh -c COMMAND`, respawned when it dies |
//! | `file:PATH` | [`file`] | Y4M, concatenated MJPEG or raw frames, `--loop` |
//! | `v4l2:/dev/videoN` | [`v4l2`] | a V4L2 camera, mmap streaming |
//! | `rtsp://HOST[:PORT]/PATH` | `rtsp` | an IP camera: H.264 or JPEG over RTSP (cargo feature `rtsp`, default) |
//! | `nokhwa:INDEX` | `nokhwa` | any camera nokhwa knows (cargo feature `nokhwa`) |
//!
//! Frames come in the camera's own pixel format ([`PixelFormat`]); the pipeline converts
//! them (`pipeline::convert`). Byte streams (pipes, commands, files) are cut into frames by
//! [`stream::FrameReader`].

pub mod cmd;
pub mod file;
#[cfg(feature = "nokhwa")]
pub mod nokhwa;
pub mod pace;
pub mod pipe;
#[cfg(feature = "rtsp")]
pub mod rtsp;
pub mod stream;
pub mod synthetic;
pub mod v4l2;
pub mod y4m;

use std::time::{Duration, Instant};

/// Pixel layout of a frame's bytes. Rows are tightly packed (no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit R, G, B interleaved, `width * 3` bytes per row.
    Rgb24,
    /// 8-bit luma, `width` bytes per row.
    Gray8,
    /// Packed 4:2:2, Y0 U Y1 V (V4L2 `YUYV`, GStreamer `YUY2`), `width * 2` bytes per row.
    Yuyv,
    /// 4:2:0: the Y plane, then one plane of interleaved U V at half size (`NV12`).
    Nv12,
    /// 4:2:0: the Y plane, then U then V at half size (`I420`, `YU12`, `yuv420p`).
    I420,
    /// A JPEG image per frame (Motion-JPEG), variable size.
    Mjpeg,
}

impl PixelFormat {
    /// Every format, in the order `--pixel-format` lists them.
    pub const ALL: [PixelFormat; 6] = [
        PixelFormat::I420,
        PixelFormat::Nv12,
        PixelFormat::Yuyv,
        PixelFormat::Rgb24,
        PixelFormat::Gray8,
        PixelFormat::Mjpeg,
    ];

    /// The name `--pixel-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Gray8 => "gray",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "i420",
            PixelFormat::Mjpeg => "mjpeg",
        }
    }

    /// Parses a `--pixel-format` name (case-insensitive; a few common aliases).
    pub fn parse(s: &str) -> Option<PixelFormat> {
        let s = s.to_ascii_lowercase();
        let alias = match s.as_str() {
            "yuy2" | "yuv422" => "yuyv",
            "yuv420" | "yuv420p" | "yu12" => "i420",
            "rgb" => "rgb24",
            "grey" | "gray8" | "y8" => "gray",
            "jpeg" | "mjpg" => "mjpeg",
            other => other,
        };
        PixelFormat::ALL.into_iter().find(|f| f.name() == alias)
    }

    /// Bytes of one `width × height` frame; `None` for MJPEG (variable). Odd sizes of the
    /// 4:2:0 formats round the chroma planes up, as V4L2 and GStreamer do.
    pub fn frame_bytes(self, width: usize, height: usize) -> Option<usize> {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        match self {
            PixelFormat::Rgb24 => Some(width * height * 3),
            PixelFormat::Gray8 => Some(width * height),
            PixelFormat::Yuyv => Some(cw * 2 * 2 * height),
            PixelFormat::Nv12 | PixelFormat::I420 => Some(width * height + 2 * cw * ch),
            PixelFormat::Mjpeg => None,
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One frame, borrowed from its source.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Pixel bytes, tightly packed rows (one JPEG for [`PixelFormat::Mjpeg`]).
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Layout of `data`.
    pub format: PixelFormat,
    /// Sequence number from the source, rising by one per delivered frame (also across
    /// reconnects).
    pub seq: u64,
    /// Monotonic capture time: when the frame's first bytes reached us (or the driver's
    /// timestamp, where it has one).
    pub captured: Instant,
}

/// Errors of frame sources.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// A `--source` URI that names no known backend or is malformed, or options it cannot take.
    #[error("source '{uri}': {reason}")]
    BadUri {
        /// The URI given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A byte stream whose frames do not have the size `--size` and `--pixel-format` say.
    #[error(
        "source '{uri}': wrong frame size: expected {expected} bytes per frame ({width}x{height} \
         {format}), received {received} bytes{hint}"
    )]
    FrameSize {
        /// The source.
        uri: String,
        /// Bytes a frame should have.
        expected: usize,
        /// Bytes that came.
        received: usize,
        /// Frame width asked for.
        width: usize,
        /// Frame height asked for.
        height: usize,
        /// Pixel format asked for.
        format: PixelFormat,
        /// What the numbers suggest, e.g. another frame size.
        hint: String,
    },
    /// Data that is not what the format says (a broken JPEG, a bad Y4M header…).
    #[error("source '{uri}': {reason}")]
    BadData {
        /// The source.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// A failure while capturing.
    #[error("source '{uri}': {reason}")]
    Capture {
        /// The source.
        uri: String,
        /// What failed.
        reason: String,
    },
}

impl CameraError {
    /// Whether the user can fix this by changing the command or the file (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, CameraError::Capture { .. })
    }
}

/// Counters a source keeps about its own health.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SourceCounters {
    /// Times the source was reopened (a command respawned, a camera reopened).
    pub reconnects: u64,
    /// Time without a source, summed over the outages, seconds.
    pub outage_s: f64,
}

/// A camera or other producer of frames.
pub trait FrameSource: Send {
    /// The URI the source was opened from, for messages and reports.
    fn uri(&self) -> &str;
    /// The next frame, waiting for it if needed; `None` at the end of a finite stream.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError>;
    /// Whether frames must not be dropped: a source that is not live (an unpaced file or
    /// synthetic source) waits for inference instead of being overtaken. Live sources
    /// (cameras, pipes, paced sources) return `false`: the newest frame wins.
    fn lossless(&self) -> bool {
        false
    }
    /// Reconnects and outages so far.
    fn counters(&self) -> SourceCounters {
        SourceCounters::default()
    }
    /// A handle that, from another thread, ends a `next_frame` waiting for input and keeps
    /// the source from starting again (a `cmd:` source stops its process group), so that a
    /// run stopping on a quiet source leaves no process behind. `None`: nothing to interrupt.
    fn interrupter(&self) -> Option<Interrupt> {
        None
    }
}

/// See [`FrameSource::interrupter`].
pub type Interrupt = Box<dyn Fn() + Send + Sync>;

/// What a source is asked for; backends negotiate the nearest they can do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceOptions {
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// Frames per second; `0` means as fast as possible (synthetic and file sources are paced
    /// to it, cameras are asked for it, pipes deliver what their producer sends).
    pub fps: f64,
    /// The pixel format of a byte stream, or the one to force on a camera.
    pub pixel_format: Option<PixelFormat>,
    /// Files start again at their end.
    pub looping: bool,
    /// A source that fails (a command that exits, a camera that goes away) ends the run
    /// instead of being reopened.
    pub exit_on_error: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            width: 640,
            height: 480,
            fps: 30.0,
            pixel_format: None,
            looping: false,
            exit_on_error: false,
        }
    }
}

/// Reconnect delays: 100 ms doubling up to 5 s, back to 100 ms after a frame arrives.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// Starts at the first delay.
    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The delay to wait now; the following one is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// A frame came: start again from the first delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Checks `--size` for the sources that take it.
pub(crate) fn check_size(uri: &str, options: &SourceOptions) -> Result<(), CameraError> {
    if options.width < 1 || options.height < 1 || options.width > 16384 || options.height > 16384 {
        return Err(CameraError::BadUri {
            uri: uri.into(),
            reason: format!(
                "frame size {}x{} is out of range (1x1 to 16384x16384)",
                options.width, options.height
            ),
        });
    }
    Ok(())
}

/// Opens a source from its URI; the source shows it with any URL password as `***`
/// ([`crate::redact`]).
pub fn open(raw: &str, options: &SourceOptions) -> Result<Box<dyn FrameSource>, CameraError> {
    // What the source shows (logs, errors, `uri()` for the summary and /metrics) carries no
    // URL password; what it runs or opens comes from the raw text.
    let shown = crate::redact::redact(raw);
    let uri = shown.as_ref();
    let (scheme, rest) = raw.split_once(':').unwrap_or((raw, ""));
    match scheme {
        "synthetic" => Ok(Box::new(synthetic::Synthetic::new(uri, options)?)),
        "pipe" => Ok(Box::new(pipe::Pipe::stdin(uri, rest, options)?)),
        "cmd" => Ok(Box::new(cmd::CommandSource::spawn(uri, rest, options)?)),
        "file" => Ok(Box::new(file::FileSource::open(uri, rest, options)?)),
        "v4l2" => Ok(Box::new(v4l2::V4l2Source::open(uri, rest, options)?)),
        #[cfg(feature = "rtsp")]
        "rtsp" => Ok(Box::new(rtsp::RtspSource::open(uri, raw, options)?)),
        #[cfg(not(feature = "rtsp"))]
        "rtsp" => Err(CameraError::BadUri {
            uri: uri.into(),
            reason: "this kestrel was built without the `rtsp` cargo feature: use a cmd: \
                     GStreamer pipeline (docs/cameras.md)"
                .into(),
        }),
        #[cfg(feature = "nokhwa")]
        "nokhwa" => Ok(Box::new(nokhwa::NokhwaSource::open(uri, rest, options)?)),
        #[cfg(not(feature = "nokhwa"))]
        "nokhwa" => Err(CameraError::BadUri {
            uri: uri.into(),
            reason: "this kestrel was built without the `nokhwa` cargo feature".into(),
        }),
        _ => Err(CameraError::BadUri {
            uri: uri.into(),
            reason: "unknown source (known: synthetic, pipe:, cmd:COMMAND, file:PATH, \
                     v4l2:/dev/videoN, rtsp://HOST/PATH, nokhwa:INDEX)"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_size() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::parse(f.name()), Some(f));
        }
        assert_eq!(PixelFormat::parse("YUY2"), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::parse("bgr"), None);
        assert_eq!(PixelFormat::Yuyv.frame_bytes(640, 480), Some(614_400));
        assert_eq!(PixelFormat::I420.frame_bytes(640, 480), Some(460_800));
        assert_eq!(PixelFormat::Nv12.frame_bytes(3, 3), Some(9 + 8));
        assert_eq!(PixelFormat::Mjpeg.frame_bytes(640, 480), None);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new();
        let d: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn unknown_schemes_are_bad_uris() {
        let e = open("v4l9:/dev/x", &SourceOptions::default())
            .err()
            .unwrap();
        assert!(e.is_bad_input(), "{e}");
    }
}
