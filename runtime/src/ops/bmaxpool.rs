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
        // SAFETY: u64 has no invalid bit patterns, and `pool` writes every element.
        let mut out = unsafe { Tensor::uninitialized::<u64>(&[n, oh, ow, cw])? };
        {
            let mut view = out.try_as_plain_ram_mut()?;
            self.pool(x, [n, h, w, cw], [oh, ow], view.as_slice_mut::<u64>()?);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl BinaryMaxPool {
    /// Pools `x` (`[n, h, w, cw]` words) into `out` (`[n, oh, ow, cw]`, every word written).
    fn pool(&self, x: &[u64], [n, h, w, cw]: [usize; 4], [oh, ow]: [usize; 2], out: &mut [u64]) {
        assert!(x.len() == n * h * w * cw && out.len() == n * oh * ow * cw);
        if self.kernel == [2, 2] && self.stride == [2, 2] && self.padding == [0; 4] {
            // The common case: each output row ANDs two whole input rows, pixel pairs.
            for (b, dst) in out.chunks_exact_mut(oh * ow * cw).enumerate() {
                for (oy, dst) in dst.chunks_exact_mut(ow * cw).enumerate() {
                    let row = |y: usize| &x[((b * h + y) * w) * cw..][..2 * ow * cw];
                    let (r0, r1) = (row(2 * oy), row(2 * oy + 1));
                    let pairs = r0.chunks_exact(2 * cw).zip(r1.chunks_exact(2 * cw));
                    for (d, (a, c)) in dst.chunks_exact_mut(cw).zip(pairs) {
                        for (i, d) in d.iter_mut().enumerate() {
                            *d = a[i] & a[cw + i] & c[i] & c[cw + i];
                        }
                    }
                }
            }
            return;
        }
        out.fill(u64::MAX);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Max of ±1 values per channel (bit set = −1), padding ignored, from the bits one by one.
    fn reference(op: &BinaryMaxPool, x: &[u64], [n, h, w, cw]: [usize; 4]) -> Vec<u64> {
        let (oh, ow) = op.output_size(h, w).unwrap();
        let mut out = vec![0u64; n * oh * ow * cw];
        for b in 0..n {
            for (oy, ox, c) in (0..oh)
                .flat_map(|y| (0..ow).flat_map(move |x| (0..cw * 64).map(move |c| (y, x, c))))
            {
                let mut max = -1;
                for ky in 0..op.kernel[0] {
                    for kx in 0..op.kernel[1] {
                        let iy = (oy * op.stride[0] + ky).checked_sub(op.padding[0]);
                        let ix = (ox * op.stride[1] + kx).checked_sub(op.padding[1]);
                        if let (Some(iy), Some(ix)) = (iy.filter(|&y| y < h), ix.filter(|&x| x < w))
                        {
                            let bit = x[((b * h + iy) * w + ix) * cw + c / 64] >> (c % 64) & 1;
                            max = max.max(if bit == 1 { -1 } else { 1 });
                        }
                    }
                }
                if max == -1 {
                    out[((b * oh + oy) * ow + ox) * cw + c / 64] |= 1 << (c % 64);
                }
            }
        }
        out
    }

    /// The 2×2 stride-2 path and the general one equal the per-bit reference, odd sizes,
    /// several words per pixel and padding included; the op's eval gives the same words.
    #[test]
    fn pools_equal_the_per_bit_reference() {
        let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c0b);
        let cases = [
            ([2, 2], [2, 2], [0; 4], [1, 8, 8, 1]),
            ([2, 2], [2, 2], [0; 4], [2, 7, 9, 3]),
            ([2, 2], [2, 2], [0, 0, 1, 1], [1, 5, 5, 2]),
            ([3, 3], [2, 2], [1; 4], [1, 9, 6, 2]),
            ([3, 2], [1, 2], [1, 0, 1, 0], [1, 4, 7, 1]),
        ];
        for (kernel, stride, padding, shape) in cases {
            let op = BinaryMaxPool::new(kernel, stride, padding).unwrap();
            let [n, h, w, cw] = shape;
            // Sparse and dense bits: ANDs of four words would be all-zero on uniform bits.
            let x: Vec<u64> = (0..n * h * w * cw)
                .map(|_| rng.random::<u64>() | rng.random::<u64>())
                .collect();
            let want = reference(&op, &x, shape);
            let input = Tensor::from_shape(&[n, h, w, cw], &x).unwrap();
            let got = op
                .eval_out_of_plan(tvec!(input.into_tvalue()))
                .unwrap()
                .unwrap();
            assert_eq!(
                got[0]
                    .try_as_plain_ram()
                    .unwrap()
                    .as_slice::<u64>()
                    .unwrap(),
                &want[..],
                "{op:?} {shape:?}"
            );
        }
    }
}
