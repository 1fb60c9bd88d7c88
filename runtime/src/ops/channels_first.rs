//! `kestrel_channels_first`: an f32 image `[N, H, W, C]` transposed to `[N, C, H, W]`, the
//! converter's one transpose after a channels-last model input (`quantize/src/channels_first.rs`)
//! so the convolutions after it run channels first. tract's `AxisOp` copy of the same
//! transpose walks the tensor element by element; this op de-interleaves 4 pixels per
//! `ld3`/`ld4` on NEON ([`crate::kernels::layout`]).

use tract_nnef::internal::*;

use super::registry::PlainOp;

use crate::kernels::layout::to_channels_first;

/// NNEF name.
pub const NAME: &str = "kestrel_channels_first";

/// The channels-last to channels-first transpose of an f32 `[N, H, W, C]` tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ChannelsFirst;

impl Op for ChannelsFirst {
    fn name(&self) -> StaticName {
        "KestrelChannelsFirst".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelsFirst {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type() && input.rank() == 4,
            "{NAME}: input must be f32 [N, H, W, C], got {:?} {:?}",
            input.datum_type(),
            input.shape()
        );
        let &[n, h, w, c] = input.shape() else {
            unreachable!("rank checked")
        };
        // SAFETY: every image of the output is written whole by the copy below.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[n, c, h, w])? };
        let image = h * w * c;
        if image > 0 {
            let view = input.try_as_plain_ram()?;
            let x = view.as_slice::<f32>()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let y = out_view.as_slice_mut::<f32>()?;
            for (src, dst) in x.chunks_exact(image).zip(y.chunks_exact_mut(image)) {
                to_channels_first(src, h * w, c, dst);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for ChannelsFirst {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        ensure!(
            f.datum_type == f32::datum_type() && f.rank() == 4,
            "{NAME}: input must be f32 [N, H, W, C], got {f:?}"
        );
        let s = &f.shape;
        Ok(tvec!(f32::fact([
            s[0].clone(),
            s[3].clone(),
            s[1].clone(),
            s[2].clone()
        ])))
    }

    as_op!();
}

impl PlainOp for ChannelsFirst {
    const NNEF: &'static str = NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_each_image_like_tracts_axis_op() {
        let x: Vec<f32> = (0..2 * 3 * 5 * 3).map(|i| i as f32 - 7.5).collect();
        let t = Tensor::from_shape(&[2, 3, 5, 3], &x).unwrap();
        let want = AxisOp::Move(3, 1)
            .eval_out_of_plan(tvec!(t.clone().into_tvalue()))
            .unwrap()
            .unwrap()
            .remove(0);
        let got = ChannelsFirst
            .eval_out_of_plan(tvec!(t.into_tvalue()))
            .unwrap()
            .unwrap()
            .remove(0);
        assert_eq!(got.shape(), &[2, 3, 3, 5]);
        assert_eq!(*got, *want);
    }

    #[test]
    fn refuses_other_ranks_and_types() {
        let t = Tensor::from_shape(&[4, 4], &[0f32; 16]).unwrap();
        let err = ChannelsFirst
            .eval_out_of_plan(tvec!(t.into_tvalue()))
            .unwrap_err();
        assert!(format!("{err:?}").contains("[N, H, W, C]"));
        let t = Tensor::from_shape(&[1, 1, 2, 2], &[0i8; 4]).unwrap();
        assert!(ChannelsFirst
            .eval_out_of_plan(tvec!(t.into_tvalue()))
            .is_err());
    }
}
