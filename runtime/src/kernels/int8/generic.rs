//! The portable int8 kernel: i32 multiply-adds over the packed layouts, one output at a time.
//! The reference every accelerated kernel is compared with. It reads any [`Format`]: its own
//! is [`Format::DOT4_U8`], and the tests also run it on the others.

use super::{Format, Int8Kernel, Job, COLS, ROWS};

/// Portable int8 kernel.
#[derive(Debug)]
pub struct Generic;

impl Int8Kernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn run(&self, job: &Job<'_>) {
        let format = job.w.format();
        job.check(format);
        let m = job.w.rows();
        let (g_len, groups, step) = (format.group, job.w.groups(), format.step());
        let offset = if format.offset_binary { 128 } else { 0 };
        let code = |u: u8| {
            if format.offset_binary {
                u as i32 - offset
            } else {
                u as i8 as i32
            }
        };
        let w = job.w.data();
        let mut acc = [0i32; COLS];
        for b in 0..job.blocks {
            let x = &job.x[b * groups * step..(b + 1) * groups * step];
            let c0 = (job.first_block + b) * COLS;
            let rows = job.row_blocks.start * ROWS..(job.row_blocks.end * ROWS).min(m);
            for o in rows {
                acc.fill(0);
                let row = &w[(o / ROWS) * groups * ROWS * g_len..];
                for g in 0..groups {
                    let wg = &row[(g * ROWS + o % ROWS) * g_len..][..g_len];
                    let group = &x[g * step..(g + 1) * step];
                    for (a, xs) in acc.iter_mut().zip(group.chunks_exact(g_len)) {
                        for t in 0..g_len {
                            *a += wg[t] as i32 * code(xs[t]);
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

impl Generic {
    /// The format the portable kernel's own packing uses.
    pub const FORMAT: Format = Format::DOT4_U8;
}
