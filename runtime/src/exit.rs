//! The exit code of a failed `kestrel` or `kestrel-quantize` command: one rule for both
//! binaries (the README's table). It knows every error type of the runtime, so it sits above
//! them: nothing in the library depends on it.

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
    use crate::pipeline::http::HttpError;
    use crate::pipeline::mqtt::{MqttError, MqttUrlError};
    use crate::pipeline::sidecar::SidecarError;
    use crate::pipeline::PipelineError;
    use crate::secret::SecretFileError;
    use crate::RuntimeError;
    if let Some(r) = cause.downcast_ref::<RuntimeError>() {
        return Some(r.is_bad_input());
    }
    if cause.is::<SidecarError>()
        || cause.is::<MqttUrlError>()
        || cause.is::<MqttError>()
        || cause.is::<SecretFileError>()
        || cause.is::<ConfigError>()
        || cause.is::<AnalyticsError>()
        || cause.is::<HttpError>()
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
    use crate::RuntimeError;

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
