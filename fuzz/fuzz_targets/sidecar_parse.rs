//! The model sidecar parser (`kestrel_runtime::pipeline::sidecar::Sidecar::load`, the
//! `MODEL.kestrel.toml` next to a graph, with its detection head and anchor generator) on
//! arbitrary UTF-8 text: every refusal is a `SidecarError` naming the file, never a panic, and
//! no input makes it allocate without bound (anchor counts are capped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use kestrel_runtime::pipeline::sidecar::Sidecar;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A labels_file would read whatever file it names: not what this target is about.
    if text.contains("labels_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.kestrel.toml");
    std::fs::write(&path, text).unwrap();
    match Sidecar::load(&path) {
        Ok(s) => {
            let _ = s.task(3);
            let _ = s.normalize();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
