//! The portable int8 depthwise kernel: a row at a time in chunks of [`CHUNK`] columns, one tap
//! at a time over the chunk (a widening multiply-add per value, which compilers vectorise for
//! the baseline ISA), the chunk's i32 sums on the stack.

use super::{Depthwise8Kernel, Out, PlaneJob};

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
        let g = job.geometry;
        for r in 0..g.rows() {
            let base = r * g.row_step();
            for c0 in (0..g.cols()).step_by(CHUNK) {
                let n = CHUNK.min(g.cols() - c0);
                let acc = &mut acc[..n];
                acc.fill(job.bias);
                for (&t, &w) in g.taps().iter().zip(job.weights) {
                    let src = &job.input[base + t + c0..][..n];
                    let w = i32::from(w);
                    // Exact (the sums stay far inside i32, module docs); wrapping ops only
                    // keep overflow checks of test builds from blocking vectorisation.
                    for (a, &x) in acc.iter_mut().zip(src) {
                        *a = a.wrapping_add(w.wrapping_mul(i32::from(x)));
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
