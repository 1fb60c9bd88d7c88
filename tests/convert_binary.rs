//! BNN conversion end to end: binarised ONNX graphs (PyTorch `Sign` style, QONNX
//! `BipolarQuant` style) → `kestrel-quantize convert` → runtime → compared with references
//! computed outside tract and Kestrel (onnxruntime for `bnn-sign`, a numpy forward pass for
//! `bnn-qonnx`: onnxruntime cannot run `BipolarQuant`). Fixtures: `tests/fixtures/make_bnn_fixtures.py`.

use std::collections::BTreeMap;
use std::path::Path;

use kestrel::{argmax, max_abs_diff, Fixture};
use kestrel_quantize::{convert, ConvertOptions, ConvertReport};
use kestrel_runtime::io::npy::read_arrays;
use kestrel_runtime::{infer, LoadOptions, Model};

fn convert_fixture(
    name: &str,
    binary: bool,
) -> (tempfile::TempDir, std::path::PathBuf, ConvertReport) {
    let fx = Fixture::load(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.nnef.tgz"));
    let options = ConvertOptions {
        binary,
        verify_data: Some(fx.input.clone()),
        ..ConvertOptions::default()
    };
    let report = convert(&fx.onnx, &out, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    (dir, out, report)
}

fn ops(report: &ConvertReport) -> &BTreeMap<String, usize> {
    &report.after.ops
}

/// Runs the converted graph on the fixture's inputs and compares with its reference outputs.
fn matches_reference(name: &str, graph: &Path) {
    let fx = Fixture::load(name).unwrap();
    let model = Model::load(graph, &LoadOptions { threads: Some(2) }).unwrap();
    let (_, input) = read_arrays(&fx.input).unwrap().remove(0);
    let outputs = infer::infer(&model, &[input]).unwrap();
    let expected = read_arrays(&fx.expected).unwrap();
    for (spec, got) in model.outputs().iter().zip(&outputs) {
        let (_, want) = expected.iter().find(|(k, _)| k == &spec.name).unwrap();
        let (g, w) = (
            got.try_as_plain_ram().unwrap(),
            want.try_as_plain_ram().unwrap(),
        );
        let (g, w) = (g.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
        let (worst, scale) = max_abs_diff(g, w);
        assert!(
            worst <= 1e-4 * scale,
            "{name}: max abs diff {worst} (scale {scale})"
        );
        for (gr, wr) in g.chunks(10).zip(w.chunks(10)) {
            assert_eq!(argmax(gr), argmax(wr), "{name}: a decision differs");
        }
    }
}

#[test]
fn sign_network_becomes_binary_and_matches_onnxruntime() {
    let (_dir, out, report) = convert_fixture("bnn-sign", true);
    let binary = report.binary.as_ref().unwrap();
    let became: Vec<(&str, &str, Option<&str>)> = binary
        .layers
        .iter()
        .map(|l| (l.name.as_str(), l.became.as_str(), l.output.as_deref()))
        .collect();
    // conv1 has a float input, the classifier float weights: both stay float. conv2 (Sign(W))
    // feeds Where → MaxPool → conv3 and conv3 feeds Sign → dense4: both output packed bits.
    assert_eq!(
        became,
        vec![
            ("conv1", "float", None),
            ("conv2", "binary conv2d", Some("packed")),
            ("conv3", "binary conv2d", Some("packed")),
            ("dense4.ab", "binary dense", Some("float")),
            ("classifier.ab", "float", None),
        ]
    );
    assert_eq!(binary.binary_max_pools, 1);
    assert_eq!(binary.bitpacks, 1, "one entry into the binary domain");
    // conv1 is that entry's only float input: it writes the packed bits itself.
    assert_eq!(report.conv.as_ref().map(|c| c.packed_outputs), Some(1));
    assert_eq!(ops(&report).get("KestrelBitpack"), None);
    assert!(binary.weight_bytes_after * 10 < binary.weight_bytes_before);
    assert_eq!(ops(&report).get("KestrelBinaryConv2d"), Some(&2));
    assert_eq!(ops(&report).get("KestrelBinaryDense"), Some(&1));
    assert_eq!(report.argmax_mismatches, 0);
    assert!(report.verified_samples >= 4 + 2, "{report:?}");
    assert!(binary.warnings.is_empty(), "{:?}", binary.warnings);
    matches_reference("bnn-sign", &out);
}

#[test]
fn qonnx_bipolar_network_becomes_binary_and_matches_numpy() {
    let (_dir, out, report) = convert_fixture("bnn-qonnx", true);
    let binary = report.binary.as_ref().unwrap();
    let kinds: Vec<&str> = binary.layers.iter().map(|l| l.became.as_str()).collect();
    assert_eq!(kinds, ["float", "binary conv2d", "binary dense", "float"]);
    assert_eq!(binary.binary_max_pools, 2);
    assert_eq!(ops(&report).get("KestrelBinaryMaxPool"), Some(&2));
    matches_reference("bnn-qonnx", &out);
}

#[test]
fn binary_off_keeps_a_float_graph_that_still_matches() {
    let (_dir, out, report) = convert_fixture("bnn-sign", false);
    assert!(report.binary.is_none());
    assert!(
        ops(&report).keys().all(|k| !is_binary_op(k)),
        "{:?}",
        ops(&report)
    );
    matches_reference("bnn-sign", &out);
}

#[test]
fn a_float_model_converts_to_a_plain_float_graph() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-fire.nnef.tgz");
    let report = convert(&fx.onnx, &out, &ConvertOptions::default()).unwrap();
    let binary = report.binary.as_ref().unwrap();
    assert!(!binary.layers.is_empty());
    assert!(binary
        .layers
        .iter()
        .all(|l| l.became == "float" && l.bit_macs == 0));
    assert!(
        ops(&report).keys().all(|k| !is_binary_op(k)),
        "{:?}",
        ops(&report)
    );
}

/// Whether an op (by name) works on packed bits: Kestrel's binary ops and the bit-pack into
/// them (its float ops, depthwise and max-pool, are not).
fn is_binary_op(name: &str) -> bool {
    name.starts_with("KestrelBinary") || name == "KestrelBitpack"
}

#[test]
fn bipolar_quant_without_scale_is_a_clear_error_and_writes_nothing() {
    let onnx = kestrel::fixtures_dir()
        .join("onnx")
        .join("bnn-bad-bipolar.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.nnef.tgz");
    let err = convert(&onnx, &out, &ConvertOptions::default()).unwrap_err();
    let err = kestrel_runtime::error::Chain(&err).to_string();
    assert!(err.contains("bnn-bad-bipolar.onnx"), "{err}");
    assert!(
        err.contains("bq_missing_scale") && err.contains("scale is missing"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a file was left behind"
    );
}

#[test]
fn verify_data_of_the_wrong_shape_is_refused() {
    let fx = Fixture::load("bnn-sign").unwrap();
    let other = Fixture::load("bnn-qonnx").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.nnef.tgz");
    let options = ConvertOptions {
        verify_data: Some(other.input.clone()),
        ..ConvertOptions::default()
    };
    let err = convert(&fx.onnx, &out, &options).unwrap_err().to_string();
    assert!(
        err.contains("bnn-qonnx.input.npy") && err.contains("cannot verify"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn sign_of_a_graph_input_converts_with_a_warning() {
    let onnx = kestrel::fixtures_dir()
        .join("onnx")
        .join("bnn-sign-input.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.nnef.tgz");
    let report = convert(&onnx, &out, &ConvertOptions::default()).unwrap();
    let binary = report.binary.unwrap();
    assert_eq!(binary.layers[0].became, "binary dense");
    assert_eq!(binary.warnings.len(), 1, "{:?}", binary.warnings);
    let w = &binary.warnings[0];
    assert!(w.contains("sign_input") && w.contains("Sign(0) = 0"), "{w}");
}

#[test]
fn layers_forced_onto_their_mst_stay_bit_exact_through_nnef() {
    // max_ratio = ∞ makes the cost model pick MST for every layer (conv and dense), even where
    // it does not pay: the trees must still give the same outputs, bit for bit, as the graph
    // converted without MST (both written as NNEF and reloaded by the runtime).
    let fx = Fixture::load("bnn-sign").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mst.nnef.tgz");
    // Children made cheap, so the trees have them although these random weights share no word.
    let cheap = kestrel_quantize::mst::CostModel {
        word_cost: 0.01,
        child_cost: 0.0,
    };
    let options = ConvertOptions {
        verify_data: Some(fx.input.clone()),
        mst: Some(kestrel_quantize::mst::MstOptions {
            max_ratio: f64::INFINITY,
            max_depth: 3,
            cost: cheap,
            conv_cost: cheap,
            ..Default::default()
        }),
        ..ConvertOptions::default()
    };
    let report = convert(&fx.onnx, &out, &options).unwrap();
    let binary = report.binary.as_ref().unwrap();
    let became: Vec<&str> = binary.layers.iter().map(|l| l.became.as_str()).collect();
    assert!(
        became.iter().any(|b| b.contains("conv")),
        "the fixture has a binary conv: {became:?}"
    );
    assert_eq!(report.mst.len(), 3, "{:?}", report.mst);
    for l in &report.mst {
        assert_eq!(l.kernel, "mst", "{l:?}");
        assert!(l.depth <= 3 && l.choice == "mst", "{l:?}");
        assert!(l.roots < l.channels / 4, "{l:?}");
    }
    assert_eq!(report.argmax_mismatches, 0);
    matches_reference("bnn-sign", &out);
    // Children are stored as XOR differences from their parents (runtime/src/ops/mst.rs):
    // every layer with a tree says so in the graph.
    let graph = graph_text(&out);
    assert_eq!(
        graph.matches("mst_weights = \"xor\"").count(),
        report.mst.len(),
        "{graph}"
    );

    // The same graph without MST: every output identical bit for bit.
    let dense = dir.path().join("dense.nnef.tgz");
    let options = ConvertOptions {
        verify_data: Some(fx.input.clone()),
        mst: None,
        ..ConvertOptions::default()
    };
    let plain = convert(&fx.onnx, &dense, &options).unwrap();
    assert!(plain.mst.is_empty());
    let (_, input) = read_arrays(&fx.input).unwrap().remove(0);
    let run = |graph: &Path| {
        let model = Model::load(graph, &LoadOptions { threads: Some(2) }).unwrap();
        infer::infer(&model, std::slice::from_ref(&input)).unwrap()
    };
    assert!(!graph_text(&dense).contains("mst_weights"));
    let (with, without) = (run(&out), run(&dense));
    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
        let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(a.as_slice::<f32>().unwrap()),
            bits(b.as_slice::<f32>().unwrap())
        );
    }
}

/// `graph.nnef` of a written graph.
fn graph_text(graph: &Path) -> String {
    use std::io::Read;
    let file = std::fs::File::open(graph).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("graph.nnef") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{} has no graph.nnef", graph.display());
}
