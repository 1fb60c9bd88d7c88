//! The portable float product kernel: one output at a time, its sum one `f32::mul_add` per
//! k in order — the definition the vector kernels match bit for bit.

use super::{Job, LinearKernel, ROWS};

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

impl LinearKernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn run(&self, job: &Job<'_>, y: &mut [f32]) {
        job.check(y);
        let (w, k) = (job.w, job.w.k());
        let first = job.blocks.start;
        for rb in job.blocks.clone() {
            let (block, bias) = (w.block(rb), w.bias(rb));
            for r in 0..w.rows_in(rb) {
                let out = &mut y[((rb - first) * ROWS + r) * job.y_stride..][..job.cols];
                for (c, o) in out.iter_mut().enumerate() {
                    let mut acc = bias[r];
                    for kk in 0..k {
                        acc = block[kk * ROWS + r].mul_add(job.x[kk * job.x_stride + c], acc);
                    }
                    *o = job.clamp.apply(acc);
                }
            }
        }
    }
}
