//! NEON packers: [`pack_f32`](super::super::pack_f32) and
//! [`pack_f32_digits`](super::super::pack_f32_digits) 16 floats at a time (and
//! [`pack_i8`](super::super::pack_i8) 16 codes at a time, by the same block walks), the same
//! quantization (`fmul`, `fadd`, `fmaxnm` (a NaN gives the lowest code), `fminnm`, `fcvtns`
//! rounding half to even), narrowed to bytes (and flipped to offset binary by one `eor` where
//! the format asks). A channels-last block with a partial column range or a partial group of
//! k (a dense layer's single column) is set to the padding, then each column's k written 16
//! at a time; a partial channels-first block selects the code of zero into its missing
//! columns. Other layouts go through the portable packer.
//!
//! * 8-bit codes ([`Codes`]): clamped to `[−128, 127]`, narrowed by two `xtn` steps.
//! * The two digit planes of 16-bit codes ([`Digits`]): clamped to `[−32768, 32767]`,
//!   narrowed once to i16; `shrn #8` gives the high digits (`q >> 8`), `xtn` and an `eor` of
//!   0x80 the low ones (`(q & 0xFF) − 128`). One pass writes both planes.
//! * 16-bit codes in one plane ([`pack_f32_codes16`], [`Format::CODES16`]): channels first,
//!   16 floats per k quantized as the digits are, narrowed once (`xtn`) and stored as 32
//!   bytes; channels last by the portable packer.
//! * Channels last (each column's k contiguous): one 16-byte store per 16 floats and plane, in
//!   any group size (4 columns × 4 k for groups of 4, 16 k of one column for groups of 16).
//! * Channels first (each k's columns contiguous), groups of 4: the 4 k rows of 16 columns
//!   are interleaved by one `st4` per plane. Groups of 16: 16 k rows of 16 columns are
//!   transposed in registers (`trn1`/`trn2` on 8, 16, 32 and 64 bits: 64 instructions per 256
//!   bytes and plane).

use std::arch::aarch64::*;

use super::super::{Format, Pack, Quantizer, Strides, COLS};
use super::{narrow16, quantize16_s32, quantize_s32};

/// [`super::super::pack_f32`] in `format` (groups of 4 or 16 k), the same bytes.
pub fn pack_f32(p: &Pack<'_, f32>, q: Quantizer, format: Format, out: &mut [u8]) {
    let portable =
        |one: &Pack<'_, f32>, [dst]: [&mut [u8]; 1]| super::super::pack_f32(one, q, format, dst);
    // SAFETY: NEON is always present on aarch64.
    let (inv, zp) = unsafe { (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32)) };
    if format.offset_binary {
        pack(p, format, [out], Codes::<true> { inv, zp }, portable)
    } else {
        pack(p, format, [out], Codes::<false> { inv, zp }, portable)
    }
}

/// [`super::super::pack_f32_digits`] in `format` (groups of 4 or 16 k), the same bytes.
pub fn pack_f32_digits(
    p: &Pack<'_, f32>,
    q: Quantizer,
    format: Format,
    hi: &mut [u8],
    lo: &mut [u8],
) {
    let portable = |one: &Pack<'_, f32>, [h, l]: [&mut [u8]; 2]| {
        super::super::pack_f32_digits(one, q, format, h, l)
    };
    // SAFETY: NEON is always present on aarch64.
    let (inv, zp) = unsafe { (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32)) };
    if format.offset_binary {
        pack(p, format, [hi, lo], Digits::<true> { inv, zp }, portable)
    } else {
        pack(p, format, [hi, lo], Digits::<false> { inv, zp }, portable)
    }
}

/// [`super::super::pack_f32_codes16`], the same bytes: whole blocks of contiguous columns
/// (channels first) 16 floats per k at a time, quantized as the portable `quantize16` and
/// narrowed by `xtn`; other blocks by the portable packer.
pub fn pack_f32_codes16(p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
    let format = Format::CODES16;
    p.check(format, out);
    let (k, n, ld) = (p.k, p.n, p.ld);
    let per_block = format.block_bytes(k);
    // SAFETY: NEON is always present on aarch64.
    let (inv, zp) = unsafe { (vdupq_n_f32(q.inv_scale), vdupq_n_f32(q.zp as f32)) };
    for (bi, b) in p.blocks.clone().enumerate() {
        let dst = &mut out[bi * per_block..(bi + 1) * per_block];
        let c0 = b * COLS;
        if ld.c != 1 || c0 + COLS > n {
            let one = Pack {
                blocks: b..b + 1,
                ..p.clone()
            };
            super::super::pack_f32_codes16(&one, q, dst);
            continue;
        }
        for (kk, row) in dst.chunks_exact_mut(2 * COLS).enumerate() {
            let src = &p.x[kk * ld.k + c0..][..COLS];
            // SAFETY: 16 floats of `src` read, 32 bytes of `row` written; NEON.
            unsafe {
                let q: [int32x4_t; 4] = std::array::from_fn(|i| {
                    quantize16_s32(vld1q_f32(src.as_ptr().add(4 * i)), inv, zp)
                });
                let d = row.as_mut_ptr() as *mut i16;
                vst1q_s16(d, vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1])));
                vst1q_s16(d.add(8), vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3])));
            }
        }
    }
}

/// [`super::super::pack_i8`] in `format` (groups of 4 or 16 k), the same bytes: the packers
/// of [`pack_f32`] with codes loaded as they are (16 bytes per row of a channels-first block,
/// or 4 runs of 4), flipped to offset binary where the format asks.
pub fn pack_i8(p: &Pack<'_, i8>, format: Format, out: &mut [u8]) {
    assert_eq!(format.code_bytes, 1, "i8 codes packed for 16-bit codes");
    let portable =
        |one: &Pack<'_, i8>, [dst]: [&mut [u8]; 1]| super::super::pack_i8(one, format, dst);
    if format.offset_binary {
        pack(p, format, [out], Bytes::<true>, portable)
    } else {
        pack(p, format, [out], Bytes::<false>, portable)
    }
}

/// How 16 input values become bytes in `P` planes.
trait Encode<const P: usize>: Copy {
    /// The input's element type.
    type Elem: Copy + Default;

    /// The bytes, in each plane, of 16 values read in 4 runs of 4 from `at(0)` .. `at(3)`.
    ///
    /// # Safety
    /// Each `at(i)` points to 4 readable values; NEON (always present on aarch64).
    unsafe fn runs(self, at: impl Fn(usize) -> *const Self::Elem) -> [uint8x16_t; P];

    /// The bytes of 16 contiguous values at `p`.
    ///
    /// # Safety
    /// `p` points to 16 readable values; NEON.
    #[inline(always)]
    unsafe fn row(self, p: *const Self::Elem) -> [uint8x16_t; P] {
        // SAFETY: the caller's 16 values, 4 per run.
        unsafe { self.runs(|i| p.add(4 * i)) }
    }
}

/// i8 codes as they are (offset binary with `OFFSET`).
#[derive(Clone, Copy)]
struct Bytes<const OFFSET: bool>;

impl<const OFFSET: bool> Encode<1> for Bytes<OFFSET> {
    type Elem = i8;

    #[inline(always)]
    unsafe fn runs(self, at: impl Fn(usize) -> *const i8) -> [uint8x16_t; 1] {
        // SAFETY: 4 bytes at each `at(i)` (read unaligned); NEON.
        unsafe {
            let word = |i: usize| std::ptr::read_unaligned(at(i) as *const u32);
            let mut v = vdupq_n_u32(word(0));
            v = vsetq_lane_u32::<1>(word(1), v);
            v = vsetq_lane_u32::<2>(word(2), v);
            v = vsetq_lane_u32::<3>(word(3), v);
            [offset::<OFFSET>(vreinterpretq_u8_u32(v))]
        }
    }

    #[inline(always)]
    unsafe fn row(self, p: *const i8) -> [uint8x16_t; 1] {
        // SAFETY: 16 bytes at `p`; NEON.
        unsafe { [offset::<OFFSET>(vld1q_u8(p as *const u8))] }
    }
}

/// 8-bit codes (offset binary with `OFFSET`).
#[derive(Clone, Copy)]
struct Codes<const OFFSET: bool> {
    inv: float32x4_t,
    zp: float32x4_t,
}

impl<const OFFSET: bool> Encode<1> for Codes<OFFSET> {
    type Elem = f32;

    #[inline(always)]
    unsafe fn runs(self, at: impl Fn(usize) -> *const f32) -> [uint8x16_t; 1] {
        // SAFETY: 4 floats at each `at(i)`; NEON.
        unsafe {
            let v: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(at(i)));
            let q = v.map(|v| quantize_s32(v, self.inv, self.zp));
            [offset::<OFFSET>(vreinterpretq_u8_s8(narrow16(q)))]
        }
    }
}

/// The high and low digits of 16-bit codes (offset binary with `OFFSET`).
#[derive(Clone, Copy)]
struct Digits<const OFFSET: bool> {
    inv: float32x4_t,
    zp: float32x4_t,
}

impl<const OFFSET: bool> Encode<2> for Digits<OFFSET> {
    type Elem = f32;

    #[inline(always)]
    unsafe fn runs(self, at: impl Fn(usize) -> *const f32) -> [uint8x16_t; 2] {
        // SAFETY: 4 floats at each `at(i)`; NEON.
        unsafe {
            let v: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(at(i)));
            let q = v.map(|v| quantize16_s32(v, self.inv, self.zp));
            let a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            let b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            let hi = vcombine_s8(vshrn_n_s16::<8>(a), vshrn_n_s16::<8>(b));
            let lo = vcombine_s8(vmovn_s16(a), vmovn_s16(b));
            [
                offset::<OFFSET>(vreinterpretq_u8_s8(hi)),
                // The low digit is the low byte − 128: its two's complement byte is the low
                // byte with the top bit flipped, its offset-binary code the low byte itself.
                if OFFSET {
                    vreinterpretq_u8_s8(lo)
                } else {
                    veorq_u8(vreinterpretq_u8_s8(lo), vdupq_n_u8(0x80))
                },
            ]
        }
    }
}

/// Signed bytes flipped to offset binary where `OFFSET`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn offset<const OFFSET: bool>(v: uint8x16_t) -> uint8x16_t {
    if OFFSET {
        veorq_u8(v, vdupq_n_u8(0x80))
    } else {
        v
    }
}

/// Packs the blocks of `p` into the `P` planes `out` by `enc` (`portable` for the blocks the
/// vector paths do not take).
fn pack<const P: usize, E: Encode<P>>(
    p: &Pack<'_, E::Elem>,
    format: Format,
    out: [&mut [u8]; P],
    enc: E,
    portable: impl Fn(&Pack<'_, E::Elem>, [&mut [u8]; P]),
) {
    assert!(
        matches!(format.group, 4 | 16),
        "no NEON packer for {format:?}"
    );
    for o in &out {
        p.check(format, o);
    }
    let (x, k, n, ld) = (p.x, p.k, p.n, p.ld);
    let per_block = format.block_bytes(k);
    let whole_k = k.is_multiple_of(format.group);
    let pad = format.code(0);
    let mut out = out;
    for (bi, b) in p.blocks.clone().enumerate() {
        let range = bi * per_block..(bi + 1) * per_block;
        let whole = (b + 1) * COLS <= n;
        // Contiguous columns take the channels-first path, which pads a partial group and a
        // partial block; with K = 1 (or N = 1) the strides are both 1 and channels last would
        // need whole groups and whole blocks.
        let first = ld.c == 1;
        let last = !first && ld.k == 1 && whole_k && whole;
        // Channels last otherwise: a partial block (a dense layer's one column) or a partial
        // group of k.
        let partial = !first && ld.k == 1 && !last;
        if !(first || last || partial) {
            let one = Pack {
                blocks: b..b + 1,
                ..p.clone()
            };
            portable(&one, out.each_mut().map(|o| &mut o[range.clone()]));
            continue;
        }
        let at = Block {
            x: x.as_ptr(),
            len: x.len(),
            k,
            c0: b * COLS,
            cols: (n - b * COLS).min(COLS),
            ld,
        };
        let dst = out.each_mut().map(|o| o[range.clone()].as_mut_ptr());
        // SAFETY: NEON is always present on aarch64; the block's valid columns are inside x
        // (Pack::check), and the block is whole (16 columns and whole groups of k) when
        // channels last; each plane's `dst` holds it.
        unsafe {
            match (first, last, format.group) {
                (false, false, 4) => channels_last_partial::<4, P, E>(&at, enc, dst, pad),
                (false, false, _) => channels_last_partial::<16, P, E>(&at, enc, dst, pad),
                (_, true, 4) => channels_last::<4, P, E>(&at, enc, dst),
                (_, true, _) => channels_last::<16, P, E>(&at, enc, dst),
                (_, _, 4) => channels_first::<4, P, E>(&at, enc, dst, pad),
                (_, _, _) => channels_first::<16, P, E>(&at, enc, dst, pad),
            }
        }
    }
}

/// One block of `cols` (1–16) valid columns from `c0` of an input of `k` rows laid out as
/// `ld`, in `len` values at `x`.
struct Block<T> {
    x: *const T,
    len: usize,
    k: usize,
    c0: usize,
    cols: usize,
    ld: Strides,
}

/// Channels last, a block the whole-block path does not take (fewer than 16 valid columns, or
/// K not a whole number of groups: a dense layer's single column): every byte of the block is
/// set to the padding, then each valid column's k go to their places 16 at a time (4 bytes
/// per group of 4, 16 per group of 16); the last, shorter run is read from a copy and its
/// lanes past K set to the padding, as the portable packer writes them.
#[target_feature(enable = "neon")]
unsafe fn channels_last_partial<const G: usize, const P: usize, E: Encode<P>>(
    b: &Block<E::Elem>,
    enc: E,
    dst: [*mut u8; P],
    pad: u8,
) {
    let step = COLS * G;
    let groups = b.k.div_ceil(G);
    const LANES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    // SAFETY (all): each plane's `dst` holds the block's `groups · step` bytes; column
    // c0 + j < n has its k contiguous values inside x (ld.k = 1, Pack::check); the copy
    // holds 16 values.
    unsafe {
        for d in dst {
            std::ptr::write_bytes(d, pad, groups * step);
        }
        let padv = vdupq_n_u8(pad);
        for j in 0..b.cols {
            let column = b.x.add((b.c0 + j) * b.ld.c);
            for kk in (0..b.k).step_by(16) {
                let n = (b.k - kk).min(16);
                let bytes = if n == 16 {
                    enc.row(column.add(kk))
                } else {
                    let mut copy = [E::Elem::default(); 16];
                    std::ptr::copy_nonoverlapping(column.add(kk), copy.as_mut_ptr(), n);
                    let valid = vcltq_u8(vld1q_u8(LANES.as_ptr()), vdupq_n_u8(n as u8));
                    enc.row(copy.as_ptr()).map(|v| vbslq_u8(valid, v, padv))
                };
                for (plane, d) in dst.iter().enumerate() {
                    if G == 16 {
                        vst1q_u8(d.add(kk / 16 * step + 16 * j), bytes[plane]);
                        continue;
                    }
                    // Four groups of 4 k: word i of the vector is group kk/4 + i's.
                    let words = vreinterpretq_u32_u8(bytes[plane]);
                    let at = |i: usize| d.add((kk / 4 + i) * step + 4 * j) as *mut u32;
                    vst1q_lane_u32::<0>(at(0), words);
                    if kk / 4 + 1 < groups {
                        vst1q_lane_u32::<1>(at(1), words);
                    }
                    if kk / 4 + 2 < groups {
                        vst1q_lane_u32::<2>(at(2), words);
                    }
                    if kk / 4 + 3 < groups {
                        vst1q_lane_u32::<3>(at(3), words);
                    }
                }
            }
        }
    }
}

/// Channels last: chunk `i` of a group's `16·G` bytes is 16 consecutive bytes of the packed
/// order `[16 columns][G k]`, i.e. 4 runs of 4 values each contiguous in the input (one run
/// of 16 for groups of 16).
#[target_feature(enable = "neon")]
unsafe fn channels_last<const G: usize, const P: usize, E: Encode<P>>(
    b: &Block<E::Elem>,
    enc: E,
    dst: [*mut u8; P],
) {
    let step = COLS * G;
    for g in 0..b.k / G {
        for chunk in 0..step / 16 {
            let at = |s: usize| {
                let first = chunk * 16 + s * 4;
                let (j, t) = (first / G, first % G);
                // SAFETY: column c0 + j < n and k g·G + t .. + 4 ≤ k (whole groups): inside x.
                unsafe { b.x.add((b.c0 + j) * b.ld.c + g * G + t) }
            };
            // SAFETY: 4 runs of 4 values at `at` (contiguous for groups of 16); NEON.
            let bytes = unsafe {
                if G == 16 {
                    enc.row(at(0))
                } else {
                    enc.runs(at)
                }
            };
            for (d, v) in dst.iter().zip(bytes) {
                // SAFETY: 16 bytes at chunk `chunk` of group g lie in each plane's block bytes.
                unsafe { vst1q_u8(d.add(g * step + chunk * 16), v) };
            }
        }
    }
}

/// Channels first: row `kk` of the block is `cols` contiguous floats; columns past `cols`
/// and rows past `k` are the code of zero (`pad`) in every plane, as the portable packer
/// writes them.
///
/// A partial block reads 16 floats where they lie inside x (the rest of the row, or the next
/// row's start: values discarded by a byte select), else its valid floats through a
/// zero-filled copy.
#[target_feature(enable = "neon")]
unsafe fn channels_first<const G: usize, const P: usize, E: Encode<P>>(
    b: &Block<E::Elem>,
    enc: E,
    dst: [*mut u8; P],
    pad: u8,
) {
    let step = COLS * G;
    let pad = vdupq_n_u8(pad);
    const LANES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let valid = vcltq_u8(vld1q_u8(LANES.as_ptr()), vdupq_n_u8(b.cols as u8));
    let row = |kk: usize| {
        if kk >= b.k {
            return [pad; P];
        }
        let start = kk * b.ld.k + b.c0;
        if b.cols == COLS {
            // SAFETY: row kk < k, columns c0 .. c0 + 16 ≤ n: inside x.
            return unsafe { enc.row(b.x.add(start)) };
        }
        let mut copy = [E::Elem::default(); COLS];
        let src = if start + COLS <= b.len {
            // SAFETY: 16 values from `start` are inside x.
            unsafe { b.x.add(start) }
        } else {
            // SAFETY: the row's `cols` valid floats are inside x.
            unsafe { std::ptr::copy_nonoverlapping(b.x.add(start), copy.as_mut_ptr(), b.cols) };
            copy.as_ptr()
        };
        // SAFETY: 16 values at `src`, in x or in `copy`.
        let mut bytes = unsafe { enc.row(src) };
        for v in &mut bytes {
            *v = vbslq_u8(valid, *v, pad);
        }
        bytes
    };
    // Group g's rows, in each plane, to the group's `step` bytes.
    let store = |g: usize, rows: &[[uint8x16_t; P]; G]| {
        for (plane, d) in dst.iter().enumerate() {
            // SAFETY (both arms): the group's `step` bytes lie in the plane's block bytes.
            unsafe {
                if G == 4 {
                    let r = uint8x16x4_t(
                        rows[0][plane],
                        rows[1][plane],
                        rows[2][plane],
                        rows[3][plane],
                    );
                    vst4q_u8(d.add(g * step), r);
                } else {
                    let cols = transpose16(std::array::from_fn(|t| rows[t][plane]));
                    for (j, col) in cols.into_iter().enumerate() {
                        vst1q_u8(d.add(g * step + j * 16), col);
                    }
                }
            }
        }
    };
    let mut rows = [[vdupq_n_u8(0); P]; G];
    // A whole block's whole groups: the rows from one pointer moving G rows on, with no
    // per-row checks (the general loop below costs about four times as many instructions).
    let whole = if b.cols == COLS { b.k / G } else { 0 };
    // SAFETY: rows kk < G·whole ≤ k, columns c0 .. c0 + 16 ≤ n: inside x.
    unsafe {
        let mut p = b.x.add(b.c0);
        for g in 0..whole {
            for (t, r) in rows.iter_mut().enumerate() {
                *r = enc.row(p.add(t * b.ld.k));
            }
            store(g, &rows);
            p = p.add(G * b.ld.k);
        }
    }
    for g in whole..b.k.div_ceil(G) {
        // A loop, not `array::from_fn`: LLVM may leave that closure outlined, a call (and its
        // spills) per 16 floats.
        for (t, r) in rows.iter_mut().enumerate() {
            *r = row(g * G + t);
        }
        store(g, &rows);
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
