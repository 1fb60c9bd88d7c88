//! Kestrel's NNEF loader (tract-nnef + Kestrel's dialect and binary ops) on a tar archive
//! built from the fuzz input, then one run of the loaded graph on zero inputs when they are
//! small.
//!
//! Input format (so mutations reach `graph.nnef` and the `.dat` headers instead of tar
//! checksums): a sequence of entries `[name length: u8][name][data length: u32 LE][data]`;
//! a length past the end takes what is left. `fuzz/seeds.py` turns `.nnef.tgz` files into
//! this format.
#![no_main]

use kestrel_runtime::{random, LoadOptions, Model};
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn archive(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    while !data.is_empty() {
        let name_len = take(&mut data, 1)[0] as usize;
        let name = String::from_utf8_lossy(take(&mut data, name_len)).into_owned();
        let len = take(&mut data, 4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0xff; 4])) as usize;
        let body = take(&mut data, len);
        if name.is_empty() || name.contains('\0') {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        // A name the tar crate refuses (absolute, `..`) is not what this target tests.
        tar.append_data(&mut header, &name, body).ok()?;
    }
    tar.into_inner().ok()
}

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
