//! The converter's ONNX/QONNX import (`kestrel_quantize::load::load_onnx`: tract-onnx with
//! Kestrel's BipolarQuant registrations, input facts fixed) on arbitrary bytes.
//!
//! The loader takes a path, as the CLI does: the input is written to a temporary file
//! (in /dev/shm when there is one) first.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::path::Path::new("/dev/shm");
    let mut file = if dir.is_dir() {
        tempfile::Builder::new().suffix(".onnx").tempfile_in(dir)
    } else {
        tempfile::Builder::new().suffix(".onnx").tempfile()
    }
    .expect("temp file");
    file.write_all(data).expect("write temp file");
    let _ = kestrel_quantize::load::load_onnx(file.path(), &[]);
});
