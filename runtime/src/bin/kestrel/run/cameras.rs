//! `kestrel run` over the settings file's `[[camera]]` tables: one frame loop per camera, each
//! on its own thread with its own pipeline (the model is loaded once; each pipeline has its
//! own run state and analytics), source, MQTT connection and snapshots.
//!
//! Every JSON line (frames, events, status, summary) and every MQTT message starts with
//! `"camera": NAME`; each camera publishes under its `mqtt_topic`, else `TOPIC/NAME` of the
//! `mqtt` URL; snapshots go to `snapshot/NAME/`; `/metrics` labels every series with
//! `camera="NAME"`, `/healthz` fails when one camera falls silent, and
//! `/snapshot.jpg?camera=NAME` shows one. Everything is set up, and every camera's settings
//! checked, before the first frame: a bad camera is an error at start naming it (exit 2).
//! Running, a camera whose source fails reconnects on its own and the others go on; one
//! whose loop ends with an error ends alone, and the process reports it at the end.

use super::*;
use kestrel_runtime::camera::FrameSource;

/// One camera, ready to run.
struct Camera {
    name: String,
    pipeline: Pipeline,
    source: Box<dyn FrameSource>,
    source_uri: String,
    mqtt: Option<MqttSink>,
    snapshots: Option<Snapshots>,
    options: RunOptions,
}

/// Runs every camera of `s` with `model` until each ends (`--frames`, a signal, a finite
/// source); the first camera error, if any, after all have ended.
pub(super) fn run(s: &Settings, model: &Model, normalize: Normalize, task: &Task) -> Result<()> {
    let stop = stop_on_signals()?;
    let mut cameras = Vec::with_capacity(s.cameras.len());
    let mut served = Vec::new();
    let mut reloads = Vec::new();
    for c in &s.cameras {
        let name = c.name.clone();
        let at = || format!("camera '{name}' ({}:{})", s.file.path.display(), c.line);
        let analytics = AnalyticsConfig {
            zones: if c.zones.is_empty() {
                s.analytics.zones.clone()
            } else {
                c.zones.clone()
            },
            lines: if c.lines.is_empty() {
                s.analytics.lines.clone()
            } else {
                c.lines.clone()
            },
            ..s.analytics.clone()
        };
        let mut pipeline = Pipeline::new(model, normalize, task.clone()).with_context(at)?;
        pipeline.set_analytics(&analytics).with_context(at)?;
        let (width, height) = c
            .size
            .unwrap_or((s.source_options.width, s.source_options.height));
        let source_options = SourceOptions {
            width,
            height,
            fps: c.fps.unwrap_or(s.source_options.fps),
            pixel_format: c.pixel_format.or(s.source_options.pixel_format),
            ..s.source_options
        };
        let mqtt = match &s.mqtt {
            None => None,
            Some(broker) => {
                let topic = c
                    .mqtt_topic
                    .clone()
                    .or_else(|| broker.topic().map(|t| format!("{t}/{name}")));
                let broker = topic.map_or_else(|| broker.clone(), |t| broker.with_topic(&t));
                Some(MqttSink::connect(&broker).with_context(at)?)
            }
        };
        let snapshots = s
            .snapshot
            .as_ref()
            .map(|dir| Snapshots::new(&dir.join(&name), s.every))
            .transpose()
            .with_context(at)?;
        let raw = with_password(&c.source, c.password_file.as_deref()).with_context(at)?;
        let source = camera::open(&raw, &source_options).with_context(at)?;
        let metrics = s.http.as_ref().map(|_| {
            Arc::new(
                Metrics::new(&name, model.source(), model.load_time(), pipeline.task())
                    .with_regions(pipeline.analytics()),
            )
        });
        let live = metrics.as_ref().map(|_| Arc::new(LiveSnapshot::new()));
        if let (Some(m), Some(l)) = (&metrics, &live) {
            served.push(ServedCamera {
                name: name.clone(),
                metrics: m.clone(),
                live: l.clone(),
            });
        }
        let reload = s
            .model
            .clone()
            .map(|path| reload_trigger(path, s, analytics));
        let options = RunOptions {
            frames: s.frames,
            status_every: (s.status_every > 0.0).then(|| Duration::from_secs_f64(s.status_every)),
            metrics,
            live,
            reload: reload.as_ref().map(|(_, t)| t.clone()),
            stop: stop.clone(),
        };
        reloads.extend(reload);
        cameras.push(Camera {
            source_uri: source.uri().to_string(),
            name,
            pipeline,
            source,
            mqtt,
            snapshots,
            options,
        });
    }
    let _http = start_http(s, served)?;
    // One SIGHUP or file change reloads the model in every camera, each between two of its
    // frames.
    for reload in &reloads {
        hook_reload(Some(reload))?;
    }
    log::info!(
        "running {} cameras: {}",
        cameras.len(),
        s.cameras
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let results: Vec<(String, Result<()>)> = std::thread::scope(|scope| {
        let running: Vec<_> = cameras
            .into_iter()
            .map(|camera| {
                let name = camera.name.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("camera-{name}"))
                    .spawn_scoped(scope, move || run_one(camera, model.source()));
                (name, thread)
            })
            .collect();
        running
            .into_iter()
            .map(|(name, thread)| {
                let result = match thread {
                    Err(e) => Err(anyhow::Error::new(e).context("starting its thread")),
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("its thread panicked"))),
                };
                (name, result)
            })
            .collect()
    });
    let mut first = None;
    for (name, result) in results {
        if let Err(e) = result {
            log::error!("camera '{name}': {e:#}");
            first.get_or_insert(e.context(format!("camera '{name}'")));
        }
    }
    first.map_or(Ok(()), Err)
}

/// One camera's frame loop and summary, its lines marked with its name.
fn run_one(mut camera: Camera, model: &str) -> Result<()> {
    // Each line is one write to stdout, which holds its lock for the whole line: cameras'
    // lines never interleave.
    let mut sink = JsonLines::new(std::io::stdout()).with_camera(&camera.name);
    let outputs = Outputs {
        json: &mut sink,
        mqtt: camera.mqtt.as_mut(),
        snapshots: camera.snapshots.as_mut(),
    };
    let report = pipeline::run(
        &mut camera.pipeline,
        camera.source,
        outputs,
        &camera.options,
    );
    finish(
        report,
        camera.mqtt.as_mut(),
        &mut sink,
        model,
        &camera.source_uri,
    )
}
