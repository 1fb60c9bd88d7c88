//! `kestrel_binary_max_pool`: max-pooling of binarised values, on packed bits.
//!
//! The max of ±1 values is +1 unless every value is −1; with a set bit meaning −1 that is the
//! **bitwise AND** of the window's words (a whole word, 64 channels, per instruction).
//! Taps in the padding are ignored (they act as all-ones, AND's identity), as a float max-pool
//! ignores −∞ padding. Input and output: packed `[N, H, W, ⌈C/64⌉]` u64.

use tract_nnef::internal::*;
use tract_nnef::ser::{array, invocation, numeric};

/// NNEF name.
pub const NAME: &str = "kestrel_binary_max_pool";

/// The binary max-pool operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinaryMaxPool {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub padding: [usize; 4],
}

impl BinaryMaxPool {
    /// Builds the op.
    pub fn new(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 4]) -> TractResult<Self> {
        ensure!(
            kernel.iter().chain(&stride).all(|&v| v > 0),
            "{NAME}: kernel {kernel:?} and stride {stride:?} must be positive"
        );
        ensure!(
            padding[0] < kernel[0]
                && padding[2] < kernel[0]
                && padding[1] < kernel[1]
                && padding[3] < kernel[1],
            "{NAME}: padding {padding:?} must be smaller than the kernel {kernel:?}"
        );
        Ok(BinaryMaxPool {
            kernel,
            stride,
            padding,
        })
    }

    fn output_size(&self, h: usize, w: usize) -> TractResult<(usize, usize)> {
        match super::window::output_hw([h, w], self.padding, self.kernel, self.stride) {
            Some(size) => Ok(size),
            None => bail!(
                "{NAME}: window {:?} does not fit a {h}x{w} input",
                self.kernel
            ),
        }
    }
}

impl Op for BinaryMaxPool {
    fn name(&self) -> StaticName {
        "KestrelBinaryMaxPool".into()
    }
    op_as_typed_op!();
}

impl EvalOp for BinaryMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let s = input.shape();
        ensure!(
            input.datum_type() == u64::datum_type() && s.len() == 4,
            "{NAME}: input must be packed u64 [N, H, W, words], got {:?} {:?}",
            input.datum_type(),
            s
        );
        let (n, h, w, cw) = (s[0], s[1], s[2], s[3]);
        let (oh, ow) = self.output_size(h, w)?;
        let view = input.try_as_plain_ram()?;
        let x = view.as_slice::<u64>()?;
        let mut out = vec![u64::MAX; n * oh * ow * cw];
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let dst = &mut out[((b * oh + oy) * ow + ox) * cw..][..cw];
                    for ky in 0..self.kernel[0] {
                        let iy = (oy * self.stride[0] + ky) as isize - self.padding[0] as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for kx in 0..self.kernel[1] {
                            let ix = (ox * self.stride[1] + kx) as isize - self.padding[1] as isize;
                            if ix < 0 || ix as usize >= w {
                                continue;
                            }
                            let src = &x[((b * h + iy as usize) * w + ix as usize) * cw..][..cw];
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d &= s;
                            }
                        }
                    }
                }
            }
        }
        Ok(tvec!(
            Tensor::from_shape(&[n, oh, ow, cw], &out)?.into_tvalue()
        ))
    }
}

impl TypedOp for BinaryMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        ensure!(
            f.datum_type == u64::datum_type() && f.rank() == 4,
            "{NAME}: input must be packed u64 [N, H, W, words], got {f:?}"
        );
        let (oh, ow) = self.output_size(f.shape[1].to_usize()?, f.shape[2].to_usize()?)?;
        Ok(tvec!(u64::fact(tvec![
            f.shape[0].clone(),
            oh.into(),
            ow.into(),
            f.shape[3].clone()
        ])))
    }
    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &[
            TypeName::Integer.tensor().named("input"),
            TypeName::Integer.array().named("kernel"),
            TypeName::Integer.array().named("stride"),
            TypeName::Integer.array().named("padding"),
        ],
        &[("output", TypeName::Integer.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let kernel: TVec<usize> = invocation.named_arg_as(builder, "kernel")?;
    let stride: TVec<usize> = invocation.named_arg_as(builder, "stride")?;
    let padding: TVec<usize> = invocation.named_arg_as(builder, "padding")?;
    ensure!(
        kernel.len() == 2 && stride.len() == 2 && padding.len() == 4,
        "{NAME}: kernel and stride take 2 values, padding 4; got {kernel:?} {stride:?} {padding:?}"
    );
    let op = BinaryMaxPool::new(
        [kernel[0], kernel[1]],
        [stride[0], stride[1]],
        [padding[0], padding[1], padding[2], padding[3]],
    )?;
    builder.wire(op, &[input])
}

fn dump(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &BinaryMaxPool,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    Ok(Some(invocation(
        NAME,
        &[input],
        &[
            ("kernel", ints(&op.kernel)),
            ("stride", ints(&op.stride)),
            ("padding", ints(&op.padding)),
        ],
    )))
}
