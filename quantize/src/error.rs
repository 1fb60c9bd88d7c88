//! Typed errors of the converter library; the binary adds context with `anyhow`.

use std::path::PathBuf;

use kestrel_runtime::error::Cause;

/// Everything a conversion can fail on.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The ONNX file is missing.
    #[error("{path}: no such file")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// tract-onnx could not read or analyse the model.
    #[error("{path}: cannot load ONNX model")]
    Load {
        /// The model.
        path: PathBuf,
        /// tract's error, with its own causes.
        #[source]
        source: Cause,
    },
    /// An input shape that is missing, malformed or names no input.
    #[error("{path}: {reason}")]
    InputShape {
        /// The model.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The graph could not be simplified or serialised.
    #[error("{path}: {stage}")]
    Graph {
        /// The model.
        path: PathBuf,
        /// Which step failed (declutter, write…).
        stage: &'static str,
        /// Why: tract's error, with its own causes.
        #[source]
        source: Cause,
    },
    /// An output path the converter will not write.
    #[error("{path}: {reason}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The written graph does not load in the runtime or does not match the source.
    #[error("{path}: verification failed, nothing written: {reason}")]
    Verify {
        /// The output path that was not written.
        path: PathBuf,
        /// What differed.
        reason: String,
    },
    /// The `--verify-data` file does not fit the model.
    #[error("{path}: cannot verify on this data: {reason}")]
    VerifyData {
        /// The data file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A runtime-side failure (file I/O, loading).
    #[error(transparent)]
    Runtime(#[from] kestrel_runtime::RuntimeError),
}

impl ConvertError {
    /// Whether the user can fix this by changing the command or a file (exit code 2): a
    /// missing or unreadable model, a wrong input shape, a bad output path or verification
    /// data; a graph that cannot be built or a failed verification is not (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ConvertError::NotFound { .. }
            | ConvertError::Load { .. }
            | ConvertError::InputShape { .. }
            | ConvertError::Output { .. }
            | ConvertError::VerifyData { .. } => true,
            ConvertError::Runtime(r) => r.is_bad_input(),
            ConvertError::Graph { .. } | ConvertError::Verify { .. } => false,
        }
    }
}
