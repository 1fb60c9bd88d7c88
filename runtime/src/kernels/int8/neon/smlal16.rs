//! The `neon-16x8` kernel: the one-product form of a 16-bit input on ARMv8.0 NEON
//! ([`Format::CODES16`]; the `neon` kernel's [`codes16`](super::super::Int8Kernel::codes16)
//! twin).
//!
//! ARMv8.0 multiplies 8-bit codes no faster than 16-bit ones (the `neon` kernel's `smull`,
//! `smlal2`, `sadalp` make 16 multiply-adds in 3 instructions), so the two digit products of
//! a 16-bit input cost twice what one product on 16-bit lanes does. `smlal` by element
//! multiplies 4 i16 lanes by one i16 lane of another register into 4 i32 lanes: 4
//! multiply-adds per instruction, `fmla`'s rate.
//!
//! Tile 4 rows × 16 columns: one accumulator per column, its lanes the 4 rows (the vectors
//! [`super::store`] reads, no transpose). Per 4 k: one 16-byte weight load (4 k × 4 rows,
//! widened by `sxtl`/`sxtl2`), the 16 columns' codes of each k in 2 registers (`ldp`), and 64
//! `smlal`/`smlal2` by element with the code as the element: 256 multiply-adds in about 72
//! instructions, where the digit products take about 112. The sums are exact in i32 for
//! `K ≤` [`MAX_K16`](super::super::MAX_K16) (the job check); the stage adds the i64
//! correction.

use std::arch::aarch64::*;
use std::ops::Range;

use super::super::{Format, Int8Kernel, Job, Pack, Quantizer, COLS, ROWS};
use super::store::{put_block, Sink, Tiles};

/// The packing this kernel reads: 16-bit codes, each k's 16 columns in a row; weights
/// `[row block][K][4 rows]`.
pub const FORMAT: Format = Format::CODES16;

/// The `neon-16x8` kernel (reached through the `neon` kernel's `codes16`).
#[derive(Debug)]
pub struct Smlal16(pub(super) ());

impl Int8Kernel for Smlal16 {
    fn name(&self) -> &'static str {
        "neon-16x8"
    }

    fn format(&self) -> Format {
        FORMAT
    }

    fn run(&self, job: &Job<'_>) {
        job.check(FORMAT);
        // SAFETY: NEON is baseline on aarch64; `check` verified the format, the sizes the
        // tiles rely on and K ≤ MAX_K16.
        unsafe { super::store::run::<Smlal16>(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        super::pack::pack_f32_codes16(p, q, out)
    }

    fn sums_rows_contiguous(&self) -> bool {
        true
    }
}

impl Tiles for Smlal16 {
    #[inline(always)]
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S) {
        let k = job.w.k();
        let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr());
        for rb in rows {
            let s = sink(rb * ROWS);
            // SAFETY (loop): row block rb's K × 4 weights and block b's K × 16 codes lie in
            // the packed buffers (job.check); columns c < cols ≤ 16 of the block.
            unsafe {
                let wb = w.add(rb * k * ROWS);
                for b in 0..job.blocks {
                    let acc = tile(wb, x.add(b * k * 2 * COLS) as *const i16, k);
                    put_block(&s, (job.first_block + b) * COLS, job.cols(b), &acc);
                }
            }
        }
    }
}

/// `acc[base + j] += w · x.h[j]` for the 8 lanes `j` of `x`, by `$f` (`smlal` on the low
/// 4 lanes of `w`, `smlal2` on the high 4).
macro_rules! by_lanes {
    ($f:ident, $acc:ident, $w:expr, $x:expr, $base:expr) => {
        $acc[$base] = $f::<0>($acc[$base], $w, $x);
        $acc[$base + 1] = $f::<1>($acc[$base + 1], $w, $x);
        $acc[$base + 2] = $f::<2>($acc[$base + 2], $w, $x);
        $acc[$base + 3] = $f::<3>($acc[$base + 3], $w, $x);
        $acc[$base + 4] = $f::<4>($acc[$base + 4], $w, $x);
        $acc[$base + 5] = $f::<5>($acc[$base + 5], $w, $x);
        $acc[$base + 6] = $f::<6>($acc[$base + 6], $w, $x);
        $acc[$base + 7] = $f::<7>($acc[$base + 7], $w, $x);
    };
}

/// One k: the 4 rows' weights `w` times the 16 columns' codes `x` (8 each).
#[inline(always)]
unsafe fn low(acc: &mut [int32x4_t; COLS], w: int16x4_t, x: [int16x8_t; 2]) {
    // SAFETY: NEON is baseline on aarch64.
    unsafe {
        by_lanes!(vmlal_laneq_s16, acc, w, x[0], 0);
        by_lanes!(vmlal_laneq_s16, acc, w, x[1], 8);
    }
}

/// One k whose 4 rows' weights are the high half of `w`.
#[inline(always)]
unsafe fn high(acc: &mut [int32x4_t; COLS], w: int16x8_t, x: [int16x8_t; 2]) {
    // SAFETY: NEON is baseline on aarch64.
    unsafe {
        by_lanes!(vmlal_high_laneq_s16, acc, w, x[0], 0);
        by_lanes!(vmlal_high_laneq_s16, acc, w, x[1], 8);
    }
}

/// The sums of 4 rows × 16 columns over `k` k: one vector per column, lanes the rows.
///
/// # Safety
/// `w` must hold `4 · k` weights and `x` `16 · k` codes.
// `inline(always)` (NEON is baseline on aarch64): outlined, the tile returns its 16
// accumulators through memory.
#[inline(always)]
unsafe fn tile(w: *const i8, x: *const i16, k: usize) -> [int32x4_t; COLS] {
    // SAFETY (whole body): the caller's bounds; every read is of k < `k`.
    unsafe {
        let codes = |kk: usize| [vld1q_s16(x.add(kk * COLS)), vld1q_s16(x.add(kk * COLS + 8))];
        let mut acc = [vdupq_n_s32(0); COLS];
        let mut kk = 0;
        while kk + 4 <= k {
            let wv = vld1q_s8(w.add(kk * ROWS));
            let (w01, w23) = (vmovl_s8(vget_low_s8(wv)), vmovl_high_s8(wv));
            low(&mut acc, vget_low_s16(w01), codes(kk));
            high(&mut acc, w01, codes(kk + 1));
            low(&mut acc, vget_low_s16(w23), codes(kk + 2));
            high(&mut acc, w23, codes(kk + 3));
            kk += 4;
        }
        while kk < k {
            let word = std::ptr::read_unaligned(w.add(kk * ROWS) as *const i32);
            let wk = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(word)));
            low(&mut acc, vget_low_s16(wk), codes(kk));
            kk += 1;
        }
        acc
    }
}
