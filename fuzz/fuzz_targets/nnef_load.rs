//! Kestrel's NNEF loader (tract-nnef + Kestrel's dialect and binary ops) on a tar archive
//! built from the fuzz input, then one run of the loaded graph on zero inputs when they are
//! small.
//!
//! Input format: see `nnef_archive.rs` (shared with `nnef_parse`, which stops before the
//! optimiser and runs ~100x faster).
#![no_main]

use kestrel_runtime::{random, LoadOptions, Model};
use libfuzzer_sys::fuzz_target;

mod nnef_archive;
use nnef_archive::archive;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = archive(data) else { return };
    let options = LoadOptions { threads: Some(1) };
    let Ok(model) = Model::load_bytes("fuzz", &bytes, &options) else {
        return;
    };
    let elements: usize = model.inputs().iter().map(|s| s.len()).sum();
    if elements > 1 << 16 {
        return;
    }
    if let Ok(inputs) = random::random_inputs(model.inputs(), 1) {
        let _ = model.run(inputs);
    }
});
