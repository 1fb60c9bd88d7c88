//! Loading and running a graph.
//!
//! A [`Model`] is an NNEF graph loaded with Kestrel's NNEF dialect ([`crate::ops::registry::nnef`]),
//! optimised for this machine at load (tract picks its kernels by CPU detection here) and planned
//! once. A [`Session`] holds the mutable state of one stream of runs; create one per thread.
//!
//! The graph on disk is the *decluttered* one written by `kestrel-quantize`: optimised ops
//! (im2col, packed matmul kernels) are machine-specific and have no serialisation, so the device
//! optimises at load (a few ms for small CNNs), which `load_time` includes.
//!
//! Model files are untrusted: before tract reads one, [`crate::load_limits`] checks that its
//! tensors fit in the bytes the file holds, and once the graph is built that no tensor it
//! declares or computes is absurdly large (a typed [`RuntimeError::ModelLimit`], exit 2).
//!
//! Threads: [`LoadOptions::threads`] (default: every core) becomes tract's executor for this
//! model's plan; tract splits its matrix products over it.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_linalg::multithread::Executor;
use tract_nnef::internal::*;
use tract_nnef::tract_core::plan::SimpleState;
use tract_nnef::tract_core::runtime::RunOptions;

use crate::error::RuntimeError;
use crate::load_limits;
use crate::ops::registry;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for the executor; `None` means every core of the machine.
    pub threads: Option<usize>,
}

impl LoadOptions {
    /// The thread count these options resolve to on this machine (at least 1).
    pub fn thread_count(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// Name, element type and concrete shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name the graph gives it (for outputs: the source model's output name).
    pub name: String,
    /// Element type.
    pub datum_type: DatumType,
    /// Concrete shape (the runtime needs every dimension fixed).
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a shape with a zero dimension.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub use crate::error::describe;

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.name,
            describe(self.datum_type, &self.shape)
        )
    }
}

struct Inner {
    source: String,
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    load_time: Duration,
    threads: usize,
}

/// A loaded, optimised and planned graph. Cheap to clone (shared).
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("source", &self.inner.source)
            .field("inputs", &self.inner.inputs)
            .field("outputs", &self.inner.outputs)
            .finish()
    }
}

impl Model {
    /// Loads `.nnef.tgz`, `.nnef.tar` or an NNEF directory.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Model, RuntimeError> {
        let start = Instant::now();
        let label = path.display().to_string();
        if !path.exists() {
            return Err(RuntimeError::ModelNotFound {
                path: path.to_path_buf(),
            });
        }
        let nnef = registry::shared();
        let typed = if path.is_dir() {
            load_limits::check_directory(&label, path)?;
            guarded(|| nnef.model_for_path(path))
        } else {
            let io = |source| RuntimeError::Io {
                path: path.to_path_buf(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            let size = file.metadata().map_err(io)?.len();
            load_limits::check_archive(&label, std::io::BufReader::new(file), size)?;
            let mut file = std::fs::File::open(path).map_err(io)?;
            guarded(|| nnef.model_for_read(&mut file))
        }
        .map_err(|e| RuntimeError::ModelLoad {
            path: label.clone(),
            stage: "load NNEF graph",
            source: e.into(),
        })?;
        Self::from_typed(&label, typed, options, start)
    }

    /// Loads an NNEF tar (optionally gzipped) held in memory, e.g. the bundled model.
    pub fn load_bytes(
        label: &str,
        bytes: &[u8],
        options: &LoadOptions,
    ) -> Result<Model, RuntimeError> {
        let start = Instant::now();
        let typed = Self::parse_bytes(label, bytes)?;
        Self::from_typed(label, typed, options, start)
    }

    /// The first half of [`Model::load_bytes`]: checks the archive against the loader's
    /// limits, then reads and type-checks the graph (Kestrel's ops included) without
    /// optimising or planning it. For tools that inspect a graph, and for fuzzing the
    /// parser at the speed of parsing.
    pub fn parse_bytes(label: &str, bytes: &[u8]) -> Result<TypedModel, RuntimeError> {
        load_limits::check_archive(label, bytes, bytes.len() as u64)?;
        let mut reader: &[u8] = bytes;
        let nnef = registry::shared();
        let typed = guarded(|| nnef.model_for_read(&mut reader as &mut dyn Read)).map_err(|e| {
            RuntimeError::ModelLoad {
                path: label.into(),
                stage: "load NNEF graph",
                source: e.into(),
            }
        })?;
        load_limits::check_graph(label, &typed)?;
        Ok(typed)
    }

    /// Optimises and plans an in-memory graph (what the loaders and the converter's
    /// verification share). `start` is when loading began, for [`Model::load_time`].
    pub fn from_typed(
        label: &str,
        typed: TypedModel,
        options: &LoadOptions,
        start: Instant,
    ) -> Result<Model, RuntimeError> {
        crate::tract_knobs::apply();
        let unsupported = |reason: String| RuntimeError::ModelUnsupported {
            path: label.into(),
            reason,
        };
        load_limits::check_graph(label, &typed)?;
        let inputs = typed
            .inputs
            .iter()
            .enumerate()
            .map(|(ix, outlet)| {
                let name = typed.node(outlet.node).name.clone();
                spec(&typed, *outlet, name).map_err(|e| {
                    unsupported(format!("input #{ix}: {e} (re-convert with --input-shape)"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = typed
            .outputs
            .iter()
            .enumerate()
            .map(|(ix, outlet)| {
                let name = typed
                    .outlet_label(*outlet)
                    .map(str::to_string)
                    .unwrap_or_else(|| typed.node(outlet.node).name.clone());
                spec(&typed, *outlet, name).map_err(|e| unsupported(format!("output #{ix}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let threads = options.thread_count();
        let optimized =
            guarded(|| typed.into_optimized()).map_err(|e| RuntimeError::ModelLoad {
                path: label.into(),
                stage: "optimise graph",
                source: e.into(),
            })?;
        let executor = if threads > 1 {
            worker_pool(threads).map_err(|e| unsupported(format!("cannot start threads: {e}")))?
        } else {
            Executor::SingleThread
        };
        let run_options = RunOptions {
            executor: Some(executor),
            ..RunOptions::default()
        };
        let plan = optimized
            .into_runnable_with_options(&run_options)
            .map_err(|e| RuntimeError::ModelLoad {
                path: label.into(),
                stage: "plan graph",
                source: e.into(),
            })?;
        let load_time = start.elapsed();
        log::debug!("loaded {label} in {load_time:?} ({threads} threads)");
        Ok(Model {
            inner: Arc::new(Inner {
                source: label.to_string(),
                plan,
                inputs,
                outputs,
                load_time,
                threads,
            }),
        })
    }

    /// Where the model came from (a path, or `<bundled>`).
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The model's inputs, in order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inner.inputs
    }

    /// The model's outputs, in order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.inner.outputs
    }

    /// Time spent reading, optimising and planning the graph.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// Threads of the executor the plan runs on.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// The optimised graph the plan executes.
    pub fn optimized_graph(&self) -> &TypedModel {
        self.inner.plan.model()
    }

    /// A new session (mutable run state) on this model.
    pub fn session(&self) -> Result<Session, RuntimeError> {
        let state = SimpleState::new(&self.inner.plan).map_err(|e| RuntimeError::Run(e.into()))?;
        Ok(Session {
            model: self.clone(),
            state,
        })
    }

    /// Checks count, element type and shape of `inputs` against the model's input facts.
    pub fn check_inputs(&self, inputs: &[&Tensor]) -> Result<(), RuntimeError> {
        let specs = self.inputs();
        if inputs.len() != specs.len() {
            return Err(RuntimeError::InputCount {
                expected: specs.len(),
                given: inputs.len(),
            });
        }
        for (index, (spec, tensor)) in specs.iter().zip(inputs).enumerate() {
            if tensor.datum_type() != spec.datum_type || tensor.shape() != spec.shape.as_slice() {
                return Err(RuntimeError::InputMismatch {
                    index,
                    name: spec.name.clone(),
                    expected: describe(spec.datum_type, &spec.shape),
                    given: describe(tensor.datum_type(), tensor.shape()),
                });
            }
        }
        Ok(())
    }

    /// Runs the model once on `inputs` in a fresh session (convenience for one-off runs).
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, RuntimeError> {
        self.session()?.run(inputs)
    }
}

/// The executor's worker threads: like tract's own (`Executor::multithread`), enrolled in the
/// allocation pool (see [`crate::pool_alloc`]): what a worker frees — rayon's job-queue blocks,
/// tract's scratch — is reused, so a multi-threaded run reaches the system allocator no more
/// than a single-threaded one.
fn worker_pool(threads: usize) -> Result<Executor, rayon::ThreadPoolBuildError> {
    let cap = crate::pool_alloc::cache_bytes_from_env();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|n| format!("kestrel-infer-{n}"))
        .start_handler(move |_| crate::pool_alloc::enable_here(cap))
        .exit_handler(|_| crate::pool_alloc::disable_here())
        .build()?;
    Ok(Executor::MultiThread(Arc::new(pool)))
}

/// Runs one of tract's graph readers or passes, with a panic inside tract (see
/// [`crate::panic_guard`]) as an error.
fn guarded<T>(f: impl FnOnce() -> TractResult<T>) -> TractResult<T> {
    crate::panic_guard::guard(f).unwrap_or_else(|message| Err(anyhow::anyhow!(message)))
}

fn spec(model: &TypedModel, outlet: OutletId, name: String) -> TractResult<TensorSpec> {
    let fact = model.outlet_fact(outlet)?;
    let shape = fact
        .shape
        .as_concrete()
        .with_context(|| format!("'{name}' has a symbolic shape {:?}", fact.shape))?
        .to_vec();
    Ok(TensorSpec {
        name,
        datum_type: fact.datum_type,
        shape,
    })
}

/// The mutable state of a stream of runs on one model. Not shared between threads.
pub struct Session {
    model: Model,
    state: TypedSimpleState,
}

impl Session {
    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the model on `inputs` (checked against the input facts first).
    pub fn run(&mut self, inputs: TVec<TValue>) -> Result<TVec<TValue>, RuntimeError> {
        self.check(&inputs)?;
        self.state
            .run(inputs)
            .map_err(|e| RuntimeError::Run(e.into()))
    }

    /// Runs the model and adds the time spent in each node of the optimised graph to
    /// `node_times` (indexed by node id, resized to the graph's node count as needed).
    pub fn run_timed(
        &mut self,
        inputs: TVec<TValue>,
        node_times: &mut Vec<Duration>,
    ) -> Result<TVec<TValue>, RuntimeError> {
        let count = self.model.optimized_graph().nodes().len();
        if node_times.len() < count {
            node_times.resize(count, Duration::ZERO);
        }
        let mut start = Instant::now();
        self.run_observed(inputs, |node, before| {
            if before {
                start = Instant::now();
            } else {
                node_times[node.id] += start.elapsed();
            }
        })
    }

    /// Runs the model, calling `observe(node, true)` just before each node of the optimised
    /// graph is evaluated and `observe(node, false)` just after (profilers: time, allocations).
    pub fn run_observed(
        &mut self,
        inputs: TVec<TValue>,
        mut observe: impl FnMut(&TypedNode, bool),
    ) -> Result<TVec<TValue>, RuntimeError> {
        self.check(&inputs)?;
        self.state
            .run_plan_with_eval(inputs, |ctx, state, node, inputs| {
                observe(node, true);
                let result = tract_nnef::tract_core::plan::eval(ctx, state, node, inputs);
                observe(node, false);
                result
            })
            .map_err(|e| RuntimeError::Run(e.into()))
    }

    fn check(&self, inputs: &[TValue]) -> Result<(), RuntimeError> {
        let tensors: TVec<&Tensor> = inputs.iter().map(|v| &**v).collect();
        self.model.check_inputs(&tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundled;

    #[test]
    fn parse_bytes_reads_and_type_checks_without_optimising() {
        let typed = Model::parse_bytes(bundled::LABEL, bundled::NNEF_TGZ).unwrap();
        let model = Model::load_bytes(
            bundled::LABEL,
            bundled::NNEF_TGZ,
            &LoadOptions { threads: Some(1) },
        )
        .unwrap();
        // Same interface as the loaded model, more nodes (nothing fused or folded yet).
        let input = typed.outlet_fact(typed.inputs[0]).unwrap();
        assert_eq!(
            input.shape.as_concrete().unwrap(),
            &model.inputs()[0].shape[..]
        );
        assert!(typed.nodes().len() > model.optimized_graph().nodes().len());
    }

    #[test]
    fn parse_bytes_names_the_source_of_a_broken_archive() {
        let mut broken = bundled::NNEF_TGZ.to_vec();
        broken.truncate(broken.len() / 2);
        let err = Model::parse_bytes("cut.nnef.tgz", &broken).unwrap_err();
        assert!(err.to_string().contains("cut.nnef.tgz"), "{err}");
    }
}
