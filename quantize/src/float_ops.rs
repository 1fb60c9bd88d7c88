//! Kestrel's own float ops in place of tract's, in float and int8 graphs alike: the depthwise
//! convolution ([`crate::depthwise`]), the 2×2 stride-2 max-pool ([`crate::maxpool`]), the
//! 1×1 convolution / dense layer ([`crate::linear`]) and the k×k convolution with one group
//! ([`crate::conv`], on the same product kernels as the 1×1 layers). Each is on by default;
//! `--depthwise tract`, `--max-pool tract` and `--linear tract` (1×1 and k×k alike) keep
//! tract's, for comparisons.
//! Before them, the batch-norm left after 1×1 convolutions folds into their weights
//! ([`crate::batch_norm`]).

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::TractErrorContext;

use crate::{batch_norm, conv, depthwise, linear, maxpool};

/// Whose op a converted graph runs for one kind of layer (`--depthwise`, `--max-pool`,
/// `--linear`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpChoice {
    /// Kestrel's op wherever it applies.
    #[default]
    Kestrel,
    /// tract's own (for comparisons).
    Tract,
}

/// Whether `node`'s `inputs` and its first output are all f32: what the float passes take.
pub(crate) fn all_f32(model: &TypedModel, node: &TypedNode, inputs: &[OutletId]) -> bool {
    inputs.iter().all(|&o| {
        model
            .outlet_fact(o)
            .is_ok_and(|f| f.datum_type == f32::datum_type())
    }) && node.outputs[0].fact.datum_type == f32::datum_type()
}

/// What one pass did: how many layers now run Kestrel's op, and which stay tract's and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlacementReport {
    /// Layers now run by Kestrel's op.
    pub replaced: usize,
    /// Layers left to tract: (name, why).
    pub kept: Vec<(String, String)>,
    /// Activations before a replaced layer moved into its op (the depthwise op's input
    /// HardSwish).
    pub fused_inputs: usize,
    /// Replaced layers that write their binarised output as packed bits (a convolution whose
    /// only reader was `kestrel_bitpack`).
    pub packed_outputs: usize,
    /// Replaced layers allowed binary16 arithmetic (`precision = "f16"`: int8 graphs'
    /// depthwise layers, run in binary16 on cores with FEAT_FP16).
    pub half_precision: usize,
    /// Replaced layers writing the int8 codes of the int8 layers reading them (no f32 tensor
    /// in between).
    pub codes_out: usize,
}

impl PlacementReport {
    /// The summary lines, `  KIND  N of M run by OP` then one per kept layer (none when the
    /// graph has no such layer).
    pub fn to_text(&self, kind: &str, op: &str) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if self.replaced + self.kept.len() > 0 {
            let all = self.replaced + self.kept.len();
            let _ = write!(s, "  {kind}  {} of {all} run by {op}", self.replaced);
            if self.fused_inputs > 0 {
                let _ = write!(
                    s,
                    ", {} with the HardSwish before it fused",
                    self.fused_inputs
                );
            }
            if self.half_precision > 0 {
                let _ = write!(
                    s,
                    ", {} in binary16 on FEAT_FP16 cores (A76, A78)",
                    self.half_precision
                );
            }
            if self.codes_out > 0 {
                let _ = write!(
                    s,
                    ", {} writing int8 codes for the int8 layer after it",
                    self.codes_out
                );
            }
            if self.packed_outputs > 0 {
                let _ = write!(
                    s,
                    ", {} writing packed bits for the binary layer after it",
                    self.packed_outputs
                );
            }
            s.push('\n');
        }
        for (name, why) in &self.kept {
            let _ = writeln!(s, "    tract's: {name}: {why}");
        }
        s
    }

    /// A layer left to tract, logged.
    pub(crate) fn keep(&mut self, kind: &str, name: &str, why: String) {
        log::info!("{kind} '{name}' stays tract's: {why}");
        self.kept.push((name.to_string(), why));
    }
}

/// What the passes did (`None`: the pass was not asked for).
#[derive(Debug, Clone, Default)]
pub struct FloatOpsReport {
    /// The depthwise pass.
    pub depthwise: Option<PlacementReport>,
    /// The max-pool pass.
    pub max_pool: Option<PlacementReport>,
    /// The 1×1 convolution / dense pass.
    pub linear: Option<PlacementReport>,
    /// The k×k convolution pass (with `--linear kestrel`).
    pub conv: Option<PlacementReport>,
    /// Layers whose batch-norm was folded into their weights ([`crate::batch_norm`]).
    pub batch_norm_folded: usize,
}

/// Whose op each kind of layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choices {
    /// Depthwise convolutions (`--depthwise`).
    pub depthwise: OpChoice,
    /// 2×2 stride-2 max-pools (`--max-pool`).
    pub max_pool: OpChoice,
    /// Float 1×1 convolutions and dense layers, and k×k convolutions with one group
    /// (`--linear`).
    pub linear: OpChoice,
}

/// Runs the passes asked for on `graph` (decluttered): batch-norm folding, then the
/// depthwise, max-pool, linear and convolution passes.
pub fn place(graph: TypedModel, choices: Choices) -> TractResult<(TypedModel, FloatOpsReport)> {
    let Choices {
        depthwise,
        max_pool,
        linear: linear_choice,
    } = choices;
    let mut report = FloatOpsReport::default();
    let (mut graph, folded) = batch_norm::fold(graph).context("batch-norm folding")?;
    report.batch_norm_folded = folded;
    if folded > 0 {
        log::info!("batch-norm folded into the weights of {folded} 1×1 layers");
    }
    if depthwise == OpChoice::Kestrel {
        let (g, r) = depthwise::place(graph).context("depthwise rewrite")?;
        graph = g;
        report.depthwise = Some(r);
    }
    if max_pool == OpChoice::Kestrel {
        let (g, r) = maxpool::place(graph).context("max-pool rewrite")?;
        graph = g;
        report.max_pool = Some(r);
    }
    if linear_choice == OpChoice::Kestrel {
        let (g, r) = linear::place(graph).context("linear rewrite")?;
        graph = g;
        report.linear = Some(r);
        let (g, mut r) = conv::place(graph).context("convolution rewrite")?;
        let (g, packed) = conv::fuse_bitpacks(g).context("packed convolution output")?;
        r.packed_outputs = packed;
        graph = g;
        report.conv = Some(r);
    }
    Ok((graph, report))
}

/// The summary lines of the passes (see [`PlacementReport::to_text`]).
pub fn to_text(
    depthwise: Option<&PlacementReport>,
    max_pool: Option<&PlacementReport>,
    linear: Option<&PlacementReport>,
    conv: Option<&PlacementReport>,
) -> String {
    let mut s = String::new();
    if let Some(d) = depthwise {
        s.push_str(&d.to_text("depthwise", "kestrel_depthwise"));
    }
    if let Some(m) = max_pool {
        s.push_str(&m.to_text("max-pool", "kestrel_max_pool_2x2"));
    }
    if let Some(l) = linear {
        s.push_str(&l.to_text("1×1 / dense", "kestrel_linear"));
    }
    if let Some(c) = conv {
        s.push_str(&c.to_text("k×k convolution", "kestrel_conv"));
    }
    s
}
