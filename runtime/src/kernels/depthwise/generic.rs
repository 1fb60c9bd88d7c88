//! The portable depthwise kernel: a row at a time, one tap at a time over the whole row
//! (a multiply and an add per tap, which compilers vectorise for the baseline ISA).

use super::{DepthwiseKernel, Layout, Plane};

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

impl DepthwiseKernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: Plane<'_>, out: &mut [f32]) {
        layout.check(&plane, out);
        let job = layout.job(plane);
        if job.cols == 0 {
            return;
        }
        for (r, row) in out.chunks_exact_mut(job.cols).enumerate() {
            row.fill(job.bias);
            let base = r * job.row_step;
            for (&t, &w) in job.taps.iter().zip(job.weights) {
                let src = &job.input[base + t..][..job.cols];
                for (o, &x) in row.iter_mut().zip(src) {
                    *o += w * x;
                }
            }
            for o in row.iter_mut() {
                *o = job.act.apply(*o);
            }
        }
    }
}
