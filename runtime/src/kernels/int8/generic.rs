//! The portable int8 kernel: i32 multiply-adds over the packed layouts, one output at a time
//! per row of four k groups. The reference every accelerated kernel is compared with.

use super::{Int8Kernel, Job, BLOCK_STEP, COLS, ROWS};

/// Portable int8 kernel.
#[derive(Debug)]
pub struct Generic;

impl Int8Kernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn run(&self, job: &Job<'_>) {
        job.check();
        let (m, k4) = (job.w.rows(), job.w.k4());
        let w = job.w.data();
        let mut acc = [0i32; COLS];
        for b in 0..job.blocks {
            let x = &job.x[b * k4 * BLOCK_STEP..(b + 1) * k4 * BLOCK_STEP];
            let c0 = (job.first_block + b) * COLS;
            let rows = job.row_blocks.start * ROWS..(job.row_blocks.end * ROWS).min(m);
            for o in rows {
                acc.fill(0);
                let row = &w[(o / ROWS) * k4 * ROWS * 4..];
                for g in 0..k4 {
                    let wg = &row[(g * ROWS + o % ROWS) * 4..][..4];
                    let step = &x[g * BLOCK_STEP..(g + 1) * BLOCK_STEP];
                    for (a, xs) in acc.iter_mut().zip(step.chunks_exact(4)) {
                        for t in 0..4 {
                            *a += wg[t] as i32 * (xs[t] as i32 - 128);
                        }
                    }
                }
                for (j, &a) in acc.iter().enumerate().take(job.cols(b)) {
                    // SAFETY: o < M and column c0 + j < N (`cols`), inside the output.
                    unsafe { job.stage.store(o, c0 + j, a) };
                }
            }
        }
    }
}
