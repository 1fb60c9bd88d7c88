//! Kestrel's compute kernels, one folder per family, each with a portable kernel (the
//! reference the others are tested against bit for bit) and per-ISA ones chosen once at
//! start-up ([`pick_by_name`]'s rule, `KESTREL_KERNELS` to force one):
//!
//! * [`binary`]: XOR-popcount products of the binary conv and dense ops (and their fused
//!   output stage, MST children);
//! * [`int8`]: the int8 1×1 convolution / dense product (8-bit and 16-bit inputs);
//! * [`depthwise`]: the float depthwise convolution;
//! * [`depthwise8`]: the int8 depthwise convolution;
//! * [`linear`]: the float 1×1 convolution / dense product;
//! * [`bitpack`]: packing signs into bits;
//! * [`pool`]: the 2×2 max-pool;
//! * [`layout`]: channels-last to channels-first copies (data movement, the same bits on
//!   every kernel: no choice to force).

pub mod binary;
pub mod bitpack;
mod choice;
pub mod depthwise;
pub mod depthwise8;
pub mod int8;
pub mod layout;
pub mod linear;
pub mod pool;

pub(crate) use choice::select_from;
pub use choice::{known_kernel_name, pick_by_name};
