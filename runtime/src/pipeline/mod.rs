//! `kestrel run`: frames in, results out.
//!
//! ```text
//! capture thread: FrameSource ──frame──► Slot ──post──► Mailbox (one slot, latest wins)
//! run loop:       Mailbox ──take──► Converter (→ RGB) ──► Preprocessor (resize + normalise
//!                 into the reused input tensor) ──► Session::run ──► Task::apply
//!                 (fixed-capacity result) ──► [detect: Analytics::update — tracks, zones,
//!                 lines, events] ──► JSON lines on stdout (+ MQTT, snapshots)
//! ```
//!
//! Every buffer on our side of that path is allocated once and reused: frame slots (swapped,
//! not copied, through the mailbox), the RGB buffer, the input tensor (handed to tract by
//! reference count; when the run returns tract has dropped its reference and it is written in
//! place again), the session's state, the task result (`heapless`), the JSON line buffer and
//! the statistics windows, the tracker and the zone and line state: no allocation request
//! at all. Inside `Session::run` tract requests
//! its intermediate and output tensors, `TVec`s and reference counts every run (~890 requests
//! per run of the bundled model); the run loop's thread and the executor's workers serve them
//! from the allocation pool ([`crate::pool_alloc`], the `kestrel` binary's
//! global allocator), so a steady-state frame makes **no call to the system allocator**.
//! `tests/zero_alloc.rs` counts both, over the whole frame path including `Session::run`.
//! Still reaching the system per frame: the MQTT payload (rumqttc owns it, on its thread).
//! Outside the frame path: a model reload ([`reload`]) builds its pipeline on a thread of its
//! own and the loop only moves it in; `/metrics` and `/snapshot.jpg` ([`http`]) allocate
//! their responses on the server's thread, the loop updates atomics and encodes a JPEG only
//! when one is asked for.
//!
//! Each frame's time is split into stages ([`stats::Stages`]) reported per line and as
//! p50/p99 in the summary, and, with `--http`, as Prometheus histograms ([`metrics`],
//! [`http`]).

pub mod convert;
pub mod detect;
pub mod http;
pub mod live_snapshot;
pub mod mailbox;
pub mod metrics;
pub mod mqtt;
pub mod preprocess;
pub mod reload;
pub mod sidecar;
pub mod sinks;
pub mod snapshot;
pub mod stats;
pub mod tasks;
pub mod watchdog;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_nnef::internal::*;

use crate::analytics::{Analytics, AnalyticsConfig, AnalyticsError};
use crate::camera::{CameraError, Frame, FrameSource};
use crate::error::RuntimeError;
use crate::model::{Model, Session};
use convert::{ConvertError, Converter};
use mailbox::{End, Mailbox, Slot, Take};
use mqtt::Topic;
use preprocess::{Normalize, NotAnImage, Preprocessor};
use sinks::{FrameInfo, JsonLines, Status};
use stats::{Stages, Stats, Summary};
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Model, conversion, pre-processing and task for one stream of frames.
pub struct Pipeline {
    session: Session,
    converter: Converter,
    pre: Preprocessor,
    task: Task,
    input: Arc<Tensor>,
    result: TaskResult,
    analytics: Option<Box<Analytics>>,
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
        let mut task = task;
        task.bind(model)
            .map_err(|e| RuntimeError::ModelUnsupported {
                path: model.source().into(),
                reason: e,
            })?;
        let input = Tensor::zero_dt(spec.datum_type, &spec.shape)
            .map_err(|e| RuntimeError::Run(e.into()))?;
        let mut pipeline = Pipeline {
            session: model.session()?,
            converter: Converter::new(),
            pre,
            task,
            input: Arc::new(input),
            result: TaskResult::None,
            analytics: None,
        };
        if matches!(pipeline.task, Task::Detect { .. }) {
            pipeline
                .set_analytics(&AnalyticsConfig::default())
                .map_err(|e| PipelineError::Task(e.to_string()))?;
        }
        Ok(pipeline)
    }

    /// Tracks, zones and lines for a detection task (a detection pipeline starts with a
    /// tracker and no zones). Other tasks refuse zones, lines and class filters.
    pub fn set_analytics(&mut self, config: &AnalyticsConfig) -> Result<(), AnalyticsError> {
        let Task::Detect { detector, labels } = &mut self.task else {
            if config.zones.is_empty() && config.lines.is_empty() && config.classes.is_empty() {
                self.analytics = None;
                return Ok(());
            }
            return Err(AnalyticsError {
                what: "zones, lines and classes".into(),
                item: None,
                field: None,
                reason: "need a detection model (sidecar task = \"detect\")".into(),
            });
        };
        let classes = detector.classes().unwrap_or(labels.len());
        let mut analytics = Box::new(Analytics::new(config, labels, classes)?);
        // The tracker's second stage needs the weak boxes the detector's threshold drops;
        // only those a track follows are reported.
        analytics.report_from(detector.config().score_threshold);
        detector.keep_weak(config.tracker.low_score);
        self.analytics = Some(analytics);
        Ok(())
    }

    /// The analytics (detection tasks).
    pub fn analytics(&self) -> Option<&Analytics> {
        self.analytics.as_deref()
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The result of the last frame processed.
    pub fn result(&self) -> &TaskResult {
        &self.result
    }

    /// Converts `frame` and writes it into the input tensor; returns (convert, resize) times.
    pub fn prepare(&mut self, frame: &Frame<'_>) -> Result<(Duration, Duration), PrepareError> {
        let t0 = Instant::now();
        let rgb = self.converter.convert(frame)?;
        let t1 = Instant::now();
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
        self.pre.run(&rgb, slice);
        Ok((t1 - t0, t1.elapsed()))
    }

    /// Runs the model on the prepared input.
    pub fn infer(&mut self) -> Result<TVec<TValue>, PipelineError> {
        Ok(self.session.run(tvec![self.input.clone().into_tvalue()])?)
    }

    /// Computes the task result from the model's outputs (into [`Pipeline::result`]).
    pub fn post(&mut self, outputs: &[TValue]) -> Result<(), PipelineError> {
        self.task
            .apply(outputs, &mut self.result)
            .map_err(|e| PipelineError::Task(format!("{e:#}")))?;
        if let (Some(a), TaskResult::Detections(found)) = (&mut self.analytics, &mut self.result) {
            a.update(found);
        }
        Ok(())
    }

    /// Runs one frame: prepare, infer, post. Returns the stage times it measured.
    pub fn process(&mut self, frame: &Frame<'_>) -> Result<Stages, PrepareError> {
        let (convert, resize) = self.prepare(frame)?;
        let t = Instant::now();
        let outputs = self.infer()?;
        let infer = t.elapsed();
        let t = Instant::now();
        self.post(&outputs)?;
        Ok(Stages {
            convert_ms: ms(convert),
            resize_ms: ms(resize),
            infer_ms: ms(infer),
            post_ms: ms(t.elapsed()),
            ..Stages::default()
        })
    }
}

/// A frame that failed: a bad frame is skipped, anything else ends the run.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The frame could not be converted.
    #[error(transparent)]
    BadFrame(#[from] ConvertError),
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// How a run is bounded and stopped.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many processed frames.
    pub frames: Option<u64>,
    /// Set (by a signal handler) to finish the current frame and stop.
    pub stop: Arc<AtomicBool>,
    /// Write a status line (detection runs) this often; `None`: never.
    pub status_every: Option<Duration>,
    /// Counters and histograms for `/metrics`, updated every frame (`--http`).
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// `/snapshot.jpg`'s requests, served from the frames (`--http`).
    pub live: Option<Arc<live_snapshot::LiveSnapshot>>,
    /// Hot model reload (`--model FILE`: SIGHUP, or the file changed).
    pub reload: Option<reload::Trigger>,
}

/// The end of a run: its summary, and the error that ended it, if one did.
#[derive(Debug)]
pub struct RunReport {
    /// Counters and latencies.
    pub summary: Summary,
    /// Why the run stopped early.
    pub error: Option<PipelineError>,
}

/// Where results go: JSON lines always, MQTT and snapshots if asked for.
pub struct Outputs<'a, W: Write> {
    /// One line per frame.
    pub json: &'a mut JsonLines<W>,
    /// Each line published.
    pub mqtt: Option<&'a mut mqtt::MqttSink>,
    /// Annotated frames now and then.
    pub snapshots: Option<&'a mut snapshot::Snapshots>,
}

/// Runs `pipeline` on frames from `source` (read on a capture thread) until the source ends,
/// `options.frames` frames are processed, or `options.stop` is set, reporting each frame to
/// `outputs`.
pub fn run<W: Write>(
    pipeline: &mut Pipeline,
    source: Box<dyn FrameSource>,
    outputs: Outputs<'_, W>,
    options: &RunOptions,
) -> RunReport {
    let Outputs {
        json: sink,
        mut mqtt,
        mut snapshots,
    } = outputs;
    // The run loop's thread reuses the blocks tract frees (see `pool_alloc`).
    let _pool = crate::pool_alloc::enable(crate::pool_alloc::cache_bytes_from_env());
    let mailbox = Arc::new(Mailbox::new());
    let capture_stop = Arc::new(AtomicBool::new(false));
    let mut stats = Box::new(Stats::new());
    let opened = Instant::now();
    let interrupt = source.interrupter();
    let capture = match mailbox::spawn_capture(source, mailbox.clone(), capture_stop.clone()) {
        Ok(handle) => handle,
        Err(e) => {
            return RunReport {
                summary: stats.summary(0, Default::default()),
                error: Some(PipelineError::Sink(e)),
            }
        }
    };
    let mut front = Slot::default();
    let mut live_encoder = live_snapshot::Encoder::default();
    let mut reloading = reload::Reloading::default();
    let mut error = None;
    let mut status_clock = StatusClock::new();
    let mut watchdog = watchdog::Watchdog::from_env();
    watchdog.ready();
    while options.frames.is_none_or(|n| stats.frames() < n) {
        watchdog.tick();
        if let Some(outcome) = options.reload.as_ref().and_then(|t| reloading.poll(t)) {
            swap_model(pipeline, outcome, options.metrics.as_deref());
        }
        if options.stop.load(Ordering::Relaxed) {
            log::info!("stopping on signal");
            break;
        }
        match mailbox.take(&mut front, Duration::from_millis(100)) {
            Take::Frame => {}
            Take::Timeout => {
                // Outages and reconnects keep counting while no frame comes.
                if let Some(m) = &options.metrics {
                    m.source(mailbox.dropped(), mailbox.counters());
                }
                continue;
            }
            Take::Closed(End::Finished) => break,
            Take::Closed(End::Failed(e)) => {
                error = Some(e.into());
                break;
            }
        }
        let picked = Instant::now();
        let frame = front.frame();
        let mut stages = match pipeline.process(&frame) {
            Ok(s) => s,
            Err(PrepareError::BadFrame(e)) => {
                log::warn!("skipping a frame: {e}");
                stats.record_bad();
                if let Some(m) = &options.metrics {
                    m.bad_frame();
                }
                continue;
            }
            Err(PrepareError::Pipeline(e)) => {
                error = Some(e);
                break;
            }
        };
        stages.capture_ms = ms(front.ready.saturating_duration_since(frame.captured));
        stages.wait_ms = ms(picked - front.ready);
        let t = Instant::now();
        let info = FrameInfo {
            seq: frame.seq,
            t_capture_ms: ms(frame.captured.saturating_duration_since(opened)),
            latency_ms: ms(frame.captured.elapsed()),
            stages,
        };
        if let Err(e) = sink.frame(&info, &pipeline.task, &pipeline.result) {
            error = Some(e.into());
            break;
        }
        if let Some(m) = mqtt.as_deref_mut() {
            m.publish(sink.last_line());
        }
        if let Err(e) = report_analytics(
            pipeline,
            sink,
            &mut mqtt,
            &mut status_clock,
            options,
            stats.frames() + 1,
            &info,
        ) {
            error = Some(e.into());
            break;
        }
        if let Some(live) = &options.live {
            live.offer(
                &mut live_encoder,
                &frame,
                &pipeline.task,
                &pipeline.result,
                pipeline.analytics(),
            );
        }
        if let Some(s) = snapshots.as_deref_mut() {
            s.offer(
                &frame,
                &pipeline.task,
                &pipeline.result,
                pipeline.analytics(),
            );
        }
        stages.post_ms += ms(t.elapsed());
        let latency = frame.captured.elapsed();
        stats.record(latency, &stages);
        if let Some(m) = &options.metrics {
            m.frame(latency, &stages, &pipeline.result);
            m.source(mailbox.dropped(), mailbox.counters());
            if let Some(a) = pipeline.analytics().filter(|a| a.counts_changed()) {
                m.counts(a);
            }
        }
    }
    watchdog.stopping();
    capture_stop.store(true, Ordering::Relaxed);
    // A source waiting for input (a quiet `cmd:` process) is woken, and its process ended.
    if let Some(interrupt) = &interrupt {
        interrupt();
    }
    // A capture thread blocked on a quiet pipe is left behind (the process is ending);
    // one that finishes soon is joined so its source (a child process) is cleaned up.
    let deadline = Instant::now() + Duration::from_millis(500);
    while !capture.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if capture.is_finished() {
        let _ = capture.join();
    }
    let mut summary = stats.summary(mailbox.dropped(), mailbox.counters());
    if let Some(a) = pipeline.analytics() {
        summary.counts = serde_json::to_value(a.counts()).ok();
        summary.tracks = Some(a.tracker().confirmed());
        summary.events_dropped = Some(a.events_dropped());
        if let Some(m) = mqtt.as_deref_mut() {
            // The final counts stay retained on the broker.
            if a.has_regions() {
                if let Ok(counts) = sink.render_counts(a) {
                    m.publish_to(Topic::Counts, counts);
                }
            }
        }
    }
    if let Some(m) = mqtt {
        summary.mqtt_dropped = Some(m.dropped());
        summary.mqtt_connection_errors = Some(m.connection_errors());
    }
    RunReport { summary, error }
}

/// Puts a reloaded pipeline in place of the running one (keeping its analytics), or logs why
/// the reload failed; counts either.
fn swap_model(
    pipeline: &mut Pipeline,
    outcome: anyhow::Result<Pipeline>,
    metrics: Option<&metrics::Metrics>,
) {
    let ok = outcome.is_ok();
    match outcome {
        Ok(mut new) => {
            new.carry_over(pipeline);
            *pipeline = new;
            log::info!("model reloaded");
        }
        Err(e) => log::warn!("model reload failed, the running model stays: {e:#}"),
    }
    if let Some(m) = metrics {
        m.reloaded(ok);
    }
}

/// When the last status line was written, and the frame count then.
struct StatusClock {
    at: Instant,
    frames: u64,
    counts_published: bool,
}

impl StatusClock {
    fn new() -> StatusClock {
        StatusClock {
            at: Instant::now(),
            frames: 0,
            counts_published: false,
        }
    }
}

/// Writes a frame's events (JSON lines, MQTT), the retained counts when they changed, and
/// the status line when it is due. `frames` counts this frame.
fn report_analytics<W: Write>(
    pipeline: &Pipeline,
    sink: &mut JsonLines<W>,
    mqtt: &mut Option<&mut mqtt::MqttSink>,
    clock: &mut StatusClock,
    options: &RunOptions,
    frames: u64,
    info: &FrameInfo,
) -> std::io::Result<()> {
    let Some(a) = pipeline.analytics() else {
        return Ok(());
    };
    for e in a.events() {
        sink.event(e, a, info.seq, info.t_capture_ms)?;
        if let Some(m) = mqtt.as_deref_mut() {
            m.publish_to(Topic::Event(e.kind), sink.last_line());
        }
    }
    if let Some(m) = mqtt.as_deref_mut() {
        if a.has_regions() && (a.counts_changed() || !clock.counts_published) {
            clock.counts_published = true;
            let counts = sink.render_counts(a)?;
            m.publish_to(Topic::Counts, counts);
        }
    }
    if let Some(every) = options.status_every {
        let elapsed = clock.at.elapsed();
        if elapsed >= every {
            let status = Status {
                seq: info.seq,
                t_ms: info.t_capture_ms,
                frames,
                fps: (frames - clock.frames) as f64 / elapsed.as_secs_f64(),
                tracks: a.tracker().tracks().count(),
            };
            sink.status(&status, a)?;
            if let Some(m) = mqtt.as_deref_mut() {
                m.publish_to(Topic::Status, sink.last_line());
            }
            clock.at = Instant::now();
            clock.frames = frames;
        }
    }
    Ok(())
}
