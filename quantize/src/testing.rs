//! Helpers shared by the graph passes' unit tests.

use tract_onnx::prelude::*;

/// The first output of `model` (optimized by nothing: the graph as the pass left it) run on
/// `x`.
pub fn run_first(model: &TypedModel, x: &Tensor) -> Tensor {
    model
        .clone()
        .into_runnable()
        .unwrap()
        .run(tvec!(x.clone().into_tvalue()))
        .unwrap()
        .remove(0)
        .into_tensor()
}
