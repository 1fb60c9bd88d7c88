//! `kestrel run`: its flags ([`RunArgs`]), merged with the settings file in one place
//! ([`Settings::resolve`]: a flag overrides the file, the file the defaults), and the wiring of
//! a run from them ([`run`]): model and sidecar, pipeline and analytics, outputs, source,
//! `/metrics`, hot reload, signals, then the frame loop and its summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kestrel_runtime::analytics::zones::{parse_line_flag, parse_zone_flag, LineSpec, ZoneSpec};
use kestrel_runtime::analytics::AnalyticsConfig;
use kestrel_runtime::camera::{self, PixelFormat, SourceOptions};
use kestrel_runtime::config::{parse_pixel_format, parse_size, CameraConfig, Config, Location};
use kestrel_runtime::pipeline::http::{HttpServer, Served, ServedCamera};
use kestrel_runtime::pipeline::live_snapshot::LiveSnapshot;
use kestrel_runtime::pipeline::metrics::Metrics;
use kestrel_runtime::pipeline::mqtt::{BrokerSettings, MqttSink};
use kestrel_runtime::pipeline::reload::{self, Trigger};
use kestrel_runtime::pipeline::sidecar::Sidecar;
use kestrel_runtime::pipeline::snapshot::Snapshots;
use kestrel_runtime::pipeline::{self, preprocess::Normalize, sinks::JsonLines, tasks::Task};
use kestrel_runtime::pipeline::{Outputs, Pipeline, RunOptions};
use kestrel_runtime::secret::{self, Secret};
use kestrel_runtime::{bundled, LoadOptions, Model};

use crate::load;

mod cameras;

/// The settings of `kestrel run` (boxed in [`Command`]: far larger than the others).
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Settings file (default: /etc/kestrel/kestrel.toml when it exists); flags given
    /// on the command line override it.
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    config: Option<PathBuf>,
    /// Read no settings file.
    #[arg(long)]
    no_config: bool,
    /// Model (.nnef.tgz, .nnef.tar or NNEF directory); default: the bundled model. Its
    /// sidecar MODEL.kestrel.toml (task, labels, preprocessing) is read if present.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Frame source: synthetic, pipe: (stdin), cmd:"COMMAND", file:PATH, v4l2:/dev/videoN,
    /// rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH, nokhwa:INDEX. Given, it replaces the
    /// settings file's `source` or `[[camera]]` tables.
    #[arg(long)]
    source: Option<String>,
    /// A file holding only the password (mode 600) of the source URL's user
    /// (rtsp://USER@HOST/…): kept out of the command line and the settings file.
    #[arg(long, value_name = "FILE")]
    source_password_file: Option<PathBuf>,
    /// Stop after N frames (default: run until the source ends; 100 for the bundled default).
    #[arg(long)]
    frames: Option<u64>,
    /// Frame size WxH: of the raw frames of a pipe/cmd/file, or asked of a camera.
    /// [default: 640x480]
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Frames per second: pacing of synthetic and file sources, asked of a camera (0: as
    /// fast as possible). [default: 30]
    #[arg(long)]
    fps: Option<f64>,
    /// Pixel format of raw frames (pipe, cmd, raw files), or forced on a camera:
    /// i420, nv12, yuyv, rgb24, gray, mjpeg.
    #[arg(long, value_parser = parse_pixel_format)]
    pixel_format: Option<PixelFormat>,
    /// Start a file source again at its end.
    #[arg(long = "loop", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    looping: Option<bool>,
    /// End the run when the source fails, instead of reconnecting.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    exit_on_source_error: Option<bool>,
    /// Classes reported per frame for classifiers (default: the sidecar's, else 3).
    #[arg(long)]
    top_k: Option<usize>,
    /// Per-channel mean (pixels scaled to 0..1), e.g. 0.485,0.456,0.406; overrides the sidecar.
    #[arg(long, value_parser = parse_triple)]
    mean: Option<[f32; 3]>,
    /// Per-channel std, e.g. 0.229,0.224,0.225; overrides the sidecar.
    #[arg(long, value_parser = parse_triple)]
    std: Option<[f32; 3]>,
    /// Also publish each frame's JSON line to mqtt://HOST[:PORT]/TOPIC or, over TLS,
    /// mqtts://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC (QoS 1; ports 1883 and 8883 by default).
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// MQTT user name (when the URL has no USER@).
    #[arg(long, value_name = "USER")]
    mqtt_user: Option<String>,
    /// A file holding only the MQTT password (mode 600): kept out of the command line, which
    /// every user can read in `ps`.
    #[arg(long, value_name = "FILE")]
    mqtt_password_file: Option<PathBuf>,
    /// mqtts: trust the CA certificates (PEM) of FILE instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    mqtt_ca: Option<PathBuf>,
    /// mqtts: the client certificate (PEM) for mutual TLS, with --mqtt-key.
    #[arg(long, value_name = "FILE", requires = "mqtt_key")]
    mqtt_cert: Option<PathBuf>,
    /// mqtts: the client's private key (PEM, mode 600) for mutual TLS, with --mqtt-cert.
    #[arg(long, value_name = "FILE", requires = "mqtt_cert")]
    mqtt_key: Option<PathBuf>,
    /// Send a password over plain mqtt:// (in clear text) instead of refusing to.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    mqtt_insecure: Option<bool>,
    /// Write an annotated JPEG of the current frame into DIR every --every seconds.
    #[arg(long, value_name = "DIR")]
    snapshot: Option<PathBuf>,
    /// Seconds between snapshots. [default: 10]
    #[arg(long)]
    every: Option<f64>,
    /// Detection runs: keep only these classes (labels), e.g. person,car.
    #[arg(long, value_delimiter = ',', value_name = "LABELS")]
    classes: Option<Vec<String>>,
    /// A zone: NAME=x,y;x,y;x,y[@class,class] (relative coordinates, at least 3 points).
    /// Repeatable; replaces the config file's zones.
    #[arg(long = "zone", value_parser = parse_zone_flag, value_name = "ZONE")]
    zones: Vec<ZoneSpec>,
    /// A counting line: NAME=ax,ay;bx,by[@class,class]; `in` is onto the right-hand side
    /// of a→b. Repeatable; replaces the config file's lines.
    #[arg(long = "line", value_parser = parse_line_flag, value_name = "LINE")]
    lines: Vec<LineSpec>,
    /// Detection runs: seconds between status lines with the counts (0: none). [default: 10]
    #[arg(long, value_parser = parse_seconds, value_name = "SECS")]
    status_every: Option<f64>,
    /// Serve Prometheus /metrics, /healthz and /snapshot.jpg on HOST:PORT, e.g. 127.0.0.1:9464,
    /// or PORT for 127.0.0.1:PORT (default: off). Any address but loopback needs a bearer token.
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    /// A file holding only the bearer token (mode 600) that /metrics and /snapshot.jpg ask
    /// for (`Authorization: Bearer TOKEN`).
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,
    /// Seconds without a processed frame before /healthz answers 503. [default: 10]
    #[arg(long, value_parser = parse_seconds, value_name = "SECS")]
    healthz_silence: Option<f64>,
}

/// What a run uses, each value from its flag, else the settings file, else the default.
struct Settings {
    /// The settings file read (empty when none), to place errors in it.
    file: Config,
    options: LoadOptions,
    /// The model file, or none for the bundled model.
    model: Option<PathBuf>,
    /// `--mean`/`--std` (or the file's), overriding the sidecar's.
    normalize: Option<Normalize>,
    top_k: Option<usize>,
    source: String,
    /// The password file of the source URL's user.
    source_password_file: Option<PathBuf>,
    source_options: SourceOptions,
    frames: Option<u64>,
    analytics: AnalyticsConfig,
    /// Whether the zones and the lines came from the file (to place their errors there),
    /// and whether the classes did.
    regions_from_file: (bool, bool),
    classes_from_file: bool,
    mqtt: Option<BrokerSettings>,
    snapshot: Option<PathBuf>,
    every: f64,
    status_every: f64,
    http: Option<String>,
    /// The bearer token of `--http` (config `http_token`, or read from the token file).
    http_token: Option<Secret>,
    healthz_silence: f64,
    /// `[[camera]]` tables of the file (none when `--source` is given): one frame loop each.
    cameras: Vec<CameraConfig>,
}

impl Settings {
    /// Reads the settings file `args` names (or the default one) and merges the flags over it.
    fn resolve(args: RunArgs, threads: Option<u16>) -> Result<Settings> {
        let location = match (args.config, args.no_config) {
            (Some(path), _) => Location::Explicit(path),
            (None, true) => Location::None,
            (None, false) => Location::Default,
        };
        let file = Config::locate(&location)?.unwrap_or_default();
        if !file.path.as_os_str().is_empty() {
            log::info!("settings from {}", file.path.display());
        }
        let model = args.model.or(file.model.clone());
        // `--source` runs that one source, whatever cameras the file lists.
        let cameras = match args.source {
            Some(_) => Vec::new(),
            None => file.cameras.clone(),
        };
        let source = args.source.or(file.source.clone());
        // With neither a model nor a source: the bundled model on 100 synthetic frames.
        let default_run = model.is_none() && source.is_none() && cameras.is_empty();
        let normalize = match (args.mean.or(file.mean), args.std.or(file.std)) {
            (None, None) => None,
            (m, s) => Some(Normalize::from_mean_std(
                m.unwrap_or([0.0; 3]),
                s.unwrap_or([1.0; 3]),
            )),
        };
        let (width, height) = args.size.or(file.size).unwrap_or((640, 480));
        let source_options = SourceOptions {
            width,
            height,
            fps: args.fps.or(file.fps).unwrap_or(30.0),
            pixel_format: args.pixel_format.or(file.pixel_format),
            looping: args.looping.or(file.looping).unwrap_or(false),
            exit_on_error: args
                .exit_on_source_error
                .or(file.exit_on_source_error)
                .unwrap_or(false),
        };
        // Zones and lines: the flags replace the file's lists.
        let regions_from_file = (args.zones.is_empty(), args.lines.is_empty());
        let classes_from_file = args.classes.is_none();
        let analytics = AnalyticsConfig {
            tracker: file.tracker.unwrap_or_default(),
            classes: args.classes.or(file.classes.clone()).unwrap_or_default(),
            zones: if regions_from_file.0 {
                file.zones.clone()
            } else {
                args.zones
            },
            lines: if regions_from_file.1 {
                file.lines.clone()
            } else {
                args.lines
            },
        };
        let mqtt = args.mqtt.or(file.mqtt.clone()).map(|url| BrokerSettings {
            url,
            user: args.mqtt_user.or(file.mqtt_user.clone()),
            // A password file on the command line overrides the file's password.
            password: match &args.mqtt_password_file {
                Some(_) => None,
                None => file.mqtt_password.clone(),
            },
            password_file: args.mqtt_password_file.or(file.mqtt_password_file.clone()),
            ca: args.mqtt_ca.or(file.mqtt_ca.clone()),
            // The certificate and key go together: both from the flags, or both from the file.
            cert: args.mqtt_cert.clone().or(file.mqtt_cert.clone()),
            key: match args.mqtt_cert {
                Some(_) => args.mqtt_key,
                None => file.mqtt_key.clone(),
            },
            insecure: args.mqtt_insecure.or(file.mqtt_insecure).unwrap_or(false),
        });
        let http_token = match (args.http_token_file, &file.http_token_file) {
            (Some(path), _) => Some(token_file(&path)?),
            (None, Some(path)) => Some(token_file(path)?),
            (None, None) => file.http_token.clone(),
        };
        Ok(Settings {
            options: LoadOptions {
                threads: threads.or(file.threads).map(usize::from),
            },
            model,
            normalize,
            top_k: args.top_k.or(file.top_k),
            source: source.unwrap_or_else(|| "synthetic".into()),
            source_password_file: args
                .source_password_file
                .or(file.source_password_file.clone()),
            source_options,
            frames: args.frames.or(file.frames).or(default_run.then_some(100)),
            analytics,
            regions_from_file,
            classes_from_file,
            mqtt,
            snapshot: args.snapshot.or(file.snapshot.clone()),
            every: args.every.or(file.every).unwrap_or(10.0),
            status_every: args.status_every.or(file.status_every).unwrap_or(10.0),
            http: args.http.or(file.http.clone()),
            http_token,
            healthz_silence: args
                .healthz_silence
                .or(file.healthz_silence)
                .unwrap_or(10.0),
            cameras,
            file,
        })
    }
}

/// `kestrel run`: the frame loop over the settings' source, with every output they ask for.
pub(crate) fn run(args: RunArgs, threads: Option<u16>) -> Result<()> {
    let s = Settings::resolve(args, threads)?;
    let (model, normalize, task) = match &s.model {
        None => (
            bundled::load(&s.options)?,
            s.normalize.unwrap_or_else(bundled::normalize),
            bundled::task(s.top_k.unwrap_or(3)),
        ),
        Some(path) => load_with_sidecar(path, &s.options, s.normalize, s.top_k)?,
    };
    if !s.cameras.is_empty() {
        return cameras::run(&s, &model, normalize, &task);
    }
    let mut pipeline = Pipeline::new(&model, normalize, task)
        .with_context(|| format!("model {}", model.source()))?;
    // Class names are checked against the model's labels now, and placed in the file when
    // they came from it.
    if let Err(e) = pipeline.set_analytics(&s.analytics) {
        let in_file = match e.item {
            Some(("zone", _)) => s.regions_from_file.0,
            Some(("line", _)) => s.regions_from_file.1,
            _ => s.classes_from_file,
        };
        if in_file {
            if let Some(placed) = s.file.place(&e) {
                return Err(placed.into());
            }
        }
        return Err(e).with_context(|| format!("model {}", model.source()));
    }
    let mut mqtt = s.mqtt.as_ref().map(MqttSink::connect).transpose()?;
    let mut snapshots = s
        .snapshot
        .as_deref()
        .map(|dir| Snapshots::new(dir, s.every))
        .transpose()?;
    let stop = stop_on_signals()?;
    let raw = with_password(&s.source, s.source_password_file.as_deref())?;
    let source = camera::open(&raw, &s.source_options)?;
    let source_uri = source.uri().to_string();
    let metrics = s.http.as_ref().map(|_| {
        Arc::new(
            Metrics::new(
                &source_uri,
                model.source(),
                model.load_time(),
                pipeline.task(),
            )
            .with_regions(pipeline.analytics()),
        )
    });
    let live = metrics.as_ref().map(|_| Arc::new(LiveSnapshot::new()));
    let cameras = metrics
        .as_ref()
        .zip(live.as_ref())
        .map(|(m, live)| ServedCamera {
            name: source_uri.clone(),
            metrics: m.clone(),
            live: live.clone(),
        });
    let _http = start_http(&s, cameras.into_iter().collect())?;
    let reload = s
        .model
        .clone()
        .map(|path| reload_trigger(path, &s, s.analytics.clone()));
    hook_reload(reload.as_ref())?;
    let run_options = RunOptions {
        frames: s.frames,
        status_every: (s.status_every > 0.0).then(|| Duration::from_secs_f64(s.status_every)),
        metrics,
        live,
        reload: reload.map(|(_, t)| t),
        stop,
    };
    let stdout = std::io::stdout();
    let mut sink = JsonLines::new(stdout.lock());
    let outputs = Outputs {
        json: &mut sink,
        mqtt: mqtt.as_mut(),
        snapshots: snapshots.as_mut(),
    };
    let report = pipeline::run(&mut pipeline, source, outputs, &run_options);
    finish(
        report,
        mqtt.as_mut(),
        &mut sink,
        model.source(),
        &source_uri,
    )
}

/// The end of one camera's run: MQTT drained (bounded), the summary line written, and the
/// error that ended the run, if one did.
fn finish<W: std::io::Write>(
    mut report: pipeline::RunReport,
    mqtt: Option<&mut MqttSink>,
    sink: &mut JsonLines<W>,
    model: &str,
    source: &str,
) -> Result<()> {
    if let Some(m) = mqtt {
        m.finish(Duration::from_secs(3));
        report.summary.mqtt_dropped = Some(m.dropped());
        report.summary.mqtt_connection_errors = Some(m.connection_errors());
    }
    sink.summary(&report.summary, model, source)?;
    match report.error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `uri` with the password of `file` (a secret file: mode 600) given to its URL's user; `uri`
/// itself without a file.
fn with_password(uri: &str, file: Option<&Path>) -> Result<String> {
    let Some(file) = file else {
        return Ok(uri.to_string());
    };
    let password = secret::read_secret_file(file, "source_password_file")?;
    kestrel_runtime::redact::with_password(uri, password.expose()).ok_or_else(|| {
        secret::SecretFileError {
            what: "source_password_file".into(),
            path: file.into(),
            reason: format!(
                "the source '{}' is not a URL with a user and no password (rtsp://USER@HOST/…)",
                kestrel_runtime::redact::redact(uri)
            ),
        }
        .into()
    })
}

/// Stop signals from here on: a SIGTERM while a source starts ends the run cleanly (its
/// first check of the flag), with the source's processes stopped.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

/// `--http`'s endpoint over `cameras` (none without `--http`).
fn start_http(s: &Settings, cameras: Vec<ServedCamera>) -> Result<Option<HttpServer>> {
    let (Some(addr), false) = (&s.http, cameras.is_empty()) else {
        return Ok(None);
    };
    let served = Served {
        cameras,
        silence: Duration::from_secs_f64(s.healthz_silence),
        token: s.http_token.clone(),
    };
    Ok(Some(HttpServer::start(addr, served)?))
}

/// SIGHUP asks `reload` for a reload, and so does a change of its file; with the bundled
/// model there is nothing to reload and the signal is ignored (its default action would end
/// the service).
fn hook_reload(reload: Option<&(PathBuf, Trigger)>) -> Result<()> {
    let hup = reload.map_or_else(
        || Arc::new(AtomicBool::new(false)),
        |(_, t)| t.requested.clone(),
    );
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup)
        .context("installing the SIGHUP handler")?;
    if let Some((path, trigger)) = reload {
        reload::watch(
            path.clone(),
            trigger.requested.clone(),
            Duration::from_secs(2),
        )
        .context("starting the model file watcher")?;
    }
    Ok(())
}

/// Hot reload of the model file `path` (SIGHUP, or the file changed): the trigger whose
/// loader builds a new pipeline as the run built its own, with `analytics`.
fn reload_trigger(path: PathBuf, s: &Settings, analytics: AnalyticsConfig) -> (PathBuf, Trigger) {
    let options = s.options.clone();
    let (normalize, top_k) = (s.normalize, s.top_k);
    let file = path.clone();
    let loader = move || -> Result<Pipeline> {
        let (model, normalize, task) = load_with_sidecar(&file, &options, normalize, top_k)?;
        let mut pipeline = Pipeline::new(&model, normalize, task)
            .with_context(|| format!("model {}", model.source()))?;
        pipeline
            .set_analytics(&analytics)
            .with_context(|| format!("model {}", model.source()))?;
        Ok(pipeline)
    };
    let trigger = Trigger {
        requested: Arc::new(AtomicBool::new(false)),
        loader: Arc::new(loader),
    };
    (path, trigger)
}

/// A model file and what its sidecar says of it (task, labels, preprocessing), the command
/// line's normalisation and top-k first: what `kestrel run --model` starts from, and what a
/// reload loads again.
fn load_with_sidecar(
    path: &Path,
    options: &LoadOptions,
    cli_normalize: Option<Normalize>,
    top_k: Option<usize>,
) -> Result<(Model, Normalize, Task)> {
    let sidecar = Sidecar::find(path)?;
    let top_k = top_k
        .or(sidecar.as_ref().and_then(Sidecar::top_k))
        .unwrap_or(3);
    let normalize = cli_normalize
        .or(sidecar.as_ref().and_then(Sidecar::normalize))
        .unwrap_or_else(Normalize::unit);
    let model = load(path, options)?;
    let task = match &sidecar {
        Some(s) => {
            log::info!("task from {}", s.path().display());
            s.task_for(top_k, &model)?
        }
        None => Task::classify(vec![], top_k),
    };
    Ok((model, normalize, task))
}

/// The `--http` bearer token from its file: private to its owner, long enough to resist
/// guessing.
fn token_file(path: &Path) -> Result<Secret> {
    let token = secret::read_secret_file(path, "http_token_file")?;
    let min = kestrel_runtime::pipeline::http::MIN_TOKEN;
    if token.expose().len() < min {
        return Err(secret::SecretFileError {
            what: "http_token_file".into(),
            path: path.into(),
            reason: format!("the token is shorter than {min} characters: too easy to guess"),
        }
        .into());
    }
    Ok(token)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("'{s}': expected a number of seconds ≥ 0")),
    }
}

fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f32>()
                .map_err(|_| format!("bad number '{x}'"))
        })
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [a] => Ok([*a; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err("expected one or three comma-separated numbers".into()),
    }
}
