//! Puts Kestrel's `kestrel_max_pool_2x2` where tract's float `MaxPool` over 2×2 windows at
//! stride 2 stood (channels first, no padding, the output `⌊H/2⌋ × ⌊W/2⌋`; see
//! `kestrel_runtime::ops::maxpool`). Any other pooling stays tract's; the reason is logged and
//! reported.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

use crate::float_ops::PlacementReport;
use kestrel_runtime::ops::maxpool::MaxPool2x2;

/// Replaces every float max-pool of `model` (a decluttered graph) the op can take.
pub fn place(model: TypedModel) -> TractResult<(TypedModel, PlacementReport)> {
    let mut report = PlacementReport::default();
    let mut model = model;
    let pools: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|&n| model.node(n).op_is::<MaxPool>())
        .collect();
    if pools.is_empty() {
        return Ok((model, report));
    }
    for n in pools {
        let node = model.node(n);
        match check(&model, node) {
            Ok(()) => {
                let patch = TypedModelPatch::replace_single_op(
                    &model,
                    node,
                    &[node.inputs[0]],
                    MaxPool2x2,
                )?;
                patch.apply(&mut model)?;
                report.replaced += 1;
            }
            Err(why) => report.keep("max-pool", &node.name, why),
        }
    }
    Ok((model.into_compact()?, report))
}

/// Whether `kestrel_max_pool_2x2` computes what `node` (a tract `MaxPool`) does.
fn check(model: &TypedModel, node: &TypedNode) -> Result<(), String> {
    let op = node.op_as::<MaxPool>().ok_or("not a MaxPool")?;
    let spec = &op.pool_spec;
    if op.with_index_outputs.is_some() {
        return Err("it also outputs indices".into());
    }
    if !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW) {
        return Err(format!(
            "data format {:?} (the op is channels first)",
            spec.data_format
        ));
    }
    if spec.kernel_shape.as_slice() != [2, 2] || spec.strides().as_ref() != [2, 2] {
        return Err(format!(
            "kernel {:?} stride {:?} (the op is 2×2 at stride 2)",
            spec.kernel_shape,
            spec.strides()
        ));
    }
    if spec.dilations().iter().any(|&d| d != 1) {
        return Err(format!("dilation {:?}", spec.dilations()));
    }
    let input = model
        .outlet_fact(node.inputs[0])
        .map_err(|e| e.to_string())?;
    if input.datum_type != f32::datum_type() {
        return Err(format!("{:?} input (the op is f32)", input.datum_type));
    }
    let shape = input
        .shape
        .as_concrete()
        .filter(|s| s.len() == 3 || s.len() == 4)
        .ok_or_else(|| {
            format!(
                "input shape {:?} is not a concrete rank 3 or 4",
                input.shape
            )
        })?;
    let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if spec
        .computed_padding(&[h, w])
        .iter()
        .any(|p| p.pad_before != 0 || p.pad_after != 0)
    {
        return Err("padding (the op has none)".into());
    }
    let out = node.outputs[0].fact.shape.as_concrete();
    let want: Vec<usize> = shape[..shape.len() - 2]
        .iter()
        .copied()
        .chain([h / 2, w / 2])
        .collect();
    if out != Some(want.as_slice()) {
        return Err(format!(
            "output {:?} is not ⌊H/2⌋ × ⌊W/2⌋ (ceil mode on an odd size)",
            node.outputs[0].fact.shape
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_first as run;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    fn graph(kernel: usize, stride: usize, padding: PaddingSpec, h: usize) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 3, h, 10])).unwrap();
        let spec = PoolSpec::new(
            DataFormat::NCHW,
            tvec![kernel, kernel],
            padding,
            None,
            Some(tvec![stride, stride]),
            3,
            3,
        );
        let y = m.wire_node("pool", MaxPool::new(spec, None), &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        m.into_decluttered().unwrap()
    }

    #[test]
    fn replaces_2x2_stride_2_pools_with_the_same_result() {
        for h in [8, 9] {
            let m = graph(2, 2, PaddingSpec::Valid, h);
            let (placed, report) = place(m.clone()).unwrap();
            assert_eq!(report.replaced, 1, "{h}: {report:?}");
            assert!(placed.nodes.iter().any(|n| n.op_is::<MaxPool2x2>()));
            let x = random_tensor(DatumType::F32, &[1, 3, h, 10], 4).unwrap();
            assert_eq!(run(&m, &x), run(&placed, &x), "h = {h}");
        }
    }

    #[test]
    fn keeps_other_pools_with_a_reason() {
        let cases = [
            graph(3, 2, PaddingSpec::Valid, 8),
            graph(2, 1, PaddingSpec::Valid, 8),
            graph(
                2,
                2,
                PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![0, 0], true),
                9,
            ),
        ];
        for m in cases {
            let (placed, report) = place(m).unwrap();
            assert_eq!(report.replaced, 0, "{report:?}");
            assert_eq!(report.kept.len(), 1, "{report:?}");
            assert!(!placed.nodes.iter().any(|n| n.op_is::<MaxPool2x2>()));
        }
    }
}
