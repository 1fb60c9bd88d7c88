//! The `--int8` flags of `kestrel-quantize convert` (a clap `Args` group flattened into the
//! command) and the command's int8 branch.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kestrel_runtime::io::atomic::AtomicFile;

use super::calib::Method;
use super::data::CalibSource;
use super::images::{parse_floats, parse_size, Layout, Preprocess};
use super::{convert_int8, ActivationBits, Int8Options, KeepFloat};
use crate::load::InputShape;

/// int8 post-training quantization flags.
#[derive(Args, Debug, Clone)]
pub struct Int8Args {
    /// Quantize to int8 (needs --calib).
    #[arg(long)]
    pub int8: bool,
    /// Calibration samples: a folder of PNG/JPEG images, or a .npy/.npz array (N samples).
    #[arg(long, value_name = "DIR|FILE.npy|FILE.npz", requires = "int8")]
    pub calib: Option<PathBuf>,
    /// Use at most N calibration samples (0 = all); --holdout of them are held out for the
    /// report.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub calib_count: usize,
    /// Activation ranges: minmax, percentile (percentile:P for another P than 99.99) or
    /// entropy (KL).
    #[arg(long, default_value = "minmax", value_name = "METHOD")]
    pub calib_method: Method,
    /// One weight scale per tensor instead of per output channel (to compare).
    #[arg(long)]
    pub per_tensor: bool,
    /// Images: resize to WxH (must match the model input).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Images: per-channel mean subtracted after --scale (one value or one per channel).
    #[arg(long, default_value = "0", value_parser = parse_floats)]
    pub mean: ::std::vec::Vec<f32>,
    /// Images: per-channel std divided by (one value or one per channel).
    #[arg(long, default_value = "1", value_parser = parse_floats)]
    pub std: ::std::vec::Vec<f32>,
    /// Images: model input layout.
    #[arg(long, default_value = "nchw", value_name = "nchw|nhwc")]
    pub layout: Layout,
    /// Images: channel order fed to the model.
    #[arg(long, default_value = "rgb", value_name = "rgb|bgr", value_parser = ["rgb", "bgr"])]
    pub color: String,
    /// Images: multiplier of the 0..255 pixel values before --mean/--std.
    #[arg(long, default_value_t = 1.0 / 255.0)]
    pub scale: f32,
    /// Mixed precision. Default: the fewest layers float (least end-to-end SQNR quantized
    /// alone first) with which the end-to-end SQNR reaches --sqnr-floor: the conversion
    /// lands, all float in the worst case. `auto`: the same, and the agreement measure (top-1,
    /// top-10 scores, boxes) at its target too. `auto:DB`: every layer whose isolated SQNR is
    /// below DB. `none`: every layer int8 (refused below the floor). Or layer names
    /// (comma-separated) to leave in float.
    #[arg(long, value_name = "auto[:DB]|none|NAMES")]
    pub keep_float: Option<String>,
    /// Layer inputs: `auto` (8 bits, and 16 bits for the fewest layers, worst isolated SQNR
    /// first, with which the end-to-end SQNR reaches --sqnr-floor; tried before
    /// --keep-float), `8`, or `16` (every 1×1 convolution and dense layer). A 16-bit input
    /// keeps int8 weights: twice the 8-bit multiplies where 8-bit products run faster (x86,
    /// ARMv8.2 `sdot`), about f32's cost on ARMv8.0 (one product on 16-bit lanes).
    #[arg(long, default_value = "auto", value_name = "auto|8|16", value_parser = parse_activation_bits)]
    pub activation_bits: ActivationBits,
    /// The end-to-end SQNR (dB, every output, held-out samples) an int8 graph must reach: by
    /// default more layers stay float until it does; with `--keep-float none` or a list of
    /// names, a graph below it is refused (nothing written).
    #[arg(long, default_value_t = super::DEFAULT_SQNR_FLOOR_DB, value_name = "DB")]
    pub sqnr_floor: f64,
    /// Write the int8 graph even below --sqnr-floor.
    #[arg(long)]
    pub force: bool,
    /// Quantize depthwise convolutions too, as Kestrel's `kestrel_int8_depthwise` (default:
    /// float; on MobileNetV3 they cost end-to-end accuracy, quantize/README.md).
    #[arg(long)]
    pub int8_depthwise: bool,
    /// Quantize the stem convolution too (a k×k conv on ≤ 4 channels of a graph input, i.e.
    /// on the image), as Kestrel's `kestrel_int8_conv` with the image quantized per channel
    /// (default: float; quantize/README.md).
    #[arg(long)]
    pub int8_stem: bool,
    /// Keep the float depthwise layers in f32 on every core (default: binary16 on cores
    /// with FEAT_FP16 where their calibrated ranges allow, docs/depthwise.md).
    #[arg(long)]
    pub depthwise_f32: bool,
    /// Quantize the other k×k convolutions too, as Kestrel's `kestrel_int8_conv` (default:
    /// float; quantize/README.md).
    #[arg(long)]
    pub int8_spatial: bool,
    /// Fraction of the samples (the last in order) held out for the report.
    #[arg(long, default_value_t = 0.25, value_name = "F", value_parser = parse_fraction)]
    pub holdout: f64,
    /// No empirical bias correction (on by default: per-channel output means moved to float).
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Round weights to nearest (default: layers with 16-bit inputs have their weights rounded
    /// by GPTQ, each rounding error compensated over the other input channels through the
    /// calibration inputs' second moments).
    #[arg(long)]
    pub round_nearest: bool,
    /// No cross-layer equalization (on by default where it raises the end-to-end SQNR on the
    /// tuning samples: channel ranges balanced between a layer and the int8 layer reading it).
    #[arg(long)]
    pub no_equalize: bool,
    /// Requantize every int8 layer's output to i8 (default: only outputs another int8 layer
    /// reads; the others leave as f32 = i32 accumulator × per-channel scale, no rounding).
    #[arg(long)]
    pub requantize_outputs: bool,
    /// Write tract's own quantized ops (a quantizing cast, `Conv`/`EinSum{q_params}`, a
    /// dequantizing cast and multiply) instead of Kestrel's fused `kestrel_int8_linear` for 1×1
    /// convolutions and dense layers (for comparison: tract's are slower).
    #[arg(long)]
    pub tract_int8_ops: bool,
    /// Write the per-layer SQNR chart (SVG) here.
    #[arg(long, value_name = "FILE.svg")]
    pub svg: Option<PathBuf>,
    /// A detector's sidecar (`.kestrel.toml`): the runtime's decoder and NMS run on both
    /// graphs' outputs and the report gives (and `--keep-float auto` aims at) the share of
    /// boxes that agree.
    #[arg(long, value_name = "FILE.kestrel.toml", requires = "int8")]
    pub sidecar: Option<PathBuf>,
}

/// Parses `--holdout`: a fraction in (0, 1).
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("'{s}': expected a fraction in (0, 1), e.g. 0.25")),
    }
}

/// Parses `--activation-bits`.
pub fn parse_activation_bits(s: &str) -> Result<ActivationBits, String> {
    match s {
        "auto" => Ok(ActivationBits::Auto),
        "8" => Ok(ActivationBits::Eight),
        "16" => Ok(ActivationBits::Sixteen),
        _ => Err(format!("'{s}': expected auto, 8 or 16")),
    }
}

/// Parses `--keep-float`.
pub fn parse_keep_float(s: Option<&str>) -> Result<KeepFloat, String> {
    match s {
        None => Ok(KeepFloat::Floor),
        Some("none") => Ok(KeepFloat::None),
        Some("auto") => Ok(KeepFloat::Fewest),
        Some(s) => match s.strip_prefix("auto:") {
            Some(db) => db
                .parse()
                .map(KeepFloat::Auto)
                .map_err(|_| format!("--keep-float '{s}': expected auto:DB, e.g. auto:25")),
            None => Ok(KeepFloat::Names(
                s.split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            )),
        },
    }
}

impl Int8Args {
    /// The conversion options, given the command's input shapes.
    pub fn options(&self, input_shapes: Vec<InputShape>) -> Result<Int8Options> {
        let Some(calib) = &self.calib else {
            bail!("--int8 needs --calib DIR|FILE.npy|FILE.npz (calibration samples)");
        };
        let source = CalibSource {
            path: calib.clone(),
            preprocess: Preprocess {
                size: self.size,
                mean: self.mean.clone(),
                std: self.std.clone(),
                layout: self.layout,
                bgr: self.color == "bgr",
                scale: self.scale,
            },
            count: self.calib_count,
        };
        let mut options = Int8Options::new(source);
        options.input_shapes = input_shapes;
        options.method = self.calib_method;
        options.per_channel = !self.per_tensor;
        options.keep_float =
            parse_keep_float(self.keep_float.as_deref()).map_err(anyhow::Error::msg)?;
        options.activation_bits = self.activation_bits;
        options.sqnr_floor_db = self.sqnr_floor;
        options.force = self.force;
        options.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        options.progress = true;
        options.int8_depthwise = self.int8_depthwise;
        options.int8_stem = self.int8_stem;
        options.depthwise_f16 = !self.depthwise_f32;
        options.int8_spatial = self.int8_spatial;
        options.holdout = self.holdout;
        options.bias_correction = !self.no_bias_correction;
        options.equalize = !self.no_equalize;
        options.gptq = !self.round_nearest;
        options.sidecar = self.sidecar.clone();
        options.requantize_all = self.requantize_outputs;
        options.tract_ops = self.tract_int8_ops;
        Ok(options)
    }
}

/// `convert --int8`: converts, prints the table, writes `--report` JSON and `--svg`.
pub fn run(
    model: &Path,
    output: &Path,
    report: Option<&Path>,
    input_shapes: Vec<InputShape>,
    args: &Int8Args,
    choices: crate::float_ops::Choices,
) -> Result<()> {
    let mut options = args.options(input_shapes)?;
    options.depthwise = choices.depthwise;
    options.max_pool = choices.max_pool;
    options.linear = choices.linear;
    let result = convert_int8(model, output, &options)?;
    print!("{}", result.to_text());
    if let Some(path) = report {
        let mut file = AtomicFile::create(path)?;
        serde_json::to_writer_pretty(file.file_mut(), &result)
            .with_context(|| format!("writing {}", path.display()))?;
        file.commit()?;
    }
    if let Some(path) = &args.svg {
        let mut file = AtomicFile::create(path)?;
        std::io::Write::write_all(file.file_mut(), result.to_svg().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        file.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_activation_bits() {
        assert_eq!(parse_activation_bits("auto"), Ok(ActivationBits::Auto));
        assert_eq!(parse_activation_bits("8"), Ok(ActivationBits::Eight));
        assert_eq!(parse_activation_bits("16"), Ok(ActivationBits::Sixteen));
        assert!(parse_activation_bits("12").is_err());
    }

    #[test]
    fn parses_keep_float() {
        assert_eq!(parse_keep_float(None), Ok(KeepFloat::Floor));
        assert_eq!(parse_keep_float(Some("none")), Ok(KeepFloat::None));
        assert_eq!(parse_keep_float(Some("auto")), Ok(KeepFloat::Fewest));
        assert_eq!(
            parse_keep_float(Some("auto:25.5")),
            Ok(KeepFloat::Auto(25.5))
        );
        assert!(parse_keep_float(Some("auto:x")).is_err());
        assert_eq!(
            parse_keep_float(Some("fc, conv1")),
            Ok(KeepFloat::Names(vec!["fc".into(), "conv1".into()]))
        );
    }

    #[test]
    fn parses_holdout() {
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("0").is_err());
        assert!(parse_fraction("1").is_err());
        assert!(parse_fraction("x").is_err());
    }
}
