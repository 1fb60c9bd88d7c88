//! Calibration samples: numpy arrays (`.npy`, `.npz`) or a folder of images, turned into
//! one input tensor per sample matching the model's input fact.

use std::path::{Path, PathBuf};

use kestrel_runtime::io::npy::read_arrays;
use tract_onnx::prelude::*;

use super::error::Int8Error;
use super::images::{load_image_folder, Preprocess};

/// Where calibration samples come from.
#[derive(Debug, Clone)]
pub struct CalibSource {
    /// A `.npy`/`.npz` file or a folder of PNG/JPEG images.
    pub path: PathBuf,
    /// Image pre-processing (ignored for arrays).
    pub preprocess: Preprocess,
    /// Use at most this many samples (0 = all).
    pub count: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> Int8Error {
    Int8Error::Calibration {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Loads the samples, each shaped and typed as `input` (the model's single input fact).
pub fn load_samples(source: &CalibSource, input: &TypedFact) -> Result<Vec<Tensor>, Int8Error> {
    let path = &source.path;
    let shape: Vec<usize> = input
        .shape
        .as_concrete()
        .ok_or_else(|| bad(path, "the model input has no concrete shape"))?
        .to_vec();
    let mut samples = if path.is_dir() {
        load_image_folder(path, &shape, &source.preprocess, source.count)?
    } else if path.is_file() {
        let arrays = read_arrays(path).map_err(|e| bad(path, e.to_string()))?;
        let mut samples = vec![];
        for (name, array) in arrays {
            samples.extend(
                split(&array, &shape).map_err(|e| bad(path, format!("array '{name}': {e}")))?,
            );
        }
        samples
    } else {
        return Err(bad(path, "no such file or folder"));
    };
    if source.count > 0 {
        samples.truncate(source.count);
    }
    if samples.is_empty() {
        return Err(bad(path, "no calibration samples"));
    }
    samples
        .into_iter()
        .map(|s| {
            s.cast_to_dt(input.datum_type)
                .map(|t| t.into_owned())
                .map_err(|e| {
                    bad(
                        path,
                        format!("cannot convert samples to {:?}: {e}", input.datum_type),
                    )
                })
        })
        .collect()
}

/// Splits an array of shape `shape` or `[N, shape[1..]]` into samples of `shape`.
fn split(array: &Tensor, shape: &[usize]) -> Result<Vec<Tensor>, String> {
    if array.shape() == shape {
        return Ok(vec![array.clone()]);
    }
    if shape.first() == Some(&1) && array.rank() == shape.len() && array.shape()[1..] == shape[1..]
    {
        return (0..array.shape()[0])
            .map(|i| array.slice(0, i, i + 1).map_err(|e| e.to_string()))
            .collect();
    }
    Err(format!(
        "shape {:?} is neither the model input {:?} nor a batch of it",
        array.shape(),
        shape
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_batches() {
        let a = Tensor::zero::<f32>(&[3, 2, 4]).unwrap();
        let s = split(&a, &[1, 2, 4]).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].shape(), &[1, 2, 4]);
        assert_eq!(split(&a, &[3, 2, 4]).unwrap().len(), 1);
        assert!(split(&a, &[1, 3, 4]).unwrap_err().contains("neither"));
    }
}
