//! Frame sources: where `kestrel run` gets its images.
//!
//! A [`FrameSource`] lends one frame at a time from a buffer it owns (no copy, no allocation
//! per frame); the frame is valid until the next call. Sources are opened from a URI by
//! [`open`]: `synthetic` now; V4L2, nokhwa, pipes and files come with the camera issue,
//! each in its own module.

pub mod synthetic;

use std::time::Instant;

/// Pixel layout of a frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit R, G, B interleaved, `width * 3` bytes per row.
    Rgb24,
    /// 8-bit luma, `width` bytes per row.
    Gray8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb24 => 3,
            PixelFormat::Gray8 => 1,
        }
    }
}

/// One frame, borrowed from its source.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Pixel bytes, tightly packed rows.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Layout of `data`.
    pub format: PixelFormat,
    /// Sequence number from the source, rising by one per delivered frame.
    pub seq: u64,
    /// Monotonic capture time.
    pub captured: Instant,
}

/// Errors of frame sources.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// A `--source` URI that names no known backend or is malformed.
    #[error("source '{uri}': {reason}")]
    BadUri {
        /// The URI given.
        uri: String,
        /// What is wrong with it.
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

/// A camera or other producer of frames.
pub trait FrameSource: Send {
    /// The URI the source was opened from, for messages and reports.
    fn uri(&self) -> &str;
    /// The next frame, waiting for it if needed; `None` at the end of a finite stream.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError>;
}

/// What a source is asked for; backends negotiate the nearest they can do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceOptions {
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// Frames per second; `0` means as fast as possible.
    pub fps: f64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            width: 640,
            height: 480,
            fps: 30.0,
        }
    }
}

/// Opens a source from its URI.
pub fn open(uri: &str, options: &SourceOptions) -> Result<Box<dyn FrameSource>, CameraError> {
    let (scheme, _rest) = uri.split_once(':').unwrap_or((uri, ""));
    match scheme {
        "synthetic" => Ok(Box::new(synthetic::Synthetic::new(uri, options)?)),
        _ => Err(CameraError::BadUri {
            uri: uri.into(),
            reason: "unknown source (known: synthetic)".into(),
        }),
    }
}
