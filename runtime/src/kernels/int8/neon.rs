//! aarch64 int8 kernels: `neon` (ARMv8.0, every Cortex-A: Raspberry Pi 4's A72, Jetson Nano's
//! A57) and `neon-dotprod` (`sdot`, ARMv8.2 FEAT_DotProd: Pi 5's A76, Jetson Orin's A78AE).
//!
//! Both read the packed input 16 bytes at a time (4 columns × 4 k, offset binary) and flip it
//! back to i8 with one `eor`; a weight register holds one group of 4 k for 4 rows.
//!
//! * `neon-dotprod`: tile 4 rows × 16 columns, 16 accumulators. Per group of 4 k: 4 input
//!   loads + 4 `eor`, 1 weight load, 16 `sdot` by lane (16 MACs each): 256 MACs in 25
//!   instructions, ~10 per instruction, against 4 for an f32 `fmla`.
//! * `neon`: no instruction multiplies int8 into 32-bit lanes in one step, so products go
//!   through i16 (the gemmlowp scheme): `smull` (8 products), `smlal` (8 more from the next
//!   group of 4 k, into the same i16 lanes: two products of |w| ≤ 127 and |x| ≤ 128 stay below
//!   2^15), `sadalp` (pairwise into i32). 32 MACs per 6 instructions; the accumulators hold
//!   two partial sums per column and one `addp` per 4 columns finishes them. Tile 4 rows × 8
//!   columns (16 accumulators), plus one `dup` per row and group for the weights: ~3.9 MACs
//!   per instruction in all, about `fmla`'s rate. On a Cortex-A72 int8 saves memory traffic
//!   and the casts tract puts around its own int8 ops, not multiply instructions.
//!
//! The output stage runs on 4 lanes (add, `scvtf`, `fmul`, clamp with `fmaxnm`/`fminnm`, and
//! for i8 `fcvtns`) with the same IEEE operations as the portable stage, then one `st1` (f32,
//! channels first) or lane by lane (channels last, i8, a partial group).

use std::arch::aarch64::*;
use std::arch::asm;

use super::{Int8Kernel, Job, Output, Pack, Quantizer, Stage, Strides, BLOCK_STEP, COLS, ROWS};

/// ARMv8.0 NEON kernel.
#[derive(Debug)]
pub struct Neon;

/// NEON kernel with `sdot`.
#[derive(Debug)]
pub struct NeonDot;

impl Neon {
    /// The kernel (NEON is part of every aarch64 core Kestrel supports).
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        std::arch::is_aarch64_feature_detected!("neon").then_some(&Neon as &dyn Int8Kernel)
    }
}

impl NeonDot {
    /// The kernel, if the core has FEAT_DotProd.
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        (std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod"))
        .then_some(&NeonDot as &dyn Int8Kernel)
    }
}

impl Int8Kernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &Job<'_>) {
        job.check();
        // SAFETY: NEON detected; `check` verified the sizes the tiles rely on.
        unsafe { run_neon(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        pack_f32_neon(p, q, out)
    }
}

impl Int8Kernel for NeonDot {
    fn name(&self) -> &'static str {
        "neon-dotprod"
    }

    fn run(&self, job: &Job<'_>) {
        job.check();
        // SAFETY: dotprod detected; `check` verified the sizes the tiles rely on.
        unsafe { run_dot(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        pack_f32_neon(p, q, out)
    }
}

/// The float output stage of row `o` on 4 lanes of signed sums: add the correction, `scvtf`,
/// `fmul` by the scale, clamp (`fmaxnm`/`fminnm`), the portable stage's operations.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn stage_f32(stage: &Stage<'_>, o: usize, acc: int32x4_t) -> float32x4_t {
    let y = vmulq_f32(
        vcvtq_f32_s32(vaddq_s32(acc, vdupq_n_s32(stage.corr[o]))),
        vdupq_n_f32(stage.scale[o]),
    );
    vminnmq_f32(vmaxnmq_f32(y, vdupq_n_f32(stage.lo)), vdupq_n_f32(stage.hi))
}

/// Writes 4 columns of row `o` (starting at column `c`, `valid` of them exist) from the
/// signed sums `acc`: the stage on 4 lanes, then one `st1` (contiguous f32) or lane by lane.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn store4(stage: &Stage<'_>, o: usize, c: usize, valid: usize, acc: int32x4_t) {
    let y = stage_f32(stage, o, acc);
    // SAFETY: columns c .. c + valid of row o lie in the output (caller).
    unsafe {
        match stage.out {
            Output::F32 { ptr, ld } if ld.c == 1 && valid == 4 => {
                vst1q_f32(ptr.add(o * ld.k + c), y)
            }
            Output::F32 { ptr, ld } => {
                let mut a = [0f32; 4];
                vst1q_f32(a.as_mut_ptr(), y);
                for (j, &v) in a.iter().enumerate().take(valid) {
                    *ptr.add(o * ld.k + (c + j) * ld.c) = v;
                }
            }
            Output::I8 {
                ptr,
                ld,
                inv_scale,
                zp,
            } => {
                let q = quantize_s32(y, vdupq_n_f32(inv_scale), vdupq_n_f32(zp));
                let mut a = [0i32; 4];
                vst1q_s32(a.as_mut_ptr(), q);
                for (j, &v) in a.iter().enumerate().take(valid) {
                    *ptr.add(o * ld.k + (c + j) * ld.c) = v as i8;
                }
            }
        }
    }
}

/// [`super::pack_f32`] 16 floats at a time, the same quantization (`fmul`, `fadd`, `fmaxnm`
/// (a NaN gives −128), `fminnm`, `fcvtns` rounding half to even), offset by 128 and narrowed.
/// Channels first: four k rows of 16 columns are stored interleaved by one `st4`. Channels
/// last: each column's 4 consecutive k are one vector. A block with a partial column range
/// or group of k goes through the portable packer.
fn pack_f32_neon(p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
    p.check(out);
    let (x, k, n, ld) = (p.x, p.k, p.n, p.ld);
    let k4 = k.div_ceil(4);
    let per_block = k4 * BLOCK_STEP;
    let whole_k = k.is_multiple_of(4);
    for (bi, b) in p.blocks.clone().enumerate() {
        let dst = &mut out[bi * per_block..(bi + 1) * per_block];
        let whole = (b + 1) * COLS <= n;
        let (first, last) = (ld.c == 1, ld.k == 1);
        if !whole || !(first || last && whole_k) {
            let one = Pack {
                blocks: b..b + 1,
                ..p.clone()
            };
            super::pack_f32(&one, q, dst);
            continue;
        }
        // SAFETY: NEON is always present on aarch64; the block is whole (16 columns, and
        // whole groups of 4 k when channels last) and inside x (Pack::check).
        unsafe { pack_block_neon(x.as_ptr(), k, b * COLS, ld, last, q, dst) }
    }
}

/// Quantizes 4 floats to signed codes in 32-bit lanes with the portable quantizer's operations
/// (`fmul`, `fadd`, `fmaxnm` (a NaN gives −128), `fminnm`, `fcvtns` rounding half to even).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn quantize_s32(v: float32x4_t, inv: float32x4_t, zp: float32x4_t) -> int32x4_t {
    let v = vaddq_f32(vmulq_f32(v, inv), zp);
    let v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(-128.0)), vdupq_n_f32(127.0));
    vcvtnq_s32_f32(v)
}

/// [`quantize_s32`] offset by 128 (the packed input's offset binary).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn quantize4(v: float32x4_t, inv: float32x4_t, zp: float32x4_t) -> uint32x4_t {
    vreinterpretq_u32_s32(vaddq_s32(quantize_s32(v, inv, zp), vdupq_n_s32(128)))
}

/// Narrows 16 codes (in 32-bit lanes) to bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn narrow16(q: [uint32x4_t; 4]) -> uint8x16_t {
    let lo = vcombine_u16(vmovn_u32(q[0]), vmovn_u32(q[1]));
    let hi = vcombine_u16(vmovn_u32(q[2]), vmovn_u32(q[3]));
    vcombine_u8(vmovn_u16(lo), vmovn_u16(hi))
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
unsafe fn pack_block_neon(
    x: *const f32,
    k: usize,
    c0: usize,
    ld: Strides,
    last: bool,
    q: Quantizer,
    dst: &mut [u8],
) {
    let (inv, zpf) = (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32));
    let d = dst.as_mut_ptr();
    for g in 0..k.div_ceil(4) {
        // SAFETY (loop): reads stay in the block's columns and k (caller), writes in the
        // block's 64 bytes of group g.
        unsafe {
            if last {
                // Column j's k = 4g .. 4g + 4 are contiguous.
                for quarter in 0..4 {
                    let q = std::array::from_fn(|i| {
                        let p = x.add((c0 + quarter * 4 + i) * ld.c + g * 4);
                        quantize4(vld1q_f32(p), inv, zpf)
                    });
                    vst1q_u8(d.add(g * BLOCK_STEP + quarter * 16), narrow16(q));
                }
            } else {
                let row = |t: usize| {
                    let kk = g * 4 + t;
                    if kk >= k {
                        return vdupq_n_u8(0x80);
                    }
                    let p = x.add(kk * ld.k + c0);
                    narrow16(std::array::from_fn(|i| {
                        quantize4(vld1q_f32(p.add(4 * i)), inv, zpf)
                    }))
                };
                let rows = uint8x16x4_t(row(0), row(1), row(2), row(3));
                vst4q_u8(d.add(g * BLOCK_STEP), rows);
            }
        }
    }
}

/// Writes a 4 rows × 4 columns tile (rows `o0..o0 + 4` that are `< m`, `valid` columns from
/// `c`). Channels-last f32 output with whole rows and columns: the stage on each row, a 4×4
/// transpose (`trn1`/`trn2`), one `st1` per column (4 consecutive output channels); otherwise
/// row by row through [`store4`].
#[target_feature(enable = "neon")]
#[inline]
unsafe fn store_tile(
    stage: &Stage<'_>,
    o0: usize,
    m: usize,
    c: usize,
    valid: usize,
    acc: [int32x4_t; 4],
) {
    // SAFETY (whole body): rows < m and columns c .. c + valid lie in the output (caller).
    unsafe {
        if let Output::F32 { ptr, ld } = stage.out {
            if ld.k == 1 && ld.c != 1 && valid == 4 && o0 + 4 <= m {
                let y: [float32x4_t; 4] = std::array::from_fn(|r| stage_f32(stage, o0 + r, acc[r]));
                let t0 = vreinterpretq_f64_f32(vtrn1q_f32(y[0], y[1]));
                let t1 = vreinterpretq_f64_f32(vtrn2q_f32(y[0], y[1]));
                let t2 = vreinterpretq_f64_f32(vtrn1q_f32(y[2], y[3]));
                let t3 = vreinterpretq_f64_f32(vtrn2q_f32(y[2], y[3]));
                let cols = [
                    vtrn1q_f64(t0, t2),
                    vtrn1q_f64(t1, t3),
                    vtrn2q_f64(t0, t2),
                    vtrn2q_f64(t1, t3),
                ];
                for (j, col) in cols.into_iter().enumerate() {
                    vst1q_f32(ptr.add(o0 + (c + j) * ld.c), vreinterpretq_f32_f64(col));
                }
                return;
            }
        }
        for (r, &a) in acc.iter().enumerate() {
            if o0 + r >= m {
                break;
            }
            store4(stage, o0 + r, c, valid, a);
        }
    }
}

/// Loads 16 packed bytes and flips them to i8.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_x(p: *const u8) -> int8x16_t {
    // SAFETY: the caller's pointer holds 16 bytes.
    unsafe { vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80))) }
}

#[target_feature(enable = "neon")]
unsafe fn run_neon(job: &Job<'_>) {
    let (m, k4) = (job.w.rows(), job.w.k4());
    let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr());
    for b in 0..job.blocks {
        let c0 = (job.first_block + b) * COLS;
        let cols = job.cols(b);
        for rb in job.row_blocks.clone() {
            for half in 0..2 {
                if half * 8 >= cols {
                    break;
                }
                let mut acc = [[vdupq_n_s32(0); 4]; ROWS];
                // SAFETY (loop): groups g < k4 of row block rb and block b, bytes half·32 ..
                // half·32 + 32 of each 64-byte group: inside the packed buffers (job.check).
                unsafe {
                    let xg = |g: usize, q: usize| {
                        load_x(x.add((b * k4 + g) * BLOCK_STEP + half * 32 + q * 16))
                    };
                    let wg = |g: usize| vld1q_s8(w.add(((rb * k4 + g) * ROWS) * 4));
                    let mut g = 0;
                    while g < k4 {
                        let pair = g + 1 < k4;
                        let (xa, wa) = ([xg(g, 0), xg(g, 1)], wg(g));
                        let (xb, wb) = if pair {
                            ([xg(g + 1, 0), xg(g + 1, 1)], wg(g + 1))
                        } else {
                            ([vdupq_n_s8(0); 2], vdupq_n_s8(0))
                        };
                        macro_rules! row {
                            ($r:literal) => {{
                                let wa = vreinterpretq_s8_s32(vdupq_laneq_s32::<$r>(
                                    vreinterpretq_s32_s8(wa),
                                ));
                                let wb = vreinterpretq_s8_s32(vdupq_laneq_s32::<$r>(
                                    vreinterpretq_s32_s8(wb),
                                ));
                                for q in 0..2 {
                                    let lo = vmlal_s8(
                                        vmull_s8(vget_low_s8(xa[q]), vget_low_s8(wa)),
                                        vget_low_s8(xb[q]),
                                        vget_low_s8(wb),
                                    );
                                    let hi = vmlal_high_s8(vmull_high_s8(xa[q], wa), xb[q], wb);
                                    acc[$r][2 * q] = vpadalq_s16(acc[$r][2 * q], lo);
                                    acc[$r][2 * q + 1] = vpadalq_s16(acc[$r][2 * q + 1], hi);
                                }
                            }};
                        }
                        row!(0);
                        row!(1);
                        row!(2);
                        row!(3);
                        g += if pair { 2 } else { 1 };
                    }
                    for q in 0..2 {
                        // acc[r][2q] holds columns 4q, 4q+1 (two halves each), acc[r][2q+1]
                        // columns 4q+2, 4q+3.
                        let sums =
                            std::array::from_fn(|r| vpaddq_s32(acc[r][2 * q], acc[r][2 * q + 1]));
                        let c = half * 8 + q * 4;
                        if c < cols {
                            store_tile(&job.stage, rb * ROWS, m, c0 + c, (cols - c).min(4), sums);
                        }
                    }
                }
            }
        }
    }
}

/// `acc + x · w.s[L]` by groups of 4 bytes (`sdot` by element).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sdot<const L: i32>(acc: int32x4_t, x: int8x16_t, w: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction of FEAT_DotProd (enabled on this function).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {x:v}.16b, {w:v}.4b[{l}]",
            acc = inout(vreg) acc,
            x = in(vreg) x,
            w = in(vreg) w,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn run_dot(job: &Job<'_>) {
    let (m, k4) = (job.w.rows(), job.w.k4());
    let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr());
    for b in 0..job.blocks {
        let c0 = (job.first_block + b) * COLS;
        let cols = job.cols(b);
        for rb in job.row_blocks.clone() {
            let mut acc = [[vdupq_n_s32(0); 4]; ROWS];
            // SAFETY (loop): groups g < k4 of row block rb and block b: inside the packed
            // buffers (job.check).
            unsafe {
                for g in 0..k4 {
                    let xs = x.add((b * k4 + g) * BLOCK_STEP);
                    let xv = [
                        load_x(xs),
                        load_x(xs.add(16)),
                        load_x(xs.add(32)),
                        load_x(xs.add(48)),
                    ];
                    let wv = vld1q_s8(w.add(((rb * k4 + g) * ROWS) * 4));
                    for q in 0..4 {
                        acc[0][q] = sdot::<0>(acc[0][q], xv[q], wv);
                        acc[1][q] = sdot::<1>(acc[1][q], xv[q], wv);
                        acc[2][q] = sdot::<2>(acc[2][q], xv[q], wv);
                        acc[3][q] = sdot::<3>(acc[3][q], xv[q], wv);
                    }
                }
                for (q, c) in (0..cols).step_by(4).enumerate() {
                    let sums = std::array::from_fn(|r| acc[r][q]);
                    store_tile(&job.stage, rb * ROWS, m, c0 + c, (cols - c).min(4), sums);
                }
            }
        }
    }
}
