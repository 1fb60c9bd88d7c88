//! Kestrel's own operators and the NNEF dialect that names them.
//!
//! The binary operators work on bit-packed data ([`packing`] describes the layout): one file
//! per operator, each with its NNEF loader and dumper, registered in [`registry`]:
//! [`bitpack`] (float → bits), [`bconv`] (binary conv2d), [`bdense`] (binary dense),
//! [`bmaxpool`] (max-pool on bits). Conv and dense share the fused [`output_stage`]; their inner
//! loop is the XOR-popcount kernel of `crate::kernels`, chosen once at load by CPU detection.
//! [`int8_linear`] is an int8 1×1 convolution / dense layer with its quantization fused (the
//! converter's `--int8` output), on the int8 kernels of `crate::kernels::int8`.
//! [`depthwise`] is a float depthwise convolution with its activation fused, on the kernels
//! of `crate::kernels::depthwise` (the converter puts it where tract's depthwise conv stood);
//! [`int8_depthwise`] is its int8 twin (i8 or f32 in, f32 or i8 out), on
//! `crate::kernels::depthwise8`.
//! [`linear`] is a float 1×1 convolution / dense layer with its bias and ReLU / clip fused,
//! on `crate::kernels::linear` (the converter puts it where tract's `EinSum` stood);
//! [`conv`] a float k×k convolution on the same kernels, its columns built by
//! [`im2col`] a few output rows at a time.
//! [`reference`] holds the float semantics they must equal, for tests and the converter.

pub mod bconv;
pub mod bdense;
pub mod bitpack;
pub mod bmaxpool;
pub mod channels_first;
pub mod conv;
pub mod depthwise;
pub(crate) mod im2col;
pub mod int8_conv;
pub mod int8_depthwise;
pub mod int8_linear;
pub mod linear;
pub mod maxpool;
pub(crate) mod mst;
pub mod output_stage;
pub mod packing;
pub mod parallel;
pub mod reference;
pub mod registry;
pub(crate) mod scratch;
pub(crate) mod window;
