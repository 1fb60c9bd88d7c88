//! Typed errors of the runtime library. The binaries add context with `anyhow`.

use std::path::PathBuf;

/// Everything the runtime library reports as a failure.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A model path that does not exist.
    #[error("model {path}: no such file or directory")]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A model file that exists but could not be read as an NNEF graph.
    #[error("model {path}: cannot load NNEF graph: {reason}")]
    ModelLoad {
        /// The path (or `<bundled>`).
        path: String,
        /// tract's explanation, with its cause chain.
        reason: String,
    },
    /// A model file over the limits an untrusted file must keep (`load_limits`): a tensor
    /// header claiming more bytes than the file holds, an absurd shape, a decompression bomb.
    #[error("model {path}: {reason}")]
    ModelLimit {
        /// The path (or `<bundled>`).
        path: String,
        /// Which limit, and what the file declared.
        reason: String,
    },
    /// A loaded graph the runtime cannot run as it is (symbolic shapes, exotic types…).
    #[error("model {path}: {reason}")]
    ModelUnsupported {
        /// The path (or `<bundled>`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An input tensor whose type or shape does not match the model's input fact.
    #[error("input #{index} '{name}': expected {expected}, got {given}")]
    InputMismatch {
        /// Position of the input.
        index: usize,
        /// The model's name for it.
        name: String,
        /// The model's fact, e.g. `f32 1,3,224,224`.
        expected: String,
        /// What was given, e.g. `u8 1,224,224,3`.
        given: String,
    },
    /// The wrong number of inputs.
    #[error("model takes {expected} input(s), got {given}")]
    InputCount {
        /// How many the model takes.
        expected: usize,
        /// How many were given.
        given: usize,
    },
    /// A failure while evaluating the graph.
    #[error("inference failed: {0}")]
    Run(String),
    /// A bad array file (`.npy`/`.npz`).
    #[error("{path}: {reason}")]
    Array {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Whether the user can fix this by changing the command or its files (exit code 2):
    /// everything but a failed run and I/O errors other than a missing file.
    pub fn is_bad_input(&self) -> bool {
        match self {
            RuntimeError::Run(_) => false,
            RuntimeError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => true,
        }
    }
}

/// Formats an `anyhow`/tract error with its whole cause chain on one line.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// Formats a datum type and shape as `f32 1,3,224,224`: the form used in messages and summaries.
pub fn describe(dt: tract_nnef::prelude::DatumType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{dt:?} {}", dims.join(",")).to_lowercase()
}

/// The exit code of a failed command, the same rule for `kestrel` and `kestrel-quantize`: 2
/// when the user can fix the command or an input file (bad input), 1 for everything else.
/// Walks the cause chain from the outermost error; the first cause that `classify` (the
/// caller's own error types: `Some(bad_input)`) or the runtime's error types recognise
/// decides.
pub fn exit_code(
    e: &anyhow::Error,
    classify: impl Fn(&(dyn std::error::Error + 'static)) -> Option<bool>,
) -> u8 {
    for cause in e.chain() {
        if let Some(bad) = classify(cause).or_else(|| runtime_bad_input(cause)) {
            return if bad { 2 } else { 1 };
        }
    }
    1
}

/// Whether one of the runtime's errors is bad input; `None` for another type.
fn runtime_bad_input(cause: &(dyn std::error::Error + 'static)) -> Option<bool> {
    use crate::analytics::AnalyticsError;
    use crate::camera::CameraError;
    use crate::config::ConfigError;
    use crate::pipeline::mqtt::MqttUrlError;
    use crate::pipeline::sidecar::SidecarError;
    use crate::pipeline::PipelineError;
    if let Some(r) = cause.downcast_ref::<RuntimeError>() {
        return Some(r.is_bad_input());
    }
    if cause.is::<SidecarError>()
        || cause.is::<MqttUrlError>()
        || cause.is::<ConfigError>()
        || cause.is::<AnalyticsError>()
    {
        return Some(true);
    }
    if let Some(p) = cause.downcast_ref::<PipelineError>() {
        return Some(match p {
            PipelineError::Camera(c) => c.is_bad_input(),
            PipelineError::NotAnImage(_) => true,
            PipelineError::Runtime(RuntimeError::Run(_)) => false,
            PipelineError::Runtime(_) => true,
            _ => false,
        });
    }
    cause
        .downcast_ref::<CameraError>()
        .map(CameraError::is_bad_input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_first_recognised_cause() {
        let bad = anyhow::Error::new(RuntimeError::ModelNotFound {
            path: "m.nnef.tgz".into(),
        })
        .context("loading");
        assert_eq!(exit_code(&bad, |_| None), 2);
        let failed = anyhow::Error::new(RuntimeError::Run("tract said no".into()));
        assert_eq!(exit_code(&failed, |_| None), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("anything else"), |_| None), 1);
        // The caller's own types come first.
        assert_eq!(exit_code(&failed, |_| Some(true)), 2);
    }
}
