//! The portable int8 kernel: i32 multiply-adds over the packed layouts, one output at a time.
//! The reference every accelerated kernel is compared with, and the kernel of x86 machines
//! without AVX-512 VNNI. It reads any [`Format`]: its own is [`Format::DOT4_U8`], and the tests
//! also run it on the others, [`Format::CODES16`] (16-bit codes) included.

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
        if format.code_bytes == 2 {
            return run_codes16(job);
        }
        match format.group {
            4 => run_groups::<4>(job),
            16 => run_groups::<16>(job),
            _ => run_groups::<0>(job),
        }
    }

    /// One product of 16-bit codes does half the multiplies of two digit products.
    fn codes16(&self) -> Option<&'static dyn Int8Kernel> {
        Some(&Codes16)
    }
}

/// The portable kernel's one-product twin for 16-bit inputs ([`Format::CODES16`]).
#[derive(Debug)]
pub struct Codes16;

impl Int8Kernel for Codes16 {
    fn name(&self) -> &'static str {
        "generic-16x8"
    }

    fn format(&self) -> Format {
        Format::CODES16
    }

    fn run(&self, job: &Job<'_>) {
        job.check(Format::CODES16);
        run_codes16(job);
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

/// [`Generic::run`] over 16-bit codes ([`Format::CODES16`]: each k's 16 columns in a row):
/// `Σ W·q` in i32, exact for the `K ≤ MAX_K16` the job check allows.
fn run_codes16(job: &Job<'_>) {
    let (m, k) = (job.w.rows(), job.w.k());
    let step = job.w.format().block_bytes(k);
    let mut acc = [0i32; COLS];
    for b in 0..job.blocks {
        let x = &job.x[b * step..(b + 1) * step];
        let c0 = (job.first_block + b) * COLS;
        let rows = job.row_blocks.start * ROWS..(job.row_blocks.end * ROWS).min(m);
        for o in rows {
            acc.fill(0);
            for (kk, row) in x.chunks_exact(2 * COLS).enumerate() {
                let w = job.w.get(o, kk) as i32;
                for (a, code) in acc.iter_mut().zip(row.chunks_exact(2)) {
                    *a += w * i16::from_ne_bytes([code[0], code[1]]) as i32;
                }
            }
            for (j, &a) in acc.iter().enumerate().take(job.cols(b)) {
                // SAFETY: o < M and column c0 + j < N (`cols`), inside the output.
                unsafe { job.stage.store(o, c0 + j, a) };
            }
        }
    }
}
