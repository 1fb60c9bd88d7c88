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
//! minimum spanning tree chosen offline by `kestrel-quantize`). The result equals the dense
//! kernel bit for bit (`tests` below). Two forms, as the dense kernels:
//!
//! * **rows** ([`MstSchedule::xor_popcount`], binary dense): channels computed in tree order
//!   (every parent before its children) but written at their own index. The child loop is
//!   scalar (differing words are scattered along the row).
//! * **lanes** ([`MstSchedule::xor_popcount_lanes`], binary conv2d, see
//!   [`super::LaneJob`]): a "word" is one (tap, input word) of the kernel's row; each differing
//!   word reads one input word plane, so a child costs, per band of output pixels, one pass
//!   over its differing planes with the pixels as vector lanes (`(x XOR w_child) AND m`,
//!   popcount, add; AVX-512 `vpternlogq` does XOR+AND in one µop, NEON needs `eor` + `and`),
//!   added to the parent's lanes. Counts are stored in **slot order** (the tree order: the roots
//!   first, computed by the dense lane kernel straight into their slots, then the children), so
//!   no count is copied; the op reads channel `c` at [`MstSchedule::slot`]. Each kernel
//!   implements [`super::BinaryKernel::mst_children_lanes`] (portable twin:
//!   [`children_portable`]).
//!
//! Both count exactly what the dense kernel counts — zero words of padding included — so an
//! op's per-channel corrections (zero padding, output stage) apply unchanged, each channel
//! with its own. Whether MST pays for a layer is decided offline by a cost model calibrated on
//! these kernels (`cargo bench --bench mst_kernels`).

use super::{BinaryKernel, LaneJob, LANE_SLACK};

/// A channel computed from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// The channel.
    pub channel: u32,
    /// Its parent channel.
    pub parent: u32,
    /// The parent's slot (position in tree order), always below the child's own.
    pub parent_slot: u32,
    /// Range of this child's differing words in the diff arrays.
    pub start: u32,
    /// End of that range.
    pub end: u32,
    /// Hamming distance to the parent, in bits.
    pub bits: u32,
}

/// The children phase of an MST lane job: counts `[slot][lanes]` whose slots below `first`
/// (the roots) and every parent are filled; writes, for child `i` (slot `first + i`, in
/// order), `counts[slot] = counts[parent_slot] + 2·Σ_d popcount((x_d XOR child_words[d]) AND
/// masks[d]) − bits` with `x_d` the lane's word at `input[offsets[d] + lane]`.
#[derive(Debug, Clone, Copy)]
pub struct ChildJob<'a> {
    /// Word planes of the input (as [`LaneJob::input`]).
    pub input: &'a [u64],
    /// Lanes (output positions).
    pub lanes: usize,
    /// Slot of the first child (the number of roots).
    pub first: usize,
    /// The children, in slot order.
    pub children: &'a [Child],
    /// Input offset of each differing word for lane 0.
    pub offsets: &'a [usize],
    /// The child's weight word at each differing word.
    pub child_words: &'a [u64],
    /// `w_child XOR w_parent` at each differing word.
    pub masks: &'a [u64],
}

impl ChildJob<'_> {
    /// Checks the contract of [`BinaryKernel::mst_children_lanes`]: parents in earlier slots,
    /// diff ranges inside the arrays, every differing word's plane holding
    /// `lanes + LANE_SLACK` words, `counts` holding every slot.
    pub fn check(&self, counts: &[u32]) {
        let d = self.offsets.len();
        assert!(
            self.child_words.len() == d && self.masks.len() == d,
            "diff arrays differ in length"
        );
        assert!(
            counts.len() >= (self.first + self.children.len()) * self.lanes,
            "counts must hold every slot"
        );
        for (i, ch) in self.children.iter().enumerate() {
            assert!(
                (ch.parent_slot as usize) < self.first + i,
                "a parent's slot must precede its child's"
            );
            assert!(
                ch.start <= ch.end && ch.end as usize <= d,
                "diff range out of the arrays"
            );
        }
        if let Some(&last) = self.offsets.iter().max() {
            assert!(
                last + self.lanes + LANE_SLACK <= self.input.len(),
                "child job reads past its input"
            );
        }
    }
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
    /// Slot (position in tree order) of each channel.
    slots: Vec<u32>,
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
        let mut slots = vec![0u32; channels];
        for (i, &c) in order.iter().enumerate() {
            slots[c] = i as u32;
        }
        let mut s = MstSchedule {
            channels,
            words,
            slots,
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
                        parent_slot: s.slots[p],
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

    /// Where channel `c`'s counts are in the lane form's output (its position in tree order).
    pub fn slot(&self, c: usize) -> usize {
        self.slots[c] as usize
    }

    /// The slot of every channel (see [`MstSchedule::slot`]).
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// Differing words of all children (the length of [`MstSchedule::lane_offsets`]'s output).
    pub fn diff_words(&self) -> usize {
        self.diff_index.len()
    }

    /// The input offset, for lane 0, of every differing word of a lane layout whose row is
    /// `taps.len()` taps of `words` words (`taps`, `plane` as in [`LaneJob`]): once per layout.
    pub fn lane_offsets(&self, taps: &[usize], words: usize, plane: usize, offsets: &mut [usize]) {
        assert_eq!(taps.len() * words, self.words, "a row is taps × words");
        assert_eq!(offsets.len(), self.diff_index.len(), "one offset per diff");
        for (o, &l) in offsets.iter_mut().zip(&self.diff_index) {
            let l = l as usize;
            *o = taps[l / words] + (l % words) * plane;
        }
    }

    /// The lane form: like [`BinaryKernel::xor_popcount_lanes`] on `job` (whose `weights` are
    /// the weights this schedule was built from), but channel `c`'s counts land in row
    /// [`MstSchedule::slot`]`(c)` of `out`. `offsets` come from [`MstSchedule::lane_offsets`]
    /// for the job's layout.
    pub fn xor_popcount_lanes(
        &self,
        kernel: &dyn BinaryKernel,
        job: &LaneJob<'_>,
        offsets: &[usize],
        out: &mut [u32],
    ) {
        assert_eq!(
            job.weights.len(),
            self.channels * self.words,
            "the schedule's weights"
        );
        assert_eq!(
            out.len(),
            self.channels * job.lanes,
            "counts of every channel"
        );
        if !self.roots.is_empty() {
            let root_job = LaneJob {
                weights: &self.root_weights,
                ..*job
            };
            kernel.xor_popcount_lanes(&root_job, &mut out[..self.roots.len() * job.lanes]);
        }
        if !self.children.is_empty() {
            let child_job = ChildJob {
                input: job.input,
                lanes: job.lanes,
                first: self.roots.len(),
                children: &self.children,
                offsets,
                child_words: &self.diff_child,
                masks: &self.diff_mask,
            };
            kernel.mst_children_lanes(&child_job, out);
        }
    }

    /// Words read per input row: all words for each root, the differing words for each child.
    pub fn word_ops(&self) -> usize {
        self.roots.len() * self.words + self.diff_index.len()
    }

    /// Words per input row a dense kernel reads (`channels × words`).
    pub fn dense_word_ops(&self) -> usize {
        self.channels * self.words
    }

    /// One line for an op's `info()`: roots and word-ops against dense.
    pub fn summary(&self) -> String {
        format!(
            "MST: {} roots, {} of {} word-ops",
            self.roots(),
            self.word_ops(),
            self.dense_word_ops()
        )
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
        #[cfg(target_arch = "x86_64")]
        if kernel.name() != "generic" && std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: POPCNT is present (checked just above).
            unsafe { self.children_rows_popcnt(a, out) };
            return;
        }
        self.children_rows(a, out);
    }

    /// The row form's children: per input row, each child's count from its parent's plus
    /// its differing words. Scalar (the words are gathered one at a time).
    #[inline(always)]
    fn children_rows(&self, a: &[u64], out: &mut [u32]) {
        let n = self.channels;
        for (row, out_row) in a.chunks_exact(self.words).zip(out.chunks_exact_mut(n)) {
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

    /// [`MstSchedule::children_rows`] compiled with `POPCNT`: without it (the baseline
    /// x86-64 target) `count_ones` is a 12-instruction bit-twiddling sequence, which made a
    /// differing word cost ~15 dense words in the first calibration of the row form.
    ///
    /// # Safety
    /// POPCNT must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn children_rows_popcnt(&self, a: &[u64], out: &mut [u32]) {
        self.children_rows(a, out)
    }
}

/// Lanes per register tile of the portable children loop.
const CHILD_LANES: usize = 4;

/// The portable children loop (also compiled with `POPCNT` enabled by the x86 kernels): per
/// child, per tile of [`CHILD_LANES`] lanes, the differing words accumulated in registers,
/// then added to the parent's counts.
#[inline(always)]
pub(crate) fn children_portable(job: &ChildJob<'_>, counts: &mut [u32]) {
    job.check(counts);
    let lanes = job.lanes;
    if lanes == 0 {
        return;
    }
    for (i, ch) in job.children.iter().enumerate() {
        let (head, tail) = counts.split_at_mut((job.first + i) * lanes);
        let parent = &head[ch.parent_slot as usize * lanes..][..lanes];
        let out = &mut tail[..lanes];
        let range = ch.start as usize..ch.end as usize;
        let diffs = job.offsets[range.clone()]
            .iter()
            .zip(&job.child_words[range.clone()])
            .zip(&job.masks[range]);
        for (p0, (out, parent)) in out
            .chunks_mut(CHILD_LANES)
            .zip(parent.chunks(CHILD_LANES))
            .enumerate()
        {
            let p = p0 * CHILD_LANES;
            let mut acc = [0u32; CHILD_LANES];
            for ((&off, &y), &m) in diffs.clone() {
                // A partial last tile reads past the lanes, inside LANE_SLACK (checked).
                let x = &job.input[off + p..][..CHILD_LANES];
                for r in 0..CHILD_LANES {
                    acc[r] += ((x[r] ^ y) & m).count_ones();
                }
            }
            for ((o, &q), &a) in out.iter_mut().zip(parent).zip(&acc) {
                *o = q.wrapping_add(2 * a).wrapping_sub(ch.bits);
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
    use crate::kernels::binary as kernels;
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

    /// The lane form on conv-like jobs (taps of a padded row, several words per tap, lane
    /// counts around every tile size, children with 0 to many differing words, chains deeper
    /// than one level): every kernel's counts, read at each channel's slot, equal the dense
    /// generic lane kernel's.
    #[test]
    fn lanes_equal_the_dense_lane_kernel_bit_for_bit() {
        let mut rng = SmallRng::seed_from_u64(0x6d73_7401);
        let row_len = 23;
        for (k, words, channels, flips) in [
            (3, 1, 9, 1),
            (3, 2, 33, 2),
            (1, 8, 17, 3),
            (3, 4, 64, 40),
            (5, 1, 6, 0),
            // At the NEON register tiles' limit (1 023 differing words) and past it.
            (1, 1023, 3, 9000),
            (1, 1024, 3, 9000),
            // More differing words than a NEON u16 block folds (2048).
            (1, 2200, 3, 9000),
        ] {
            let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * row_len + t % k).collect();
            let row = taps.len() * words;
            let (w, parents) = clustered(channels, row, flips, 3 + channels as u64);
            for lanes in [1, 2, 3, 7, 8, 9, 17, 31, 32, 33, 40, 65, 100] {
                let plane = (k + 1) * row_len + lanes;
                let len = taps.iter().max().unwrap() + (words - 1) * plane + lanes + LANE_SLACK;
                let input: Vec<u64> = (0..len).map(|_| rng.random()).collect();
                let job = LaneJob {
                    input: &input,
                    taps: &taps,
                    words,
                    plane,
                    lanes,
                    weights: &w,
                };
                let mut want = vec![0u32; channels * lanes];
                kernels::generic().xor_popcount_lanes(&job, &mut want);
                let schedule = MstSchedule::new(&w, row, &parents).unwrap();
                let mut offsets = vec![0; schedule.diff_words()];
                schedule.lane_offsets(&taps, words, plane, &mut offsets);
                for kernel in kernels::available() {
                    let mut got = vec![u32::MAX; channels * lanes];
                    schedule.xor_popcount_lanes(kernel, &job, &offsets, &mut got);
                    for c in 0..channels {
                        assert_eq!(
                            &got[schedule.slot(c) * lanes..][..lanes],
                            &want[c * lanes..][..lanes],
                            "{} channel {c} (parent {:?}) k {k} words {words} lanes {lanes}",
                            kernel.name(),
                            parents[c]
                        );
                    }
                }
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
