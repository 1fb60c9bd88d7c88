//! # kestrel-quantize
//!
//! The offline half of Kestrel: turns trained ONNX models into compact tract graphs (NNEF
//! tar) that the on-device runtime (`kestrel-runtime`) loads without an ONNX parser.
//!
//! ```text
//! model.onnx ──load (tract-onnx)──► input facts fixed ──declutter──► typed graph
//!     ──write──► temp file ──reload with the runtime's loader, compare outputs──► rename
//! ```
//!
//! Map: [`load`] reads ONNX and fixes input shapes, [`convert`] runs the whole flow,
//! [`verify`] compares the written graph with the source, [`summary`] counts ops and
//! parameter bytes, [`channels_first`] turns a channels-last input's first convolutions
//! channels first. Binary-layer recognition, MST reordering and int8 calibration plug in
//! between declutter and write (their own modules, per their issues).

pub mod batch_norm;
pub mod binary;
pub mod channels_first;
pub mod conv;
pub mod convert;
pub mod depthwise;
pub mod error;
pub mod float_ops;
pub mod hardswish;
pub mod int8;
pub mod linear;
pub mod load;
pub mod maxpool;
pub mod mst;
pub mod summary;
#[cfg(test)]
mod testing;
pub mod verify;

pub use convert::{convert, ConvertOptions, ConvertReport};
pub use error::ConvertError;
