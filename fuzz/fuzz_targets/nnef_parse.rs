//! Kestrel's NNEF reader alone: the loader's limits, tract-nnef's parser and Kestrel's
//! dialect and binary-op deserialisers, type checking (`Model::parse_bytes`), without the
//! optimiser and the run that make `nnef_load` cost about a second per input. Its speed is
//! what lets a campaign cover the parser; `nnef_load` covers what comes after.
//!
//! Input format: see `nnef_archive.rs`.
#![no_main]

use kestrel_runtime::Model;
use libfuzzer_sys::fuzz_target;

mod nnef_archive;
use nnef_archive::archive;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = archive(data) {
        let _ = Model::parse_bytes("fuzz", &bytes);
    }
});
