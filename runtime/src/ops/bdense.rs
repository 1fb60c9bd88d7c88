//! `kestrel_binary_dense`: a binary fully-connected layer on packed bits.
//!
//! Input: packed u64 `[N, …]`; everything after the batch axis is one row of words (a
//! `[N, ⌈K/64⌉]` from `kestrel_bitpack`, or a packed feature map `[N, H, W, ⌈C/64⌉]`, whose rows
//! then hold channel-padding bits between pixels: those are 0 in input and weights, so they
//! never count). Weights: packed `[N_out, words]` u64, `k` real bits per row. Output: f32
//! `[N, N_out]` or packed `[N, ⌈N_out/64⌉]`, through the fused output stage.
//! `dot = k − 2·popcount(x XOR w)`; K need not be a multiple of 64.
//!
//! Note for converters: a float model flattens NCHW, the packed map is NHWC-with-words, so
//! the weight columns of a dense layer after a conv are permuted accordingly when packed.

use tract_nnef::internal::*;
use tract_nnef::ser::numeric;

use super::mst;
use super::output_stage::{
    affine, dump_layer, layer_parameters, load_layer, OutputKind, OutputStage,
};
use super::packing::{words_for, WORD_BITS};
use super::parallel::{run_indexed, Disjoint};
use super::scratch;
use crate::kernels::binary as kernels;
use crate::kernels::binary::mst::MstSchedule;

/// NNEF name.
pub const NAME: &str = "kestrel_binary_dense";

/// The binary dense operator.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryDense {
    /// Real input bits per row.
    pub k: usize,
    /// Packed weights `[N_out, words]` u64.
    pub weights: Arc<Tensor>,
    /// Fused output stage.
    pub output: OutputStage,
    /// MST order (see [`BinaryDense::with_mst`]): the parent of each output feature.
    pub mst_parents: Option<Vec<Option<usize>>>,
    mst: Option<Arc<MstSchedule>>,
}

impl Eq for BinaryDense {}

impl BinaryDense {
    /// Builds the op, checking the parameters against each other.
    pub fn new(
        k: usize,
        weights: Arc<Tensor>,
        kind: OutputKind,
        mul: Arc<Tensor>,
        bias: Arc<Tensor>,
    ) -> TractResult<BinaryDense> {
        ensure!(
            weights.datum_type() == u64::datum_type() && weights.rank() == 2,
            "{NAME}: weights must be u64 [N_out, words], got {:?} {:?}",
            weights.datum_type(),
            weights.shape()
        );
        let (n_out, words) = (weights.shape()[0], weights.shape()[1]);
        ensure!(
            n_out > 0 && k > 0,
            "{NAME}: zero-sized layer (k {k}, outputs {n_out})"
        );
        ensure!(
            words_for(k) <= words,
            "{NAME}: k = {k} bits do not fit rows of {words} words"
        );
        let view = weights.try_as_plain_ram()?;
        let popcount: u64 = view
            .as_slice::<u64>()?
            .iter()
            .map(|w| w.count_ones() as u64)
            .sum();
        ensure!(
            popcount <= (n_out * k) as u64,
            "{NAME}: weights have more set bits than k = {k} per row allows"
        );
        let output = OutputStage::new(kind, mul, bias, n_out, k)
            .with_context(|| format!("{NAME}: output stage"))?;
        Ok(BinaryDense {
            k,
            weights,
            output,
            mst_parents: None,
            mst: None,
        })
    }

    /// Computes output features in minimum-spanning-tree order, each from its parent
    /// (`parents[c]`, `None` for a root) through [`MstSchedule`]: bit-exact with the dense
    /// kernel, faster when features differ from their parents in few words. Rows are not split
    /// across threads on this path (children depend on parents).
    pub fn with_mst(mut self, parents: Vec<Option<usize>>) -> TractResult<BinaryDense> {
        ensure!(
            parents.len() == self.n_out(),
            "{NAME}: {} MST parents for {} outputs",
            parents.len(),
            self.n_out()
        );
        let view = self.weights.try_as_plain_ram()?;
        let schedule = MstSchedule::new(view.as_slice::<u64>()?, self.words(), &parents)
            .map_err(|e| format_err!("{NAME}: MST parents: {e}"))?;
        self.mst = Some(Arc::new(schedule));
        self.mst_parents = Some(parents);
        Ok(self)
    }

    /// Output features.
    pub fn n_out(&self) -> usize {
        self.weights.shape()[0]
    }

    /// Words per row.
    pub fn words(&self) -> usize {
        self.weights.shape()[1]
    }
}

impl Op for BinaryDense {
    fn name(&self) -> StaticName {
        "KestrelBinaryDense".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = vec![format!(
            "{}→{} → {}",
            self.k,
            self.n_out(),
            self.output.kind.as_str()
        )];
        info.extend(self.mst.as_ref().map(|m| m.summary()));
        Ok(info)
    }

    op_as_typed_op!();
}

impl EvalOp for BinaryDense {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (n_out, words) = (self.n_out(), self.words());
        ensure!(
            input.datum_type() == u64::datum_type() && input.rank() >= 2,
            "{NAME}: input must be packed u64 [N, ...], got {:?} {:?}",
            input.datum_type(),
            input.shape()
        );
        let n = input.shape()[0];
        ensure!(
            input.len() == n * words,
            "{NAME}: input rows hold {} words, weights {words}",
            input.len() / n.max(1)
        );
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<u64>()?;
        let wv = self.weights.try_as_plain_ram()?;
        let w = wv.as_slice::<u64>()?;
        let kernel = kernels::select();
        let k = self.k as i32;
        let ow = words_for(n_out);
        let mut out = match self.output.kind {
            // SAFETY: f32 has no invalid bit patterns; every element is written below.
            OutputKind::Float => unsafe { Tensor::uninitialized::<f32>(&[n, n_out])? },
            OutputKind::Packed => Tensor::zero::<u64>(&[n, ow])?,
        };
        let mut out_view = out.try_as_plain_ram_mut()?;
        // Counts in per-thread scratch; batch 1 is the common case, so tasks split the output
        // features (PER_TASK at a time), not only the rows.
        const PER_TASK: usize = 256;
        let chunks = n_out.div_ceil(PER_TASK);
        scratch::counts(n * n_out, |counts| {
            if let Some(mst) = &self.mst {
                // Children depend on their parents: one task (the roots' counts go through
                // the dense kernel inside, into a per-thread buffer reused across runs).
                thread_local! {
                    static ROOTS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                ROOTS.with(|r| mst.xor_popcount(kernel, x, counts, &mut r.borrow_mut()));
            } else {
                let parts = Disjoint::new(counts);
                run_indexed(n * chunks, |i| {
                    let (row, col) = (i / chunks, i % chunks * PER_TASK);
                    let len = PER_TASK.min(n_out - col);
                    // SAFETY: task i alone writes counts of row `row`, features col..col + len.
                    let c = unsafe { parts.part(row * n_out + col, len) };
                    let rows = &w[col * words..(col + len) * words];
                    kernel.xor_popcount(&x[row * words..(row + 1) * words], rows, words, c);
                });
            }
            match self.output.kind {
                OutputKind::Float => {
                    let (mul, bias) = (self.output.mul_slice(), self.output.bias_slice());
                    let y = out_view.as_slice_mut::<f32>()?;
                    for (y, counts) in y.chunks_exact_mut(n_out).zip(counts.chunks_exact(n_out)) {
                        for (((y, &p), &m), &b) in y.iter_mut().zip(counts).zip(mul).zip(bias) {
                            *y = affine(m, b, k - 2 * p as i32);
                        }
                    }
                }
                OutputKind::Packed => {
                    let bits = out_view.as_slice_mut::<u64>()?;
                    for (bits, counts) in bits.chunks_exact_mut(ow).zip(counts.chunks_exact(n_out))
                    {
                        for (c, (&p, t)) in counts.iter().zip(&self.output.thresholds).enumerate() {
                            bits[c / WORD_BITS] |=
                                (t.bit(k - 2 * p as i32) as u64) << (c % WORD_BITS);
                        }
                    }
                }
            }
            TractResult::Ok(())
        })?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for BinaryDense {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        ensure!(
            f.datum_type == u64::datum_type() && f.rank() >= 2,
            "{NAME}: input must be packed u64 [N, ...], got {f:?}"
        );
        let mut row = 1usize;
        for d in f.shape.iter().skip(1) {
            // Shapes come from untrusted files: an overflow is an error, not a panic.
            row = row
                .checked_mul(d.to_usize()?)
                .with_context(|| format!("{NAME}: input row of {f:?} overflows"))?;
        }
        ensure!(
            row == self.words(),
            "{NAME}: input rows hold {row} words, weights {}",
            self.words()
        );
        let n = f.shape[0].clone();
        Ok(tvec!(match self.output.kind {
            OutputKind::Float => f32::fact(tvec![n, self.n_out().into()]),
            OutputKind::Packed => u64::fact(tvec![n, words_for(self.n_out()).into()]),
        }))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &layer_parameters(&[
            TypeName::Integer.named("k"),
            mst::parents_parameter(),
            mst::weights_parameter(),
        ]),
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let args = load_layer(builder, invocation)?;
    let k: usize = invocation.named_arg_as(builder, "k")?;
    let parents = mst::read_parents(builder, invocation)?;
    let row_words = args.weights.shape().last().copied().unwrap_or(0);
    let weights = mst::full_weights(
        builder,
        invocation,
        args.weights,
        row_words,
        parents.as_deref(),
    )
    .with_context(|| format!("{NAME}: weights"))?;
    let mut op = BinaryDense::new(k, weights, args.kind, args.mul, args.bias)?;
    if let Some(parents) = parents {
        op = op.with_mst(parents)?;
    }
    builder.wire(op, &[args.input])
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &BinaryDense) -> TractResult<Option<Arc<RValue>>> {
    let weights = mst::stored_weights(&op.weights, op.words(), &op.mst_parents)?;
    dump_layer(
        ast,
        node,
        NAME,
        &weights,
        &op.output,
        [("k", numeric(op.k))]
            .into_iter()
            .chain(mst::parents_attribute(&op.mst_parents))
            .chain(mst::weights_attribute(&op.mst_parents))
            .collect(),
    )
}
