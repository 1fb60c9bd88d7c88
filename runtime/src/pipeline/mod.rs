//! `kestrel run`: frames in, results out.
//!
//! ```text
//! FrameSource ──frame (borrowed)──► Preprocessor ──input tensor (reused)──► Session::run
//!     ──outputs──► Task::apply ──TaskResult (fixed capacity)──► sink (JSON lines)
//! ```
//!
//! One thread for now; the capture thread with a latest-frame mailbox comes with the camera
//! issue. The input tensor is allocated once and handed to tract by reference count: when the
//! run returns, tract has dropped its reference and the buffer is written in place again.

pub mod preprocess;
pub mod sinks;
pub mod stats;
pub mod tasks;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use tract_nnef::internal::*;

use crate::camera::{CameraError, Frame, FrameSource};
use crate::error::RuntimeError;
use crate::model::{Model, Session};
use preprocess::{Normalize, NotAnImage, Preprocessor};
use sinks::{FrameInfo, JsonLines};
use stats::{Stats, Summary};
use tasks::{Task, TaskResult};

/// Failures of the run loop.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed.
    #[error(transparent)]
    Camera(#[from] CameraError),
    /// The model failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model's input cannot be fed from frames.
    #[error(transparent)]
    NotAnImage(#[from] NotAnImage),
    /// Post-processing failed.
    #[error("task: {0}")]
    Task(String),
    /// The sink failed (e.g. stdout closed).
    #[error("output: {0}")]
    Sink(#[from] std::io::Error),
}

/// Model, pre-processing and task for one stream of frames.
pub struct Pipeline {
    session: Session,
    pre: Preprocessor,
    task: Task,
    input: Arc<Tensor>,
    result: TaskResult,
}

impl Pipeline {
    /// A pipeline feeding frames to `model`'s first input.
    pub fn new(model: &Model, normalize: Normalize, task: Task) -> Result<Pipeline, PipelineError> {
        if model.inputs().len() != 1 {
            return Err(RuntimeError::ModelUnsupported {
                path: model.source().into(),
                reason: format!(
                    "kestrel run feeds one image input; this model has {}",
                    model.inputs().len()
                ),
            }
            .into());
        }
        let spec = &model.inputs()[0];
        let pre = Preprocessor::new(spec, normalize)?;
        let input = Tensor::zero_dt(spec.datum_type, &spec.shape)
            .map_err(|e| RuntimeError::Run(format!("{e:#}")))?;
        Ok(Pipeline {
            session: model.session()?,
            pre,
            task,
            input: Arc::new(input),
            result: TaskResult::None,
        })
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The result of the last frame processed.
    pub fn result(&self) -> &TaskResult {
        &self.result
    }

    /// Runs one frame; returns the milliseconds the model took. The result is in
    /// [`Pipeline::result`].
    pub fn process(&mut self, frame: &Frame<'_>) -> Result<f64, PipelineError> {
        if Arc::get_mut(&mut self.input).is_none() {
            // tract kept a reference to the last input: start a fresh buffer (not expected).
            log::warn!("input buffer still shared after a run; reallocating");
            self.input = Arc::new(self.input.deep_clone());
        }
        let tensor = Arc::get_mut(&mut self.input).expect("unique input");
        let mut view = tensor
            .try_as_plain_ram_mut()
            .map_err(|e| PipelineError::Task(format!("{e:#}")))?;
        let slice = view
            .as_slice_mut::<f32>()
            .map_err(|e| PipelineError::Task(format!("{e:#}")))?;
        self.pre.run(frame, slice);
        let start = Instant::now();
        let outputs = self.session.run(tvec![self.input.clone().into_tvalue()])?;
        let infer_ms = start.elapsed().as_secs_f64() * 1e3;
        self.task
            .apply(&outputs, &mut self.result)
            .map_err(|e| PipelineError::Task(format!("{e:#}")))?;
        Ok(infer_ms)
    }
}

/// Runs `pipeline` on `source` until the source ends or `frames` frames are processed,
/// writing one line per frame and a summary line to `sink`.
pub fn run<W: Write>(
    pipeline: &mut Pipeline,
    source: &mut dyn FrameSource,
    sink: &mut JsonLines<W>,
    frames: Option<u64>,
) -> Result<Summary, PipelineError> {
    let mut stats = Stats::new();
    let opened = Instant::now();
    while frames.is_none_or(|n| stats.frames() < n) {
        let Some(frame) = source.next_frame()? else {
            break;
        };
        let (seq, captured) = (frame.seq, frame.captured);
        let infer_ms = pipeline.process(&frame)?;
        let latency = captured.elapsed();
        let info = FrameInfo {
            seq,
            t_capture_ms: captured.saturating_duration_since(opened).as_secs_f64() * 1e3,
            latency_ms: latency.as_secs_f64() * 1e3,
            infer_ms,
        };
        sink.frame(&info, &pipeline.task, &pipeline.result)?;
        stats.record(latency);
    }
    Ok(stats.summary())
}
