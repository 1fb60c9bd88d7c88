//! `kestrel_linear`: a float 1×1 convolution or dense layer with its bias and ReLU / clip
//! fused, on the kernels of [`crate::kernels::linear`].
//!
//! The input is viewed as `[outer, K, inner]` around its contracted `axis` (`[N, C, H·W]` for
//! an NCHW 1×1 convolution, `[N, K, 1]` for a dense layer on `[N, K]`); the output is the
//! input's shape with the `O` output channels at `axis`. Per image,
//! `Y[O, inner] = act(bias + W[O, K] · X[K, inner])`, each sum one fused multiply-add per k
//! in order from the bias (the kernels' definition, so every kernel gives the same bits).
//!
//! Why not tract's `EinSum` → matrix product: tract runs a 1×1 convolution through its
//! generic tile loop, which per 8×8 tile builds and interprets a list of fused operations
//! (clear, product, bias, clamp, store) and packs the input first; on a MobileNet-sized
//! graph that dispatch costs as much as a tenth of the multiply-adds. Here the weights are
//! packed once at load, the input is read in place (its k rows are the channels-first
//! planes), and each tile adds its bias, clamps and stores with no dispatch.
//!
//! The op keeps its input and output channels first: it does not let tract move the channel
//! axis through it (Kestrel's depthwise op, which the converter puts beside it, is channels
//! first too). Work is split over the runtime's threads by row blocks; each task runs every
//! image for its rows.

use tract_nnef::internal::*;

use super::depthwise::{read_fused, write_fused, Fused};
use super::parallel::{run_indexed, threads, Disjoint};
use crate::kernels::linear::{self as kl, Clamp, Job, PackedWeights, ROWS};

/// NNEF name.
pub const NAME: &str = "kestrel_linear";

/// The float linear operator.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weights `[O, K]` f32.
    pub weights: Arc<Tensor>,
    /// Bias `[O]` f32.
    pub bias: Arc<Tensor>,
    /// Contracted axis of the input (and output-channel axis of the output).
    pub axis: usize,
    /// The fused activation: none, ReLU or clip.
    pub fused: Fused,
    clamp: Clamp,
    packed: Arc<PackedWeights>,
}

impl std::hash::Hash for Linear {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.weights.hash(state);
        self.bias.hash(state);
        self.axis.hash(state);
        self.fused.hash(state);
    }
}

impl PartialEq for Linear {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.axis == other.axis
            && self.fused == other.fused
    }
}

impl Eq for Linear {}

impl Linear {
    /// Builds the op, checking weights f32 `[O, K]` (both above 0), bias f32 `[O]`, and an
    /// activation of none, ReLU or a finite positive clip; packs the weights for the kernels.
    pub fn new(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        axis: usize,
        fused: Fused,
    ) -> TractResult<Linear> {
        let s = weights.shape();
        ensure!(
            weights.datum_type() == f32::datum_type() && s.len() == 2 && s[0] > 0 && s[1] > 0,
            "{NAME}: weights must be f32 [O, K] with O, K > 0, got {:?} {s:?}",
            weights.datum_type()
        );
        super::window::check_bias(NAME, &bias, s[0])?;
        let clamp = fused.product_clamp(NAME)?;
        let packed = PackedWeights::new(
            weights.try_as_plain_ram()?.as_slice::<f32>()?,
            bias.try_as_plain_ram()?.as_slice::<f32>()?,
            s[0],
            s[1],
        );
        Ok(Linear {
            weights,
            bias,
            axis,
            fused,
            clamp,
            packed: Arc::new(packed),
        })
    }

    /// Output channels (O).
    pub fn outputs(&self) -> usize {
        self.weights.shape()[0]
    }

    /// Reduction length (K).
    pub fn k(&self) -> usize {
        self.weights.shape()[1]
    }

    /// `(outer, inner)` of an input of `shape`, checked.
    fn split(&self, shape: &[usize]) -> TractResult<(usize, usize)> {
        ensure!(
            self.axis < shape.len() && shape[self.axis] == self.k(),
            "{NAME}: input axis {} must hold {} channels, got shape {shape:?}",
            self.axis,
            self.k()
        );
        Ok((
            shape[..self.axis].iter().product(),
            shape[self.axis + 1..].iter().product(),
        ))
    }

    /// Runs the product of an `[outer, K, inner]` input `x` into `y` (`[outer, O, inner]`).
    fn run(&self, (outer, inner): (usize, usize), x: &[f32], y: &mut [f32]) {
        let (o, k) = (self.outputs(), self.k());
        if outer == 0 || inner == 0 {
            return;
        }
        let kernel = kl::select();
        let blocks = self.packed.blocks();
        let tasks = threads().min(blocks);
        let clamp = self.clamp;
        let y = Disjoint::new(y);
        run_indexed(tasks, |t| {
            let range = t * blocks / tasks..(t + 1) * blocks / tasks;
            if range.is_empty() {
                return;
            }
            let first = range.start * ROWS;
            let rows = (range.end * ROWS).min(o) - first;
            for n in 0..outer {
                let job = Job {
                    w: &self.packed,
                    blocks: range.clone(),
                    x: &x[n * k * inner..][..k * inner],
                    x_stride: inner,
                    cols: inner,
                    y_stride: inner,
                    clamp,
                };
                // SAFETY: rows `first..first + rows` of image n belong to this task alone.
                let part = unsafe { y.part((n * o + first) * inner, rows * inner) };
                kernel.run(&job, part);
            }
        });
    }
}

impl Op for Linear {
    fn name(&self) -> StaticName {
        "KestrelLinear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}x{} on axis {}, {:?}, kernel {}",
            self.outputs(),
            self.k(),
            self.axis,
            self.fused,
            kl::select().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "{NAME}: input must be f32, got {:?}",
            input.datum_type()
        );
        let split = self.split(input.shape())?;
        let mut shape: TVec<usize> = input.shape().into();
        shape[self.axis] = self.outputs();
        // SAFETY: `run` writes every element (each row block of each image by one task).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            self.run(
                split,
                view.as_slice::<f32>()?,
                out_view.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        ensure!(
            f.datum_type == f32::datum_type()
                && self.axis < f.rank()
                && f.shape[self.axis].to_usize().ok() == Some(self.k()),
            "{NAME}: input must be f32 with {} channels on axis {}, got {f:?}",
            self.k(),
            self.axis
        );
        let mut shape = f.shape.to_tvec();
        shape[self.axis] = self.outputs().into();
        Ok(tvec!(f32::fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?.remove(0);
        let macs = out.shape.iter().product::<TDim>() * self.k();
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs)))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Scalar.tensor().named("weights"),
            TypeName::Scalar.tensor().named("bias"),
            TypeName::Integer.named("axis"),
            TypeName::String.named("activation").default("none"),
            TypeName::Scalar.named("clip").default(0.0),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weights: Arc<Tensor> = invocation.named_arg_as(builder, "weights")?;
    let bias: Arc<Tensor> = invocation.named_arg_as(builder, "bias")?;
    let axis: i64 = invocation.named_arg_as(builder, "axis")?;
    ensure!(axis >= 0, "{NAME}: axis {axis} must not be negative");
    let fused = read_fused(builder, invocation, NAME)?;
    let op = Linear::new(weights, bias, axis as usize, fused)?;
    builder.wire(op, &[input])
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Linear) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let mut attributes = vec![("axis", tract_nnef::ser::numeric(op.axis))];
    write_fused(op.fused, &mut attributes);
    Ok(Some(tract_nnef::ser::invocation(
        NAME,
        &[input, weights, bias],
        &attributes,
    )))
}
