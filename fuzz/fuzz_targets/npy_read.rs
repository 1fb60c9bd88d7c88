//! The `.npy` / `.npz` reader (`kestrel_runtime::io::npy::read_arrays`, what `kestrel infer`
//! and `kestrel-quantize --verify-data/--calib` read) on arbitrary bytes, written to a
//! temporary file first (the reader takes a path, as the CLIs do).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::path::Path::new("/dev/shm");
    let mut file = if dir.is_dir() {
        tempfile::Builder::new().suffix(".npy").tempfile_in(dir)
    } else {
        tempfile::Builder::new().suffix(".npy").tempfile()
    }
    .expect("temp file");
    file.write_all(data).expect("write temp file");
    let _ = kestrel_runtime::io::npy::read_arrays(file.path());
});
