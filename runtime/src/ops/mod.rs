//! Kestrel's own operators and the NNEF dialect that names them.
//!
//! One file per operator (the binary operators: bitpack, binary conv2d, binary dense, binary
//! max-pool and their MST variants), each with its NNEF dumper and loader registered in
//! [`registry`]. Their inner loops live in `crate::kernels`, chosen once at load by CPU detection.

pub mod registry;
