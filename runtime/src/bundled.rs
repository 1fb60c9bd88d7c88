//! The default model compiled into the `kestrel` binary, so that `kestrel run` works out of
//! the box with no file on the board.
//!
//! It is PaddleOCR's text-direction classifier (`models/ppocr-cls/`, 0.57 MB of weights,
//! input 1×3×48×192, output the probabilities of "0°" and "180°"), converted by
//! `kestrel-quantize convert` — small enough to embed, a real CNN, and its input is an
//! ordinary RGB image, which is what a camera gives. `models/ppocr-cls/README.md` is its card.

use crate::error::RuntimeError;
use crate::model::{LoadOptions, Model};
use crate::pipeline::preprocess::Normalize;
use crate::pipeline::tasks::Task;

/// The bundled graph: a gzipped NNEF tar.
pub const NNEF_TGZ: &[u8] = include_bytes!("../../models/ppocr-cls/ppocr-cls.nnef.tgz");

/// The label shown for the bundled model's source in messages.
pub const LABEL: &str = "<bundled ppocr-cls>";

/// Class labels of the bundled model's output, in order.
pub const LABELS: &[&str] = &["0", "180"];

/// Loads the bundled model.
pub fn load(options: &LoadOptions) -> Result<Model, RuntimeError> {
    Model::load_bytes(LABEL, NNEF_TGZ, options)
}

/// The pre-processing the bundled model was trained with: RGB, `(x/255 − 0.5) / 0.5`.
pub fn normalize() -> Normalize {
    Normalize::from_mean_std([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
}

/// The bundled model's task: classification with its labels, `top_k` classes per frame.
pub fn task(top_k: usize) -> Task {
    Task::classify(
        LABELS.iter().map(|s| s.to_string()).collect(),
        top_k.min(LABELS.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sidecar::Sidecar;
    use std::path::Path;

    /// The sidecar the board packages install next to the graph says what this module says.
    #[test]
    fn the_shipped_sidecar_matches_the_bundled_settings() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ppocr-cls");
        let sidecar = Sidecar::find(&dir.join("ppocr-cls.nnef.tgz"))
            .unwrap()
            .expect("models/ppocr-cls/ppocr-cls.kestrel.toml");
        assert_eq!(sidecar.normalize(), Some(normalize()));
        assert_eq!(format!("{:?}", sidecar.task(2)), format!("{:?}", task(2)));
        let shipped = std::fs::read(dir.join("ppocr-cls.nnef.tgz")).unwrap();
        assert!(shipped == NNEF_TGZ, "the bundled graph is the shipped file");
    }
}
