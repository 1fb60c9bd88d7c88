//! `kestrel infer`: run a model over arrays. An array whose leading dimension N exceeds the
//! model's batch of 1 is run slice by slice and the outputs stacked, so one `.npy` can hold a
//! whole evaluation set.

use tract_nnef::internal::*;

use crate::error::RuntimeError;
use crate::io::npy::NamedTensor;
use crate::model::{describe, Model};

/// Pairs the arrays of a file with the model's inputs: by name when every input name is
/// present, otherwise by position (a single array feeds a single-input model whatever its
/// key). Returns the tensors in input order.
pub fn match_inputs(model: &Model, arrays: Vec<NamedTensor>) -> Result<Vec<Tensor>, RuntimeError> {
    let specs = model.inputs();
    if arrays.len() != specs.len() {
        return Err(RuntimeError::InputCount {
            expected: specs.len(),
            given: arrays.len(),
        });
    }
    let by_name = specs
        .iter()
        .all(|s| arrays.iter().any(|(n, _)| n == &s.name));
    if by_name && specs.len() > 1 {
        let mut arrays = arrays;
        return Ok(specs
            .iter()
            .map(|s| {
                let pos = arrays
                    .iter()
                    .position(|(n, _)| n == &s.name)
                    .expect("checked");
                arrays.swap_remove(pos).1
            })
            .collect());
    }
    Ok(arrays.into_iter().map(|(_, t)| t).collect())
}

/// Runs `model` on `inputs` (one tensor per model input, each of the input's exact shape, or
/// with a leading dimension N where the model's is 1). Returns one stacked tensor per output.
pub fn infer(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
    let specs = model.inputs();
    if inputs.len() != specs.len() {
        return Err(RuntimeError::InputCount {
            expected: specs.len(),
            given: inputs.len(),
        });
    }
    let mut batch: Option<usize> = None;
    for (index, (spec, t)) in specs.iter().zip(inputs).enumerate() {
        let mismatch = || RuntimeError::InputMismatch {
            index,
            name: spec.name.clone(),
            expected: describe(spec.datum_type, &spec.shape),
            given: describe(t.datum_type(), t.shape()),
        };
        if t.datum_type() != spec.datum_type {
            return Err(mismatch());
        }
        let n = if t.shape() == spec.shape.as_slice() {
            1
        } else if spec.shape.first() == Some(&1)
            && t.rank() == spec.shape.len()
            && t.shape()[1..] == spec.shape[1..]
        {
            t.shape()[0]
        } else {
            return Err(mismatch());
        };
        match batch {
            Some(b) if b != n => {
                return Err(RuntimeError::Run(
                    format!(
                        "inputs disagree on the number of samples ({b} vs {n} for '{}')",
                        spec.name
                    )
                    .into(),
                ))
            }
            _ => batch = Some(n),
        }
    }
    let n = batch.unwrap_or(1);
    if n == 0 {
        return Err(RuntimeError::Run(
            "inputs hold no sample (leading dimension 0)".into(),
        ));
    }
    let mut session = model.session()?;
    let mut per_output: Vec<Vec<TValue>> = vec![Vec::with_capacity(n); model.outputs().len()];
    for i in 0..n {
        let slice: TVec<TValue> = inputs
            .iter()
            .zip(specs)
            .map(|(t, spec)| {
                if t.shape() == spec.shape.as_slice() {
                    Ok(t.clone().into_tvalue())
                } else {
                    t.slice(0, i, i + 1).map(IntoTValue::into_tvalue)
                }
            })
            .collect::<TractResult<_>>()
            .map_err(|e| RuntimeError::Run(e.into()))?;
        let outputs = session.run(slice)?;
        for (acc, o) in per_output.iter_mut().zip(outputs) {
            acc.push(o);
        }
        log::debug!("sample {}/{n} done", i + 1);
    }
    per_output
        .into_iter()
        .map(|outs| {
            if outs.len() == 1 {
                Ok(outs[0].clone().into_tensor())
            } else {
                Tensor::stack_tensors(0, &outs)
                    .map_err(|e| RuntimeError::Run(e.context("stacking outputs").into()))
            }
        })
        .collect()
}
