//! The portable bit-packing kernel: the accumulate-and-shift transpose of the module docs in
//! plain Rust, eight pixels at a time (a loop the compiler vectorises where it can), the last
//! pixels one at a time.

use super::{check_planes, check_row, BitpackKernel};
use crate::ops::packing::{sign_bit_f32 as bit, WORD_BITS};

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

/// Pixels per block.
const BLOCK: usize = 8;

impl BitpackKernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn pack_planes(&self, src: &[f32], channels: usize, out: &mut [u64]) {
        let (plane, words) = check_planes(src, channels, out);
        pack_pixels(src, plane, channels, 0, plane, out, words);
    }

    fn pack_row(&self, src: &[f32], out: &mut [u64]) {
        check_row(src, out);
        for (chunk, word) in src.chunks(WORD_BITS).zip(out.iter_mut()) {
            *word = chunk.iter().rev().fold(0u64, |acc, &x| (acc << 1) | bit(x));
        }
    }
}

/// Packs pixels `first..end` of every channel group (the vector kernels' tail too): `src` holds
/// `channels` planes of `plane` floats, `out` `plane × words` words.
pub(crate) fn pack_pixels(
    src: &[f32],
    plane: usize,
    channels: usize,
    first: usize,
    end: usize,
    out: &mut [u64],
    words: usize,
) {
    for j in 0..words {
        let group = &src[j * WORD_BITS * plane..];
        let n = (channels - j * WORD_BITS).min(WORD_BITS);
        let mut p = first;
        while p < end {
            let len = (end - p).min(BLOCK);
            let mut acc = [0u64; BLOCK];
            for c in (0..n).rev() {
                let row = &group[c * plane + p..c * plane + p + len];
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = (*a << 1) | bit(x);
                }
            }
            for (i, &a) in acc[..len].iter().enumerate() {
                out[(p + i) * words + j] = a;
            }
            p += len;
        }
    }
}
