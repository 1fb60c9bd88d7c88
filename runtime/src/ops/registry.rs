//! The NNEF dialect Kestrel reads and writes: tract-core's extensions, tract's ONNX op
//! library (ops such as `Resize` that have no NNEF standard form) and Kestrel's own registry.
//!
//! Writer (`kestrel-quantize`) and reader (`kestrel`) both take their [`Nnef`] from
//! [`nnef`], so a graph the converter writes is one the runtime can read.

use std::sync::OnceLock;

use tract_nnef::framework::Nnef;
use tract_nnef::internal::*;
use tract_onnx_opl::WithOnnx;

/// Name of Kestrel's NNEF extension registry (`extension kestrel` in a graph's header).
pub const REGISTRY_NAME: &str = "kestrel";

/// Kestrel's own NNEF extension registry: the loaders and dumpers of Kestrel's operators.
pub fn kestrel_registry() -> Registry {
    let mut registry = Registry::new(REGISTRY_NAME);
    super::bitpack::register(&mut registry);
    super::bconv::register(&mut registry);
    super::bdense::register(&mut registry);
    super::bmaxpool::register(&mut registry);
    register_plain::<super::channels_first::ChannelsFirst>(&mut registry);
    super::conv::register(&mut registry);
    super::depthwise::register(&mut registry);
    super::int8_conv::register(&mut registry);
    super::int8_depthwise::register(&mut registry);
    super::int8_linear::register(&mut registry);
    super::linear::register(&mut registry);
    register_plain::<super::maxpool::MaxPool2x2>(&mut registry);
    registry
}

/// The NNEF framework with every registry Kestrel graphs may use (tract-core's extensions are
/// on by default in tract-nnef's `nnef()`).
///
/// Extended identifiers (`i"any name"`) are on, so node and output names survive the round
/// trip exactly (ONNX names such as `save_infer_model/scale_0.tmp_1` are not NNEF
/// identifiers): `kestrel infer` keys its outputs by the source model's names.
pub fn nnef() -> Nnef {
    crate::tract_knobs::apply();
    let mut nnef = tract_nnef::nnef()
        .with_onnx()
        .with_registry(kestrel_registry());
    nnef.allow_extended_identifier_syntax(true);
    guard_primitives(&mut nnef);
    nnef
}

/// Wraps tract primitives whose loaders trust their arguments where a forged graph can make
/// them loop or allocate without bound (found by the `nnef_parse` fuzz target).
fn guard_primitives(nnef: &mut Nnef) {
    for registry in &mut nnef.registries {
        if let Some(primitive) = registry.primitives.get_mut(&Identifier::from("transpose")) {
            primitive.to_tract = checked_transpose;
        }
    }
}

/// `transpose(input, axes)` with `axes` checked to be a permutation first: tract's
/// `perm_to_ops` loops, growing a vector until memory runs out, on `axes = [1, 1]`.
fn checked_transpose(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let axes: TVec<usize> = invocation.named_arg_as(builder, "axes")?;
    let mut seen = vec![false; axes.len()];
    for &axis in &axes {
        ensure!(
            axis < axes.len() && !std::mem::replace(&mut seen[axis], true),
            "transpose: axes {axes:?} are not a permutation of 0..{}",
            axes.len()
        );
    }
    tract_nnef::ops::nnef::deser::transpose(builder, invocation)
}

/// An op of one f32 tensor input and one f32 output and no attribute: its NNEF form is
/// `NAME(input)`.
pub(crate) trait PlainOp: TypedOp + Default {
    /// The NNEF name.
    const NNEF: &'static str;
}

/// Registers the loader and the dumper of a [`PlainOp`].
pub(crate) fn register_plain<O: PlainOp>(registry: &mut Registry) {
    registry.register_primitive(
        O::NNEF,
        &[TypeName::Scalar.tensor().named("input")],
        &[("output", TypeName::Scalar.tensor())],
        load_plain::<O>,
    );
    registry.register_dumper(dump_plain::<O>);
}

fn load_plain<O: PlainOp>(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    builder.wire(O::default(), &[input])
}

fn dump_plain<O: PlainOp>(
    ast: &mut IntoAst,
    node: &TypedNode,
    _op: &O,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(tract_nnef::ser::invocation(O::NNEF, &[input], &[])))
}

/// One [`nnef`] for the whole process, built on first use. Building the framework parses
/// tract's NNEF standard library and registers every primitive; readers that load more than
/// one graph (the runtime's loaders, the fuzz targets) share this one.
pub fn shared() -> &'static Nnef {
    static SHARED: OnceLock<Nnef> = OnceLock::new();
    SHARED.get_or_init(nnef)
}

#[cfg(test)]
mod tests {
    use crate::Model;

    fn archive(graph: &str) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(graph.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "graph.nnef", graph.as_bytes())
            .unwrap();
        tar.into_inner().unwrap()
    }

    fn transposed(axes: &str) -> String {
        format!(
            "version 1.0;\n\ngraph g(x) -> (y) {{\n  x = external(shape = [2, 3, 4]);\n  \
             y = transpose(x, axes = {axes});\n}}\n"
        )
    }

    #[test]
    fn transpose_takes_permutations_and_refuses_the_rest() {
        let ok = Model::parse_bytes("ok", &archive(&transposed("[2, 0, 1]"))).unwrap();
        let y = ok.outlet_fact(ok.outputs[0]).unwrap();
        assert_eq!(y.shape.as_concrete().unwrap(), &[4, 2, 3]);
        for bad in ["[1, 1, 0]", "[0, 1, 3]"] {
            // Used to loop until memory ran out.
            let err = Model::parse_bytes("bad.nnef.tar", &archive(&transposed(bad))).unwrap_err();
            let err = crate::error::Chain(&err).to_string();
            assert!(
                err.contains("bad.nnef.tar") && err.contains("not a permutation"),
                "{err}"
            );
        }
    }
}
