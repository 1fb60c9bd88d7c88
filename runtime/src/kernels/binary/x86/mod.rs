//! x86-64 XOR-popcount kernels: scalar `POPCNT`, AVX2 (`vpshufb` nibble lookup) and AVX-512
//! `VPOPCNTDQ`.
//!
//! # Design: rows (`xor_popcount`, binary dense)
//!
//! Both kernels tile the M×N output into register blocks of `MR` input rows × `NR` weight rows
//! and walk the `words` of the tile's rows once, so each loaded word feeds several outputs:
//!
//! * [`Popcnt`] (`x86-popcnt`): `MR = 2`, `NR = 4`, eight `u64` accumulators; per word two
//!   input loads, four weight loads, eight `xor` + `popcnt` + `add`. It is bound by `POPCNT`
//!   (one per cycle, a single port on Intel cores), i.e. 64 bit-MACs per cycle at best. Tails
//!   (odd M, N not a multiple of 4) use 1×4, 2×1 and 1×1 tiles of the same code.
//! * [`Avx2`] (`x86-avx2`): `MR = 2`, `NR = 4` over 256-bit chunks (4 words). The popcount of
//!   `v = x ^ y` is `lut[v & 0xf] + lut[(v >> 4) & 0xf]` with `vpshufb`, summed per byte into
//!   eight byte accumulators; at most 31 chunks are summed per byte (8 · 31 < 256) before a
//!   `vpsadbw` folds them into 64-bit lanes, so rows of any length are exact. A row whose
//!   length is 3 mod 4 words ends with one `vpmaskmovq` masked step (zeros past the row on
//!   both sides XOR to zero, and nothing past the slice is read); a tail of 1 or 2 words is
//!   counted with scalar `POPCNT`, which runs beside the vector ports. Per 256 bits: 8 vector
//!   µops (xor, 2 and, shift, 2 `vpshufb`, 2 add) on three vector ports, ≈ 96 bit-MACs per
//!   cycle in theory, against 64 for `POPCNT`. The last reduction transposes four tiles'
//!   lanes so a row of four outputs is stored with one 128-bit store.
//!   Short rows spend a larger share in that reduction: below [`AVX2_MIN_WORDS`] (12) words
//!   the `x86-avx2` kernel runs the `POPCNT` code instead, where the two measure alike
//!   (`benches/binary_kernels.rs`, `docs/perf-log.md`).
//!
//! * [`Avx512`] (`x86-avx512`): `MR = 2`, `NR = 4` over 512-bit chunks (8 words) with
//!   `vpxorq` + `vpopcntq` + `vpaddq` into u64 lanes (no narrow accumulator, no block); the last
//!   partial chunk is a masked load (`vmovdqu64{k}{z}`: masked-off words are neither read nor
//!   set), so any row length is one code path.
//!
//! # Design: lanes (`xor_popcount_lanes`, binary conv2d)
//!
//! Pixels are lanes ([`super::LaneJob`]): a tile holds `MR` vectors of consecutive output
//! positions × `NR` output channels in registers; per tap word it loads the `MR` input vectors
//! (one unaligned load each, the tap's offset applied) and broadcasts `NR` weight words, then
//! does `MR·NR` XOR + popcount + add. Counts are stored channel-major, masked at the end of
//! the lanes.
//!
//! * `x86-avx512`: `MR = 2` × 8 lanes, `NR = 8` channels: 16 zmm accumulators, 2 inputs, one
//!   broadcast. Per tap word: 2 loads, 8 `vpbroadcastq` (load port), 16 × (`vpxorq`,
//!   `vpopcntq`, `vpaddq`). The vector µops go to ports 0 and 5 (512-bit ops; `vpopcntq` on
//!   port 5 only): 1.5 cycles per 512 bit-MACs, i.e. 341 bit-MACs per cycle at best, 5.3× the
//!   `POPCNT` bound. The accumulators are u64 lanes; the fused store narrows a tile's two
//!   vectors into one vector of 16 i32 lanes with one `vpermt2d` and runs the output stage at
//!   full width (`avx512_store16`): one narrowing µop per 16 lanes keeps port 5 for
//!   `vpopcntq`. Channel tails use `NR = 1`, lane tails `MR = 1` (masked store).
//! * `x86-popcnt` and `x86-avx2`: scalar `POPCNT`, one lane × 8 channels over weights
//!   interleaved per block of 8 channels ([`popcnt_lanes`]): eight `u64` accumulators in
//!   general registers, three ALU µops per 64 bit-MACs, and an epilogue that writes a packed
//!   lane's byte of 8 channels from per-block bounds. (A `vpshufb` lane kernel, measured in C
//!   on an AVX2-only Zen 1, is no faster there; on cores with full-width 256-bit units it
//!   would be faster: `docs/perf-log.md`, 2026-12-06.)
//!
//! All are selected at run time with `is_x86_feature_detected!`; `x86-avx2` also requires
//! `popcnt` (for its fallback), `x86-avx512` requires `avx512f`, `avx512vl` and
//! `avx512vpopcntdq` (Ice Lake and later, Zen 4 and later).

/// Walks the M×N output in `MR`×`NR` tiles (2×4, then the edges) and calls `$tile` on each.
/// `$tile::<MR, NR>(a_rows, b_rows, words, out_tile, out_stride)`.
macro_rules! drive_tiles {
    ($tile:ident, $a:expr, $b:expr, $words:expr, $out:expr, $m:expr, $n:expr) => {{
        let (a, b, words, out, m, n) = ($a, $b, $words, $out, $m, $n);
        let mut i = 0;
        while i < m {
            let a_tile = a.add(i * words);
            let o_tile = out.add(i * n);
            if i + 2 <= m {
                let mut j = 0;
                while j + 4 <= n {
                    $tile::<2, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 4;
                }
                while j < n {
                    $tile::<2, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 1;
                }
                i += 2;
            } else {
                let mut j = 0;
                while j + 4 <= n {
                    $tile::<1, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 4;
                }
                while j < n {
                    $tile::<1, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n);
                    j += 1;
                }
                i += 1;
            }
        }
    }};
}

mod avx2;
mod avx512;
mod popcnt;
mod popcnt_lanes;

pub use avx2::{Avx2, AVX2_MIN_WORDS};
pub use avx512::Avx512;
pub use popcnt::Popcnt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_matches_the_cpu() {
        assert_eq!(
            Popcnt::detect().is_some(),
            is_x86_feature_detected!("popcnt")
        );
        assert_eq!(
            Avx2::detect().is_some(),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
        );
        assert_eq!(
            Avx512::detect().is_some(),
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vpopcntdq")
        );
    }
}
