//! `kestrel-quantize convert`: ONNX → verified NNEF tar.
//!
//! The graph written is the *decluttered* one (batch-norms folded, no-ops removed): portable,
//! serialisable, optimised by the device at load. The file is written to a temporary path,
//! reloaded with the runtime's own loader ([`kestrel_runtime::Model::load`]) and run against
//! the source graph on seeded random inputs; only a graph that loads and matches within the
//! tolerance is renamed into place. A failure at any step leaves no file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use kestrel_runtime::infer::{infer, match_inputs};
use kestrel_runtime::io::atomic::AtomicFile;
use kestrel_runtime::io::npy::read_arrays;
use kestrel_runtime::model::{describe, LoadOptions, Model, TensorSpec};
use kestrel_runtime::ops::registry;
use kestrel_runtime::random::random_inputs;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::binary::{binarize, BinaryReport};
use crate::error::ConvertError;
use crate::float_ops::{self, OpChoice, PlacementReport};
use crate::load::{load_onnx, InputShape};
use crate::mst::{self, MstLayerReport, MstOptions};
use crate::summary::{graph_stats, GraphStats};
use crate::verify::{compare, noise_floor, perturb, OutputDiff};

/// Options of a conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Shapes for inputs whose shape the model leaves open.
    pub input_shapes: Vec<InputShape>,
    /// Relative tolerance of the verification (see [`crate::verify`]).
    pub tolerance: f64,
    /// Random input sets the verification runs.
    pub verify_runs: usize,
    /// Seed of the verification inputs.
    pub seed: u64,
    /// Convert binarised layers into Kestrel's binary ops (`--binary on`, the default).
    pub binary: bool,
    /// Real inputs (`.npy`/`.npz`, N samples) the verification runs besides random ones.
    pub verify_data: Option<PathBuf>,
    /// MST analysis of binary layers (`--mst on`, the default); `None` for `--mst off`.
    pub mst: Option<MstOptions>,
    /// Whose depthwise convolution the graph runs (`--depthwise`).
    pub depthwise: OpChoice,
    /// Whose 2×2 max-pool the graph runs (`--max-pool`).
    pub max_pool: OpChoice,
    /// Whose float 1×1 convolution / dense op the graph runs (`--linear`).
    pub linear: OpChoice,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            input_shapes: vec![],
            tolerance: 1e-4,
            verify_runs: 2,
            seed: 2026,
            binary: true,
            verify_data: None,
            mst: Some(MstOptions::default()),
            depthwise: OpChoice::Kestrel,
            max_pool: OpChoice::Kestrel,
            linear: OpChoice::Kestrel,
        }
    }
}

/// What a conversion did (printed as a summary, written as JSON by `--report`).
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    /// The ONNX model.
    pub source: PathBuf,
    /// The graph written.
    pub output: PathBuf,
    /// Source file size.
    pub source_file_bytes: u64,
    /// Output file size.
    pub output_file_bytes: u64,
    /// Ops and parameters of the source graph (after type analysis, before simplification).
    pub before: GraphStats,
    /// Ops and parameters of the graph written.
    pub after: GraphStats,
    /// Input facts (name, type and shape).
    pub inputs: Vec<String>,
    /// Output facts.
    pub outputs: Vec<String>,
    /// Per-output comparison of the reloaded graph with the source, worst over the runs.
    pub verification: Vec<OutputDiff>,
    /// Samples the verification ran (random sets plus `--verify-data` samples).
    pub verified_samples: usize,
    /// Samples where the arg-max of some output differs between source and converted graph.
    pub argmax_mismatches: usize,
    /// What the binary conversion did (`None` with `--binary off`).
    pub binary: Option<BinaryReport>,
    /// MST trees of the binary layers (empty with `--mst off` or no binary layer).
    pub mst: Vec<MstLayerReport>,
    /// What the depthwise pass did (`None` with `--depthwise tract`).
    pub depthwise: Option<PlacementReport>,
    /// What the max-pool pass did (`None` with `--max-pool tract`).
    pub max_pool: Option<PlacementReport>,
    /// What the linear pass did (`None` with `--linear tract`).
    pub linear: Option<PlacementReport>,
    /// What the k×k convolution pass did (`None` with `--linear tract`).
    pub conv: Option<PlacementReport>,
    /// Wall time of the conversion, seconds.
    pub seconds: f64,
}

/// Converts `source` (ONNX) into `output` (`.nnef.tgz` or `.nnef.tar`).
pub fn convert(
    source: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport, ConvertError> {
    let start = Instant::now();
    let gzip = output_kind(output)?;
    let typed = load_onnx(source, &options.input_shapes)?;
    let before = graph_stats(&typed);
    let graph_err = |stage: &'static str, e: anyhow::Error| ConvertError::Graph {
        path: source.to_path_buf(),
        stage,
        source: e.into(),
    };
    let kestrel_ops = options.depthwise == OpChoice::Kestrel || options.linear == OpChoice::Kestrel;
    let decluttered = crate::load::decluttered(typed.clone(), kestrel_ops)
        .map_err(|e| graph_err("declutter", e))?;
    let (graph, binary) = if options.binary {
        let (graph, report) =
            binarize(&decluttered).map_err(|e| graph_err("binary conversion", e))?;
        (graph, Some(report))
    } else {
        (decluttered, None)
    };
    let binary_layers = binary
        .as_ref()
        .is_some_and(|r| r.layers.iter().any(|l| l.bit_macs > 0));
    let mut graph = graph;
    let mst = match &options.mst {
        Some(o) if binary_layers => {
            mst::apply(&mut graph, o).map_err(|e| graph_err("MST analysis", e))?
        }
        _ => vec![],
    };
    let choices = float_ops::Choices {
        depthwise: options.depthwise,
        max_pool: options.max_pool,
        linear: options.linear,
    };
    let (graph, float_ops) =
        float_ops::place(graph, choices).map_err(|e| graph_err("float ops rewrite", e))?;
    let after = graph_stats(&graph);

    let mut file = AtomicFile::create(output)?;
    write_graph(&graph, file.file_mut(), gzip).map_err(|e| graph_err("write NNEF", e))?;

    let verify_err = |reason: String| ConvertError::Verify {
        path: output.to_path_buf(),
        reason,
    };
    let reloaded = Model::load(file.temp_path(), &LoadOptions { threads: Some(1) })
        .map_err(|e| verify_err(format!("the runtime cannot load the written graph: {e}")))?;
    let reference = Model::from_typed(
        &source.display().to_string(),
        typed,
        &LoadOptions { threads: Some(1) },
        Instant::now(),
    )
    .map_err(|e| graph_err("plan source graph", e.into()))?;
    check_facts(&reference, &reloaded).map_err(verify_err)?;
    let outcome = verify(&reference, &reloaded, options, output)?;
    if binary_layers {
        // Binary layers: a pre-activation within f32 rounding of 0 may binarise differently
        // from the float graph's summation order; judge by decisions (arg-max), as users do.
        if outcome.argmax_mismatches * 1000 > outcome.samples {
            return Err(verify_err(format!(
                "arg-max differs on {} of {} samples (more than 0.1%)",
                outcome.argmax_mismatches, outcome.samples
            )));
        }
    } else {
        for d in &outcome.worst {
            // NaN differences fail too.
            let excess = d.excess(options.tolerance);
            if d.relative.is_nan() || excess.is_nan() || excess > 1.0 {
                return Err(verify_err(format!(
                    "output '{}' differs by {:.3e} relative (max abs diff {:.3e}, tolerance {:.0e}; \
                     {}× the source's own rounding sensitivity {:.3e})",
                    d.name,
                    d.relative,
                    d.max_abs_diff,
                    options.tolerance,
                    crate::verify::NOISE_FACTOR,
                    d.noise_floor
                )));
            }
        }
    }
    let output_file_bytes = file
        .file_mut()
        .metadata()
        .map_err(|source| kestrel_runtime::RuntimeError::Io {
            path: output.into(),
            source,
        })?
        .len();
    file.commit()?;
    Ok(ConvertReport {
        source: source.to_path_buf(),
        output: output.to_path_buf(),
        source_file_bytes: std::fs::metadata(source).map(|m| m.len()).unwrap_or(0),
        output_file_bytes,
        before,
        after,
        inputs: reloaded
            .inputs()
            .iter()
            .map(TensorSpec::to_string)
            .collect(),
        outputs: reloaded
            .outputs()
            .iter()
            .map(TensorSpec::to_string)
            .collect(),
        verification: outcome.worst,
        verified_samples: outcome.samples,
        argmax_mismatches: outcome.argmax_mismatches,
        binary,
        mst,
        depthwise: float_ops.depthwise,
        max_pool: float_ops.max_pool,
        linear: float_ops.linear,
        conv: float_ops.conv,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `true` for a gzipped tar (`.tgz`, `.gz`), `false` for a plain `.tar`.
pub(crate) fn output_kind(output: &Path) -> Result<bool, ConvertError> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        Ok(true)
    } else if name.ends_with(".tar") {
        Ok(false)
    } else {
        Err(ConvertError::Output {
            path: output.to_path_buf(),
            reason: "output must end in .nnef.tgz (gzipped) or .nnef.tar".into(),
        })
    }
}

/// Writes `model` as an NNEF tar with Kestrel's dialect; deterministic (fixed timestamps), so
/// the same model converts to the same bytes.
pub fn write_graph(model: &TypedModel, w: impl Write, gzip: bool) -> TractResult<()> {
    let safe = nnef_safe_properties(model);
    let model = safe.as_ref().unwrap_or(model);
    let nnef = registry::nnef();
    if gzip {
        let gz = GzEncoder::new(w, flate2::Compression::best());
        nnef.write_to_tar_with_config(model, gz, false, true)?
            .finish()?
            .flush()?;
    } else {
        nnef.write_to_tar_with_config(model, w, false, true)?
            .flush()?;
    }
    Ok(())
}

/// Whether tract's NNEF text round-trips a string literal: its writer prints Rust's `{:?}`
/// form, its parser takes no unescaped `'` and reads `\\n` back as `n`.
fn nnef_string_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c != '\'' && c != '"' && c != '\\' && c.escape_debug().count() == 1)
}

/// The values of a string tensor.
fn strings(t: &Tensor) -> Option<Vec<String>> {
    if t.datum_type() != String::datum_type() {
        return None;
    }
    let ram = t.try_as_plain_ram().ok()?;
    ram.as_slice::<String>().ok().map(|s| s.to_vec())
}

/// A copy of `model` whose string properties tract's NNEF writer would corrupt or make
/// unreadable (quotes, backslashes, newlines: e.g. an OCR model's character dictionary in the
/// ONNX metadata) are percent-encoded (`%XX` per UTF-8 byte of `%` and of every such
/// character), with a `KEY.encoding = "percent"` property beside them; `None` when every
/// property is fine. (A `u8` tensor property does not reload in tract 0.23.9.)
fn nnef_safe_properties(model: &TypedModel) -> Option<TypedModel> {
    let unsafe_keys: Vec<String> = model
        .properties
        .iter()
        .filter(|(_, v)| strings(v).is_some_and(|s| s.iter().any(|s| !nnef_string_ok(s))))
        .map(|(k, _)| k.clone())
        .collect();
    if unsafe_keys.is_empty() {
        return None;
    }
    let mut copy = model.clone();
    for k in unsafe_keys {
        let Some(values) = strings(&copy.properties[&k]) else {
            continue;
        };
        let encoded: Vec<String> = values.iter().map(|s| percent_encode(s)).collect();
        let t = tract_ndarray::ArrayD::from_shape_vec(copy.properties[&k].shape(), encoded)
            .map(|a| a.into_arc_tensor());
        let Ok(t) = t else {
            continue;
        };
        log::warn!(
            "property '{k}' holds characters tract's NNEF text cannot carry; written percent-encoded ('{k}.encoding' = \"percent\")"
        );
        copy.properties.insert(k.clone(), t);
        copy.properties
            .insert(format!("{k}.encoding"), rctensor0("percent".to_string()));
    }
    Some(copy)
}

/// `%XX` for every UTF-8 byte of `%` and of the characters [`nnef_string_ok`] refuses.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c != '%' && nnef_string_ok(c.encode_utf8(&mut [0; 4])) {
            out.push(c);
        } else {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn check_facts(reference: &Model, reloaded: &Model) -> Result<(), String> {
    let pairs = |a: &[TensorSpec], b: &[TensorSpec], what: &str| -> Result<(), String> {
        if a.len() != b.len() {
            return Err(format!(
                "{} {what}s in the source, {} after reload",
                a.len(),
                b.len()
            ));
        }
        for (x, y) in a.iter().zip(b) {
            if x.datum_type != y.datum_type || x.shape != y.shape {
                return Err(format!(
                    "{what} '{}' is {} in the source but {} after reload",
                    x.name,
                    describe(x.datum_type, &x.shape),
                    describe(y.datum_type, &y.shape)
                ));
            }
        }
        Ok(())
    };
    pairs(reference.inputs(), reloaded.inputs(), "input")?;
    pairs(reference.outputs(), reloaded.outputs(), "output")
}

/// What the verification found over every sample.
struct Outcome {
    worst: Vec<OutputDiff>,
    samples: usize,
    argmax_mismatches: usize,
}

impl Outcome {
    /// Adds one sample's comparison; keeps, per output, the worst against tolerance `tol`.
    fn add(&mut self, diffs: Vec<OutputDiff>, tol: f64) {
        self.samples += 1;
        if diffs.iter().any(|d| !d.argmax_agrees) {
            self.argmax_mismatches += 1;
        }
        for (ix, d) in diffs.into_iter().enumerate() {
            match self.worst.get_mut(ix) {
                None => self.worst.push(d),
                Some(prev) => {
                    let agrees = prev.argmax_agrees && d.argmax_agrees;
                    if d.excess(tol) > prev.excess(tol) || d.excess(tol).is_nan() {
                        *prev = d;
                    }
                    prev.argmax_agrees = agrees;
                }
            }
        }
    }
}

fn verify(
    reference: &Model,
    reloaded: &Model,
    options: &ConvertOptions,
    output: &Path,
) -> Result<Outcome, ConvertError> {
    let mut outcome = Outcome {
        worst: vec![],
        samples: 0,
        argmax_mismatches: 0,
    };
    let run_err = |e: anyhow::Error| ConvertError::Verify {
        path: output.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let names: Vec<String> = reference.outputs().iter().map(|o| o.name.clone()).collect();
    let tol = options.tolerance;
    // Each output compared, with the source's own sensitivity to its inputs' rounding.
    let diffs =
        |want: &[Tensor], got: &[Tensor], moved: &[Tensor]| -> TractResult<Vec<OutputDiff>> {
            want.iter()
                .zip(got)
                .zip(moved)
                .zip(&names)
                .map(|(((w, g), m), name)| {
                    let mut d = compare(name, w, g)?;
                    d.noise_floor = noise_floor(w, m)?;
                    Ok(d)
                })
                .collect()
        };
    let tensors = |r: TractResult<TVec<TValue>>| -> Result<Vec<Tensor>, ConvertError> {
        Ok(r.map_err(run_err)?
            .into_iter()
            .map(|t| t.into_tensor())
            .collect())
    };
    for run in 0..options.verify_runs.max(1) {
        let inputs =
            random_inputs(reference.inputs(), options.seed + 1000 * run as u64).map_err(run_err)?;
        let want = tensors(reference.run(inputs.clone()).map_err(Into::into))?;
        let scaled = inputs.iter().map(|t| Ok(perturb(t)?.into_tvalue()));
        let moved = tensors(
            scaled
                .collect::<TractResult<TVec<_>>>()
                .and_then(|i| reference.run(i).map_err(Into::into)),
        )?;
        let got = tensors(reloaded.run(inputs).map_err(Into::into))?;
        outcome.add(diffs(&want, &got, &moved).map_err(run_err)?, tol);
    }
    if let Some(path) = &options.verify_data {
        let arrays = read_arrays(path)?;
        let inputs = match_inputs(reference, arrays).map_err(|e| ConvertError::VerifyData {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let want = infer(reference, &inputs).map_err(|e| ConvertError::VerifyData {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let got = infer(reloaded, &inputs).map_err(|e| run_err(e.into()))?;
        let scaled = inputs
            .iter()
            .map(perturb)
            .collect::<TractResult<Vec<_>>>()
            .map_err(run_err)?;
        let moved = infer(reference, &scaled).map_err(|e| run_err(e.into()))?;
        let n = samples_in(reference, &inputs);
        for i in 0..n {
            let pick = |ts: &[Tensor]| -> TractResult<Vec<Tensor>> {
                ts.iter()
                    .map(|t| {
                        if n == 1 {
                            Ok(t.clone())
                        } else {
                            t.slice(0, i, i + 1)
                        }
                    })
                    .collect()
            };
            outcome.add(
                diffs(
                    &pick(&want).map_err(run_err)?,
                    &pick(&got).map_err(run_err)?,
                    &pick(&moved).map_err(run_err)?,
                )
                .map_err(run_err)?,
                tol,
            );
        }
    }
    Ok(outcome)
}

/// Samples held by inputs accepted by [`infer`]: their leading dimension, unless they have the
/// model's exact shape.
fn samples_in(model: &Model, inputs: &[Tensor]) -> usize {
    match (model.inputs().first(), inputs.first()) {
        (Some(spec), Some(t)) if t.shape() != spec.shape.as_slice() => t.shape()[0],
        _ => 1,
    }
}

impl ConvertReport {
    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "converted {} -> {}",
            self.source.display(),
            self.output.display()
        );
        for i in &self.inputs {
            let _ = writeln!(s, "  input   {i}");
        }
        for o in &self.outputs {
            let _ = writeln!(s, "  output  {o}");
        }
        let _ = writeln!(
            s,
            "  params  {} B in {} tensors -> {} B in {} tensors",
            self.before.param_bytes, self.before.consts, self.after.param_bytes, self.after.consts
        );
        let _ = writeln!(
            s,
            "  file    {} B -> {} B",
            self.source_file_bytes, self.output_file_bytes
        );
        let _ = writeln!(
            s,
            "  nodes   {} -> {}",
            self.before.ops.values().sum::<usize>(),
            self.after.ops.values().sum::<usize>()
        );
        let _ = writeln!(s, "  ops:");
        let mut ops: Vec<_> = self.after.ops.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            let _ = writeln!(s, "    {n:>5}  {op}");
        }
        for d in &self.verification {
            let _ = writeln!(
                s,
                "  verify  {}: max abs diff {:.3e}, relative {:.3e}, source rounding sensitivity \
                 {:.3e}, argmax {}",
                d.name,
                d.max_abs_diff,
                d.relative,
                d.noise_floor,
                if d.argmax_agrees { "agrees" } else { "DIFFERS" }
            );
        }
        let _ = writeln!(
            s,
            "  verify  {} samples, arg-max differs on {}",
            self.verified_samples, self.argmax_mismatches
        );
        if let Some(b) = &self.binary {
            s.push_str(&b.to_text());
        }
        if !self.mst.is_empty() {
            s.push_str(&mst::to_text(&self.mst));
        }
        s.push_str(&float_ops::to_text(
            self.depthwise.as_ref(),
            self.max_pool.as_ref(),
            self.linear.as_ref(),
            self.conv.as_ref(),
        ));
        let _ = writeln!(s, "  time    {:.2} s", self.seconds);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_what_nnef_strings_cannot_carry() {
        assert!(nnef_string_ok("plain 字 text"));
        assert!(!nnef_string_ok("it's"));
        assert_eq!(percent_encode("a'b\n字%"), "a%27b%0A字%25");
    }

    #[test]
    fn a_property_with_quotes_and_newlines_is_written_and_reloads() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1usize, 2])).unwrap();
        model.select_output_outlets(&[x]).unwrap();
        model
            .properties
            .insert("dict".into(), rctensor0("'\n\"\\".to_string()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.nnef.tgz");
        write_graph(&model, std::fs::File::create(&path).unwrap(), true).unwrap();
        let loaded = Model::load(&path, &LoadOptions { threads: Some(1) }).unwrap();
        assert_eq!(loaded.inputs().len(), 1);
    }
}
