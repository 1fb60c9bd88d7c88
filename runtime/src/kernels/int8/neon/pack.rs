//! NEON packers: [`pack_f32`](super::super::pack_f32) 16 floats at a time, the same
//! quantization (`fmul`, `fadd`, `fmaxnm` (a NaN gives −128), `fminnm`, `fcvtns` rounding half
//! to even), narrowed to bytes (and flipped to offset binary by one `eor` where the format
//! asks). Blocks with a partial column range, or channels-last input with a partial group of
//! k, go through the portable packer.
//!
//! * Channels last (each column's k contiguous): one 16-byte store per 16 floats, in any
//!   group size (4 columns × 4 k for groups of 4, 16 k of one column for groups of 16).
//! * Channels first (each k's columns contiguous), groups of 4: the 4 k rows of 16 columns
//!   are interleaved by one `st4`. Groups of 16: 16 k rows of 16 columns are transposed in
//!   registers (`trn1`/`trn2` on 8, 16, 32 and 64 bits: 64 instructions per 256 bytes).

use std::arch::aarch64::*;

use super::super::{Format, Pack, Quantizer, Strides, COLS};
use super::{narrow16, quantize_s32};

/// [`super::super::pack_f32`] in `format` (groups of 4 or 16 k), the same bytes.
pub fn pack_f32(p: &Pack<'_, f32>, q: Quantizer, format: Format, out: &mut [u8]) {
    assert!(
        matches!(format.group, 4 | 16),
        "no NEON packer for {format:?}"
    );
    p.check(format, out);
    let (x, k, n, ld) = (p.x, p.k, p.n, p.ld);
    let per_block = format.block_bytes(k);
    let whole_k = k.is_multiple_of(format.group);
    for (bi, b) in p.blocks.clone().enumerate() {
        let dst = &mut out[bi * per_block..(bi + 1) * per_block];
        let whole = (b + 1) * COLS <= n;
        // Contiguous columns take the channels-first path, which pads a partial group; with
        // K = 1 (or N = 1) the strides are both 1 and channels last would need whole groups.
        let first = ld.c == 1;
        let last = !first && ld.k == 1 && whole_k;
        if !whole || !(first || last) {
            let one = Pack {
                blocks: b..b + 1,
                ..p.clone()
            };
            super::super::pack_f32(&one, q, format, dst);
            continue;
        }
        let at = Block {
            x: x.as_ptr(),
            k,
            c0: b * COLS,
            ld,
        };
        // SAFETY: NEON is always present on aarch64; the block is whole (16 columns, and
        // whole groups of k when channels last) and inside x (Pack::check); dst holds it.
        unsafe {
            match (last, format.group, format.offset_binary) {
                (true, 4, false) => channels_last::<4, false>(&at, q, dst),
                (true, 4, true) => channels_last::<4, true>(&at, q, dst),
                (true, _, false) => channels_last::<16, false>(&at, q, dst),
                (true, _, true) => channels_last::<16, true>(&at, q, dst),
                (false, 4, false) => channels_first::<4, false>(&at, q, dst),
                (false, 4, true) => channels_first::<4, true>(&at, q, dst),
                (false, _, false) => channels_first::<16, false>(&at, q, dst),
                (false, _, true) => channels_first::<16, true>(&at, q, dst),
            }
        }
    }
}

/// One whole block of 16 columns from `c0` of an input of `k` rows laid out as `ld`.
struct Block {
    x: *const f32,
    k: usize,
    c0: usize,
    ld: Strides,
}

/// The codes of 16 floats read 4 at a time from `at(0)`, `at(1)`, `at(2)`, `at(3)`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn codes16<const OFFSET: bool>(
    at: impl Fn(usize) -> *const f32,
    inv: float32x4_t,
    zp: float32x4_t,
) -> uint8x16_t {
    // SAFETY: the caller's pointers hold 4 floats each.
    let q = std::array::from_fn(|i| quantize_s32(unsafe { vld1q_f32(at(i)) }, inv, zp));
    let v = vreinterpretq_u8_s8(narrow16(q));
    if OFFSET {
        veorq_u8(v, vdupq_n_u8(0x80))
    } else {
        v
    }
}

/// Channels last: chunk `i` of a group's `16·G` bytes is 16 consecutive bytes of the packed
/// order `[16 columns][G k]`, i.e. 4 runs of 4 floats each contiguous in the input.
#[target_feature(enable = "neon")]
unsafe fn channels_last<const G: usize, const OFFSET: bool>(
    b: &Block,
    q: Quantizer,
    dst: &mut [u8],
) {
    let (inv, zp) = (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32));
    let step = COLS * G;
    let d = dst.as_mut_ptr();
    for g in 0..b.k / G {
        for chunk in 0..step / 16 {
            let at = |s: usize| {
                let first = chunk * 16 + s * 4;
                let (j, t) = (first / G, first % G);
                // SAFETY: column c0 + j < n and k g·G + t .. + 4 ≤ k (whole groups): inside x.
                unsafe { b.x.add((b.c0 + j) * b.ld.c + g * G + t) }
            };
            // SAFETY: 16 bytes at chunk `chunk` of group g lie in the block's bytes.
            unsafe { vst1q_u8(d.add(g * step + chunk * 16), codes16::<OFFSET>(at, inv, zp)) };
        }
    }
}

/// Channels first: row `kk` of the block is 16 contiguous floats; rows past `k` are the code
/// of zero.
#[target_feature(enable = "neon")]
unsafe fn channels_first<const G: usize, const OFFSET: bool>(
    b: &Block,
    q: Quantizer,
    dst: &mut [u8],
) {
    let (inv, zp) = (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32));
    let step = COLS * G;
    let pad = vdupq_n_u8(if OFFSET { 0x80 } else { 0 });
    let d = dst.as_mut_ptr();
    let row = |kk: usize| {
        if kk >= b.k {
            return pad;
        }
        // SAFETY: row kk < k, columns c0 .. c0 + 16 < n: inside x.
        unsafe { codes16::<OFFSET>(|s| b.x.add(kk * b.ld.k + b.c0 + 4 * s), inv, zp) }
    };
    for g in 0..b.k.div_ceil(G) {
        // SAFETY (both arms): the group's `step` bytes lie in dst.
        unsafe {
            if G == 4 {
                let rows = uint8x16x4_t(row(g * 4), row(g * 4 + 1), row(g * 4 + 2), row(g * 4 + 3));
                vst4q_u8(d.add(g * step), rows);
            } else {
                let cols = transpose16(std::array::from_fn(|t| row(g * 16 + t)));
                for (j, col) in cols.into_iter().enumerate() {
                    vst1q_u8(d.add(g * step + j * 16), col);
                }
            }
        }
    }
}

/// Transposes 16 rows of 16 bytes: `trn1`/`trn2` between rows `i` and `i + s` on elements of
/// `s` bytes, for `s` = 1, 2, 4, 8.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn transpose16(mut r: [uint8x16_t; 16]) -> [uint8x16_t; 16] {
    for i in (0..16).filter(|i| i & 1 == 0) {
        let (a, b) = (r[i], r[i + 1]);
        (r[i], r[i + 1]) = (vtrn1q_u8(a, b), vtrn2q_u8(a, b));
    }
    for i in (0..16).filter(|i| i & 2 == 0) {
        let (a, b) = (vreinterpretq_u16_u8(r[i]), vreinterpretq_u16_u8(r[i + 2]));
        r[i] = vreinterpretq_u8_u16(vtrn1q_u16(a, b));
        r[i + 2] = vreinterpretq_u8_u16(vtrn2q_u16(a, b));
    }
    for i in (0..16).filter(|i| i & 4 == 0) {
        let (a, b) = (vreinterpretq_u32_u8(r[i]), vreinterpretq_u32_u8(r[i + 4]));
        r[i] = vreinterpretq_u8_u32(vtrn1q_u32(a, b));
        r[i + 4] = vreinterpretq_u8_u32(vtrn2q_u32(a, b));
    }
    for i in 0..8 {
        let (a, b) = (vreinterpretq_u64_u8(r[i]), vreinterpretq_u64_u8(r[i + 8]));
        r[i] = vreinterpretq_u8_u64(vtrn1q_u64(a, b));
        r[i + 8] = vreinterpretq_u8_u64(vtrn2q_u64(a, b));
    }
    r
}
