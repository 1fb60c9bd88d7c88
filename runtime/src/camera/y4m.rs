//! YUV4MPEG2 (`.y4m`) headers: `YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg`, then per frame a
//! `FRAME` line and the planes. 4:2:0 chroma layouts (`420jpeg`, `420paldv`, `420mpeg2`,
//! `420`; the default) read as I420, `mono` as gray; other layouts are refused by name.

use super::PixelFormat;

/// The stream header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// Pixel layout of the frames.
    pub format: PixelFormat,
    /// Frame rate, if the header gives one.
    pub fps: Option<f64>,
}

/// The magic every Y4M stream starts with.
pub const MAGIC: &[u8] = b"YUV4MPEG2 ";

/// Parses the header line (without its newline).
pub fn parse_header(line: &[u8]) -> Result<Header, String> {
    let text = std::str::from_utf8(line).map_err(|_| "Y4M header is not ASCII".to_string())?;
    let rest = text
        .strip_prefix("YUV4MPEG2")
        .ok_or("not a YUV4MPEG2 stream")?;
    let (mut w, mut h, mut fps, mut format) = (None, None, None, PixelFormat::I420);
    for tag in rest.split_ascii_whitespace() {
        let (key, value) = tag.split_at(1);
        match key {
            "W" => w = value.parse::<usize>().ok(),
            "H" => h = value.parse::<usize>().ok(),
            "F" => {
                fps = value.split_once(':').and_then(|(n, d)| {
                    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
                    (d > 0.0).then_some(n / d)
                })
            }
            "C" => {
                format = match value {
                    v if v.starts_with("420") => PixelFormat::I420,
                    "mono" => PixelFormat::Gray8,
                    other => {
                        return Err(format!(
                            "Y4M colour space C{other} is not supported (4:2:0 or mono)"
                        ))
                    }
                }
            }
            "I" if value != "p" && value != "?" => {
                log::warn!("Y4M interlacing I{value}: frames are read as progressive")
            }
            _ => {}
        }
    }
    match (w, h) {
        (Some(width), Some(height)) if width > 0 && height > 0 => Ok(Header {
            width,
            height,
            format,
            fps,
        }),
        _ => Err("Y4M header lacks a valid W or H".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = parse_header(b"YUV4MPEG2 W320 H240 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG")
            .unwrap();
        assert_eq!((h.width, h.height, h.format), (320, 240, PixelFormat::I420));
        assert!((h.fps.unwrap() - 29.97).abs() < 0.01);
        let m = parse_header(b"YUV4MPEG2 W8 H8 Cmono").unwrap();
        assert_eq!(m.format, PixelFormat::Gray8);
        assert!(parse_header(b"YUV4MPEG2 W8 H8 C444")
            .unwrap_err()
            .contains("C444"));
        assert!(parse_header(b"YUV4MPEG2 W8").is_err());
        assert!(parse_header(b"RIFF").is_err());
    }
}
