//! The portable int8 depthwise kernel: a row at a time in chunks of [`CHUNK`] columns, one tap
//! at a time over the chunk (a widening multiply-add per value, which compilers vectorise for
//! the baseline ISA), the chunk's i32 sums on the stack.

use super::{Depthwise8Kernel, Input, Out, PlaneJob};

/// Columns summed at once.
const CHUNK: usize = 64;

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

impl Depthwise8Kernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn run(&self, job: &PlaneJob<'_>, mut out: Out<'_>) {
        job.check(out.len());
        let mut acc = [0i32; CHUNK];
        let rq = match out {
            Out::I8 { inv_scale, zp, .. } => job.requant(inv_scale, zp),
            Out::F32(_) => job.requant(1.0, 0),
        };
        // Over codes, `Σ w · q` from the bias less `zp · Σ w`: the same sums.
        let bias = match job.input {
            Input::Offsets(_) => job.bias,
            Input::Codes(_, zp) => job.codes_bias(zp),
        };
        let g = job.geometry;
        for r in 0..g.rows() {
            let base = r * g.row_step();
            for c0 in (0..g.cols()).step_by(CHUNK) {
                let n = CHUNK.min(g.cols() - c0);
                let acc = &mut acc[..n];
                acc.fill(bias);
                for (&t, &w) in g.taps().iter().zip(job.weights) {
                    let at = base + t + c0;
                    match job.input {
                        Input::Offsets(x) => add(acc, &x[at..][..n], w),
                        Input::Codes(x, _) => add(acc, &x[at..][..n], w),
                    }
                }
                let at = r * g.cols() + c0;
                match &mut out {
                    Out::F32(o) => {
                        for (v, &a) in o[at..][..n].iter_mut().zip(acc.iter()) {
                            *v = job.value(a);
                        }
                    }
                    Out::I8 { out, .. } => {
                        for (v, &a) in out[at..][..n].iter_mut().zip(acc.iter()) {
                            *v = job.code(&rq, a);
                        }
                    }
                }
            }
        }
    }
}

/// `acc += w · x`, value by value. Exact (the sums stay far inside i32, module docs; over
/// codes the bias's part may wrap, and the total comes back); wrapping ops also keep overflow
/// checks of test builds from blocking vectorisation.
#[inline(always)]
fn add<T: Copy + Into<i32>>(acc: &mut [i32], x: &[T], w: i16) {
    let w = i32::from(w);
    for (a, &x) in acc.iter_mut().zip(x) {
        *a = a.wrapping_add(w.wrapping_mul(x.into()));
    }
}
