//! # kestrel-runtime
//!
//! Kestrel's lean on-device runtime. It loads graphs written by `kestrel-quantize`
//! (NNEF, as `.nnef.tgz`, `.nnef.tar` or a directory) with `tract-nnef` + `tract-core`
//! and Kestrel's own NNEF extensions, and runs them — on arrays (`kestrel infer`),
//! in a benchmark loop (`kestrel bench`) or on camera frames (`kestrel run`).
//!
//! What this crate is not: an ONNX importer. Nothing here may depend on `tract-onnx`,
//! `tract-hir` or a protobuf crate; CI checks `cargo tree -p kestrel-runtime -e normal`.
//! Conversion lives in `kestrel-quantize`, which depends on this crate, never the reverse.
//!
//! Map:
//! - [`load_limits`]: what an untrusted model file may make the loader allocate.
//! - [`model`]: load a graph, its input/output facts, sessions that run it, thread count.
//! - [`panic_guard`]: a panic inside tract's graph readers becomes an error.
//! - [`ops`]: Kestrel's NNEF extension registry (the binary operators live there).
//! - [`io`]: `.npy`/`.npz` arrays and atomic file writes.
//! - [`bench`]: latency statistics, per-op profile, peak RSS.
//! - [`config`]: `kestrel.toml`, the service's settings (`/etc/kestrel/kestrel.toml`).
//! - [`camera`]: the [`camera::FrameSource`] trait and its backends.
//! - [`pipeline`]: frame → input tensor → model → task result → sink, the `kestrel run` loop.
//! - [`analytics`]: tracks with stable ids, zones and lines, counts and events.
//! - [`bundled`]: the default model compiled into the binary.
//! - [`tract_knobs`]: Kestrel's defaults for tract's CPU-dispatch knobs (AMX int8 off: it
//!   over-reads and crashes in tract 0.23.9).
//! - [`pool_alloc`]: the binary's global allocator: counted, recycling blocks on inference
//!   threads so steady-state frames never reach the system allocator.

pub mod analytics;
pub mod bench;
pub mod bundled;
pub mod camera;
pub mod config;
pub mod error;
pub mod exit;
pub mod infer;
pub mod io;
pub mod kernels;
pub mod latency;
pub mod load_limits;
pub mod logging;
pub mod model;
pub mod ops;
pub mod panic_guard;
pub mod pipeline;
pub mod pool_alloc;
pub mod random;
pub mod redact;
pub mod secret;
pub mod tract_knobs;

pub use error::RuntimeError;
pub use model::{LoadOptions, Model, Session, TensorSpec};

/// The tract crates the runtime is built on, re-exported so that dependants
/// (the converter, tests, benchmarks) use exactly the same version.
pub use tract_nnef;
pub use tract_nnef::tract_core;
