//! MST-ordered XOR-popcount: output channels computed from a similar parent channel.
//!
//! MST-compression (Vo et al., ICCV 2023) observes that two output channels whose weight bits
//! differ in few places have nearly the same popcount. With `m = w_child XOR w_parent` over a
//! word, the bits outside `m` contribute equally to both channels and inside `m` the two
//! XORs are complements, so
//!
//! ```text
//! count_child = count_parent + Σ_{words l where m_l ≠ 0} 2·popcount((a_l XOR w_child,l) AND m_l) − d
//! ```
//!
//! with `d = Σ popcount(m_l)` the Hamming distance of the two rows (precomputed). A child
//! costs one XOR, AND and popcount per *differing word*, instead of one XOR and popcount per
//! word of the row. Roots (channels computed from scratch) go through the dense kernel.
//!
//! The schedule is built once at load from the packed weights and a parent per channel (the
//! minimum spanning tree chosen offline by `kestrel-quantize`); channels are computed in tree
//! order (every parent before its children) but written at their own index, so the op's output
//! layout does not change. The result equals the dense kernel bit for bit (`tests` below).
//!
//! The child loop is scalar: differing words are scattered along the row, so it wins only where
//! children differ from their parents in few words — what MST-aware training produces. Whether
//! MST pays for a layer is decided offline by a cost model calibrated on this kernel
//! (`cargo bench --bench mst_kernels`).

use super::BinaryKernel;

/// A channel computed from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Child {
    channel: u32,
    parent: u32,
    /// Range of this child's differing words in the diff arrays.
    start: u32,
    end: u32,
    /// Hamming distance to the parent, in bits.
    bits: u32,
}

/// Why a parent list cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    /// Lengths disagree.
    #[error("{0}")]
    Shape(String),
    /// A parent index out of range, or a cycle.
    #[error("{0}")]
    Tree(String),
}

/// The precomputed MST schedule of one layer's weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MstSchedule {
    channels: usize,
    words: usize,
    roots: Vec<u32>,
    root_weights: Vec<u64>,
    children: Vec<Child>,
    diff_index: Vec<u32>,
    diff_child: Vec<u64>,
    diff_mask: Vec<u64>,
}

impl MstSchedule {
    /// Builds the schedule of `weights` (`parents.len()` rows of `words` words) where channel
    /// `c` is computed from `parents[c]` (`None`: from scratch). Fails on cycles and
    /// out-of-range parents.
    pub fn new(
        weights: &[u64],
        words: usize,
        parents: &[Option<usize>],
    ) -> Result<MstSchedule, MstError> {
        let channels = parents.len();
        if words == 0 || weights.len() != channels * words {
            return Err(MstError::Shape(format!(
                "{} weight words for {channels} channels of {words} words",
                weights.len()
            )));
        }
        let order = tree_order(parents)?;
        let row = |c: usize| &weights[c * words..(c + 1) * words];
        let mut s = MstSchedule {
            channels,
            words,
            roots: vec![],
            root_weights: vec![],
            children: vec![],
            diff_index: vec![],
            diff_child: vec![],
            diff_mask: vec![],
        };
        for c in order {
            match parents[c] {
                None => {
                    s.roots.push(c as u32);
                    s.root_weights.extend_from_slice(row(c));
                }
                Some(p) => {
                    let start = s.diff_index.len() as u32;
                    let mut bits = 0;
                    for (l, (wc, wp)) in row(c).iter().zip(row(p)).enumerate() {
                        let m = wc ^ wp;
                        if m != 0 {
                            s.diff_index.push(l as u32);
                            s.diff_child.push(*wc);
                            s.diff_mask.push(m);
                            bits += m.count_ones();
                        }
                    }
                    s.children.push(Child {
                        channel: c as u32,
                        parent: p as u32,
                        start,
                        end: s.diff_index.len() as u32,
                        bits,
                    });
                }
            }
        }
        Ok(s)
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Channels computed from scratch.
    pub fn roots(&self) -> usize {
        self.roots.len()
    }

    /// Words read per input row: all words for each root, the differing words for each child.
    pub fn word_ops(&self) -> usize {
        self.roots.len() * self.words + self.diff_index.len()
    }

    /// Words per input row a dense kernel reads (`channels × words`).
    pub fn dense_word_ops(&self) -> usize {
        self.channels * self.words
    }

    /// Same contract as [`BinaryKernel::xor_popcount`] with `b` the weights this schedule was
    /// built from: `out[m·channels + c]` = popcount of row `m` of `a` XOR weight row `c`.
    /// `scratch` holds the roots' counts between the two phases (reused across calls).
    pub fn xor_popcount(
        &self,
        kernel: &dyn BinaryKernel,
        a: &[u64],
        out: &mut [u32],
        scratch: &mut Vec<u32>,
    ) {
        let words = self.words;
        assert_eq!(a.len() % words, 0, "a is not whole rows");
        let rows = a.len() / words;
        let n = self.channels;
        assert_eq!(out.len(), rows * n, "out must hold rows × channels counts");
        let r = self.roots.len();
        if r > 0 {
            scratch.clear();
            scratch.resize(rows * r, 0);
            kernel.xor_popcount(a, &self.root_weights, words, scratch);
            for (counts, out_row) in scratch.chunks_exact(r).zip(out.chunks_exact_mut(n)) {
                for (&c, &v) in self.roots.iter().zip(counts) {
                    out_row[c as usize] = v;
                }
            }
        }
        for (row, out_row) in a.chunks_exact(words).zip(out.chunks_exact_mut(n)) {
            for ch in &self.children {
                let range = ch.start as usize..ch.end as usize;
                let mut twice = 0u32;
                for ((&l, &wc), &m) in self.diff_index[range.clone()]
                    .iter()
                    .zip(&self.diff_child[range.clone()])
                    .zip(&self.diff_mask[range])
                {
                    twice += ((row[l as usize] ^ wc) & m).count_ones();
                }
                out_row[ch.channel as usize] = out_row[ch.parent as usize] + 2 * twice - ch.bits;
            }
        }
    }
}

/// Channels in an order where every parent precedes its children (breadth first from the
/// roots); an error for an out-of-range parent or a cycle.
fn tree_order(parents: &[Option<usize>]) -> Result<Vec<usize>, MstError> {
    let n = parents.len();
    let mut kids = vec![vec![]; n];
    let mut order = Vec::with_capacity(n);
    for (c, p) in parents.iter().enumerate() {
        match *p {
            None => order.push(c),
            Some(p) if p < n && p != c => kids[p].push(c),
            Some(p) => {
                return Err(MstError::Tree(format!(
                    "channel {c} has parent {p} (of {n} channels)"
                )))
            }
        }
    }
    let mut i = 0;
    while i < order.len() {
        order.extend_from_slice(&kids[order[i]]);
        i += 1;
    }
    if order.len() != n {
        return Err(MstError::Tree(format!(
            "{} of {n} channels are on a cycle, not reachable from a root",
            n - order.len()
        )));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Weights where each channel copies a random earlier one and flips a few words.
    fn clustered(
        channels: usize,
        words: usize,
        flips: usize,
        seed: u64,
    ) -> (Vec<u64>, Vec<Option<usize>>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut w = vec![0u64; channels * words];
        let mut parents = vec![None; channels];
        for c in 0..channels {
            if c == 0 || rng.random_range(0..8) == 0 {
                for l in 0..words {
                    w[c * words + l] = rng.random();
                }
                continue;
            }
            let p = rng.random_range(0..c);
            parents[c] = Some(p);
            for l in 0..words {
                w[c * words + l] = w[p * words + l];
            }
            for _ in 0..flips {
                let l = rng.random_range(0..words);
                w[c * words + l] ^= 1u64 << rng.random_range(0..64);
            }
        }
        (w, parents)
    }

    #[test]
    fn equals_the_dense_kernel_bit_for_bit() {
        let mut rng = SmallRng::seed_from_u64(9);
        for (channels, words, flips, rows) in [
            (1, 1, 0, 3),
            (7, 3, 1, 5),
            (64, 9, 2, 17),
            (70, 18, 5, 33),
            (33, 1, 1, 4),
        ] {
            let (w, parents) = clustered(channels, words, flips, channels as u64);
            let a: Vec<u64> = (0..rows * words).map(|_| rng.random()).collect();
            let mut want = vec![0u32; rows * channels];
            kernels::generic().xor_popcount(&a, &w, words, &mut want);
            let schedule = MstSchedule::new(&w, words, &parents).unwrap();
            assert!(schedule.word_ops() <= schedule.dense_word_ops());
            for kernel in kernels::available() {
                let mut got = vec![0u32; rows * channels];
                let mut scratch = vec![];
                schedule.xor_popcount(kernel, &a, &mut got, &mut scratch);
                assert_eq!(
                    got,
                    want,
                    "{} channels {channels} words {words}",
                    kernel.name()
                );
            }
        }
    }

    #[test]
    fn a_forest_of_roots_is_the_dense_kernel() {
        let (w, _) = clustered(5, 2, 0, 1);
        let schedule = MstSchedule::new(&w, 2, &[None; 5]).unwrap();
        assert_eq!(schedule.roots(), 5);
        assert_eq!(schedule.word_ops(), schedule.dense_word_ops());
    }

    #[test]
    fn bad_trees_are_refused() {
        let w = vec![0u64; 3];
        assert!(matches!(
            MstSchedule::new(&w, 1, &[None, Some(2), Some(1)]),
            Err(MstError::Tree(_))
        ));
        assert!(matches!(
            MstSchedule::new(&w, 1, &[None, Some(7), None]),
            Err(MstError::Tree(_))
        ));
        assert!(matches!(
            MstSchedule::new(&w, 1, &[Some(0), None, None]),
            Err(MstError::Tree(_))
        ));
        assert!(matches!(
            MstSchedule::new(&w, 2, &[None, None, None]),
            Err(MstError::Shape(_))
        ));
    }
}
