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
use kestrel_runtime::io::atomic::AtomicFile;
use kestrel_runtime::model::{describe, LoadOptions, Model, TensorSpec};
use kestrel_runtime::ops::registry;
use kestrel_runtime::random::random_inputs;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::error::{chain, ConvertError};
use crate::load::{load_onnx, InputShape};
use crate::summary::{graph_stats, GraphStats};
use crate::verify::{compare, OutputDiff};

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
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            input_shapes: vec![],
            tolerance: 1e-4,
            verify_runs: 2,
            seed: 2026,
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
        reason: chain(&e),
    };
    let decluttered = typed
        .clone()
        .into_decluttered()
        .map_err(|e| graph_err("declutter", e))?;
    let after = graph_stats(&decluttered);

    let mut file = AtomicFile::create(output)?;
    write_graph(&decluttered, file.file_mut(), gzip).map_err(|e| graph_err("write NNEF", e))?;

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
    let verification = verify(&reference, &reloaded, options).map_err(|e| verify_err(chain(&e)))?;
    for d in &verification {
        // NaN differences fail too.
        if d.relative.is_nan() || d.relative > options.tolerance {
            return Err(verify_err(format!(
                "output '{}' differs by {:.3e} relative (max abs diff {:.3e}, tolerance {:.0e})",
                d.name, d.relative, d.max_abs_diff, options.tolerance
            )));
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
        verification,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `true` for a gzipped tar (`.tgz`, `.gz`), `false` for a plain `.tar`.
fn output_kind(output: &Path) -> Result<bool, ConvertError> {
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

fn verify(
    reference: &Model,
    reloaded: &Model,
    options: &ConvertOptions,
) -> TractResult<Vec<OutputDiff>> {
    let mut worst: Vec<OutputDiff> = vec![];
    for run in 0..options.verify_runs.max(1) {
        let inputs = random_inputs(reference.inputs(), options.seed + 1000 * run as u64)?;
        let want = reference.run(inputs.clone())?;
        let got = reloaded.run(inputs)?;
        for (ix, (w, g)) in want.iter().zip(got.iter()).enumerate() {
            let d = compare(&reference.outputs()[ix].name, w, g)?;
            match worst.get_mut(ix) {
                None => worst.push(d),
                Some(prev) => {
                    let agrees = prev.argmax_agrees && d.argmax_agrees;
                    if d.relative > prev.relative {
                        *prev = d;
                    }
                    prev.argmax_agrees = agrees;
                }
            }
        }
    }
    Ok(worst)
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
                "  verify  {}: max abs diff {:.3e}, relative {:.3e}, argmax {}",
                d.name,
                d.max_abs_diff,
                d.relative,
                if d.argmax_agrees { "agrees" } else { "DIFFERS" }
            );
        }
        let _ = writeln!(s, "  time    {:.2} s", self.seconds);
        s
    }
}
