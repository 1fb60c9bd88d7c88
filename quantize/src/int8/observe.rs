//! Running a graph on sample inputs while watching intermediate tensors.
//!
//! tract keeps a graph's designated outputs through optimisation, so watching a tensor means
//! making it an output: [`Watcher`] plans a copy of the graph whose outputs are the model's
//! own outputs followed by the watched outlets.

use std::time::Instant;

use kestrel_runtime::model::{LoadOptions, Model};
use tract_onnx::prelude::*;

/// A planned graph that returns watched tensors.
pub struct Watcher {
    model: Model,
    outputs: usize,
}

impl Watcher {
    /// Plans `model` (1 thread per run: calibration runs are short) with `watched` outlets
    /// appended to its outputs.
    pub fn new(model: &TypedModel, watched: &[OutletId], threads: usize) -> TractResult<Watcher> {
        let mut m = model.clone();
        let outputs = m.outputs.len();
        let mut all = m.outputs.clone();
        all.extend_from_slice(watched);
        m.select_output_outlets(&all)?;
        let model = Model::from_typed(
            "int8-watch",
            m,
            &LoadOptions {
                threads: Some(threads),
            },
            Instant::now(),
        )?;
        Ok(Watcher { model, outputs })
    }

    /// Runs one sample: (model outputs, watched tensors as f32).
    pub fn run(&self, input: &Tensor) -> TractResult<(Vec<Tensor>, Vec<Tensor>)> {
        let result = self.model.run(tvec!(input.clone().into_tvalue()))?;
        let mut all = result
            .into_iter()
            .map(|t| Ok(t.into_tensor().cast_to::<f32>()?.into_owned()))
            .collect::<TractResult<Vec<Tensor>>>()?;
        let watched = all.split_off(self.outputs);
        Ok((all, watched))
    }
}

/// The f32 values of a tensor.
pub fn values(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}
