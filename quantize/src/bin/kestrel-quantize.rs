//! `kestrel-quantize`: the offline converter. Parses arguments, calls `kestrel_quantize`,
//! prints. Exit codes: 0 success, 1 failure, 2 usage error or bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kestrel_quantize::float_ops::OpChoice;
use kestrel_quantize::load::InputShape;
use kestrel_quantize::mst::MstOptions;
use kestrel_quantize::{convert, ConvertError, ConvertOptions};
use kestrel_runtime::io::atomic::AtomicFile;

/// Convert trained ONNX models into compact tract graphs for Kestrel.
#[derive(Parser, Debug)]
#[command(name = "kestrel-quantize", version, about, long_about = None)]
struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert an ONNX model into a verified NNEF graph (.nnef.tgz or .nnef.tar).
    Convert {
        /// The ONNX model.
        model: PathBuf,
        /// Output graph.
        #[arg(short, long)]
        output: PathBuf,
        /// Shape of an input the model leaves open, e.g. x=1,3,224,224 (repeatable).
        #[arg(long = "input-shape", value_name = "NAME=D0,D1,...")]
        input_shapes: Vec<InputShape>,
        /// Relative tolerance of the built-in verification (float and binary graphs; int8
        /// has its own floor, `--sqnr-floor`).
        #[arg(long, default_value_t = 1e-4, conflicts_with = "int8")]
        tolerance: f64,
        /// Write the conversion report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Convert binarised layers (Sign, BipolarQuant, ±1 weights) into binary ops.
        #[arg(long, value_enum, default_value_t = Switch::On, conflicts_with = "int8")]
        binary: Switch,
        /// Also verify on these inputs (.npy/.npz, N samples): max abs diff and arg-max
        /// agreement; more than 0.1% arg-max disagreement fails the conversion.
        #[arg(long, value_name = "FILE", conflicts_with = "int8")]
        verify_data: Option<PathBuf>,
        /// MST channel trees of binary layers: analysis, report and cost-model choice.
        #[arg(long, value_enum, default_value_t = Switch::On, conflicts_with = "int8")]
        mst: Switch,
        /// Depth bound of the MST (children of the virtual root have depth 1).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..),
              conflicts_with = "int8")]
        mst_depth: u64,
        /// Write each binary layer's MST as Graphviz DOT into this folder.
        #[arg(long, value_name = "DIR", conflicts_with = "int8")]
        mst_dot: Option<PathBuf>,
        /// Whose depthwise convolution the graph runs: Kestrel's fused op where it applies,
        /// or tract's everywhere (for comparisons).
        #[arg(long, value_enum, default_value_t = OpChoice::Kestrel)]
        depthwise: OpChoice,
        /// Whose 2×2 stride-2 max-pool the graph runs: Kestrel's where it applies, or tract's
        /// everywhere (for comparisons).
        #[arg(long, value_enum, default_value_t = OpChoice::Kestrel)]
        max_pool: OpChoice,
        /// Whose float 1×1 convolution, dense layer and k×k convolution with one group the
        /// graph runs: Kestrel's where it applies (channels first), or tract's everywhere
        /// (for comparisons).
        #[arg(long, value_enum, default_value_t = OpChoice::Kestrel)]
        linear: OpChoice,
        #[command(flatten)]
        int8: kestrel_quantize::int8::cli::Int8Args,
    },
}

/// An on/off flag value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Switch {
    On,
    Off,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kestrel_runtime::logging::init(cli.verbose);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kestrel-quantize: error: {e:#}");
            ExitCode::from(kestrel_runtime::exit::exit_code(&e, |cause| {
                cause
                    .downcast_ref::<kestrel_quantize::int8::Int8Error>()
                    .map(|e| e.is_bad_input())
                    .or_else(|| {
                        cause
                            .downcast_ref::<ConvertError>()
                            .map(ConvertError::is_bad_input)
                    })
            }))
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert {
            model,
            output,
            input_shapes,
            tolerance,
            report,
            binary,
            verify_data,
            mst,
            mst_depth,
            mst_dot,
            depthwise,
            max_pool,
            linear,
            int8,
        } => {
            if int8.int8 {
                return kestrel_quantize::int8::cli::run(
                    &model,
                    &output,
                    report.as_deref(),
                    input_shapes,
                    &int8,
                    kestrel_quantize::float_ops::Choices {
                        depthwise,
                        max_pool,
                        linear,
                    },
                );
            }
            let options = ConvertOptions {
                input_shapes,
                tolerance,
                binary: binary == Switch::On,
                verify_data,
                mst: (mst == Switch::On).then(|| MstOptions {
                    max_depth: mst_depth as usize,
                    dot_dir: mst_dot,
                    ..MstOptions::default()
                }),
                depthwise,
                max_pool,
                linear,
                ..ConvertOptions::default()
            };
            let result = convert(&model, &output, &options)?;
            print!("{}", result.to_text());
            if let Some(path) = report {
                let mut file = AtomicFile::create(&path)?;
                serde_json::to_writer_pretty(file.file_mut(), &result)
                    .with_context(|| format!("writing {}", path.display()))?;
                file.commit()?;
            }
        }
    }
    Ok(())
}
