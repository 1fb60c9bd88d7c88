//! `file:PATH`: frames from a file — Y4M (recognised by its header), concatenated Motion-JPEG
//! (recognised by the JPEG start marker) or raw frames (`--pixel-format` and `--size`).
//! Frames are released at `--fps` (0: as fast as they can be read); `--loop` starts again
//! at the end. A raw file whose length is not a whole number of frames is refused when opened.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::pace::Pacer;
use super::stream::{FrameReader, Step};
use super::{y4m, CameraError, Frame, FrameSource, PixelFormat, SourceOptions};

/// Frames from a file.
pub struct FileSource {
    uri: String,
    path: PathBuf,
    input: BufReader<File>,
    /// Where the first frame starts (after a Y4M header).
    data_start: u64,
    y4m: bool,
    line: Vec<u8>,
    reader: FrameReader,
    pacer: Pacer,
    looping: bool,
    seq: u64,
}

impl FileSource {
    /// Opens `path` (the part of the URI after `file:`).
    pub fn open(uri: &str, path: &str, options: &SourceOptions) -> Result<FileSource, CameraError> {
        let bad = |reason: String| CameraError::BadUri {
            uri: uri.into(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("file: needs a path, e.g. file:clip.y4m".into()));
        }
        let file = File::open(path).map_err(|e| bad(format!("{path}: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| bad(format!("{path}: {e}")))?
            .len();
        let mut input = BufReader::with_capacity(256 * 1024, file);
        let head = input.fill_buf().map_err(|e| bad(format!("{path}: {e}")))?;
        let (y4m, data_start, reader) = if head.starts_with(y4m::MAGIC) {
            let mut line = Vec::new();
            input
                .read_until(b'\n', &mut line)
                .map_err(|e| bad(format!("{path}: {e}")))?;
            let h = y4m::parse_header(line.trim_ascii_end())
                .map_err(|e| bad(format!("{path}: {e}")))?;
            if let Some(forced) = options.pixel_format {
                if forced != h.format {
                    log::warn!(
                        "{path}: Y4M header says {}, ignoring --pixel-format {forced}",
                        h.format
                    );
                }
            }
            (
                true,
                line.len() as u64,
                FrameReader::new(h.format, h.width, h.height),
            )
        } else if head.starts_with(&[0xFF, 0xD8]) {
            (
                false,
                0,
                FrameReader::new(PixelFormat::Mjpeg, options.width, options.height),
            )
        } else {
            let reader = FrameReader::from_options(uri, options).map_err(|_| {
                bad(format!(
                    "{path} is neither Y4M nor MJPEG: raw frames need --pixel-format and --size"
                ))
            })?;
            let n = reader.frame_bytes().expect("raw format") as u64;
            if len == 0 || len % n != 0 {
                return Err(CameraError::FrameSize {
                    uri: uri.into(),
                    expected: n as usize,
                    received: (len % n) as usize,
                    width: options.width,
                    height: options.height,
                    format: options.pixel_format.expect("checked"),
                    hint: format!(
                        " in the last frame; {path} holds {len} bytes, not a whole number of frames"
                    ),
                });
            }
            (false, 0, reader)
        };
        Ok(FileSource {
            uri: uri.into(),
            path: path.into(),
            input,
            data_start,
            y4m,
            line: Vec::with_capacity(64),
            reader,
            pacer: Pacer::new(options.fps),
            looping: options.looping,
            seq: 0,
        })
    }

    fn error(&self, reason: String) -> CameraError {
        CameraError::BadData {
            uri: self.uri.clone(),
            reason: format!("{}: {reason}", self.path.display()),
        }
    }

    /// Reads the next frame's bytes; `Ok(false)` at the end of the file.
    fn read_next(&mut self) -> Result<bool, CameraError> {
        if self.y4m {
            self.line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|e| self.error(e.to_string()))?;
            if n == 0 {
                return Ok(false);
            }
            if !self.line.starts_with(b"FRAME") {
                return Err(self.error("expected a Y4M FRAME header".into()));
            }
        }
        match self
            .reader
            .read_frame(&mut self.input as &mut dyn Read)
            .map_err(|e| self.error(e.to_string()))?
        {
            Step::Frame => Ok(true),
            Step::End => Ok(false),
            Step::Partial(n) => Err(self.reader.size_error(&self.uri, n)),
        }
    }
}

impl FrameSource for FileSource {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn lossless(&self) -> bool {
        self.pacer.is_unpaced()
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        self.pacer.wait();
        let mut rewound = false;
        while !self.read_next()? {
            if !self.looping || rewound {
                return Ok(None);
            }
            // Once per frame at most: a file with no frame at all ends instead of spinning.
            rewound = true;
            self.input
                .seek(SeekFrom::Start(self.data_start))
                .map_err(|e| self.error(e.to_string()))?;
            self.reader.reset();
        }
        self.seq += 1;
        Ok(Some(self.reader.frame(self.seq - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn unpaced() -> SourceOptions {
        SourceOptions {
            fps: 0.0,
            ..SourceOptions::default()
        }
    }

    #[test]
    fn y4m_frames_and_loop() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"YUV4MPEG2 W4 H2 F25:1 C420jpeg\n".to_vec();
        for v in [10u8, 20] {
            bytes.extend(b"FRAME\n");
            bytes.extend([v; 8 + 2 + 2]);
        }
        let path = write(&dir, "a.y4m", &bytes);
        let mut s = FileSource::open("file:", &path, &unpaced()).unwrap();
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.width, f.height, f.format, f.data[0]),
            (4, 2, PixelFormat::I420, 10)
        );
        assert_eq!(s.next_frame().unwrap().unwrap().data[0], 20);
        assert!(s.next_frame().unwrap().is_none());

        let looped = SourceOptions {
            looping: true,
            ..unpaced()
        };
        let mut s = FileSource::open("file:", &path, &looped).unwrap();
        let firsts: Vec<(u64, u8)> = (0..5)
            .map(|_| {
                let f = s.next_frame().unwrap().unwrap();
                (f.seq, f.data[0])
            })
            .collect();
        assert_eq!(firsts, [(0, 10), (1, 20), (2, 10), (3, 20), (4, 10)]);
    }

    #[test]
    fn raw_files_need_a_format_and_a_whole_number_of_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.raw", &[1u8; 30]);
        let e = FileSource::open("file:", &path, &unpaced()).err().unwrap();
        assert!(e.to_string().contains("--pixel-format"), "{e}");
        let rgb = SourceOptions {
            width: 2,
            height: 2,
            pixel_format: Some(PixelFormat::Rgb24),
            ..unpaced()
        };
        let e = FileSource::open("file:", &path, &rgb)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("expected 12 bytes") && e.contains("30 bytes"),
            "{e}"
        );
        let path = write(&dir, "b.raw", &[1u8; 24]);
        let mut s = FileSource::open("file:", &path, &rgb).unwrap();
        assert_eq!(s.next_frame().unwrap().unwrap().data.len(), 12);
        assert_eq!(s.next_frame().unwrap().unwrap().seq, 1);
        assert!(s.next_frame().unwrap().is_none());
        assert!(FileSource::open("file:", "/nonexistent/x", &rgb).is_err());
    }

    #[test]
    fn mjpeg_files_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = crate::camera::stream::tests::fake_jpeg(16, 8, 1);
        bytes.extend(crate::camera::stream::tests::fake_jpeg(16, 8, 2));
        let path = write(&dir, "a.mjpeg", &bytes);
        let mut s = FileSource::open("file:", &path, &unpaced()).unwrap();
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!((f.format, f.width, f.height), (PixelFormat::Mjpeg, 16, 8));
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().unwrap().is_none());
    }
}
