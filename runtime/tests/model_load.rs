//! Loading graphs: every container form, and every kind of bad file, through the public API.

use std::io::{Read, Write};

use kestrel_runtime::tract_core::prelude::*;
use kestrel_runtime::{bundled, LoadOptions, Model, RuntimeError};

fn opts() -> LoadOptions {
    LoadOptions { threads: Some(1) }
}

fn tar_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bundled::NNEF_TGZ)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn bundled_model_loads_with_concrete_facts() {
    let m = bundled::load(&opts()).unwrap();
    assert_eq!(m.inputs().len(), 1);
    assert_eq!(m.inputs()[0].shape, vec![1, 3, 48, 192]);
    assert_eq!(m.inputs()[0].datum_type, DatumType::F32);
    assert_eq!(m.outputs()[0].shape, vec![1, 2]);
}

#[test]
fn tgz_tar_and_directory_load_alike() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("m.nnef.tgz");
    std::fs::write(&tgz, bundled::NNEF_TGZ).unwrap();
    let tar = dir.path().join("m.nnef.tar");
    std::fs::write(&tar, tar_bytes()).unwrap();
    // The same files, unpacked into a directory.
    let nnef_dir = dir.path().join("m.nnef");
    tar::Archive::new(&*tar_bytes()).unpack(&nnef_dir).unwrap();

    let input = Tensor::zero::<f32>(&[1, 3, 48, 192]).unwrap();
    let mut results = vec![];
    for path in [&tgz, &tar, &nnef_dir] {
        let m = Model::load(path, &opts()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let out = m.run(tvec![input.clone().into_tvalue()]).unwrap();
        results.push(out[0].clone().into_tensor());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn missing_file_is_named() {
    let err = Model::load("/no/such/model.nnef.tgz".as_ref(), &opts()).unwrap_err();
    assert!(matches!(err, RuntimeError::ModelNotFound { .. }));
    assert!(err.to_string().contains("/no/such/model.nnef.tgz"), "{err}");
}

#[test]
fn truncated_and_corrupt_archives_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated.nnef.tgz",
            bundled::NNEF_TGZ[..bundled::NNEF_TGZ.len() / 2].to_vec(),
        ),
        ("truncated.nnef.tar", tar_bytes()[..3000].to_vec()),
        (
            "garbage.nnef.tgz",
            b"\x1f\x8bthis is no gzip stream".to_vec(),
        ),
        ("garbage.nnef.tar", vec![7u8; 4096]),
        ("empty.nnef.tgz", vec![]),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let err = Model::load(&path, &opts()).expect_err(name);
        let msg = err.to_string();
        assert!(msg.contains(name), "{name}: {msg}");
        assert!(
            matches!(err, RuntimeError::ModelLoad { .. }),
            "{name}: {msg}"
        );
    }
}

#[test]
fn wrong_input_shape_names_input_fact_and_shape() {
    let m = bundled::load(&opts()).unwrap();
    let bad = Tensor::zero::<f32>(&[1, 3, 224, 224]).unwrap();
    let err = m.run(tvec![bad.into_tvalue()]).unwrap_err().to_string();
    assert!(err.contains("'x'"), "{err}");
    assert!(err.contains("f32 1,3,48,192"), "{err}");
    assert!(err.contains("1,3,224,224"), "{err}");
    let wrong_type = Tensor::zero::<u8>(&[1, 3, 48, 192]).unwrap();
    let err = m
        .run(tvec![wrong_type.into_tvalue()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("u8 1,3,48,192"), "{err}");
    let err = m.run(tvec![]).unwrap_err().to_string();
    assert!(err.contains("1 input"), "{err}");
}

#[test]
fn threads_option_is_honoured() {
    assert_eq!(
        bundled::load(&LoadOptions { threads: Some(3) })
            .unwrap()
            .threads(),
        3
    );
    let all = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        bundled::load(&LoadOptions::default()).unwrap().threads(),
        all
    );
}
