//! `kestrel_max_pool_2x2`: float max-pooling over 2×2 windows at stride 2, no padding, channels
//! first (`[N, C, H, W]` or `[C, H, W]` → `⌊H/2⌋ × ⌊W/2⌋` planes; a last odd row or column is
//! dropped, as ONNX `MaxPool` does with `ceil_mode = 0`). The commonest pooling of CNN
//! backbones and detectors; each plane runs on a kernel of [`crate::kernels::pool`], the
//! planes split over the executor's threads. The converter puts it where tract's `MaxPool`
//! of that shape stood; any other pooling stays tract's.

use tract_nnef::internal::*;

use super::parallel::{run_indexed, threads, Disjoint};
use super::registry::PlainOp;
use crate::kernels::pool;

/// NNEF name.
pub const NAME: &str = "kestrel_max_pool_2x2";

/// Planes below this many input floats per task are not worth a thread.
const MIN_FLOATS_PER_TASK: usize = 16 * 1024;

/// The 2×2 stride-2 max-pooling operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MaxPool2x2;

/// Output shape of an input of `shape`, or why the op cannot take it.
fn output_shape(shape: &[usize]) -> TractResult<TVec<usize>> {
    let r = shape.len();
    ensure!(
        r == 3 || r == 4,
        "{NAME}: input must be [N, C, H, W] or [C, H, W], got {shape:?}"
    );
    let mut out: TVec<usize> = shape.into();
    out[r - 2] /= 2;
    out[r - 1] /= 2;
    Ok(out)
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "KestrelMaxPool2x2".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("kernel {}", pool::select().name())])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "{NAME}: input must be f32, got {:?}",
            input.datum_type()
        );
        let shape = input.shape();
        let out_shape = output_shape(shape)?;
        let r = shape.len();
        let (h, w) = (shape[r - 2], shape[r - 1]);
        let planes: usize = shape[..r - 2].iter().product();
        let plane_out = (h / 2) * (w / 2);
        // SAFETY: every plane of the output is written by one kernel call below.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        if planes > 0 && plane_out > 0 {
            let view = input.try_as_plain_ram()?;
            let x = view.as_slice::<f32>()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let dst = Disjoint::new(out_view.as_slice_mut::<f32>()?);
            let kernel = pool::select();
            let tasks = threads()
                .min(planes)
                .min((x.len() / MIN_FLOATS_PER_TASK).max(1));
            run_indexed(tasks, |t| {
                for p in t * planes / tasks..(t + 1) * planes / tasks {
                    // SAFETY: plane p belongs to this task alone.
                    let o = unsafe { dst.part(p * plane_out, plane_out) };
                    kernel.max_2x2(&x[p * h * w..][..h * w], h, w, o);
                }
            });
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let r = f.rank();
        ensure!(
            f.datum_type == f32::datum_type() && (r == 3 || r == 4),
            "{NAME}: input must be f32 [N, C, H, W] or [C, H, W], got {f:?}"
        );
        let mut shape = f.shape.to_tvec();
        shape[r - 2] = shape[r - 2].clone() / 2;
        shape[r - 1] = shape[r - 1].clone() / 2;
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

impl PlainOp for MaxPool2x2 {
    const NNEF: &'static str = NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_each_plane_and_drops_the_odd_edge() {
        // N=1, C=2, H=3, W=5: the last row and column are dropped.
        let x: Vec<f32> = (0..30).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let t = Tensor::from_shape(&[1, 2, 3, 5], &x).unwrap();
        let out = MaxPool2x2
            .eval_out_of_plan(tvec!(t.into_tvalue()))
            .unwrap()
            .unwrap()
            .remove(0);
        assert_eq!(out.shape(), &[1, 2, 1, 2]);
        let got = out
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        let at = |c: usize, y: usize, xx: usize| x[c * 15 + y * 5 + xx];
        let want: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..2).map(move |j| {
                    [
                        at(c, 0, 2 * j),
                        at(c, 0, 2 * j + 1),
                        at(c, 1, 2 * j),
                        at(c, 1, 2 * j + 1),
                    ]
                    .into_iter()
                    .fold(f32::NEG_INFINITY, f32::max)
                })
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_other_ranks_and_types() {
        let t = Tensor::from_shape(&[4, 4], &[0f32; 16]).unwrap();
        let err = MaxPool2x2.eval_out_of_plan(tvec!(t.into_tvalue()));
        assert!(format!("{:?}", err.unwrap_err()).contains("[N, C, H, W]"));
        let t = Tensor::from_shape(&[1, 1, 2, 2], &[0i8; 4]).unwrap();
        let err = MaxPool2x2.eval_out_of_plan(tvec!(t.into_tvalue()));
        assert!(format!("{:?}", err.unwrap_err()).contains("must be f32"));
    }
}
