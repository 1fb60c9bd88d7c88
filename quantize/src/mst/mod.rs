//! MST channel ordering of binary layers (MST-compression, Vo et al., ICCV 2023), offline half.
//!
//! For every binary conv/dense op of a converted graph, [`tree::build`] computes a
//! depth-bounded minimum spanning tree over the output channels whose edge cost is the runtime
//! MST kernel's cost (differing *words*, see `kestrel_runtime::kernels::binary::mst`), with a virtual
//! root standing for "compute from scratch". The per-layer report gives the Hamming-distance sum
//! vs dense bits, the word-ops the MST kernel executes vs dense, the bits the MST form stores vs
//! dense (compression), the tree depth, and the kernel the cost model picks: `mst` only where
//! the predicted cost is at most [`MstOptions::max_ratio`] of dense, so MST never makes a layer
//! slower. `--mst-dot DIR` writes each layer's tree as Graphviz DOT.
//!
//! Binary dense and binary conv layers carry the tree (`mst_parents` in NNEF, executed by the
//! runtime's bit-exact MST kernels: the row form for dense, the lane form for conv) where the
//! cost model picks it; elsewhere the tree is only reported and the layer runs dense (the
//! report's `kernel` says which runs). The two forms have their own cost models
//! ([`MstOptions::cost`], [`MstOptions::conv_cost`]; constants and their measurement in
//! [`tree::CostModel`]).

pub mod tree;

use std::path::{Path, PathBuf};

use kestrel_runtime::ops::bconv::BinaryConv2d;
use kestrel_runtime::ops::bdense::BinaryDense;
use serde::Serialize;
use tract_onnx::tract_core::internal::*;

pub use tree::{build, CostModel, MstTree};

/// Options of the MST analysis.
#[derive(Debug, Clone)]
pub struct MstOptions {
    /// Depth bound of the tree (children of the virtual root have depth 1).
    pub max_depth: usize,
    /// Edge costs of binary dense layers (the runtime's row form).
    pub cost: CostModel,
    /// Edge costs of binary conv layers (the runtime's lane form).
    pub conv_cost: CostModel,
    /// MST is chosen only when its predicted cost is at most this fraction of dense.
    pub max_ratio: f64,
    /// What a binary conv's MST op costs on top of its kernel model, relative to the dense
    /// op: the dense conv applies its output stage in the kernel's tile epilogue, the MST op
    /// must keep every channel's counts for its children and applies the stage afterwards
    /// (`store_counts`). Measured on the mnist-bnn layers (`cargo bench --bench mst_kernels`,
    /// layer group): trees of predicted 0.9–1.0× ran 1.12–1.32× the fused dense op; 1.3 keeps
    /// MST off where it would lose. Re-checked on the word-tied models (`train.py --mst-tie`):
    /// predicted 0.62 ran 0.83× (conv2) and 1.08× (conv3), so 0.62 × 1.3 = 0.80 stays dense;
    /// predicted 0.45 and 0.29 ran 0.98–1.00× and 0.99–1.00× (kernels alone 0.30–0.59×).
    pub conv_op_penalty: f64,
    /// Where to write one DOT file per layer.
    pub dot_dir: Option<PathBuf>,
}

impl Default for MstOptions {
    fn default() -> Self {
        MstOptions {
            max_depth: 16,
            cost: CostModel::rows(),
            conv_cost: CostModel::lanes(),
            max_ratio: 0.8,
            conv_op_penalty: 1.3,
            dot_dir: None,
        }
    }
}

/// One binary layer's tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MstLayerReport {
    /// Node name.
    pub name: String,
    /// Output channels.
    pub channels: usize,
    /// Packed words per channel.
    pub words: usize,
    /// Channels computed from scratch.
    pub roots: usize,
    /// Deepest channel.
    pub depth: usize,
    /// Σ Hamming distance child–parent in the chosen (word-cost) tree, bits.
    pub hamming_bits: usize,
    /// The paper's bit-level MST weight (+ one root row), bits: what MST-compression stores.
    pub bit_mst_bits: usize,
    /// Real weight bits of the layer (channels × taps × input channels, no word padding).
    pub dense_bits: usize,
    /// Words the MST kernel reads per input row.
    pub word_ops: usize,
    /// Words the dense kernel reads per input row.
    pub dense_word_ops: usize,
    /// Bits of the MST form (roots in full, children as differing words + 16-bit indices);
    /// the compression is `dense_word_ops × 64 / stored_bits`.
    pub stored_bits: usize,
    /// Predicted MST cost / dense cost.
    pub predicted_ratio: f64,
    /// What the cost model picks (`mst` or `dense`).
    pub choice: String,
    /// What the converted graph executes.
    pub kernel: String,
}

/// Analyses every binary conv/dense node of `model` and installs the tree in the layers where
/// the cost model picks MST.
pub fn apply(model: &mut TypedModel, options: &MstOptions) -> TractResult<Vec<MstLayerReport>> {
    let mut out = vec![];
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let (weights, channels, bits, cost, penalty) =
            if let Some(op) = node.op_as::<BinaryConv2d>() {
                (
                    op.weights.clone(),
                    op.geometry.c_out,
                    op.geometry.taps_bits(),
                    options.conv_cost,
                    options.conv_op_penalty,
                )
            } else if let Some(op) = node.op_as::<BinaryDense>() {
                (op.weights.clone(), op.n_out(), op.k, options.cost, 1.0)
            } else {
                continue;
            };
        let view = weights.try_as_plain_ram()?;
        let w = view.as_slice::<u64>()?;
        let words = w.len() / channels;
        let t = build(w, words, options.max_depth, cost);
        if let Some(dir) = &options.dot_dir {
            write_dot(dir, &node.name, &t.to_dot(&node.name, w, words))?;
        }
        let ratio = t.cost / t.dense_cost * penalty;
        let choice = if ratio <= options.max_ratio {
            "mst"
        } else {
            "dense"
        };
        let mut kernel = "dense";
        if choice == "mst" {
            let op: Box<dyn TypedOp> = if let Some(op) = node.op_as::<BinaryDense>() {
                Box::new(op.clone().with_mst(t.parents.clone())?)
            } else if let Some(op) = node.op_as::<BinaryConv2d>() {
                Box::new(op.clone().with_mst(t.parents.clone())?)
            } else {
                unreachable!("only binary conv and dense nodes get here")
            };
            model.node_mut(id).op = op;
            kernel = "mst";
        }
        let node = &model.nodes()[id];
        out.push(MstLayerReport {
            name: node.name.clone(),
            channels,
            words,
            roots: t.roots(),
            depth: t.max_depth(),
            hamming_bits: t.hamming_bits,
            bit_mst_bits: t.bit_mst_bits - words * 64 + bits,
            // Real weight bits (word padding excluded), as the paper counts.
            dense_bits: channels * bits,
            word_ops: t.word_ops,
            dense_word_ops: channels * words,
            stored_bits: t.stored_bits,
            predicted_ratio: ratio,
            choice: choice.into(),
            kernel: kernel.into(),
        });
    }
    Ok(out)
}

fn write_dot(dir: &Path, name: &str, dot: &str) -> TractResult<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{file}.dot"));
    std::fs::write(&path, dot).with_context(|| format!("writing {}", path.display()))
}

/// The per-layer table.
pub fn to_text(layers: &[MstLayerReport]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("  mst:\n");
    let _ = writeln!(
        s,
        "    {:<24} {:>8} {:>6} {:>6} {:>16} {:>16} {:>14} {:>7} {:>6}",
        "layer",
        "channels",
        "roots",
        "depth",
        "bit-MST/dense b",
        "word-ops/dense",
        "compression",
        "predict",
        "choice"
    );
    for l in layers {
        let _ = writeln!(
            s,
            "    {:<24} {:>8} {:>6} {:>6} {:>16} {:>16} {:>13.2}x {:>7.2} {:>6}",
            l.name,
            l.channels,
            l.roots,
            l.depth,
            format!("{}/{}", l.bit_mst_bits, l.dense_bits),
            format!("{}/{}", l.word_ops, l.dense_word_ops),
            (l.dense_word_ops * 64) as f64 / l.stored_bits.max(1) as f64,
            l.predicted_ratio,
            l.choice
        );
    }
    s
}
