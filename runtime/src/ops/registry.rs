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
    nnef
}

/// One [`nnef`] for the whole process, built on first use. Building the framework parses
/// tract's NNEF standard library and registers every primitive; readers that load more than
/// one graph (the runtime's loaders, the fuzz targets) share this one.
pub fn shared() -> &'static Nnef {
    static SHARED: OnceLock<Nnef> = OnceLock::new();
    SHARED.get_or_init(nnef)
}
