//! `kestrel`: the on-device command. Parses arguments, calls `kestrel_runtime`, prints.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error or bad input (missing, corrupt or
//! over-limit model, unreadable array, wrong input shape, bad source URI); the README's table
//! is the full list, `runtime/tests/cli.rs` tests it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kestrel_runtime::analytics::zones::{parse_line_flag, parse_zone_flag, LineSpec, ZoneSpec};
use kestrel_runtime::analytics::AnalyticsConfig;
use kestrel_runtime::bench::{self, BenchOptions};
use kestrel_runtime::camera::{self, PixelFormat, SourceOptions};
use kestrel_runtime::config::{parse_pixel_format, parse_size, Config, Location};
use kestrel_runtime::io::npy;
use kestrel_runtime::pipeline::http::{HttpServer, Served};
use kestrel_runtime::pipeline::live_snapshot::LiveSnapshot;
use kestrel_runtime::pipeline::metrics::Metrics;
use kestrel_runtime::pipeline::mqtt::MqttSink;
use kestrel_runtime::pipeline::reload::{self, Trigger};
use kestrel_runtime::pipeline::sidecar::Sidecar;
use kestrel_runtime::pipeline::snapshot::Snapshots;
use kestrel_runtime::pipeline::{self, preprocess::Normalize, sinks::JsonLines, tasks::Task};
use kestrel_runtime::pipeline::{Outputs, Pipeline, RunOptions};
use kestrel_runtime::pool_alloc::PoolAlloc;
use kestrel_runtime::{bundled, infer, random, LoadOptions, Model, RuntimeError};

/// Counted, and recycling freed blocks on the inference threads: steady-state frames never
/// reach the system allocator (`kestrel_runtime::pool_alloc`).
#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

/// Kestrel: run compact tract graphs on edge boards.
#[derive(Parser, Debug)]
#[command(name = "kestrel", version, about, long_about = None)]
struct Cli {
    /// Worker threads for inference (default: every core).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// More diagnostics on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the model on every frame of a source, one JSON line per frame (the main job).
    ///
    /// With no arguments: the bundled model on the synthetic source, 100 frames. Otherwise it
    /// runs until the source ends, --frames, or SIGINT/SIGTERM (which finish the frame, print
    /// the summary and exit 0).
    Run(Box<RunArgs>),
    /// Run a model on arrays from a .npy/.npz file and write its outputs to a .npz.
    Infer {
        /// Model (.nnef.tgz, .nnef.tar or NNEF directory).
        model: PathBuf,
        /// Input arrays: a .npy for a one-input model, or a .npz keyed by input name.
        #[arg(long)]
        input: PathBuf,
        /// Output .npz (one array per model output, keyed by output name).
        #[arg(long)]
        output: PathBuf,
    },
    /// Measure load time, latency percentiles, peak RSS and a per-op profile.
    Bench {
        /// Model (default: the bundled model).
        model: Option<PathBuf>,
        /// Untimed runs before measuring.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Runs with per-op timing for the profile (0: no profile).
        #[arg(long, default_value_t = 20)]
        profile_runs: usize,
        /// Print the figures as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's inputs and outputs.
    Info {
        /// Model (default: the bundled model).
        model: Option<PathBuf>,
    },
}

/// The settings of `kestrel run` (boxed in [`Command`]: far larger than the others).
#[derive(clap::Args, Debug)]
struct RunArgs {
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
    /// nokhwa:INDEX.
    #[arg(long)]
    source: Option<String>,
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
    /// Also publish each frame's JSON line to mqtt://HOST:PORT/TOPIC (QoS 1).
    #[arg(long)]
    mqtt: Option<String>,
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
    /// Serve Prometheus /metrics, /healthz and /snapshot.jpg on HOST:PORT, e.g. 127.0.0.1:9464
    /// (default: off).
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    /// Seconds without a processed frame before /healthz answers 503. [default: 10]
    #[arg(long, value_parser = parse_seconds, value_name = "SECS")]
    healthz_silence: Option<f64>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    kestrel_runtime::logging::init(cli.verbose);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kestrel: error: {e:#}");
            ExitCode::from(kestrel_runtime::exit::exit_code(&e, |_| None))
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let options = LoadOptions {
        threads: cli.threads.map(usize::from),
    };
    match cli.command {
        Command::Run(args) => {
            let RunArgs {
                config,
                no_config,
                model,
                source,
                frames,
                size,
                fps,
                pixel_format,
                looping,
                exit_on_source_error,
                top_k,
                mean,
                std,
                mqtt,
                snapshot,
                every,
                classes,
                zones,
                lines,
                status_every,
                http,
                healthz_silence,
            } = *args;
            let location = match (config, no_config) {
                (Some(path), _) => Location::Explicit(path),
                (None, true) => Location::None,
                (None, false) => Location::Default,
            };
            // Flags override the file; the file overrides the defaults.
            let file = Config::locate(&location)?.unwrap_or_default();
            if !file.path.as_os_str().is_empty() {
                log::info!("settings from {}", file.path.display());
            }
            let options = LoadOptions {
                threads: cli.threads.or(file.threads).map(usize::from),
            };
            let model = model.or(file.model.clone());
            let model_path = model.clone();
            let source = source.or(file.source.clone());
            let frames = frames.or(file.frames);
            let (mean, std) = (mean.or(file.mean), std.or(file.std));
            let top_k = top_k.or(file.top_k);
            let mqtt = mqtt.or(file.mqtt.clone());
            let snapshot = snapshot.or(file.snapshot.clone());
            let every = every.or(file.every).unwrap_or(10.0);
            let default_run = model.is_none() && source.is_none();
            let cli_normalize = match (mean, std) {
                (None, None) => None,
                (m, s) => Some(Normalize::from_mean_std(
                    m.unwrap_or([0.0; 3]),
                    s.unwrap_or([1.0; 3]),
                )),
            };
            let (model, normalize, task) = match &model {
                None => (
                    bundled::load(&options)?,
                    cli_normalize.unwrap_or_else(bundled::normalize),
                    bundled::task(top_k.unwrap_or(3)),
                ),
                Some(path) => load_with_sidecar(path, &options, cli_normalize, top_k)?,
            };
            let uri = source.unwrap_or_else(|| "synthetic".into());
            let frames = frames.or(default_run.then_some(100));
            let (width, height) = size.or(file.size).unwrap_or((640, 480));
            let source_options = SourceOptions {
                width,
                height,
                fps: fps.or(file.fps).unwrap_or(30.0),
                pixel_format: pixel_format.or(file.pixel_format),
                looping: looping.or(file.looping).unwrap_or(false),
                exit_on_error: exit_on_source_error
                    .or(file.exit_on_source_error)
                    .unwrap_or(false),
            };
            let mut pipeline = Pipeline::new(&model, normalize, task)
                .with_context(|| format!("model {}", model.source()))?;
            // Zones and lines: the flags replace the file's lists; class names are checked
            // against the model's labels now, and placed in the file when they came from it.
            let from_file = (zones.is_empty(), lines.is_empty());
            let analytics = AnalyticsConfig {
                tracker: file.tracker.unwrap_or_default(),
                classes: classes.clone().or(file.classes.clone()).unwrap_or_default(),
                zones: if zones.is_empty() {
                    file.zones.clone()
                } else {
                    zones
                },
                lines: if lines.is_empty() {
                    file.lines.clone()
                } else {
                    lines
                },
            };
            if let Err(e) = pipeline.set_analytics(&analytics) {
                let in_file = match e.item {
                    Some(("zone", _)) => from_file.0,
                    Some(("line", _)) => from_file.1,
                    _ => classes.is_none(),
                };
                if in_file {
                    if let Some(placed) = file.place(&e) {
                        return Err(placed.into());
                    }
                }
                return Err(e).with_context(|| format!("model {}", model.source()));
            }
            let status_every = status_every.or(file.status_every).unwrap_or(10.0);
            let mut mqtt = mqtt.as_deref().map(MqttSink::connect).transpose()?;
            let mut snapshots = snapshot
                .as_deref()
                .map(|dir| Snapshots::new(dir, every))
                .transpose()?;
            // Stop signals from here on: a SIGTERM while the source starts ends the run
            // cleanly (its first check of the flag), with the source's processes stopped.
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // A second signal while stopping ends the process at once.
                signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
                    .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
                    .context("installing signal handlers")?;
            }
            let source = camera::open(&uri, &source_options)?;
            let source_uri = source.uri().to_string();
            let metrics = http.or(file.http.clone()).map(|addr| {
                let metrics = Arc::new(
                    Metrics::new(
                        &source_uri,
                        model.source(),
                        model.load_time(),
                        pipeline.task(),
                    )
                    .with_regions(pipeline.analytics()),
                );
                (addr, metrics)
            });
            let silence = healthz_silence.or(file.healthz_silence).unwrap_or(10.0);
            let live = metrics.as_ref().map(|_| Arc::new(LiveSnapshot::new()));
            let _http = metrics
                .as_ref()
                .zip(live.as_ref())
                .map(|((addr, m), live)| {
                    let served = Served {
                        metrics: m.clone(),
                        live: live.clone(),
                        silence: std::time::Duration::from_secs_f64(silence),
                    };
                    HttpServer::start(addr, served)
                })
                .transpose()?;
            // Hot reload of a model file: SIGHUP, or the file changed (checked every 2 s).
            let reload = model_path.clone().map(|path| {
                let requested = Arc::new(AtomicBool::new(false));
                let (options, analytics) = (options.clone(), analytics.clone());
                let file = path.clone();
                let loader = move || -> Result<Pipeline> {
                    let (model, normalize, task) =
                        load_with_sidecar(&file, &options, cli_normalize, top_k)?;
                    let mut pipeline = Pipeline::new(&model, normalize, task)
                        .with_context(|| format!("model {}", model.source()))?;
                    pipeline
                        .set_analytics(&analytics)
                        .with_context(|| format!("model {}", model.source()))?;
                    Ok(pipeline)
                };
                (
                    path,
                    Trigger {
                        requested,
                        loader: Arc::new(loader),
                    },
                )
            });
            // SIGHUP asks for a reload; with the bundled model there is nothing to reload and
            // the signal is ignored (its default action would end the service).
            let hup = reload.as_ref().map_or_else(
                || Arc::new(AtomicBool::new(false)),
                |(_, t)| t.requested.clone(),
            );
            signal_hook::flag::register(signal_hook::consts::SIGHUP, hup)
                .context("installing the SIGHUP handler")?;
            if let Some((path, trigger)) = &reload {
                let every = std::time::Duration::from_secs(2);
                reload::watch(path.clone(), trigger.requested.clone(), every)
                    .context("starting the model file watcher")?;
            }
            let run_options = RunOptions {
                frames,
                status_every: (status_every > 0.0)
                    .then(|| std::time::Duration::from_secs_f64(status_every)),
                metrics: metrics.map(|(_, m)| m),
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
            let mut report = pipeline::run(&mut pipeline, source, outputs, &run_options);
            if let Some(m) = mqtt.as_mut() {
                m.finish(std::time::Duration::from_secs(3));
                report.summary.mqtt_dropped = Some(m.dropped());
            }
            sink.summary(&report.summary, model.source(), &source_uri)?;
            if let Some(e) = report.error {
                return Err(e.into());
            }
        }
        Command::Infer {
            model,
            input,
            output,
        } => {
            let model = load(&model, &options)?;
            let arrays = npy::read_arrays(&input)?;
            let inputs = infer::match_inputs(&model, arrays)
                .with_context(|| format!("{} for model {}", input.display(), model.source()))?;
            let outputs = infer::infer(&model, &inputs)
                .with_context(|| format!("{} for model {}", input.display(), model.source()))?;
            let named: Vec<(&str, &_)> = model
                .outputs()
                .iter()
                .map(|s| s.name.as_str())
                .zip(outputs.iter())
                .collect();
            npy::write_arrays(&output, &named)?;
            for (name, t) in &named {
                eprintln!("{name}: {:?} {:?}", t.datum_type(), t.shape());
            }
            eprintln!("wrote {}", output.display());
        }
        Command::Bench {
            model,
            warmup,
            runs,
            profile_runs,
            json,
        } => {
            let model = match &model {
                None => bundled::load(&options)?,
                Some(p) => load(p, &options)?,
            };
            let inputs = random::random_inputs(model.inputs(), 1)
                .map_err(|e| RuntimeError::Run(format!("{e:#}")))?;
            let report = bench::bench(
                &model,
                &inputs,
                &BenchOptions {
                    warmup,
                    runs,
                    profile_runs,
                },
            )?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", report.to_text())?;
            }
        }
        Command::Info { model } => {
            let model = match &model {
                None => bundled::load(&options)?,
                Some(p) => load(p, &options)?,
            };
            println!("model   {}", model.source());
            for s in model.inputs() {
                println!("input   {s}");
            }
            for s in model.outputs() {
                println!("output  {s}");
            }
            println!("load    {:.2} ms", model.load_time().as_secs_f64() * 1e3);
            println!("threads {}", model.threads());
            println!(
                "binary kernel {}",
                kestrel_runtime::kernels::select().name()
            );
            let int8 = kestrel_runtime::kernels::int8::select();
            match int8.codes16() {
                Some(one) => println!(
                    "int8 kernel {} (16-bit inputs of up to {} channels: {})",
                    int8.name(),
                    kestrel_runtime::kernels::int8::MAX_K16,
                    one.name()
                ),
                None => println!("int8 kernel {}", int8.name()),
            }
            println!(
                "depthwise kernel {}",
                kestrel_runtime::kernels::depthwise::select().name()
            );
            println!(
                "bitpack kernel {}",
                kestrel_runtime::kernels::bitpack::select().name()
            );
            println!(
                "pool kernel {}",
                kestrel_runtime::kernels::pool::select().name()
            );
        }
    }
    Ok(())
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

fn load(path: &Path, options: &LoadOptions) -> Result<Model> {
    Ok(Model::load(path, options)?)
}
