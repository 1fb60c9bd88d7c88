//! `nokhwa:INDEX`: cameras through the [`nokhwa`] crate (AVFoundation on macOS, Media
//! Foundation on Windows, V4L2 on Linux) — for development machines.
//!
//! Behind the cargo feature `nokhwa`, off by default: it adds minutes of build and the `image`
//! crate stack; on Linux it reads cameras through the same `v4l` crate as `v4l2:`. Boards use
//! `v4l2:` ([`super::v4l2`]) or `cmd:`/`pipe:`.
//!
//! The camera's raw buffer (YUYV, NV12, gray, RGB or MJPEG) is copied into a buffer kept
//! across frames and converted by the pipeline like any other source's.

use std::time::Instant;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;

use super::{CameraError, Frame, FrameSource, PixelFormat, SourceOptions};

/// A camera opened through nokhwa.
pub struct NokhwaSource {
    uri: String,
    camera: Camera,
    buf: Vec<u8>,
    seq: u64,
}

// SAFETY: `Camera` is not `Send` because it boxes a `dyn` capture backend. The source is
// opened on one thread and then moved to the capture thread, which alone uses it from then on
// (it is owned, never shared: no `&` to it crosses threads). Moving is sound where the backend
// has no thread-affine state: on Linux, `input-native` is nokhwa's V4L2 backend, a file
// descriptor and its mmap'd buffers, which any thread may use. Other platforms' backends
// (AVFoundation, Media Foundation) may tie the session to the thread that made it, so the
// impl is for Linux only and the feature does not build elsewhere.
#[cfg(target_os = "linux")]
unsafe impl Send for NokhwaSource {}
#[cfg(not(target_os = "linux"))]
compile_error!("the `nokhwa` feature is for Linux (see the SAFETY note of `NokhwaSource`)");

impl NokhwaSource {
    /// Opens camera `index` (the part of the URI after `nokhwa:`).
    pub fn open(
        uri: &str,
        index: &str,
        options: &SourceOptions,
    ) -> Result<NokhwaSource, CameraError> {
        let bad = |reason: String| CameraError::BadUri {
            uri: uri.into(),
            reason,
        };
        let index: u32 = index
            .parse()
            .map_err(|_| bad("nokhwa: takes a camera index, e.g. nokhwa:0".into()))?;
        let format = match options.pixel_format {
            None | Some(PixelFormat::Yuyv) => FrameFormat::YUYV,
            Some(PixelFormat::Mjpeg) => FrameFormat::MJPEG,
            Some(PixelFormat::Nv12) => FrameFormat::NV12,
            Some(PixelFormat::Gray8) => FrameFormat::GRAY,
            Some(PixelFormat::Rgb24) => FrameFormat::RAWRGB,
            Some(other) => return Err(bad(format!("nokhwa cannot capture {other}"))),
        };
        let wanted = CameraFormat::new_from(
            options.width as u32,
            options.height as u32,
            format,
            options.fps.round().max(1.0) as u32,
        );
        let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera = Camera::new(CameraIndex::Index(index), requested)
            .map_err(|e| bad(format!("opening camera {index}: {e}")))?;
        camera
            .open_stream()
            .map_err(|e| bad(format!("starting camera {index}: {e}")))?;
        log::info!("{uri}: {}", camera.camera_format());
        Ok(NokhwaSource {
            uri: uri.into(),
            camera,
            buf: Vec::new(),
            seq: 0,
        })
    }
}

impl FrameSource for NokhwaSource {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        let format = match self.camera.frame_format() {
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::GRAY => PixelFormat::Gray8,
            FrameFormat::RAWRGB => PixelFormat::Rgb24,
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            other => {
                return Err(CameraError::Capture {
                    uri: self.uri.clone(),
                    reason: format!("unsupported camera format {other}"),
                })
            }
        };
        let resolution = self.camera.resolution();
        let raw = self.camera.frame_raw().map_err(|e| CameraError::Capture {
            uri: self.uri.clone(),
            reason: e.to_string(),
        })?;
        let captured = Instant::now();
        self.buf.clear();
        self.buf.extend_from_slice(&raw);
        drop(raw);
        self.seq += 1;
        Ok(Some(Frame {
            data: &self.buf,
            width: resolution.width() as usize,
            height: resolution.height() as usize,
            format,
            seq: self.seq - 1,
            captured,
        }))
    }
}
