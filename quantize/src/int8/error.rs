//! Errors of the int8 conversion.

use std::path::PathBuf;

use crate::error::ConvertError;

/// Why an int8 conversion failed. Nothing is written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    /// The float side failed (loading, declutter, writing, reloading).
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// Unusable calibration input.
    #[error("{path}: bad calibration input: {reason}")]
    Calibration {
        /// The calibration file or folder (or the image in it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sidecar (`--sidecar`) that cannot be read or does not fit the model.
    #[error("{path}: {reason}")]
    Sidecar {
        /// The sidecar.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The quantized model is too far from the float one ("never collapse").
    #[error(
        "{path}: int8 model refused, nothing written: end-to-end SQNR {sqnr_db:.1} dB is below \
         the {floor_db:.1} dB floor ({agreement}); {hint}"
    )]
    Collapse {
        /// The output path that was not written.
        path: PathBuf,
        /// Worst end-to-end SQNR over the outputs.
        sqnr_db: f64,
        /// The floor.
        floor_db: f64,
        /// The model's agreement measure, in words ("top-1 agreement 97.4%").
        agreement: String,
        /// What to try next (never a flag already given).
        hint: String,
    },
    /// Building, writing or running the int8 graph failed.
    #[error("{path}: int8 {stage}")]
    Graph {
        /// The model.
        path: PathBuf,
        /// Which step.
        stage: &'static str,
        /// Why: tract's error (with its own causes), or what is wrong.
        #[source]
        source: kestrel_runtime::error::Cause,
    },
}

impl Int8Error {
    /// Whether the user's input is at fault (exit code 2) rather than the tool.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Int8Error::Calibration { .. } | Int8Error::Sidecar { .. } => true,
            Int8Error::Convert(e) => e.is_bad_input(),
            _ => false,
        }
    }
}
