//! `pipe:`: raw frames on standard input, e.g.
//! `rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 -o - | kestrel run --source pipe: --pixel-format i420`.
//!
//! The end of the input ends the run. A stream that ends inside a frame is an error naming the
//! bytes expected and received (usually a `--size` or `--pixel-format` that does not match
//! the producer).

use std::io::Read;

use super::stream::{FrameReader, Step};
use super::{CameraError, Frame, FrameSource, SourceOptions};

/// Frames from a byte stream that is not reopened when it ends.
pub struct Pipe {
    uri: String,
    input: Box<dyn Read + Send>,
    reader: FrameReader,
    seq: u64,
}

impl Pipe {
    /// Frames from standard input. `pipe:` takes no argument.
    pub fn stdin(uri: &str, rest: &str, options: &SourceOptions) -> Result<Pipe, CameraError> {
        if !rest.is_empty() {
            return Err(CameraError::BadUri {
                uri: uri.into(),
                reason: "pipe: reads standard input and takes no argument (did you mean cmd:?)"
                    .into(),
            });
        }
        Pipe::new(uri, Box::new(std::io::stdin()), options)
    }

    /// Frames from any reader.
    pub fn new(
        uri: &str,
        input: Box<dyn Read + Send>,
        options: &SourceOptions,
    ) -> Result<Pipe, CameraError> {
        Ok(Pipe {
            uri: uri.into(),
            input,
            reader: FrameReader::from_options(uri, options)?,
            seq: 0,
        })
    }
}

impl FrameSource for Pipe {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        let step = self
            .reader
            .read_frame(&mut self.input)
            .map_err(|e| CameraError::Capture {
                uri: self.uri.clone(),
                reason: format!("read: {e}"),
            })?;
        match step {
            Step::Frame => {
                self.seq += 1;
                Ok(Some(self.reader.frame(self.seq - 1)))
            }
            Step::End => Ok(None),
            Step::Partial(n) => Err(self.reader.size_error(&self.uri, n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::PixelFormat;

    fn opts(format: PixelFormat) -> SourceOptions {
        SourceOptions {
            width: 4,
            height: 2,
            pixel_format: Some(format),
            ..SourceOptions::default()
        }
    }

    #[test]
    fn frames_then_end() {
        let data = vec![7u8; 4 * 2 * 2 * 3];
        let mut p = Pipe::new(
            "pipe:",
            Box::new(std::io::Cursor::new(data)),
            &opts(PixelFormat::Yuyv),
        )
        .unwrap();
        for seq in 0..3 {
            let f = p.next_frame().unwrap().unwrap();
            assert_eq!(
                (f.seq, f.data.len(), f.format),
                (seq, 16, PixelFormat::Yuyv)
            );
        }
        assert!(p.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_short_frame_names_expected_and_received_bytes() {
        let data = vec![0u8; 12 + 5];
        let mut p = Pipe::new(
            "pipe:",
            Box::new(std::io::Cursor::new(data)),
            &opts(PixelFormat::I420),
        )
        .unwrap();
        assert!(p.next_frame().unwrap().is_some());
        let e = p.next_frame().err().unwrap();
        assert!(e.is_bad_input());
        let msg = e.to_string();
        assert!(
            msg.contains("expected 12 bytes") && msg.contains("received 5 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn a_pipe_needs_a_pixel_format() {
        let o = SourceOptions::default();
        let e = Pipe::new("pipe:", Box::new(std::io::empty()), &o)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--pixel-format"), "{e}");
        assert!(Pipe::stdin("pipe:", "x", &opts(PixelFormat::Gray8)).is_err());
    }
}
