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
    /// A model file that exists but could not be read as an NNEF graph (or its archive could
    /// not be read), or whose graph tract could not optimise or plan.
    #[error("model {path}: cannot {stage}")]
    ModelLoad {
        /// The path (or `<bundled>`).
        path: String,
        /// What could not be done: `load NNEF graph`, `read archive`, `optimise graph`…
        stage: &'static str,
        /// Why: tract's error (with its own causes), or the I/O error.
        #[source]
        source: Cause,
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
    /// A failure while evaluating the graph: tract's error, or what was wrong with the inputs.
    #[error("inference failed")]
    Run(#[source] Cause),
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

/// The cause an error keeps ([`std::error::Error::source`]): tract's errors (which keep their
/// own causes), I/O errors, or a message.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays an error followed by its causes, `error: cause: cause…`, on one line (as
/// `anyhow`'s `{:#}` does): for logs and messages that show an error outside `anyhow`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Formats a datum type and shape as `f32 1,3,224,224`: the form used in messages and summaries.
pub fn describe(dt: tract_nnef::prelude::DatumType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{dt:?} {}", dims.join(",")).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_shows_every_cause_once() {
        let tract = anyhow::anyhow!("bad fragment").context("parsing graph.nnef");
        let e = RuntimeError::ModelLoad {
            path: "m.nnef.tgz".into(),
            stage: "load NNEF graph",
            source: tract.into(),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "model m.nnef.tgz: cannot load NNEF graph: parsing graph.nnef: bad fragment"
        );
        let run = RuntimeError::Run("inputs hold no sample".into());
        assert_eq!(
            Chain(&run).to_string(),
            "inference failed: inputs hold no sample"
        );
        assert_eq!(
            format!("{:#}", anyhow::Error::new(run)),
            "inference failed: inputs hold no sample"
        );
    }
}
