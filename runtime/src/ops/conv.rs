//! `kestrel_conv`: a float 2-D convolution (one group, channels first: `[N, C, H, W]` or
//! `[C, H, W]`) with its bias and ReLU / clip fused, as a matrix product on the kernels of
//! [`crate::kernels::linear`].
//!
//! Per image, `Y[O, y·Wo + x] = act(bias + W[O, K] · M[K, y·Wo + x])` with `K = C·KH·KW` and
//! `M` the convolution's columns ([`super::im2col`]): each sum one fused multiply-add per tap
//! in the order `(c, ky, kx)` from the bias, the linear kernels' definition, so every kernel
//! gives the same bits. `M` is built a few output rows at a time into a per-thread buffer of
//! [`CHUNK_FLOATS`], or of [`MIN_CHUNK_COLUMNS`] output positions where its columns are long
//! (the rows' columns stay in cache for the product), never for the whole image.
//!
//! Why not tract's convolution: tract gathers its input through a lazy im2col that packs
//! value by value, then runs its generic tile loop (a list of fused operations interpreted
//! per tile); on MobileNet's stem (3 → 16 channels, 3×3, stride 2, 224²) that costs more
//! than the multiply-adds. Here the columns are moved as runs (slice copies, de-interleaving
//! loads at stride 2), the weights are packed once at load and each tile stores with no
//! dispatch.
//!
//! Shapes the op takes: kernels up to 7×7, strides 1 or 2, zero padding smaller than the
//! kernel, dilation 1, one group. The converter leaves any other convolution to tract.
//! Work is split over the runtime's threads by output-channel blocks; each task builds the
//! columns it multiplies.
//!
//! With `output = "packed"` (a layer whose only reader binarises it: a binary network's
//! stem) the op writes `[N, Ho, Wo, ⌈O/64⌉]` u64 sign bits instead, as `kestrel_bitpack` of
//! its float output would (bit = 1 for y < 0 and NaN): each chunk of output rows is computed
//! for every channel into per-thread scratch and packed from there by the bit-pack kernels,
//! so the float feature map is never written out. Tasks then split the output rows (a
//! pixel's word holds 64 channels, so every channel of a pixel is one task's).

use tract_nnef::internal::*;
use tract_nnef::ser::{array, invocation, numeric, string};

use super::depthwise::{read_fused, write_fused, Fused};
use super::im2col::{im2col, Window};
use super::output_stage::OutputKind;
use super::packing::words_for;
use super::parallel::{run_indexed, threads, Disjoint};
use super::scratch;
use crate::kernels::bitpack;
use crate::kernels::linear::{self as kl, Clamp, Job, PackedWeights, ROWS};

/// NNEF name.
pub const NAME: &str = "kestrel_conv";

/// Largest kernel height and width: the depthwise op's, as the converter checks both ops'
/// geometry with one rule.
pub const MAX_KERNEL: usize = super::depthwise::MAX_KERNEL;

/// Floats of columns built per chunk (32 KiB), unless [`MIN_CHUNK_COLUMNS`] need more.
pub const CHUNK_FLOATS: usize = 8 * 1024;

/// The fewest output positions per chunk (whole output rows, at least one): the product
/// reuses each packed weight block across a chunk's columns, and on long columns (K =
/// C·KH·KW in the hundreds) a 32 KiB chunk would hold a single narrow row, too few columns
/// to pay for the weights' loads (measured on `benches/bnn_stem`'s float twin:
/// `docs/perf-log.md`, 2026-12-05).
pub const MIN_CHUNK_COLUMNS: usize = 128;

/// The float convolution operator.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Weights `[O, C, KH, KW]` f32.
    pub weights: Arc<Tensor>,
    /// Bias `[O]` f32.
    pub bias: Arc<Tensor>,
    /// Strides (1 or 2), height then width.
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// The fused activation: none, ReLU or clip.
    pub fused: Fused,
    /// Float `[N, O, Ho, Wo]`, or packed sign bits `[N, Ho, Wo, ⌈O/64⌉]` (module docs).
    pub output: OutputKind,
    clamp: Clamp,
    packed: Arc<PackedWeights>,
}

impl std::hash::Hash for Conv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.weights.hash(state);
        self.bias.hash(state);
        self.stride.hash(state);
        self.padding.hash(state);
        self.fused.hash(state);
        self.output.hash(state);
    }
}

impl PartialEq for Conv {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.stride == other.stride
            && self.padding == other.padding
            && self.fused == other.fused
            && self.output == other.output
    }
}

impl Eq for Conv {}

impl Conv {
    /// Builds the op, checking weights f32 `[O, C, KH, KW]` (all above 0, kernel at most
    /// [`MAX_KERNEL`]), bias f32 `[O]`, strides 1 or 2, padding smaller than the kernel and
    /// an activation of none, ReLU or a finite positive clip; packs the weights as `[O, K]`.
    pub fn new(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        stride: [usize; 2],
        padding: [usize; 4],
        fused: Fused,
    ) -> TractResult<Conv> {
        let s = weights.shape();
        ensure!(
            weights.datum_type() == f32::datum_type() && s.len() == 4 && s.iter().all(|&d| d > 0),
            "{NAME}: weights must be f32 [O, C, KH, KW] with every size above 0, got {:?} {s:?}",
            weights.datum_type()
        );
        ensure!(
            s[2] <= MAX_KERNEL && s[3] <= MAX_KERNEL,
            "{NAME}: kernel {}x{} above {MAX_KERNEL}x{MAX_KERNEL}",
            s[2],
            s[3]
        );
        super::window::check_bias(NAME, &bias, s[0])?;
        super::window::check_geometry(NAME, [s[2], s[3]], stride, padding)?;
        let clamp = fused.product_clamp(NAME)?;
        let packed = PackedWeights::new(
            weights.try_as_plain_ram()?.as_slice::<f32>()?,
            bias.try_as_plain_ram()?.as_slice::<f32>()?,
            s[0],
            s[1] * s[2] * s[3],
        );
        Ok(Conv {
            weights,
            bias,
            stride,
            padding,
            fused,
            output: OutputKind::Float,
            clamp,
            packed: Arc::new(packed),
        })
    }

    /// The same convolution writing packed sign bits (module docs).
    pub fn with_packed_output(self) -> Conv {
        Conv {
            output: OutputKind::Packed,
            ..self
        }
    }

    /// Output channels (O).
    pub fn outputs(&self) -> usize {
        self.weights.shape()[0]
    }

    /// Input channels (C).
    pub fn inputs(&self) -> usize {
        self.weights.shape()[1]
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> [usize; 2] {
        let s = self.weights.shape();
        [s[2], s[3]]
    }

    /// Output height and width of an `[h, w]` plane, or why the kernel does not fit it.
    fn out_hw(&self, hw: [usize; 2]) -> TractResult<[usize; 2]> {
        super::window::fitted_hw(NAME, hw, self.padding, self.kernel(), self.stride)
    }

    /// `(images, window, output height)` of an input of `shape` (`[N, C, H, W]` or
    /// `[C, H, W]`), checked.
    fn window(&self, shape: &[usize]) -> TractResult<(usize, Window, usize)> {
        let geometry = (self.inputs(), self.kernel(), self.stride, self.padding);
        Window::of_input(NAME, geometry, shape)
    }

    /// Runs `images` images of `x` through the window `g` into `y` (`[images, O, Ho, Wo]`).
    fn run(&self, images: usize, g: &Window, out_h: usize, x: &[f32], y: &mut [f32]) {
        let (o, k, wo) = (self.outputs(), g.k(), g.out_w);
        let [c, h, w] = g.input;
        let plane = out_h * wo;
        if images == 0 || plane == 0 {
            return;
        }
        let kernel = kl::select();
        let blocks = self.packed.blocks();
        let tasks = threads().min(blocks);
        let clamp = self.clamp;
        let chunk_rows = chunk_rows(k, wo, out_h);
        let y = Disjoint::new(y);
        run_indexed(tasks, |t| {
            let range = t * blocks / tasks..(t + 1) * blocks / tasks;
            if range.is_empty() {
                return;
            }
            let first = range.start * ROWS;
            let rows = (range.end * ROWS).min(o) - first;
            let ld = chunk_rows * wo;
            scratch::floats(k * ld, |cols_buf| {
                // The padding columns of every chunk stay zero (`im2col`).
                cols_buf.fill(0.0);
                for n in 0..images {
                    let image = &x[n * c * h * w..][..c * h * w];
                    // SAFETY: rows `first..first + rows` of image n belong to this task alone.
                    let part = unsafe { y.part((n * o + first) * plane, rows * plane) };
                    let mut r0 = 0;
                    while r0 < out_h {
                        let r1 = (r0 + chunk_rows).min(out_h);
                        let cols = (r1 - r0) * wo;
                        im2col(image, g, r0..r1, cols_buf, ld, |_| 0.0);
                        let job = Job {
                            w: &self.packed,
                            blocks: range.clone(),
                            x: cols_buf,
                            x_stride: ld,
                            cols,
                            y_stride: plane,
                            clamp,
                        };
                        kernel.run(&job, &mut part[r0 * wo..]);
                        r0 = r1;
                    }
                }
            });
        });
    }

    /// Runs `images` images of `x` through `g` into packed sign bits `y` (`[images, Ho, Wo,
    /// ⌈O/64⌉]`): per chunk of output rows, every channel into scratch, then the bit-pack
    /// kernel; tasks take whole chunks.
    fn run_packed(&self, images: usize, g: &Window, out_h: usize, x: &[f32], y: &mut [u64]) {
        let (o, k, wo) = (self.outputs(), g.k(), g.out_w);
        let [c, h, w] = g.input;
        let words = words_for(o);
        if images == 0 || out_h * wo == 0 {
            return;
        }
        let (kernel, packer) = (kl::select(), bitpack::select());
        let blocks = self.packed.blocks();
        let chunk_rows = chunk_rows(k, wo, out_h);
        let chunks = out_h.div_ceil(chunk_rows);
        let tasks = threads().min(images * chunks);
        let ld = chunk_rows * wo;
        let y = Disjoint::new(y);
        run_indexed(tasks, |t| {
            let range = t * images * chunks / tasks..(t + 1) * images * chunks / tasks;
            if range.is_empty() {
                return;
            }
            // The columns, then the chunk's float outputs (`O × cols`), in one buffer.
            scratch::floats(k * ld + o * ld, |buf| {
                let (cols_buf, out_buf) = buf.split_at_mut(k * ld);
                // The padding columns of every chunk stay zero (`im2col`).
                cols_buf.fill(0.0);
                for i in range {
                    let (n, r0) = (i / chunks, i % chunks * chunk_rows);
                    let r1 = (r0 + chunk_rows).min(out_h);
                    let cols = (r1 - r0) * wo;
                    let image = &x[n * c * h * w..][..c * h * w];
                    im2col(image, g, r0..r1, cols_buf, ld, |_| 0.0);
                    let job = Job {
                        w: &self.packed,
                        blocks: 0..blocks,
                        x: cols_buf,
                        x_stride: ld,
                        cols,
                        y_stride: cols,
                        clamp: self.clamp,
                    };
                    let floats = &mut out_buf[..o * cols];
                    kernel.run(&job, floats);
                    // SAFETY: the words of rows r0..r1 of image n belong to this chunk alone.
                    let part = unsafe { y.part(((n * out_h + r0) * wo) * words, cols * words) };
                    packer.pack_planes(floats, o, part);
                }
            });
        });
    }
}

/// Output rows per chunk of columns (`k` values each, `wo` per row, `out_h` rows): as many as
/// [`CHUNK_FLOATS`] hold, at least [`MIN_CHUNK_COLUMNS`] positions, and one row.
fn chunk_rows(k: usize, wo: usize, out_h: usize) -> usize {
    (CHUNK_FLOATS / (k * wo))
        .max(MIN_CHUNK_COLUMNS.div_ceil(wo))
        .clamp(1, out_h)
}

impl Op for Conv {
    fn name(&self) -> StaticName {
        "KestrelConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let [kh, kw] = self.kernel();
        Ok(vec![format!(
            "{}→{} {kh}x{kw} stride {:?} padding {:?}, {:?}, kernel {}",
            self.inputs(),
            self.outputs(),
            self.stride,
            self.padding,
            self.fused,
            kl::select().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "{NAME}: input must be f32, got {:?}",
            input.datum_type()
        );
        let (images, g, oh) = self.window(input.shape())?;
        let ow = g.out_w;
        let r = input.rank();
        if self.output == OutputKind::Packed {
            ensure!(r == 4, "{NAME}: packed output needs an [N, C, H, W] input");
            let shape = [images, oh, ow, words_for(self.outputs())];
            // SAFETY: `run_packed` writes every word (each chunk of rows by one task).
            let mut out = unsafe { Tensor::uninitialized::<u64>(&shape)? };
            {
                let view = input.try_as_plain_ram()?;
                let mut out_view = out.try_as_plain_ram_mut()?;
                let (x, y) = (view.as_slice::<f32>()?, out_view.as_slice_mut::<u64>()?);
                self.run_packed(images, &g, oh, x, y);
            }
            return Ok(tvec!(out.into_tvalue()));
        }
        let mut shape: TVec<usize> = input.shape().into();
        shape[r - 3] = self.outputs();
        shape[r - 2] = oh;
        shape[r - 1] = ow;
        // SAFETY: `run` writes every element (each row block of each image by one task).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            self.run(
                images,
                &g,
                oh,
                view.as_slice::<f32>()?,
                out_view.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Conv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let r = f.rank();
        ensure!(
            f.datum_type == f32::datum_type()
                && (3..=4).contains(&r)
                && f.shape[r - 3].to_usize().ok() == Some(self.inputs()),
            "{NAME}: input must be f32 [N, {c}, H, W] or [{c}, H, W], got {f:?}",
            c = self.inputs()
        );
        let (h, w) = (f.shape[r - 2].to_usize(), f.shape[r - 1].to_usize());
        let (Ok(h), Ok(w)) = (h, w) else {
            bail!("{NAME}: the plane size must be known, got {f:?}");
        };
        let [oh, ow] = self.out_hw([h, w])?;
        if self.output == OutputKind::Packed {
            ensure!(
                r == 4,
                "{NAME}: packed output needs an [N, C, H, W] input, got {f:?}"
            );
            let words = words_for(self.outputs());
            let shape = tvec![f.shape[0].clone(), oh.into(), ow.into(), words.into()];
            return Ok(tvec!(u64::fact(shape)));
        }
        let mut shape = f.shape.to_tvec();
        shape[r - 3] = self.outputs().into();
        shape[r - 2] = oh.into();
        shape[r - 1] = ow.into();
        Ok(tvec!(f32::fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?.remove(0);
        let [kh, kw] = self.kernel();
        // Output values: every element of a float output, every channel of a packed pixel.
        let values = match self.output {
            OutputKind::Float => out.shape.iter().product::<TDim>(),
            OutputKind::Packed => out.shape.iter().take(3).product::<TDim>() * self.outputs(),
        };
        let macs = values * (self.inputs() * kh * kw);
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
            TypeName::Integer.array().named("stride"),
            TypeName::Integer.array().named("padding"),
            TypeName::String.named("activation").default("none"),
            TypeName::Scalar.named("clip").default(0.0),
            TypeName::String.named("output").default("float"),
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
    let (stride, padding) = super::window::read_window(builder, invocation, NAME)?;
    let fused = read_fused(builder, invocation, NAME)?;
    let output: String = invocation.named_arg_as(builder, "output")?;
    let op = Conv::new(weights, bias, stride, padding, fused)?;
    let op = match OutputKind::parse(&output).with_context(|| format!("{NAME}: output"))? {
        OutputKind::Float => op,
        OutputKind::Packed => op.with_packed_output(),
    };
    builder.wire(op, &[input])
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Conv) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    let mut attributes = vec![("stride", ints(&op.stride)), ("padding", ints(&op.padding))];
    write_fused(op.fused, &mut attributes);
    if op.output == OutputKind::Packed {
        attributes.push(("output", string(op.output.as_str())));
    }
    Ok(Some(invocation(NAME, &[input, weights, bias], &attributes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    /// The definition in f64: `act(bias + Σ w·x)` over the taps inside the input.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        wt: &[f32],
        bias: &[f32],
        [o, kh, kw]: [usize; 3],
        stride: [usize; 2],
        padding: [usize; 4],
        [oh, ow]: [usize; 2],
        clip: Option<f32>,
    ) -> Vec<f32> {
        let mut out = vec![];
        for img in 0..n {
            for oc in 0..o {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut acc = bias[oc] as f64;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (yy * stride[0] + ky) as isize - padding[0] as isize;
                                    let ix = (xx * stride[1] + kx) as isize - padding[1] as isize;
                                    if (0..h as isize).contains(&iy)
                                        && (0..w as isize).contains(&ix)
                                    {
                                        let v =
                                            x[((img * c + ci) * h + iy as usize) * w + ix as usize];
                                        let wv = wt[((oc * c + ci) * kh + ky) * kw + kx];
                                        acc += v as f64 * wv as f64;
                                    }
                                }
                            }
                        }
                        let y = acc as f32;
                        out.push(clip.map_or(y, |hi| y.max(0.0).min(hi)));
                    }
                }
            }
        }
        out
    }

    /// `op` on `input` through a one-op plan, as a loaded graph runs it.
    fn eval(op: &Conv, input: Tensor) -> TractResult<Tensor> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(input.shape()))?;
        let y = m.wire_node("conv", op.clone(), &[x])?;
        m.select_output_outlets(&y)?;
        let plan = m.into_runnable()?;
        Ok(plan
            .run(tvec!(input.into_tvalue()))?
            .remove(0)
            .into_tensor())
    }

    /// Values uniform in [−1, 1) from a linear congruential generator seeded with `seed`.
    fn uniform(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        }
    }

    #[test]
    fn matches_the_definition_on_every_geometry() {
        let mut rand = uniform(1);
        for (shape, [o, kh, kw], stride, padding, clip) in [
            ([1, 3, 17, 19], [16, 3, 3], [2, 2], [1, 1, 1, 1], None),
            ([2, 5, 9, 8], [11, 3, 3], [1, 1], [1, 1, 1, 1], Some(6.0)),
            (
                [1, 4, 12, 12],
                [9, 5, 5],
                [2, 2],
                [2, 2, 2, 2],
                Some(f32::INFINITY),
            ),
            ([1, 3, 8, 8], [8, 3, 3], [2, 2], [0, 0, 1, 1], None),
            ([1, 2, 7, 9], [3, 2, 3], [1, 2], [0, 1, 1, 0], None),
            ([1, 1, 3, 3], [2, 7, 7], [1, 1], [3, 3, 3, 3], None),
            // Long columns (K = 144): chunks of 4 of the 39 output rows, the last partial.
            ([1, 16, 39, 40], [9, 3, 3], [1, 1], [1, 1, 1, 1], Some(6.0)),
            // Two images, chunks of 2 rows at stride 2 (the padding rows in the first).
            ([2, 8, 31, 130], [17, 3, 3], [2, 2], [1, 1, 1, 1], None),
        ] {
            let [n, c, h, w] = shape;
            let x: Vec<f32> = (0..n * c * h * w).map(|_| rand()).collect();
            let wt: Vec<f32> = (0..o * c * kh * kw).map(|_| rand()).collect();
            let bias: Vec<f32> = (0..o).map(|_| rand()).collect();
            let fused = match clip {
                None => Fused::None,
                Some(hi) if hi.is_infinite() => Fused::Relu,
                Some(hi) => Fused::Clip(hi),
            };
            let op = Conv::new(
                Arc::new(Tensor::from_shape(&[o, c, kh, kw], &wt).unwrap()),
                Arc::new(Tensor::from_shape(&[o], &bias).unwrap()),
                stride,
                padding,
                fused,
            )
            .unwrap();
            let input = Tensor::from_shape(&shape, &x).unwrap();
            let got = eval(&op, input).unwrap();
            let [oh, ow] = op.out_hw([h, w]).unwrap();
            assert_eq!(got.shape(), [n, o, oh, ow]);
            let want = reference(
                &x,
                shape,
                &wt,
                &bias,
                [o, kh, kw],
                stride,
                padding,
                [oh, ow],
                clip,
            );
            let view = got.try_as_plain_ram().unwrap();
            let got = view.as_slice::<f32>().unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{shape:?} {o}x{kh}x{kw} s{stride:?} p{padding:?}: [{i}] {g} vs {w}"
                );
            }
        }
    }

    /// Packed output equals `kestrel_bitpack` of the float output bit for bit (a partial last
    /// word, two images, several chunks of rows, 1 and 3 threads). Its NNEF form is written
    /// and reloaded by the converter's end-to-end tests (`tests/convert_binary.rs`).
    #[test]
    fn packed_output_is_the_bitpack_of_the_float_output() {
        let mut rand = uniform(7);
        for (shape, [o, kh, kw], stride, fused) in [
            ([1, 3, 32, 32], [64, 3, 3], [1, 1], Fused::None),
            ([2, 3, 17, 19], [70, 3, 3], [2, 2], Fused::None),
            ([1, 16, 39, 40], [130, 3, 3], [1, 1], Fused::Relu),
            ([3, 2, 5, 300], [9, 1, 3], [1, 2], Fused::Clip(0.5)),
        ] {
            let [n, c, h, w] = shape;
            let x: Vec<f32> = (0..n * c * h * w).map(|_| rand()).collect();
            let wt: Vec<f32> = (0..o * c * kh * kw).map(|_| rand()).collect();
            let bias: Vec<f32> = (0..o).map(|_| rand() * 0.5).collect();
            let op = Conv::new(
                Arc::new(Tensor::from_shape(&[o, c, kh, kw], &wt).unwrap()),
                Arc::new(Tensor::from_shape(&[o], &bias).unwrap()),
                stride,
                [kh / 2, kw / 2, kh / 2, kw / 2],
                fused,
            )
            .unwrap();
            let input = Tensor::from_shape(&shape, &x).unwrap();
            let float = eval(&op, input.clone()).unwrap();
            let want = super::super::bitpack::Bitpack
                .eval_out_of_plan(tvec!(float.into_tvalue()))
                .unwrap()
                .unwrap()
                .remove(0);
            let packed = op.clone().with_packed_output();
            for threads in [1, 3] {
                let executor = if threads == 1 {
                    Executor::SingleThread
                } else {
                    Executor::multithread(threads)
                };
                let got =
                    multithread_tract_scope(executor, || eval(&packed, input.clone())).unwrap();
                assert_eq!(got.shape(), want.shape(), "{shape:?} {o}");
                assert_eq!(
                    got.try_as_plain_ram().unwrap().as_slice::<u64>().unwrap(),
                    want.try_as_plain_ram().unwrap().as_slice::<u64>().unwrap(),
                    "{shape:?} {o} channels, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let w = |s: &[usize]| Arc::new(Tensor::zero::<f32>(s).unwrap());
        let b = w(&[4]);
        let ok = Conv::new(w(&[4, 3, 3, 3]), b.clone(), [2, 2], [1; 4], Fused::None);
        assert!(ok.is_ok());
        for (weights, stride, padding, fused) in [
            (w(&[4, 3, 9, 9]), [1, 1], [1; 4], Fused::None),
            (w(&[4, 3, 3, 3]), [3, 3], [1; 4], Fused::None),
            (w(&[4, 3, 3, 3]), [1, 1], [3, 1, 1, 1], Fused::None),
            (w(&[4, 3, 3, 3]), [1, 1], [1; 4], Fused::HardSwish),
            (w(&[5, 3, 3, 3]), [1, 1], [1; 4], Fused::None),
        ] {
            let err = Conv::new(weights, b.clone(), stride, padding, fused).unwrap_err();
            assert!(err.to_string().contains(NAME), "{err}");
        }
        let op = Conv::new(w(&[4, 3, 3, 3]), b, [1, 1], [0; 4], Fused::None).unwrap();
        let small = Tensor::zero::<f32>(&[1, 3, 2, 2]).unwrap();
        let err = eval(&op, small).unwrap_err();
        assert!(format!("{err:?}").contains("does not fit"), "{err:?}");
        let wrong = Tensor::zero::<f32>(&[1, 2, 5, 5]).unwrap();
        let err = eval(&op, wrong).unwrap_err();
        assert!(format!("{err:?}").contains(NAME), "{err:?}");
    }
}
