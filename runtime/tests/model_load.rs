//! Loading graphs: every container form, and every kind of bad file, through the public API.

use std::io::{Read, Write};

use kestrel_runtime::error::Chain;
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

/// An uncompressed NNEF tar of `graph` and `tensors` (name → raw `.dat` bytes).
fn nnef_tar(graph: &str, tensors: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("graph.nnef", graph.as_bytes());
    for (name, data) in tensors {
        add(&format!("{name}.dat"), data);
    }
    b.into_inner().unwrap()
}

fn dat(t: &Tensor) -> Vec<u8> {
    let mut out = vec![];
    kestrel_runtime::tract_nnef::tensors::write_tensor(&mut out, t).unwrap();
    out
}

const ADD_GRAPH: &str = "version 1.0;
graph network(x) -> (y) {
  x = external(shape = [1, 4]);
  w = variable<scalar>(label = \"w\", shape = [1, 4]);
  y = add(x, w);
}
";

fn load_limit_error(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = Model::load(&path, &opts()).expect_err(name);
    let msg = err.to_string();
    assert!(
        matches!(err, RuntimeError::ModelLimit { .. }),
        "{name}: {msg}"
    );
    assert!(msg.contains(name), "{name}: {msg}");
    msg
}

#[test]
fn a_crafted_graph_loads_and_runs() {
    let w = Tensor::from_shape(&[1, 4], &[1f32, 2., 3., 4.]).unwrap();
    let bytes = nnef_tar(ADD_GRAPH, &[("w", dat(&w))]);
    let m = Model::load_bytes("add", &bytes, &opts()).unwrap();
    let out = m
        .run(tvec![Tensor::zero::<f32>(&[1, 4]).unwrap().into_tvalue()])
        .unwrap();
    assert_eq!(*out[0], w);
}

#[test]
fn a_tensor_header_claiming_more_than_the_file_holds_is_refused() {
    // Header of a consistent 65536 x 16384 f32 tensor (4 GiB), followed by 16 bytes.
    let mut forged = dat(&Tensor::zero::<f32>(&[1, 4]).unwrap());
    forged[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    forged[12..16].copy_from_slice(&65536u32.to_le_bytes());
    forged[16..20].copy_from_slice(&16384u32.to_le_bytes());
    let msg = load_limit_error("forged.nnef.tar", &nnef_tar(ADD_GRAPH, &[("w", forged)]));
    assert!(
        msg.contains("w.dat") && msg.contains("[65536, 16384]") && msg.contains("holds 16"),
        "{msg}"
    );
}

#[test]
fn absurd_input_shapes_are_refused_before_anything_is_allocated() {
    let graph = ADD_GRAPH.replace(
        "external(shape = [1, 4])",
        "external(shape = [1000000, 1000000])",
    );
    let w = dat(&Tensor::zero::<f32>(&[1, 4]).unwrap());
    let bytes = nnef_tar(&graph, &[("w", w)]);
    let msg = load_limit_error("huge-input.nnef.tar", &bytes);
    assert!(
        msg.contains("input 'x'")
            && msg.contains("f32 1000000,1000000")
            && msg.contains("1024 MiB"),
        "{msg}"
    );
}

#[test]
fn ops_whose_attributes_make_absurd_tensors_are_refused() {
    // A tile of a 1x4 input into 10^8 x 4 floats (1.6 GB): only shape analysis, nothing
    // allocated.
    let tile = |repeats: &str| {
        let graph = ADD_GRAPH.replace("add(x, w)", &format!("tile(x, repeats = [{repeats}, 1])"));
        nnef_tar(
            &graph,
            &[("w", dat(&Tensor::zero::<f32>(&[1, 4]).unwrap()))],
        )
    };
    let msg = load_limit_error("huge-tile.nnef.tar", &tile("100000000"));
    assert!(
        msg.contains("tensor 'y") && msg.contains("100000000,4"),
        "{msg}"
    );
    // 10^12 repeats: tract's own shape code asserts (a negative dimension); a load error.
    let err = Model::load_bytes("huge-tile", &tile("1000000000000"), &opts()).unwrap_err();
    assert!(matches!(err, RuntimeError::ModelLoad { .. }), "{err}");
    let text = Chain(&err).to_string();
    assert!(text.contains("internal check"), "{text}");

    // Kestrel's binary max-pool with a padding that would make a 2^40-pixel output.
    let graph = "version 1.0;
extension tract_registry kestrel;
graph network(x) -> (y) {
  x = external(shape = [1, 8, 4, 4]);
  p = kestrel_bitpack(x);
  y = kestrel_binary_max_pool(p, kernel = [1, 1], stride = [1, 1], padding = [0, 0, 1048576, 1048576]);
}
";
    let err = Model::load_bytes("huge-pool", &nnef_tar(graph, &[]), &opts()).unwrap_err();
    let text = Chain(&err).to_string();
    assert!(text.contains("padding [0, 0, 1048576, 1048576]"), "{text}");
}
