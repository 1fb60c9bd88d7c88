//! `kestrel`: the on-device command. Parses arguments, calls `kestrel_runtime`, prints.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error or bad input (missing, corrupt or
//! over-limit model, unreadable array, wrong input shape, bad source URI); the README's table
//! is the full list, `runtime/tests/cli.rs` tests it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kestrel_runtime::bench::{self, BenchOptions};
use kestrel_runtime::io::npy;
use kestrel_runtime::pool_alloc::PoolAlloc;
use kestrel_runtime::{bundled, infer, random, LoadOptions, Model, RuntimeError};

mod run;

use run::RunArgs;

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

/// One function per subcommand.
fn dispatch(cli: Cli) -> Result<()> {
    let options = LoadOptions {
        threads: cli.threads.map(usize::from),
    };
    match cli.command {
        Command::Run(args) => run::run(*args, cli.threads),
        Command::Infer {
            model,
            input,
            output,
        } => infer(&model, &input, &output, &options),
        Command::Bench {
            model,
            warmup,
            runs,
            profile_runs,
            json,
        } => {
            let bench = BenchOptions {
                warmup,
                runs,
                profile_runs,
            };
            bench_model(model.as_deref(), &bench, json, &options)
        }
        Command::Info { model } => info(model.as_deref(), &options),
    }
}

/// `kestrel infer`: the model on the arrays of `input`, its outputs written to `output`.
fn infer(model: &Path, input: &Path, output: &Path, options: &LoadOptions) -> Result<()> {
    let model = load(model, options)?;
    let arrays = npy::read_arrays(input)?;
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
    npy::write_arrays(output, &named)?;
    for (name, t) in &named {
        eprintln!("{name}: {:?} {:?}", t.datum_type(), t.shape());
    }
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// `kestrel bench`: latency, memory and a per-op profile of the model (or the bundled one) on
/// random inputs, as text or JSON.
fn bench_model(
    model: Option<&Path>,
    bench: &BenchOptions,
    json: bool,
    options: &LoadOptions,
) -> Result<()> {
    let model = load_or_bundled(model, options)?;
    let inputs =
        random::random_inputs(model.inputs(), 1).map_err(|e| RuntimeError::Run(e.into()))?;
    let report = bench::bench(&model, &inputs, bench)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(())
}

/// `kestrel info`: the model's inputs and outputs, and the kernels this CPU runs.
fn info(model: Option<&Path>, options: &LoadOptions) -> Result<()> {
    use kestrel_runtime::kernels;
    let model = load_or_bundled(model, options)?;
    println!("model   {}", model.source());
    for s in model.inputs() {
        println!("input   {s}");
    }
    for s in model.outputs() {
        println!("output  {s}");
    }
    println!("load    {:.2} ms", model.load_time().as_secs_f64() * 1e3);
    println!("threads {}", model.threads());
    println!("binary kernel {}", kernels::binary::select().name());
    let int8 = kernels::int8::select();
    match int8.codes16() {
        Some(one) => println!(
            "int8 kernel {} (16-bit inputs of up to {} channels: {})",
            int8.name(),
            kernels::int8::MAX_K16,
            one.name()
        ),
        None => println!("int8 kernel {}", int8.name()),
    }
    println!("depthwise kernel {}", kernels::depthwise::select().name());
    println!("bitpack kernel {}", kernels::bitpack::select().name());
    println!("pool kernel {}", kernels::pool::select().name());
    Ok(())
}

/// The model at `path`, or the bundled one.
fn load_or_bundled(path: Option<&Path>, options: &LoadOptions) -> Result<Model> {
    match path {
        None => Ok(bundled::load(options)?),
        Some(p) => load(p, options),
    }
}

/// The model at `path`.
pub(crate) fn load(path: &Path, options: &LoadOptions) -> Result<Model> {
    Ok(Model::load(path, options)?)
}
