//! The aarch64 depthwise kernel (`neon`, any ARMv8 core): the output plane in tiles of 2 rows ×
//! 4 vectors of 4 lanes, or 4 rows × 2 vectors on narrow planes (a partial last vector stored
//! through a stack buffer), the tile's accumulators in registers across all taps: per tap one
//! `ld1r` weight, then one load and one `fmla` per accumulator. 3×3 jobs (strides 1 and 2) use
//! hand-unrolled 2 × 16 tiles instead where the row allows: the nine weights in three
//! registers (`fmla` by element) and each input row loaded once for both output rows.

use std::arch::aarch64::*;

use super::{DepthwiseKernel, PlaneJob};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn DepthwiseKernel {
        &Neon(())
    }
}

impl DepthwiseKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &PlaneJob<'_>, out: &mut [f32]) {
        job.check(out);
        // SAFETY: NEON is baseline on aarch64; the job passed its check, so every read (whole
        // vectors included) is inside `job.input` and every store inside `out`.
        unsafe { run_neon(job, out.as_mut_ptr()) }
    }
}

/// A 3×3 job's structure, if it has it: the distance between kernel rows, the vertical stride
/// (1 or 2) and each kernel column's offset (`taps[3·ky + kx] = column[kx] + ky·ld`,
/// `row_step = stride·ld`).
fn square3(job: &PlaneJob<'_>) -> Option<(usize, usize, [usize; 3])> {
    let t = job.taps;
    if t.len() != 9 {
        return None;
    }
    let column = [t[0], t[1], t[2]];
    let ld = t[3].checked_sub(t[0]).filter(|&ld| ld > 0)?;
    let regular = (0..9).all(|i| t[i] == column[i % 3] + (i / 3) * ld);
    let stride = job.row_step / ld;
    (regular && (1..=2).contains(&stride) && stride * ld == job.row_step)
        .then_some((ld, stride, column))
}

#[target_feature(enable = "neon")]
unsafe fn run_neon(job: &PlaneJob<'_>, out: *mut f32) {
    let (cols, n) = (job.cols, job.taps.len());
    let (taps, weights) = (job.taps.as_ptr(), job.weights.as_ptr());
    let act = job.act;
    let (low, high) = (vdupq_n_f32(act.low), vdupq_n_f32(act.high));
    let (sixth, half) = (vdupq_n_f32(1.0 / 6.0), vdupq_n_f32(0.5));
    let (zero, one) = (vdupq_n_f32(0.0), vdupq_n_f32(1.0));
    let apply = |acc: float32x4_t| {
        let x = vminq_f32(vmaxq_f32(acc, low), high);
        if act.hardswish {
            let t = vaddq_f32(vmulq_f32(x, sixth), half);
            vmulq_f32(x, vminq_f32(vmaxq_f32(t, zero), one))
        } else {
            x
        }
    };
    let (input, step) = (job.input.as_ptr(), job.row_step);
    let store = |dst: *mut f32, v: float32x4_t, valid: usize| {
        if valid >= 4 {
            vst1q_f32(dst, v);
        } else {
            let mut buf = [0f32; 4];
            vst1q_f32(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, valid);
        }
    };
    // One tile: rows r..r+R × V vectors from column c.
    macro_rules! tile {
        ($r:expr, $c:expr, $rows:literal, $vecs:literal) => {{
            let (r, c) = ($r, $c);
            let mut acc = [[vdupq_n_f32(job.bias); $vecs]; $rows];
            for t in 0..n {
                let w = vld1q_dup_f32(weights.add(t));
                let p = input.add(r * step + *taps.add(t) + c);
                for (i, row) in acc.iter_mut().enumerate() {
                    for (j, a) in row.iter_mut().enumerate() {
                        *a = vfmaq_f32(*a, w, vld1q_f32(p.add(i * step + 4 * j)));
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, a) in row.iter().enumerate() {
                    let col = c + 4 * j;
                    if col < cols {
                        store(out.add((r + i) * cols + col), apply(*a), cols - col);
                    }
                }
            }
        }};
    }
    // Tile shapes by what is left of the row: 2 rows × 4 vectors where 13+ columns are left,
    // else 4 rows × 2 vectors (5–12 columns: 7×7 planes), else 4 rows × 1 vector; always at
    // least four accumulators for the `fmla` latency, eight where the plane allows.
    let rows = job.rows;
    // 3×3 jobs: 2 rows × 16 columns with the 9 weights in registers and each input row loaded
    // once (four vectors in one `ld1`) for both output rows that read it.
    let sq3 = square3(job);
    // Taps 0–3, 4–7 and 8 (lane 0); loaded only for a 3×3 job (9 weights).
    let w3 = match sq3 {
        Some(_) => [
            vld1q_f32(weights),
            vld1q_f32(weights.add(4)),
            vdupq_n_f32(*weights.add(8)),
        ],
        None => [vdupq_n_f32(0.0); 3],
    };
    // One (input row, kernel column) step of a 3×3 tile: the four vectors at input row `u`,
    // column `kx`, into each listed (output row, tap) accumulator row.
    macro_rules! step3 {
        ($acc:ident, $base:expr, $ld:expr, $col:expr, $u:literal, $kx:literal,
         [$(($i:literal, $t:literal)),*]) => {{
            let x = vld1q_f32_x4($base.add($u * $ld + $col[$kx]));
            $(
                $acc[$i][0] = vfmaq_laneq_f32::<{ $t % 4 }>($acc[$i][0], x.0, w3[$t / 4]);
                $acc[$i][1] = vfmaq_laneq_f32::<{ $t % 4 }>($acc[$i][1], x.1, w3[$t / 4]);
                $acc[$i][2] = vfmaq_laneq_f32::<{ $t % 4 }>($acc[$i][2], x.2, w3[$t / 4]);
                $acc[$i][3] = vfmaq_laneq_f32::<{ $t % 4 }>($acc[$i][3], x.3, w3[$t / 4]);
            )*
        }};
    }
    // A 2-row × 16-column 3×3 tile at vertical stride 1 or 2: each output row meets its taps
    // in order (kernel row, then column), the FMA sequence of `tile!`.
    macro_rules! tile3 {
        ($r:expr, $c:expr, $ld:expr, $col:expr, 1) => {{
            let (r, c, ld, col) = ($r, $c, $ld, $col);
            let b = vdupq_n_f32(job.bias);
            let mut a = [[b; 4]; 2];
            let base = input.add(r * step + c);
            step3!(a, base, ld, col, 0, 0, [(0, 0)]);
            step3!(a, base, ld, col, 0, 1, [(0, 1)]);
            step3!(a, base, ld, col, 0, 2, [(0, 2)]);
            step3!(a, base, ld, col, 1, 0, [(0, 3), (1, 0)]);
            step3!(a, base, ld, col, 1, 1, [(0, 4), (1, 1)]);
            step3!(a, base, ld, col, 1, 2, [(0, 5), (1, 2)]);
            step3!(a, base, ld, col, 2, 0, [(0, 6), (1, 3)]);
            step3!(a, base, ld, col, 2, 1, [(0, 7), (1, 4)]);
            step3!(a, base, ld, col, 2, 2, [(0, 8), (1, 5)]);
            step3!(a, base, ld, col, 3, 0, [(1, 6)]);
            step3!(a, base, ld, col, 3, 1, [(1, 7)]);
            step3!(a, base, ld, col, 3, 2, [(1, 8)]);
            store_tile!(a, r, c);
        }};
        ($r:expr, $c:expr, $ld:expr, $col:expr, 2) => {{
            let (r, c, ld, col) = ($r, $c, $ld, $col);
            let b = vdupq_n_f32(job.bias);
            let mut a = [[b; 4]; 2];
            let base = input.add(r * step + c);
            step3!(a, base, ld, col, 0, 0, [(0, 0)]);
            step3!(a, base, ld, col, 0, 1, [(0, 1)]);
            step3!(a, base, ld, col, 0, 2, [(0, 2)]);
            step3!(a, base, ld, col, 1, 0, [(0, 3)]);
            step3!(a, base, ld, col, 1, 1, [(0, 4)]);
            step3!(a, base, ld, col, 1, 2, [(0, 5)]);
            step3!(a, base, ld, col, 2, 0, [(0, 6), (1, 0)]);
            step3!(a, base, ld, col, 2, 1, [(0, 7), (1, 1)]);
            step3!(a, base, ld, col, 2, 2, [(0, 8), (1, 2)]);
            step3!(a, base, ld, col, 3, 0, [(1, 3)]);
            step3!(a, base, ld, col, 3, 1, [(1, 4)]);
            step3!(a, base, ld, col, 3, 2, [(1, 5)]);
            step3!(a, base, ld, col, 4, 0, [(1, 6)]);
            step3!(a, base, ld, col, 4, 1, [(1, 7)]);
            step3!(a, base, ld, col, 4, 2, [(1, 8)]);
            store_tile!(a, r, c);
        }};
    }
    macro_rules! store_tile {
        ($a:ident, $r:expr, $c:expr) => {{
            for (i, row) in $a.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let col = $c + 4 * j;
                    if col < cols {
                        store(out.add(($r + i) * cols + col), apply(*v), cols - col);
                    }
                }
            }
        }};
    }
    let mut c = 0;
    while c < cols {
        let left = cols - c;
        let mut r = 0;
        if left > 12 {
            while r + 2 <= rows {
                match sq3 {
                    Some((ld, 1, col)) => tile3!(r, c, ld, col, 1),
                    Some((ld, _, col)) => tile3!(r, c, ld, col, 2),
                    None => tile!(r, c, 2, 4),
                }
                r += 2;
            }
            if r < rows {
                tile!(r, c, 1, 4);
            }
            c += 16;
        } else if left > 4 {
            while r + 4 <= rows {
                tile!(r, c, 4, 2);
                r += 4;
            }
            while r < rows {
                tile!(r, c, 1, 2);
                r += 1;
            }
            c += 8;
        } else {
            while r + 4 <= rows {
                tile!(r, c, 4, 1);
                r += 4;
            }
            while r < rows {
                tile!(r, c, 1, 1);
                r += 1;
            }
            c += 4;
        }
    }
}
