//! Binary neural network conversion: binarised ONNX layers become Kestrel's binary ops.
//!
//! Recognised (on tract's decluttered graph, see [`patterns`]):
//! - activation binarisers: ONNX `Sign`; QONNX `BipolarQuant(x, scale)` (domains
//!   `onnx.brevitas`, `qonnx.custom_op.general`, `finn.custom_op.general`, imported by
//!   [`bipolar`]); `Where(x >= 0, c, -c)`; a `Pad` with zeros after one is folded by tract into
//!   the next conv's zero padding;
//! - binary weights: `Sign(W)` / `BipolarQuant(W, s)` on a constant (tract folds them into
//!   constants) or any constant that is ±α_c per output channel — α_c, the activation scale and
//!   the batch-norm / `Mul` / `Add` after the layer fold into the output stage;
//! - layers: `Conv` (2-D, groups 1) and `Gemm` / `MatMul` (tract's `EinSum`, `Transpose`d
//!   weights included) whose input is a binarised value; `MaxPool` of binarised values becomes
//!   a bitwise AND on packed bits.
//!
//! Everything else — the first layer (its input is not binary), a classifier with float
//! weights, layers with zeros among their weights — stays float, exactly as in the source.
//! [`plan`] decides, [`rewrite`] builds the new graph, [`report`] tells what happened.
//!
//! ## The value 0
//! Kestrel binarises `x ≥ 0` to +1 (so does `BipolarQuant`), but ONNX `Sign(0) = 0`. The
//! conversion is exact wherever no exact zero reaches a `Sign`; the planner warns, naming the
//! layer, where one can: a `Sign` of a graph input or of a ReLU/Clip/Max output, or a binary
//! layer whose output stage is exactly 0 for some integer dot product.

pub mod bipolar;
pub mod patterns;
pub mod plan;
pub mod report;
pub mod rewrite;

use tract_onnx::prelude::*;

pub use report::{BinaryReport, LayerReport};

/// Converts the binary layers of a decluttered model; returns the new graph and the report.
pub fn binarize(model: &TypedModel) -> TractResult<(TypedModel, BinaryReport)> {
    let plan = plan::plan(model)?;
    for w in &plan.warnings {
        log::warn!("{w}");
    }
    let report = report::report(model, &plan)?;
    let converted = rewrite::rewrite(model, &plan)?;
    Ok((converted, report))
}
