//! Kestrel's own float ops in place of tract's, in float and int8 graphs alike: the depthwise
//! convolution ([`crate::depthwise`]) and the 2×2 stride-2 max-pool ([`crate::maxpool`]). Each
//! is on by default; `--depthwise tract` and `--max-pool tract` keep tract's, for comparisons.

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::TractErrorContext;

use crate::{depthwise, maxpool};

/// Whose op a converted graph runs for one kind of layer (`--depthwise`, `--max-pool`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpChoice {
    /// Kestrel's op wherever it applies.
    #[default]
    Kestrel,
    /// tract's own (for comparisons).
    Tract,
}

/// What one pass did: how many layers now run Kestrel's op, and which stay tract's and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlacementReport {
    /// Layers now run by Kestrel's op.
    pub replaced: usize,
    /// Layers left to tract: (name, why).
    pub kept: Vec<(String, String)>,
}

impl PlacementReport {
    /// The summary lines, `  KIND  N of M run by OP` then one per kept layer (none when the
    /// graph has no such layer).
    pub fn to_text(&self, kind: &str, op: &str) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if self.replaced + self.kept.len() > 0 {
            let all = self.replaced + self.kept.len();
            let _ = writeln!(s, "  {kind}  {} of {all} run by {op}", self.replaced);
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
}

/// Runs the passes asked for on `graph` (decluttered).
pub fn place(
    graph: TypedModel,
    depthwise: OpChoice,
    max_pool: OpChoice,
) -> TractResult<(TypedModel, FloatOpsReport)> {
    let mut report = FloatOpsReport::default();
    let mut graph = graph;
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
    Ok((graph, report))
}

/// The summary lines of both passes (see [`PlacementReport::to_text`]).
pub fn to_text(depthwise: Option<&PlacementReport>, max_pool: Option<&PlacementReport>) -> String {
    let mut s = String::new();
    if let Some(d) = depthwise {
        s.push_str(&d.to_text("depthwise", "kestrel_depthwise"));
    }
    if let Some(m) = max_pool {
        s.push_str(&m.to_text("max-pool", "kestrel_max_pool_2x2"));
    }
    s
}
