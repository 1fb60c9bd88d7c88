//! The portable int8 kernel: i32 multiply-adds over the packed layouts, one output at a time.
//! The reference every accelerated kernel is compared with, and the kernel of x86 machines
//! without AVX-512 VNNI. It reads any [`Format`]: its own is [`Format::DOT4_U8`], and the tests
//! also run it on the others.

use super::{Format, Int8Kernel, Job, COLS, ROWS};

/// Portable int8 kernel.
#[derive(Debug)]
pub struct Generic;

impl Int8Kernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn format(&self) -> Format {
        Format::DOT4_U8
    }

    fn run(&self, job: &Job<'_>) {
        let format = job.w.format();
        job.check(format);
        // The group length as a constant where it is one of the formats' (a run-time inner
        // loop length costs the compiler its unrolling).
        match format.group {
            4 => run_groups::<4>(job),
            16 => run_groups::<16>(job),
            _ => run_groups::<0>(job),
        }
    }
}

/// [`Generic::run`] for groups of `G` k (`G` = 0: the format's, known at run time only).
fn run_groups<const G: usize>(job: &Job<'_>) {
    let format = job.w.format();
    let m = job.w.rows();
    let (g_len, groups) = (if G == 0 { format.group } else { G }, job.w.groups());
    let step = COLS * g_len;
    // An input byte's value: flipping the top bit of an offset-binary code gives its i8.
    let flip = format.code(0);
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
                        *a += wg[t] as i32 * ((xs[t] ^ flip) as i8 as i32);
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
