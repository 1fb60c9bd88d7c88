//! What an int8 conversion did: the stdout table, the JSON report and the per-layer SQNR chart
//! (SVG).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::calib::Method;
use super::equalize::PairReport;
use super::qparams::ActQ;

/// One layer's int8 error on the held-out samples.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Head node name.
    pub name: String,
    /// `Conv` or `EinSum` (1×1 convolutions and Gemm/MatMul).
    pub op: String,
    /// Output channels.
    pub channels: usize,
    /// Quantized (false: kept in float).
    pub int8: bool,
    /// Bits of the quantized layer's input: 8, or 16 (int8 weights, 16-bit input); none when
    /// float.
    pub input_bits: Option<u32>,
    /// A ReLU/clip was folded into the int8 output stage.
    pub relu_fused: bool,
    /// SQNR of the layer's output in the int8 graph against the float graph, dB (error
    /// accumulated from every quantized layer before it).
    pub sqnr_db: f64,
    /// SQNR of the layer quantized alone, reading the float input, dB (its own error; what
    /// `--keep-float auto` ranks by).
    pub isolated_sqnr_db: f64,
    /// Its bias was corrected (per-channel output mean moved to float).
    pub bias_corrected: bool,
    /// Cosine similarity of the same.
    pub cosine: f64,
    /// Input activation parameters.
    pub input: ActQ,
    /// The input's parameters per channel, when the layer quantizes its float input per
    /// channel (an int8 depthwise layer); `input` is then the tensor's range.
    pub input_channels: Option<Vec<ActQ>>,
    /// Output activation parameters.
    pub output: ActQ,
}

/// End-to-end error of one model output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    /// Output name.
    pub name: String,
    /// The decoder's activation (from `--sidecar`) the SQNR is measured after, if any.
    pub activation: Option<String>,
    /// SQNR against float, dB.
    pub sqnr_db: f64,
    /// Cosine similarity against float.
    pub cosine: f64,
    /// For a score output: percent of float's 10 highest entries among int8's 10 highest.
    pub top_k_agreement: Option<f64>,
    /// For a score output: mean |Δ| of the best score.
    pub max_score_diff: Option<f64>,
}

/// Boxes of both graphs decoded by the sidecar's detector, on the held-out samples.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionReport {
    /// The sidecar.
    pub sidecar: PathBuf,
    /// Boxes of the float graph.
    pub reference_boxes: usize,
    /// Boxes of the int8 graph.
    pub int8_boxes: usize,
    /// Pairs matched (same class, IoU ≥ 0.5).
    pub matched: usize,
    /// matched / int8 boxes.
    pub precision: f64,
    /// matched / float boxes.
    pub recall: f64,
}

/// What cross-layer equalization did (see [`super::equalize`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EqualizationReport {
    /// The equalized graph was used.
    pub applied: bool,
    /// Why (or why not), in words.
    pub decision: String,
    /// End-to-end SQNR (worst output) on the tuning samples with equalization, dB.
    pub sqnr_with_db: Option<f64>,
    /// The same without.
    pub sqnr_without_db: Option<f64>,
    /// The pairs equalized, with their ranges before and after.
    pub pairs: Vec<PairReport>,
}

/// The report of `convert --int8` (printed, and written as JSON by `--report`).
#[derive(Debug, Clone, Serialize)]
pub struct Int8Report {
    /// The ONNX model.
    pub source: PathBuf,
    /// The int8 graph written.
    pub output: PathBuf,
    /// Source file size.
    pub source_file_bytes: u64,
    /// Output file size.
    pub output_file_bytes: u64,
    /// Range estimation used.
    pub method: Method,
    /// Per-channel weight scales.
    pub per_channel: bool,
    /// Empirical bias correction was on.
    pub bias_correction: bool,
    /// Cross-layer equalization.
    pub equalization: EqualizationReport,
    /// Samples used to calibrate.
    pub calibration_samples: usize,
    /// Samples held out for the error measures (0: too few samples, measured on the
    /// calibration set).
    pub heldout_samples: usize,
    /// Per layer, in graph order.
    pub layers: Vec<LayerReport>,
    /// Per model output.
    pub outputs: Vec<OutputReport>,
    /// For a classifier: percent of held-out rows whose arg-max agrees with float.
    pub top1_agreement: Option<f64>,
    /// For a detector with a sidecar: its boxes against float's.
    pub detections: Option<DetectionReport>,
    /// What `--keep-float auto` had to do on the held-out samples to land, if anything.
    pub landing: Option<String>,
    /// The end-to-end SQNR floor.
    pub sqnr_floor_db: f64,
    /// Written below the floor because of `--force`.
    pub forced: bool,
    /// Layers left in float.
    pub kept_float: Vec<String>,
    /// Quantized layers reading a 16-bit input.
    pub wide_inputs: Vec<String>,
    /// Largest relative difference between the graph built and the graph reloaded from disk.
    pub reload_relative_diff: f64,
    /// What the depthwise pass did on the float depthwise layers (`None` with
    /// `--depthwise tract`).
    pub depthwise: Option<crate::float_ops::PlacementReport>,
    /// What the max-pool pass did on the float max-pools (`None` with `--max-pool tract`).
    pub max_pool: Option<crate::float_ops::PlacementReport>,
    /// What the linear pass did on the float 1×1 / dense layers (`None` with `--linear tract`).
    pub linear: Option<crate::float_ops::PlacementReport>,
    /// What the convolution pass did on the float k×k convolutions (`None` with `--linear
    /// tract`).
    pub conv: Option<crate::float_ops::PlacementReport>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Int8Report {
    /// The human-readable summary with the per-layer table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "int8 {} -> {} ({} B -> {} B)",
            self.source.display(),
            self.output.display(),
            self.source_file_bytes,
            self.output_file_bytes
        );
        let _ = writeln!(
            s,
            "  calibration {:?}, {} weights, bias correction {}, {} samples, {} held out",
            self.method,
            if self.per_channel {
                "per-channel"
            } else {
                "per-tensor"
            },
            if self.bias_correction { "on" } else { "off" },
            self.calibration_samples,
            self.heldout_samples
        );
        if !self.equalization.decision.is_empty() {
            let _ = writeln!(s, "  equalization {}", self.equalization.decision);
        }
        for p in &self.equalization.pairs {
            let _ = writeln!(
                s,
                "    {} -> {}: {} channels ({} shifted), activation max/median range {:.1} -> {:.1}, \
                 weight columns {:.1} -> {:.1}",
                truncate(&p.producer, 40),
                truncate(&p.consumer, 40),
                p.channels,
                p.shifted,
                p.act_spread_before,
                p.act_spread_after,
                p.weight_spread_before,
                p.weight_spread_after
            );
        }
        s.push_str(&crate::float_ops::to_text(
            self.depthwise.as_ref(),
            self.max_pool.as_ref(),
            self.linear.as_ref(),
            self.conv.as_ref(),
        ));
        let _ = writeln!(
            s,
            "  {:<40} {:>6} {:>5} {:>6} {:>9} {:>8} {:>9}",
            "layer", "op", "ch", "prec", "SQNR dB", "cosine", "isolated"
        );
        for l in &self.layers {
            let _ = writeln!(
                s,
                "  {:<40} {:>6} {:>5} {:>6} {:>9.1} {:>8.5} {:>9.1}",
                truncate(&l.name, 40),
                l.op,
                l.channels,
                match l.input_bits {
                    Some(16) => "a16",
                    Some(_) => "int8",
                    None => "float",
                },
                l.sqnr_db,
                l.cosine,
                l.isolated_sqnr_db
            );
        }
        for o in &self.outputs {
            let after = o
                .activation
                .as_ref()
                .map(|a| format!(" after {a}"))
                .unwrap_or_default();
            let _ = write!(
                s,
                "  output {}: SQNR{after} {:.1} dB (floor {:.1}), cosine {:.5}",
                o.name, o.sqnr_db, self.sqnr_floor_db, o.cosine
            );
            if let (Some(k), Some(d)) = (o.top_k_agreement, o.max_score_diff) {
                let _ = write!(s, ", top-10 agreement {k:.1}%, best score |diff| {d:.3}");
            }
            let _ = writeln!(s);
        }
        if let Some(t) = self.top1_agreement {
            let _ = writeln!(s, "  top-1 agreement {t:.1}%");
        }
        if let Some(d) = &self.detections {
            let _ = writeln!(
                s,
                "  detections (sidecar decoder, IoU >= 0.5): {} float, {} int8, {} matched: \
                 precision {:.3}, recall {:.3}",
                d.reference_boxes, d.int8_boxes, d.matched, d.precision, d.recall
            );
            if d.reference_boxes + d.int8_boxes == 0 {
                let _ = writeln!(
                    s,
                    "  WARNING: no boxes in the held-out samples, so the box check says nothing: \
                     calibrate with pictures that show the objects"
                );
            }
        }
        if let Some(l) = &self.landing {
            let _ = writeln!(s, "  held-out check: {l}");
        }
        if !self.wide_inputs.is_empty() {
            let _ = writeln!(
                s,
                "  16-bit inputs (int8 weights, \"a16\"): {}",
                self.wide_inputs.join(", ")
            );
        }
        let per_channel: Vec<&str> = self
            .layers
            .iter()
            .filter(|l| l.input_channels.is_some())
            .map(|l| l.name.as_str())
            .collect();
        if !per_channel.is_empty() {
            let _ = writeln!(
                s,
                "  inputs quantized per channel: {}",
                per_channel.join(", ")
            );
        }
        if !self.kept_float.is_empty() {
            let _ = writeln!(s, "  kept in float: {}", self.kept_float.join(", "));
        }
        if self.forced {
            let _ = writeln!(
                s,
                "  WARNING: below the SQNR floor, written because of --force"
            );
        }
        let _ = writeln!(
            s,
            "  reload  max relative diff {:.1e}; time {:.2} s",
            self.reload_relative_diff, self.seconds
        );
        s
    }

    /// A horizontal bar chart of per-layer SQNR (SVG), with the floor marked; float layers
    /// in grey.
    pub fn to_svg(&self) -> String {
        let row = 16.0;
        let (left, width) = (260.0, 420.0);
        let height = 40.0 + row * self.layers.len() as f64;
        let max_db = self
            .layers
            .iter()
            .map(|l| l.sqnr_db.min(80.0))
            .fold(self.sqnr_floor_db + 10.0, f64::max);
        let x = |db: f64| left + width * (db.clamp(0.0, max_db) / max_db);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
            left + width + 60.0
        );
        let _ = writeln!(
            s,
            r#"<text x="4" y="14" font-weight="bold">per-layer SQNR int8 vs float (dB), {}</text>"#,
            xml(&self.source.display().to_string())
        );
        for (i, l) in self.layers.iter().enumerate() {
            let y = 24.0 + row * i as f64;
            let color = if !l.int8 {
                "#999999"
            } else if l.sqnr_db < self.sqnr_floor_db {
                "#d62728"
            } else {
                "#1f77b4"
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{}" width="{:.1}" height="{}" fill="{color}"/><text x="{:.1}" y="{}">{:.1}</text>"#,
                left - 4.0,
                y + 11.0,
                xml(&truncate(&l.name, 40)),
                y + 2.0,
                x(l.sqnr_db) - left,
                row - 4.0,
                x(l.sqnr_db) + 3.0,
                y + 11.0,
                l.sqnr_db
            );
        }
        let fx = x(self.sqnr_floor_db);
        let _ = writeln!(
            s,
            r#"<line x1="{fx:.1}" y1="20" x2="{fx:.1}" y2="{height}" stroke="black" stroke-dasharray="4,3"/><text x="{fx:.1}" y="{}" >floor {:.0} dB</text>"#,
            height - 2.0,
            self.sqnr_floor_db
        );
        s.push_str("</svg>\n");
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Int8Report {
        let q = ActQ::from_range(0.0, 1.0);
        Int8Report {
            source: "m<1>.onnx".into(),
            output: "m.nnef.tgz".into(),
            source_file_bytes: 10,
            output_file_bytes: 5,
            method: Method::MinMax,
            per_channel: true,
            bias_correction: true,
            equalization: EqualizationReport::default(),
            calibration_samples: 4,
            heldout_samples: 1,
            layers: vec![
                LayerReport {
                    name: "conv1".into(),
                    op: "Conv".into(),
                    channels: 8,
                    int8: true,
                    input_bits: Some(8),
                    relu_fused: true,
                    sqnr_db: 35.0,
                    isolated_sqnr_db: 36.0,
                    bias_corrected: true,
                    cosine: 0.999,
                    input: q,
                    input_channels: None,
                    output: q,
                },
                LayerReport {
                    name: "fc".into(),
                    op: "EinSum".into(),
                    channels: 10,
                    int8: false,
                    input_bits: None,
                    relu_fused: false,
                    sqnr_db: 12.0,
                    isolated_sqnr_db: 30.0,
                    bias_corrected: false,
                    cosine: 0.9,
                    input: q,
                    input_channels: None,
                    output: q,
                },
            ],
            outputs: vec![OutputReport {
                name: "probs".into(),
                activation: None,
                sqnr_db: 30.0,
                cosine: 0.99,
                top_k_agreement: None,
                max_score_diff: None,
            }],
            top1_agreement: Some(100.0),
            detections: None,
            landing: None,
            sqnr_floor_db: 20.0,
            forced: false,
            kept_float: vec!["fc".into()],
            wide_inputs: vec![],
            reload_relative_diff: 0.0,
            depthwise: None,
            max_pool: None,
            linear: None,
            conv: None,
            seconds: 1.0,
        }
    }

    #[test]
    fn table_lists_layers_and_float_ones() {
        let t = report().to_text();
        assert!(t.contains("conv1") && t.contains("35.0") && t.contains("float"));
        assert!(t.contains("kept in float: fc"));
        assert!(t.contains("top-1 agreement 100.0%"));
    }

    #[test]
    fn svg_has_one_bar_per_layer_and_escapes_names() {
        let svg = report().to_svg();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("m&lt;1&gt;.onnx"));
        assert!(svg.contains("#999999"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
