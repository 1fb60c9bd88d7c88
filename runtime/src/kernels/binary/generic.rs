//! The portable XOR-popcount kernel: `u64::count_ones`, four weight rows at a time so each
//! input word is loaded once per four outputs; the lane form walks a channel's taps and words
//! and adds each tap-word's counts to the channel's whole row of lanes (a loop the compiler
//! vectorises where it can). The reference every other kernel must equal.

use super::{check_dims, BinaryKernel, LaneJob};

/// Portable kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generic;

impl BinaryKernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn xor_popcount(&self, a: &[u64], b: &[u64], words: usize, out: &mut [u32]) {
        let (_, n) = check_dims(a, b, words, out);
        for (row, out_row) in a.chunks_exact(words).zip(out.chunks_exact_mut(n)) {
            let mut blocks = b.chunks_exact(4 * words);
            let mut o = 0;
            for block in &mut blocks {
                let (w0, rest) = block.split_at(words);
                let (w1, rest) = rest.split_at(words);
                let (w2, w3) = rest.split_at(words);
                let mut acc = [0u32; 4];
                for l in 0..words {
                    let x = row[l];
                    acc[0] += (x ^ w0[l]).count_ones();
                    acc[1] += (x ^ w1[l]).count_ones();
                    acc[2] += (x ^ w2[l]).count_ones();
                    acc[3] += (x ^ w3[l]).count_ones();
                }
                out_row[o..o + 4].copy_from_slice(&acc);
                o += 4;
            }
            for w in blocks.remainder().chunks_exact(words) {
                out_row[o] = row.iter().zip(w).map(|(x, y)| (x ^ y).count_ones()).sum();
                o += 1;
            }
        }
    }

    fn xor_popcount_lanes(&self, job: &LaneJob<'_>, out: &mut [u32]) {
        lanes_portable(job, out)
    }
}

/// The portable lane kernel (also compiled with `POPCNT` enabled by the x86 kernels for their
/// channel tails): per channel, per tap and word, one pass over the lanes.
#[inline(always)]
pub(crate) fn lanes_portable(job: &LaneJob<'_>, out: &mut [u32]) {
    job.check(out);
    let row = job.taps.len() * job.words;
    if job.lanes == 0 {
        return;
    }
    for (weights, counts) in job
        .weights
        .chunks_exact(row)
        .zip(out.chunks_exact_mut(job.lanes))
    {
        counts.fill(0);
        for (&tap, tap_weights) in job.taps.iter().zip(weights.chunks_exact(job.words)) {
            for (w, &y) in tap_weights.iter().enumerate() {
                let x = &job.input[tap + w * job.plane..][..job.lanes];
                for (o, &x) in counts.iter_mut().zip(x) {
                    *o += (x ^ y).count_ones();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_differing_bits() {
        let a = [0u64, u64::MAX, 0b1011, 0];
        let b = [0u64, 0, u64::MAX, u64::MAX, 1, 0];
        let mut out = [0u32; 6];
        Generic.xor_popcount(&a, &b, 2, &mut out);
        // a rows: [0, MAX], [0b1011, 0]; b rows: [0,0], [MAX,MAX], [1,0]
        assert_eq!(out, [64, 64, 65, 3, 125, 2]);
    }
}
