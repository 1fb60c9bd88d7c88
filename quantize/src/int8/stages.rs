//! The stages of [`super::convert_int8`], one function each, in the order it calls them:
//! [`load`] the source graph and its samples; [`calibrate`] it (with and without cross-layer
//! equalization); [`choose`] every layer's precision on the tuning samples; [`land`] that
//! choice on the held-out samples (more 16-bit inputs, then more float layers, until the
//! floor holds); [`write_verified`] the graph (reloaded by the runtime and compared before the
//! rename); and [`report`] what was done.

use std::collections::HashMap;
use std::path::Path;

use kestrel_runtime::error::Chain;
use kestrel_runtime::io::atomic::AtomicFile;
use kestrel_runtime::model::{LoadOptions, Model};
use tract_onnx::prelude::*;

use super::equalize::PairReport;
use super::evaluate::{Evaluation, Evaluator};
use super::layers::{Layer, LayerOp};
use super::mixed::{self, Precision, Step};
use super::report;
use super::rewrite::{build, RewriteOptions};
use super::{agreement, equalize, roundtrip};
use super::{correct_with, default_keep, evaluator, prepare, search, spread, trial, widenable};
use super::{
    ActivationBits, EqualizationReport, Int8Error, Int8Options, Int8Report, KeepFloat, LayerReport,
    OutputReport, Prepared, MIN_SAMPLES, TUNING_SAMPLES,
};
use crate::convert::write_graph;
use crate::float_ops::FloatOpsReport;
use crate::load::load_onnx;
use crate::verify::compare;

/// Per-channel output shifts of bias correction, by layer.
type Shift = HashMap<String, Vec<f32>>;

/// A tract failure at `stage` of converting `path`.
pub(super) fn graph_err(path: &Path, stage: &'static str) -> impl Fn(TractError) -> Int8Error {
    let path = path.to_path_buf();
    move |e: TractError| Int8Error::Graph {
        path: path.clone(),
        stage,
        source: e.into(),
    }
}

/// The decluttered source graph, its samples (the last `held` held out), and the box check
/// of a detector's sidecar.
pub(super) struct Loaded {
    pub float: TypedModel,
    samples: Vec<Tensor>,
    held: usize,
    pub boxes: Option<agreement::BoxCheck>,
}

impl Loaded {
    /// The calibration samples.
    pub fn calib(&self) -> &[Tensor] {
        &self.samples[..self.samples.len() - self.held]
    }

    /// The held-out samples.
    pub fn held(&self) -> &[Tensor] {
        &self.samples[self.samples.len() - self.held..]
    }

    /// At most [`TUNING_SAMPLES`] calibration samples, evenly spread.
    pub fn tuning(&self) -> Vec<Tensor> {
        spread(self.calib(), TUNING_SAMPLES)
    }
}

/// Stage 1: loads and declutters `source`, reads the samples (checked against its one
/// input) and splits off the held-out ones, and reads the sidecar's box check.
pub(super) fn load(source: &Path, options: &Int8Options) -> Result<Loaded, Int8Error> {
    let err = |stage| graph_err(source, stage);
    let typed = load_onnx(source, &options.input_shapes)?;
    let kestrel_ops = !options.tract_ops
        && (options.depthwise == crate::float_ops::OpChoice::Kestrel
            || options.linear == crate::float_ops::OpChoice::Kestrel);
    let float = crate::load::decluttered(typed, kestrel_ops).map_err(err("declutter"))?;
    if float.inputs.len() != 1 {
        return Err(Int8Error::Graph {
            path: source.to_path_buf(),
            stage: "calibration",
            source: format!(
                "{} inputs: int8 calibration supports one",
                float.inputs.len()
            )
            .into(),
        });
    }
    let input_fact = float
        .outlet_fact(float.inputs[0])
        .map_err(err("input"))?
        .clone();
    let samples = super::load_samples(&options.calib, &input_fact)?;
    if samples.len() < MIN_SAMPLES {
        return Err(Int8Error::Calibration {
            path: options.calib.path.clone(),
            reason: format!(
                "{} sample(s): at least {MIN_SAMPLES} are needed, some to calibrate and some \
                 held out to measure the int8 graph on",
                samples.len()
            ),
        });
    }
    let held =
        ((samples.len() as f64 * options.holdout).round() as usize).clamp(1, samples.len() - 1);
    let boxes =
        match &options.sidecar {
            Some(path) => Some(agreement::BoxCheck::new(path, &float).map_err(|reason| {
                Int8Error::Sidecar {
                    path: path.clone(),
                    reason,
                }
            })?),
            None => None,
        };
    Ok(Loaded {
        float,
        samples,
        held,
        boxes,
    })
}

/// The calibrated variants of the graph, the one to try first first (equalized or not), and
/// the pairs equalization balanced.
pub(super) struct Variants {
    prepared: Vec<Prepared>,
    pairs: Vec<PairReport>,
}

/// Stage 2: finds and calibrates the layers, and with `--equalize` (the default) also an
/// equalized copy: equalization is tried first where it raises the end-to-end SQNR on the
/// tuning samples (both variants with their own calibration and bias correction). The other
/// variant stays at hand: a plan with 16-bit inputs may prefer it.
pub(super) fn calibrate(
    source: &Path,
    loaded: &Loaded,
    tuning: &[Tensor],
    options: &Int8Options,
) -> Result<(Variants, EqualizationReport), Int8Error> {
    let err = |stage| graph_err(source, stage);
    let (float, calib, boxes) = (&loaded.float, loaded.calib(), &loaded.boxes);
    let plain = prepare(float.clone(), false, calib, options).map_err(err("calibration"))?;
    if plain.layers.is_empty() {
        return Err(Int8Error::Graph {
            path: source.to_path_buf(),
            stage: "layer analysis",
            source: "no Conv, Gemm or MatMul with constant weights to quantize".into(),
        });
    }
    let mut equalization = EqualizationReport::default();
    if !options.equalize {
        equalization.decision = "off (--no-equalize)".into();
        let variants = Variants {
            prepared: vec![plain],
            pairs: vec![],
        };
        return Ok((variants, equalization));
    }
    let keep = default_keep(&plain, options);
    let quantized = |l: &super::Layer| !keep.contains(&l.name);
    let Some(eq) = equalize::equalize(float, &plain.layers, &quantized, calib, options.threads)
        .map_err(err("equalization"))?
    else {
        equalization.decision = "no layer pair to equalize".into();
        let variants = Variants {
            prepared: vec![plain],
            pairs: vec![],
        };
        return Ok((variants, equalization));
    };
    let with = prepare(eq.graph, true, calib, options).map_err(err("calibration"))?;
    let a = trial(&plain, float, tuning, options, boxes).map_err(err("trial"))?;
    let b = trial(&with, float, tuning, options, boxes).map_err(err("trial"))?;
    equalization.sqnr_without_db = Some(a);
    equalization.sqnr_with_db = Some(b);
    let on = b > a;
    equalization.decision = format!(
        "{} ({} pairs): end-to-end SQNR on the tuning samples {b:.1} dB with, {a:.1} dB \
         without",
        if on { "kept" } else { "dropped" },
        eq.pairs.len()
    );
    log::info!("equalization {}", equalization.decision);
    let variants = Variants {
        prepared: if on {
            vec![with, plain]
        } else {
            vec![plain, with]
        },
        pairs: eq.pairs,
    };
    Ok((variants, equalization))
}

/// The variant chosen, its evaluator on the tuning samples, and the precision searched there
/// with its bias shifts.
pub(super) struct Choice<'a> {
    pub prepared: &'a Prepared,
    pub tune: Evaluator<'a>,
    pub plan: Precision,
    pub shift: Shift,
}

/// Stage 3: searches every layer's precision on the tuning samples (default float layers,
/// 16-bit inputs, more float layers) for the first variant. The equalization trial ran with
/// 8-bit inputs; with 16-bit ones the other variant may do better (a 16-bit input needs no
/// balanced ranges, and the balancing moved range into the weights): then it is searched
/// again and taken where it does. `equalization` says which was taken.
pub(super) fn choose<'a>(
    source: &Path,
    loaded: &'a Loaded,
    (variants, equalization): (&'a Variants, &mut EqualizationReport),
    tuning: &'a [Tensor],
    kinds: &'a [agreement::OutputKind],
    options: &Int8Options,
) -> Result<Choice<'a>, Int8Error> {
    let err = |stage| graph_err(source, stage);
    let make = |p, samples| evaluator(p, &loaded.float, samples, kinds, &loaded.boxes, options);
    let first = &variants.prepared[0];
    let tune = make(first, tuning).map_err(err("float reference"))?;
    let (plan, shift) = search(first, &tune, options).map_err(err("search"))?;
    let choice = match variants.prepared.get(1) {
        Some(alt) if !plan.wide.is_empty() => {
            let worst = tune
                .evaluate(&plan, &shift, false)
                .map_err(err("evaluation"))?
                .worst_sqnr();
            let tune_alt = make(alt, tuning).map_err(err("float reference"))?;
            let shift_alt = correct_with(&tune_alt, &alt.layers, &plan, options)
                .map_err(err("bias correction"))?;
            let worst_alt = tune_alt
                .evaluate(&plan, &shift_alt, false)
                .map_err(err("evaluation"))?
                .worst_sqnr();
            if worst_alt > worst {
                let (plan, shift) = search(alt, &tune_alt, options).map_err(err("search"))?;
                let (taken, other) = if alt.equalized {
                    ("kept", ["with", "without"])
                } else {
                    ("dropped", ["without", "with"])
                };
                equalization.decision = format!(
                    "{taken} with the 16-bit inputs: end-to-end SQNR on the tuning samples \
                     {worst_alt:.1} dB {}, {worst:.1} dB {} (with 8-bit inputs: {})",
                    other[0], other[1], equalization.decision
                );
                log::info!("equalization {}", equalization.decision);
                Choice {
                    prepared: alt,
                    tune: tune_alt,
                    plan,
                    shift,
                }
            } else {
                Choice {
                    prepared: first,
                    tune,
                    plan,
                    shift,
                }
            }
        }
        _ => Choice {
            prepared: first,
            tune,
            plan,
            shift,
        },
    };
    if choice.prepared.equalized {
        equalization.applied = true;
        equalization.pairs = variants.pairs.clone();
    }
    Ok(choice)
}

/// The precision that holds on the held-out samples, measured there.
pub(super) struct Landed {
    pub plan: Precision,
    pub shift: Shift,
    pub eval: Evaluation,
    /// Each layer's isolated (SQNR, cosine) on the held-out samples.
    pub isolated: Vec<(f64, f64)>,
    /// What the landing added, in words (none when the choice held as it was).
    pub landing: Option<String>,
}

/// Stage 4: measures the choice on the held-out samples (`report_on`) and, where it misses
/// the floor there, steps more layers back, worst first, doubling: 16-bit inputs first
/// (`--activation-bits auto`), then float layers (`--keep-float auto`, all of them in the
/// worst case: `auto` always lands).
pub(super) fn land(
    source: &Path,
    choice: &Choice<'_>,
    report_on: &Evaluator<'_>,
    options: &Int8Options,
) -> Result<Landed, Int8Error> {
    let err = |stage| graph_err(source, stage);
    let (prepared, tune) = (choice.prepared, &choice.tune);
    let layers = &prepared.layers;
    let (mut plan, mut shift) = (choice.plan.clone(), choice.shift.clone());
    let widenable = widenable(prepared, &plan.float, options);
    let isolated = report_on
        .isolated(&shift)
        .map_err(err("isolated evaluation"))?;
    let mut eval = report_on
        .evaluate(&plan, &shift, true)
        .map_err(err("evaluation"))?;
    let mut landing = vec![];
    let mut steps = vec![];
    if options.activation_bits == ActivationBits::Auto {
        steps.push(Step::Widen);
    }
    if matches!(
        options.keep_float,
        KeepFloat::Auto(_) | KeepFloat::Fewest | KeepFloat::Floor
    ) {
        steps.push(Step::Float);
    }
    for step in steps {
        if eval.worst_sqnr() >= options.sqnr_floor_db {
            break;
        }
        let ranked: Vec<String> = match step {
            Step::Widen => mixed::ranking(layers, &isolated, &plan.float)
                .into_iter()
                .filter(|n| widenable.contains(n) && !plan.wide.contains(n))
                .collect(),
            Step::Float => {
                let sensitivity = tune
                    .sensitivity(&plan, &shift)
                    .map_err(err("sensitivity"))?;
                mixed::ranking_by_sensitivity(&sensitivity, &plan.float)
            }
        };
        let mut k = 1;
        let mut taken = 0;
        while eval.worst_sqnr() < options.sqnr_floor_db && taken < ranked.len() {
            let take = (taken + k).min(ranked.len());
            plan = step.apply(&plan, &ranked[taken..take]);
            taken = take;
            shift = correct_with(tune, layers, &plan, options).map_err(err("bias correction"))?;
            eval = report_on
                .evaluate(&plan, &shift, true)
                .map_err(err("evaluation"))?;
            log::info!(
                "held-out check, {step:?}: {taken} more layers -> {:.1} dB",
                eval.worst_sqnr()
            );
            k *= 2;
        }
        if taken == 0 {
            continue;
        }
        let int8_left = layers
            .iter()
            .filter(|l| !plan.float.contains(&l.name))
            .count();
        landing.push(match step {
            Step::Widen => format!(
                "16-bit inputs for {taken} more layers to reach the floor on the held-out samples"
            ),
            Step::Float if int8_left == 0 => {
                "every layer is float: no layer could stay int8 above the floor on the held-out \
                 samples, so this graph is the float model"
                    .to_string()
            }
            Step::Float => format!(
                "more layers kept float to reach the floor on the held-out samples ({int8_left} \
                 int8 left)"
            ),
        });
    }
    Ok(Landed {
        plan,
        shift,
        eval,
        isolated,
        landing: (!landing.is_empty()).then(|| landing.join("; ")),
    })
}

/// What [`write_verified`] wrote.
pub(super) struct Written {
    pub bytes: u64,
    /// The largest relative difference between the graph built and the one reloaded.
    pub reload_diff: f64,
    pub float_ops: FloatOpsReport,
    /// The layers of the graph written that quantize their input per channel.
    pub per_channel_inputs: std::collections::HashSet<String>,
}

/// Stage 5: builds the int8 graph of `landed`'s plan, places Kestrel's float ops, writes it to
/// a temporary file beside `output`, reloads it with the runtime's loader and compares it with
/// the graph built on the held-out samples (naming the first node that diverges), and only
/// then renames it into place.
pub(super) fn write_verified(
    (source, output): (&Path, &Path),
    prepared: &Prepared,
    landed: &Landed,
    held: &[Tensor],
    options: &Int8Options,
) -> Result<Written, Int8Error> {
    let err = |stage| graph_err(source, stage);
    let gzip = crate::convert::output_kind(output)?;
    let mut rewrite = RewriteOptions::new(options.per_channel, landed.plan.float.clone());
    rewrite.wide = landed.plan.wide.clone();
    rewrite.rounded = prepared.rounded.clone();
    rewrite.channel_act = prepared.channel_act.clone();
    rewrite.bias_shift = landed.shift.clone();
    rewrite.requantize_all = options.requantize_all;
    rewrite.tract_ops = options.tract_ops;
    let mut int8 = build(&prepared.float, &prepared.layers, &prepared.act, &rewrite)
        .map_err(err("rewrite"))?;
    let (model, float_ops) = crate::float_ops::place(
        int8.model,
        crate::float_ops::Choices {
            depthwise: options.depthwise,
            max_pool: options.max_pool,
            linear: options.linear,
        },
    )
    .map_err(err("float ops rewrite"))?;
    let (mut model, mut float_ops) = (model, float_ops);
    if options.depthwise_f16 {
        let names = super::half_safe(prepared);
        let n = crate::depthwise::set_half_precision(&mut model, &names)
            .map_err(err("float ops rewrite"))?;
        if let Some(r) = float_ops.depthwise.as_mut() {
            r.half_precision = n;
        }
    }
    let codes_out = crate::depthwise::write_codes(&mut model).map_err(err("float ops rewrite"))?;
    if let Some(r) = float_ops.depthwise.as_mut() {
        r.codes_out = codes_out;
    }
    int8.model = model;
    let mut file = AtomicFile::create(output).map_err(crate::ConvertError::from)?;
    write_graph(&int8.model, file.file_mut(), gzip).map_err(|e| Int8Error::Graph {
        path: output.to_path_buf(),
        stage: "NNEF serialisation (a quantized op tract cannot write?)",
        source: e.into(),
    })?;
    let verify_err = |reason: String| {
        Int8Error::from(crate::ConvertError::Verify {
            path: output.to_path_buf(),
            reason,
        })
    };
    let one = LoadOptions { threads: Some(1) };
    let reloaded = Model::load(file.temp_path(), &one).map_err(|e| {
        verify_err(format!(
            "the runtime cannot load the written graph: {}",
            Chain(&e)
        ))
    })?;
    let in_memory = Model::from_typed("int8", int8.model.clone(), &one, std::time::Instant::now())
        .map_err(|e| verify_err(Chain(&e).to_string()))?;
    let mut reload_diff = 0f64;
    for sample in held {
        let a = in_memory
            .run(tvec!(sample.clone().into_tvalue()))
            .map_err(|e| verify_err(Chain(&e).to_string()))?;
        let b = reloaded
            .run(tvec!(sample.clone().into_tvalue()))
            .map_err(|e| verify_err(Chain(&e).to_string()))?;
        for (ix, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            let d = compare(&in_memory.outputs()[ix].name, x, y)
                .map_err(|e| verify_err(format!("{e:#}")))?;
            reload_diff = reload_diff.max(if d.relative.is_nan() {
                f64::INFINITY
            } else {
                d.relative
            });
        }
    }
    if reload_diff > 1e-4 {
        let culprit = std::fs::read(file.temp_path())
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(Model::parse_bytes("int8", &bytes)?))
            .and_then(|parsed| {
                let sample = held
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("no held-out sample"))?;
                roundtrip::first_divergence(&int8.model, &parsed, sample, 1e-4)
            });
        let culprit = match culprit {
            Ok(Some(what)) => format!("; first divergence: {what}"),
            Ok(None) => "; every node agrees before optimisation, so the optimised graphs differ"
                .to_string(),
            Err(e) => {
                log::warn!("could not locate the divergence: {e:#}");
                String::new()
            }
        };
        return Err(verify_err(format!(
            "the reloaded int8 graph differs from the one built by {reload_diff:.3e} \
             (relative){culprit}"
        )));
    }
    let bytes = file.file_mut().metadata().map(|m| m.len()).unwrap_or(0);
    file.commit().map_err(crate::ConvertError::from)?;
    Ok(Written {
        bytes,
        reload_diff,
        float_ops,
        per_channel_inputs: int8.per_channel_inputs,
    })
}

/// Stage 6: the report of the conversion.
pub(super) fn report(
    (source, output): (&Path, &Path),
    loaded: &Loaded,
    (prepared, equalization): (&Prepared, EqualizationReport),
    landed: Landed,
    written: Written,
    (forced, seconds): (bool, f64),
    options: &Int8Options,
) -> Int8Report {
    let (layers, act, keep) = (&prepared.layers, &prepared.act, &landed.plan.float);
    let (plan, eval) = (&landed.plan, &landed.eval);
    // The per-channel parameters of the layers the graph written quantizes per channel.
    let channel_input = |l: &Layer| {
        prepared
            .channel_act
            .get(&l.input)
            .filter(|_| written.per_channel_inputs.contains(&l.name))
    };
    let layer_reports = layers
        .iter()
        .zip(&eval.layers)
        .zip(&landed.isolated)
        .map(|((l, (sqnr, cos)), (iso, _))| LayerReport {
            name: l.name.clone(),
            op: match l.op {
                LayerOp::Conv(_) => "Conv".into(),
                LayerOp::EinSum(_) => "EinSum".into(),
            },
            channels: l.channels(),
            int8: !keep.contains(&l.name),
            input_bits: if keep.contains(&l.name) {
                None
            } else if plan.wide.contains(&l.name) {
                Some(16)
            } else {
                Some(8)
            },
            relu_fused: l.relu.is_some(),
            sqnr_db: *sqnr,
            isolated_sqnr_db: *iso,
            bias_corrected: landed.shift.contains_key(&l.name) && !keep.contains(&l.name),
            cosine: *cos,
            input: act[&l.input],
            input_channels: channel_input(l).cloned(),
            output: act[&l.output],
        })
        .collect();
    let mut kept: Vec<String> = layers
        .iter()
        .filter(|l| keep.contains(&l.name))
        .map(|l| l.name.clone())
        .collect();
    kept.dedup();
    let wide_inputs: Vec<String> = layers
        .iter()
        .filter(|l| plan.wide.contains(&l.name) && !keep.contains(&l.name))
        .map(|l| l.name.clone())
        .collect();
    Int8Report {
        source: source.to_path_buf(),
        output: output.to_path_buf(),
        source_file_bytes: std::fs::metadata(source).map(|m| m.len()).unwrap_or(0),
        output_file_bytes: written.bytes,
        method: options.method,
        per_channel: options.per_channel,
        bias_correction: options.bias_correction,
        equalization,
        calibration_samples: loaded.calib().len(),
        heldout_samples: loaded.held,
        layers: layer_reports,
        outputs: eval
            .outputs
            .iter()
            .map(|o| OutputReport {
                name: o.name.clone(),
                activation: o.activation.clone(),
                sqnr_db: o.sqnr_db,
                cosine: o.cosine,
                top_k_agreement: o.top_k,
                max_score_diff: o.max_score_diff,
            })
            .collect(),
        top1_agreement: eval.top1,
        detections: eval.boxes.as_ref().map(|b| report::DetectionReport {
            sidecar: options.sidecar.clone().unwrap_or_default(),
            reference_boxes: b.reference,
            int8_boxes: b.int8,
            matched: b.matched,
            precision: b.precision(),
            recall: b.recall(),
        }),
        landing: landed.landing,
        sqnr_floor_db: options.sqnr_floor_db,
        forced,
        kept_float: kept,
        wide_inputs,
        reload_relative_diff: written.reload_diff,
        depthwise: written.float_ops.depthwise,
        max_pool: written.float_ops.max_pool,
        linear: written.float_ops.linear,
        conv: written.float_ops.conv,
        seconds,
    }
}
