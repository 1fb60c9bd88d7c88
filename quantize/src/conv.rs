//! Puts Kestrel's float convolution (`kestrel_conv`: columns a few output rows at a time,
//! then the `kestrel_linear` kernels) where tract's float convolution with one group stood,
//! with the batch-norm and the ReLU or ReLU6-style clip after it folded in
//! (`kestrel_runtime::ops::conv`). MobileNet's stem and a detector's 3×3 heads and necks are
//! such layers.
//!
//! A convolution the op cannot take (channels last, grouped, dilated, a stride above 2, a
//! kernel above 7×7, padding as large as the kernel, a symbolic plane size, an int8 one)
//! stays tract's; the reason is logged and reported. Depthwise convolutions are the
//! depthwise pass's; 1×1 convolutions tract has already turned into products are the linear
//! pass's.
//!
//! Then [`fuse_bitpacks`]: a convolution whose only reader is `kestrel_bitpack` (a binary
//! network's float stem, its batch-norm folded) writes the packed sign bits itself.

use tract_onnx::prelude::*;

use crate::depthwise::window_geometry;
use crate::float_ops::{all_f32, PlacementReport};
use crate::int8::layers::{find_layers, Layer, LayerOp};
use kestrel_runtime::ops::bitpack::Bitpack;
use kestrel_runtime::ops::conv::Conv as KestrelConv;
use kestrel_runtime::ops::depthwise::Fused;
use kestrel_runtime::ops::output_stage::OutputKind;

/// Replaces every float one-group convolution of `model` (decluttered) the op can take.
pub fn place(model: TypedModel) -> TractResult<(TypedModel, PlacementReport)> {
    let mut model = model;
    let mut report = PlacementReport::default();
    let mut seen = std::collections::HashSet::new();
    // Found again after each replacement: a layer reading one replaced before it must see
    // the new op's outlet.
    loop {
        let next = find_layers(&model)?
            .into_iter()
            .find(|l| matches!(&l.op, LayerOp::Conv(c) if c.group == 1) && !seen.contains(&l.name));
        let Some(layer) = next else {
            break;
        };
        seen.insert(layer.name.clone());
        let op = match op_for(&model, &layer) {
            Ok(op) => op,
            Err(why) => {
                report.keep("convolution", &layer.name, why);
                continue;
            }
        };
        let mut patch = TypedModelPatch::new(format!("kestrel_conv for {}", layer.name));
        let x = patch.tap_model(&model, layer.input)?;
        let y = patch.wire_node(format!("{}.conv", layer.name), op, &[x])?[0];
        patch.shunt_outside(&model, layer.output, y)?;
        patch.apply(&mut model)?;
        model = model.into_compact()?;
        report.replaced += 1;
    }
    Ok((model, report))
}

/// Makes every `kestrel_conv` of `model` whose only reader is a `kestrel_bitpack` (and whose
/// float output is not a graph output) write the packed bits itself, `output = "packed"`:
/// the same bits, without the float feature map between the two ops. Returns the model and
/// how many convolutions now pack.
pub fn fuse_bitpacks(model: TypedModel) -> TractResult<(TypedModel, usize)> {
    let mut model = model;
    let mut fused = 0;
    loop {
        let outputs = model.output_outlets()?.to_vec();
        let pair = model.nodes.iter().find_map(|n| {
            let conv = n.op_as::<KestrelConv>()?;
            let out = OutletId::new(n.id, 0);
            let readers = &n.outputs[0].successors;
            let fits = conv.output == OutputKind::Float
                && readers.len() == 1
                && !outputs.contains(&out)
                && model.outlet_fact(n.inputs[0]).is_ok_and(|f| f.rank() == 4);
            let next = model.node(readers.first()?.node);
            (fits && next.op_is::<Bitpack>()).then(|| (n.id, next.id, conv.clone()))
        });
        let Some((conv_id, pack_id, conv)) = pair else {
            break;
        };
        let (name, input) = (
            model.node(conv_id).name.clone(),
            model.node(conv_id).inputs[0],
        );
        let mut patch = TypedModelPatch::new(format!("packed output for {name}"));
        let x = patch.tap_model(&model, input)?;
        let op = conv.with_packed_output();
        let y = patch.wire_node(format!("{name}.packed"), op, &[x])?[0];
        patch.shunt_outside(&model, OutletId::new(pack_id, 0), y)?;
        patch.apply(&mut model)?;
        model = model.into_compact()?;
        fused += 1;
        log::info!("convolution '{name}' writes packed bits for the binary layer after it");
    }
    Ok((model, fused))
}

/// The op replacing `layer`, or why it cannot.
fn op_for(model: &TypedModel, layer: &Layer) -> Result<KestrelConv, String> {
    let LayerOp::Conv(conv) = &layer.op else {
        return Err("not a convolution".into());
    };
    if conv.q_params.is_some() {
        return Err("an int8 convolution".into());
    }
    let head = model.node(layer.nodes[0]);
    if !all_f32(model, head, &head.inputs) {
        return Err("not f32".into());
    }
    let g = window_geometry(model, layer)?;
    let fused = match layer.relu {
        None => Fused::None,
        Some(None) => Fused::Relu,
        Some(Some(high)) => Fused::Clip(high),
    };
    KestrelConv::new(
        Arc::new(layer.weights.clone()),
        Arc::new(tensor1(&layer.bias)),
        g.stride,
        g.padding,
        fused,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// `x [1, 3, 15, 14]` → 3×3 convolution 3 → 10 (stride 2, padding 1, `group`, `format`)
    /// with a bias → batch-norm `Mul`, `Add` → ReLU6 clip, as tract declutters it.
    fn graph(format: DataFormat, group: usize, dilation: usize) -> (TypedModel, [usize; 4]) {
        graph_with(format, group, dilation, true)
    }

    /// [`graph`], the ReLU6 clip only with `clip`.
    fn graph_with(
        format: DataFormat,
        group: usize,
        dilation: usize,
        clip: bool,
    ) -> (TypedModel, [usize; 4]) {
        let (c, o) = (if group > 1 { 4 } else { 3 }, 10);
        let shape = if format == DataFormat::NCHW {
            [1, c, 15, 14]
        } else {
            [1, 15, 14, c]
        };
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(shape)).unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: format,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
                dilations: Some(tvec![dilation, dilation]),
                strides: Some(tvec![2, 2]),
                input_channels: c,
                output_channels: o,
            },
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        let w = random_tensor(DatumType::F32, &[o, c / group, 3, 3], 1).unwrap();
        let w = m.add_const("w", w).unwrap();
        let b = m
            .add_const("b", random_tensor(DatumType::F32, &[o], 4).unwrap())
            .unwrap();
        let mut y = m.wire_node("conv", conv, &[x, w, b]).unwrap()[0];
        let c_shape = if format == DataFormat::NCHW {
            [1, o, 1, 1]
        } else {
            [1, 1, 1, o]
        };
        for (name, op, seed) in [("bn.mul", math::mul(), 2), ("bn.add", math::add(), 3)] {
            let k = random_tensor(DatumType::F32, &c_shape, seed).unwrap();
            let k = m.add_const(format!("{name}.k"), k).unwrap();
            y = m.wire_node(name, op, &[y, k]).unwrap()[0];
        }
        let clips = [("relu", math::max(), 0f32), ("six", math::min(), 6.0)];
        for (name, op, v) in clips.into_iter().filter(|_| clip) {
            let k = m
                .add_const(name, tensor0(v).broadcast_into_rank(4).unwrap())
                .unwrap();
            y = m.wire_node(format!("{name}.op"), op, &[y, k]).unwrap()[0];
        }
        m.select_output_outlets(&[y]).unwrap();
        (m.into_decluttered().unwrap(), shape)
    }

    fn run(m: &TypedModel, shape: [usize; 4]) -> Tensor {
        let x = random_tensor(DatumType::F32, &shape, 9).unwrap();
        let plan = m.clone().into_runnable().unwrap();
        plan.run(tvec!(x.into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    fn ops(m: &TypedModel) -> Vec<String> {
        m.nodes.iter().map(|n| n.op.name().to_string()).collect()
    }

    #[test]
    fn a_stem_convolution_becomes_one_op_with_its_batch_norm_and_clip() {
        let (source, shape) = graph(DataFormat::NCHW, 1, 1);
        let (placed, report) = place(source.clone()).unwrap();
        assert_eq!((report.replaced, report.kept.len()), (1, 0), "{report:?}");
        let names = ops(&placed);
        assert_eq!(names, ["Source", "KestrelConv"], "{names:?}");
        run(&source, shape)
            .close_enough(&run(&placed, shape), Approximation::Approximate)
            .unwrap();
    }

    /// A convolution read only by `kestrel_bitpack` becomes one op writing the same bits; one
    /// whose float output is also a graph output keeps the float op and the bit-pack.
    #[test]
    fn a_convolution_read_only_by_a_bitpack_writes_the_bits() {
        let (source, shape) = graph_with(DataFormat::NCHW, 1, 1, false);
        let (mut placed, _) = place(source).unwrap();
        let y = placed.output_outlets().unwrap()[0];
        let bits = placed.wire_node("pack", Bitpack, &[y]).unwrap()[0];
        placed.select_output_outlets(&[bits]).unwrap();
        let want = run(&placed, shape);
        let words = want
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<u64>()
            .unwrap()
            .to_vec();
        assert!(words.iter().any(|&w| w != 0) && words.iter().any(|&w| w != 0x3ff));
        let (fused, n) = fuse_bitpacks(placed.clone()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(ops(&fused), ["Source", "KestrelConv"]);
        assert_eq!(run(&fused, shape), want);
        placed.select_output_outlets(&[y, bits]).unwrap();
        let (kept, n) = fuse_bitpacks(placed).unwrap();
        assert_eq!(n, 0);
        assert_eq!(ops(&kept), ["Source", "KestrelConv", "KestrelBitpack"]);
    }

    #[test]
    fn what_the_op_cannot_take_stays_tracts_and_says_why() {
        for (format, group, dilation, why) in [
            (DataFormat::NHWC, 1, 1, "channels first"),
            (DataFormat::NCHW, 1, 2, "dilation"),
        ] {
            let (source, _) = graph(format, group, dilation);
            let (placed, report) = place(source).unwrap();
            assert_eq!(report.replaced, 0, "{report:?}");
            assert_eq!(report.kept.len(), 1, "{report:?}");
            assert!(report.kept[0].1.contains(why), "{report:?}");
            assert!(!ops(&placed).iter().any(|n| n == "KestrelConv"));
        }
        // A grouped convolution is not this pass's to take or to report.
        let (source, _) = graph(DataFormat::NCHW, 2, 1);
        let (placed, report) = place(source).unwrap();
        assert_eq!((report.replaced, report.kept.len()), (0, 0), "{report:?}");
        assert!(!ops(&placed).iter().any(|n| n == "KestrelConv"));
    }
}
