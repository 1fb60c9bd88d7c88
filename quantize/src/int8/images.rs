//! A folder of PNG/JPEG images as calibration samples: resize, channel order, scale,
//! mean/std normalisation, NCHW or NHWC layout.
//!
//! `value = (pixel · scale − mean[c]) / std[c]` with pixel in 0..=255, `scale` 1/255 by
//! default; grayscale models (1 channel) get the luma. Files are taken in name order so a
//! `--calib-count` prefix is reproducible; files that are not images are an error naming the
//! file (a calibration folder should hold only what it is meant to).

use std::path::Path;
use std::str::FromStr;

use image::imageops::FilterType;
use tract_onnx::prelude::*;

use super::error::Int8Error;

/// Tensor layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channels before rows (PyTorch, Paddle).
    Nchw,
    /// Channels last (TensorFlow).
    Nhwc,
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => Err(format!("'{s}': expected nchw or nhwc")),
        }
    }
}

/// Image pre-processing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Resize to W×H (default: the model input's spatial size).
    pub size: Option<(usize, usize)>,
    /// Per-channel mean (after scaling), one value or one per channel.
    pub mean: Vec<f32>,
    /// Per-channel std, one value or one per channel.
    pub std: Vec<f32>,
    /// Layout of the model input.
    pub layout: Layout,
    /// Feed BGR instead of RGB.
    pub bgr: bool,
    /// Multiplier applied to 0..=255 pixels before mean/std.
    pub scale: f32,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            size: None,
            mean: vec![0.0],
            std: vec![1.0],
            layout: Layout::Nchw,
            bgr: false,
            scale: 1.0 / 255.0,
        }
    }
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}': expected WxH, e.g. 224x224"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("'{s}': bad size"))
    };
    Ok((p(w)?, p(h)?))
}

/// Parses `a,b,c` (or one value).
pub fn parse_floats(s: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| format!("'{s}': bad number '{v}'"))
        })
        .collect()
}

fn channel_value(values: &[f32], c: usize) -> f32 {
    if values.len() == 1 {
        values[0]
    } else {
        values[c]
    }
}

/// Loads up to `count` (0 = all) images of `dir` into tensors of `shape` (`[1, C, H, W]` or
/// `[1, H, W, C]`).
pub fn load_image_folder(
    dir: &Path,
    shape: &[usize],
    pre: &Preprocess,
    count: usize,
) -> Result<Vec<Tensor>, Int8Error> {
    let bad = |path: &Path, reason: String| Int8Error::Calibration {
        path: path.to_path_buf(),
        reason,
    };
    if shape.len() != 4 || shape[0] != 1 {
        return Err(bad(
            dir,
            format!("image calibration needs a [1, C, H, W] or [1, H, W, C] input, the model's is {shape:?}"),
        ));
    }
    let (c, h, w) = match pre.layout {
        Layout::Nchw => (shape[1], shape[2], shape[3]),
        Layout::Nhwc => (shape[3], shape[1], shape[2]),
    };
    if c != 1 && c != 3 {
        return Err(bad(
            dir,
            format!(
                "{c} input channels with --layout {:?}: images give 1 or 3 (check --layout)",
                pre.layout
            ),
        ));
    }
    for (what, v) in [("--mean", &pre.mean), ("--std", &pre.std)] {
        if v.len() != 1 && v.len() != c {
            return Err(bad(
                dir,
                format!("{what} has {} values for {c} channels", v.len()),
            ));
        }
    }
    if pre.std.contains(&0.0) {
        return Err(bad(dir, "--std contains 0".into()));
    }
    if let Some((sw, sh)) = pre.size {
        if (sw, sh) != (w, h) {
            return Err(bad(
                dir,
                format!("--size {sw}x{sh} but the model input is {w}x{h}"),
            ));
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| bad(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if count > 0 {
        files.truncate(count);
    }
    let mut samples = vec![];
    for file in files {
        let img =
            image::open(&file).map_err(|e| bad(&file, format!("not a readable image: {e}")))?;
        let img = img
            .resize_exact(w as u32, h as u32, FilterType::Triangle)
            .to_rgb8();
        let mut t = Tensor::zero::<f32>(shape).map_err(|e| bad(&file, e.to_string()))?;
        {
            let mut view = t
                .to_plain_array_view_mut::<f32>()
                .map_err(|e| bad(&file, e.to_string()))?;
            for (x, y, p) in img.enumerate_pixels() {
                let [r, g, b] = p.0.map(|v| v as f32);
                for ch in 0..c {
                    let v = if c == 1 {
                        0.299 * r + 0.587 * g + 0.114 * b
                    } else {
                        match (ch, pre.bgr) {
                            (0, false) | (2, true) => r,
                            (1, _) => g,
                            _ => b,
                        }
                    };
                    let v = (v * pre.scale - channel_value(&pre.mean, ch))
                        / channel_value(&pre.std, ch);
                    let (x, y) = (x as usize, y as usize);
                    match pre.layout {
                        Layout::Nchw => view[[0, ch, y, x]] = v,
                        Layout::Nhwc => view[[0, y, x, ch]] = v,
                    }
                }
            }
        }
        samples.push(t);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn normalises_and_orders_channels() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 5, 3, [255, 0, 51]);
        let pre = Preprocess {
            mean: vec![0.5],
            std: vec![0.5],
            ..Preprocess::default()
        };
        let s = load_image_folder(dir.path(), &[1, 3, 2, 4], &pre, 0).unwrap();
        assert_eq!(s.len(), 1);
        let v = s[0].to_plain_array_view::<f32>().unwrap();
        assert!((v[[0, 0, 1, 3]] - 1.0).abs() < 1e-6);
        assert!((v[[0, 1, 0, 0]] + 1.0).abs() < 1e-6);
        assert!((v[[0, 2, 0, 0]] - (0.2 - 0.5) / 0.5).abs() < 1e-5);
        let bgr = Preprocess {
            bgr: true,
            layout: Layout::Nhwc,
            ..Preprocess::default()
        };
        let s = load_image_folder(dir.path(), &[1, 2, 4, 3], &bgr, 0).unwrap();
        let v = s[0].to_plain_array_view::<f32>().unwrap();
        assert!((v[[0, 0, 0, 2]] - 1.0).abs() < 1e-6);
        assert!((v[[0, 0, 0, 0]] - 0.2).abs() < 1e-5);
    }

    #[test]
    fn a_file_that_is_not_an_image_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 2, 2, [1, 2, 3]);
        std::fs::write(dir.path().join("b.png"), b"not an image").unwrap();
        let e = load_image_folder(dir.path(), &[1, 3, 2, 2], &Preprocess::default(), 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.png") && e.contains("not a readable image"),
            "{e}"
        );
    }

    #[test]
    fn parses_flags() {
        assert_eq!(parse_size("224x112"), Ok((224, 112)));
        assert!(parse_size("224").is_err());
        assert_eq!(parse_floats("0.5, 1"), Ok(vec![0.5, 1.0]));
        assert_eq!("NHWC".parse::<Layout>(), Ok(Layout::Nhwc));
    }
}
