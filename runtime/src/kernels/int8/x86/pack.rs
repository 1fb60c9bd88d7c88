//! x86 packer of i8 codes ([`pack_i8`](super::super::pack_i8)) for the groups-of-4 formats
//! both x86 kernels read ([`Format::DOT4_U8`], [`Format::DOT4_I8`]), in SSE2 (every x86-64
//! core has it), so neither kernel needs a copy of its own.
//!
//! * Channels first (each k's columns contiguous): per group, the 4 k rows of a block's 16
//!   codes are loaded whole (a partial block's through a zeroed 16-byte copy) and interleaved
//!   into `[column][4 k]` by `punpck{l,h}bw` and `punpck{l,h}wd`: 64 bytes in 12 instructions.
//! * Channels last (each column's k contiguous): a column's 4 k are one 4-byte word (a partial
//!   last group's assembled byte by byte), 4 columns per 16-byte store.
//! * Other layouts go through the portable packer.
//!
//! Offset binary is one `pxor` of 0x80 per 16 bytes; the padding (k past K, columns past N) is
//! the code of zero, as the portable packer writes it.

use std::arch::x86_64::*;

use super::super::{Format, Pack, COLS};

/// [`super::super::pack_i8`] in `format` (groups of 4 k, 8-bit codes), the same bytes.
pub fn pack_i8(p: &Pack<'_, i8>, format: Format, out: &mut [u8]) {
    assert!(
        format.group == 4 && format.code_bytes == 1,
        "the x86 i8 packer writes groups of 4 one-byte codes"
    );
    p.check(format, out);
    let per_block = format.block_bytes(p.k);
    // SAFETY: SSE2 is part of x86-64.
    let flip = unsafe { _mm_set1_epi8(if format.offset_binary { -128 } else { 0 }) };
    for (bi, b) in p.blocks.clone().enumerate() {
        let dst = &mut out[bi * per_block..(bi + 1) * per_block];
        if p.ld.c == 1 {
            channels_first(p, b * COLS, flip, dst);
        } else if p.ld.k == 1 {
            channels_last(p, b * COLS, flip, dst);
        } else {
            let one = Pack {
                blocks: b..b + 1,
                ..p.clone()
            };
            super::super::pack_i8(&one, format, dst);
        }
    }
}

/// One block of channels-first codes (columns `c0 .. c0 + 16`, `ld.c` = 1) into `dst`.
fn channels_first(p: &Pack<'_, i8>, c0: usize, flip: __m128i, dst: &mut [u8]) {
    let cols = p.n.saturating_sub(c0).min(COLS);
    // SAFETY (both): SSE2 is part of x86-64. Bytes of the columns a partial block has.
    let keep = unsafe {
        let lane = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm_cmpgt_epi8(_mm_set1_epi8(cols as i8), lane)
    };
    // The codes of row kk, columns c0 .. c0 + 16 (0 past the last k or column).
    let row = |kk: usize| -> __m128i {
        let at = kk * p.ld.k + c0;
        if kk >= p.k {
            // SAFETY: SSE2 is part of x86-64.
            unsafe { _mm_setzero_si128() }
        } else if cols == COLS {
            // SAFETY: row kk < k, columns c0 .. c0 + 16 ≤ n lie in x (Pack::check).
            unsafe { _mm_loadu_si128(p.x[at..at + COLS].as_ptr().cast()) }
        } else if at + COLS <= p.x.len() {
            // A partial block whose 16 bytes from `at` still lie in x (every row but the
            // last, where rows are 16 or more apart): the missing columns masked off.
            // SAFETY: 16 bytes from `at` lie in x (just checked).
            unsafe { _mm_and_si128(_mm_loadu_si128(p.x[at..].as_ptr().cast()), keep) }
        } else {
            let mut part = [0i8; COLS];
            for (d, &s) in part.iter_mut().zip(&p.x[at..at + cols]) {
                *d = s;
            }
            // SAFETY: 16 bytes of `part`.
            unsafe { _mm_loadu_si128(part.as_ptr().cast()) }
        }
    };
    for (g, out) in dst.chunks_exact_mut(4 * COLS).enumerate() {
        let r = [row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3)];
        let o = out.as_mut_ptr() as *mut __m128i;
        for (i, v) in interleave4(r).into_iter().enumerate() {
            // SAFETY: SSE2 is part of x86-64; `out` holds the group's 64 bytes.
            unsafe { _mm_storeu_si128(o.add(i), _mm_xor_si128(v, flip)) };
        }
    }
}

/// Interleaves 4 k rows of 16 one-byte codes (`r[t]`: k `t`, columns in order) into the packed
/// group `[column][4 k]`: 64 bytes, 4 columns per vector (`punpck{l,h}bw`, `punpck{l,h}wd`).
#[inline(always)]
pub(super) fn interleave4(r: [__m128i; 4]) -> [__m128i; 4] {
    // SAFETY: SSE2 is part of x86-64.
    unsafe {
        let (r01l, r01h) = (_mm_unpacklo_epi8(r[0], r[1]), _mm_unpackhi_epi8(r[0], r[1]));
        let (r23l, r23h) = (_mm_unpacklo_epi8(r[2], r[3]), _mm_unpackhi_epi8(r[2], r[3]));
        [
            _mm_unpacklo_epi16(r01l, r23l),
            _mm_unpackhi_epi16(r01l, r23l),
            _mm_unpacklo_epi16(r01h, r23h),
            _mm_unpackhi_epi16(r01h, r23h),
        ]
    }
}

/// One block of channels-last codes (columns `c0 .. c0 + 16`, `ld.k` = 1) into `dst`: whole
/// groups of whole blocks as four 4-byte loads per 16-byte store, the rest word by word.
fn channels_last(p: &Pack<'_, i8>, c0: usize, flip: __m128i, dst: &mut [u8]) {
    let (k, n, ldc) = (p.k, p.n, p.ld.c);
    let whole_cols = c0 + COLS <= n;
    // Column c's k 4g .. 4g + 4 as one little-endian word (0 past the last k or column).
    let word = |c: usize, g: usize| -> i32 {
        if c >= n {
            return 0;
        }
        let at = c * ldc + 4 * g;
        let mut w = [0u8; 4];
        for (d, &s) in w.iter_mut().zip(&p.x[at..at + (k - 4 * g).min(4)]) {
            *d = s as u8;
        }
        i32::from_le_bytes(w)
    };
    let xp = p.x.as_ptr();
    for (g, out) in dst.chunks_exact_mut(4 * COLS).enumerate() {
        let whole = whole_cols && 4 * g + 4 <= k;
        for (quarter, o) in out.chunks_exact_mut(COLS).enumerate() {
            let c = c0 + 4 * quarter;
            // SAFETY: SSE2 is part of x86-64; `o` holds 16 bytes. Whole: columns c .. c + 4
            // < n and k 4g .. 4g + 4 ≤ k lie in x (Pack::check), read unaligned.
            unsafe {
                let v = if whole {
                    let at =
                        |i: usize| (xp.add((c + i) * ldc + 4 * g) as *const i32).read_unaligned();
                    _mm_setr_epi32(at(0), at(1), at(2), at(3))
                } else {
                    _mm_setr_epi32(word(c, g), word(c + 1, g), word(c + 2, g), word(c + 3, g))
                };
                _mm_storeu_si128(o.as_mut_ptr().cast(), _mm_xor_si128(v, flip));
            }
        }
    }
}
