//! The depth-bounded minimum spanning tree over a binary layer's output channels.
//!
//! Nodes are the output channels plus a virtual root; an edge parent → child costs what the
//! runtime pays to compute the child from the parent (the MST kernel,
//! `kestrel_runtime::kernels::binary::mst`): `word_cost` per *word* where the two packed rows differ,
//! plus `child_cost` per child. The virtual root's edge to every channel costs a computation
//! from scratch (`row words`, the dense kernel's unit), so the tree itself chooses how many
//! channels start from scratch. The cost counts words, not bits: on a CPU a word that differs
//! in one bit costs as much as one that differs in 64.
//!
//! Prim's algorithm from the virtual root with a depth bound (a channel may only become a
//! parent while its depth is below the bound), ties broken by the lower channel index, so the
//! tree is deterministic.

/// Costs of the tree's edges, in units of one dense word (XOR + popcount + add of one weight
/// word against the input, as the dense kernel of the same form executes it).
///
/// Each form of the runtime's MST kernel (`kestrel_runtime::kernels::binary::mst`) has its own
/// constants, measured with `cargo bench --bench mst_kernels` (synthetic 4-ary trees, one root,
/// children differing from their parents in a fraction f of their words; `word_cost` = the
/// slope of time ratio over word-op ratio, `child_cost` from f = 0). See [`CostModel::rows`]
/// and [`CostModel::lanes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Cost of one differing word of a child.
    pub word_cost: f64,
    /// Fixed cost of a child (its parent's counts loaded, its own stored).
    pub child_cost: f64,
}

impl CostModel {
    /// Binary dense (row form): the child loop is scalar and gathers scattered words one at a
    /// time, while the dense kernel streams whole rows through 512-bit registers. Measured on
    /// this x86-64 (AVX-512 VPOPCNTDQ), dense 3136→128 (`mst_kernels rows`), after the child
    /// loop got `POPCNT` (it had been compiled for baseline x86-64, a 12-instruction
    /// `count_ones`, and measured 15 / 5): time ratio 0.36 / 0.60 / 1.15 / 2.25 at 5 / 10 /
    /// 25 / 50% differing words (2, 5, 12, 25 of 49 words per child), i.e. a child ≈ 4.2
    /// dense words per differing word + 7–9. 4.5 / 8.0.
    pub fn rows() -> CostModel {
        CostModel {
            word_cost: 4.5,
            child_cost: 8.0,
        }
    }

    /// Binary conv2d (lane form): a child walks its differing (tap, word) planes with the
    /// output pixels as vector lanes, the same work per word as the dense lane kernel
    /// (AVX-512: `vpternlogq` + `vpopcntq` + `vpaddq` per 8 lanes; NEON: one `and` more per
    /// 128 bits), but its input loads are not shared with other channels. NEON's counts
    /// (`benches/README.md`, *MST children*): 1.7 dense words per differing word, 0.8–1.3 per
    /// child.
    pub fn lanes() -> CostModel {
        CostModel {
            word_cost: 1.5,
            child_cost: 1.0,
        }
    }
}

impl Default for CostModel {
    /// [`CostModel::rows`].
    fn default() -> Self {
        CostModel::rows()
    }
}

/// The tree and what it saves.
#[derive(Debug, Clone, PartialEq)]
pub struct MstTree {
    /// Parent of each channel (`None`: computed from scratch, a child of the virtual root).
    pub parents: Vec<Option<usize>>,
    /// Depth of each channel (1 for children of the virtual root).
    pub depth: Vec<usize>,
    /// Predicted cost per input row, in dense-word units.
    pub cost: f64,
    /// Dense cost per input row (`channels × words`).
    pub dense_cost: f64,
    /// Words read per input row by the MST kernel (roots: all words; children: differing).
    pub word_ops: usize,
    /// Σ over children of the Hamming distance to the parent, in bits.
    pub hamming_bits: usize,
    /// The paper's figure: weight of the bit-level minimum spanning tree (Hamming edges, no
    /// depth bound, no virtual root) plus the bits of its root row — the bits MST-compression
    /// stores, vs `dense_bits`.
    pub bit_mst_bits: usize,
    /// Bits a dense layer stores (`channels × words × 64`).
    pub dense_bits: usize,
    /// Bits the MST form stores: full rows for roots, (word, 16-bit index) per differing word.
    pub stored_bits: usize,
}

/// Builds the tree of `channels` rows of `words` packed words each.
pub fn build(weights: &[u64], words: usize, max_depth: usize, cost: CostModel) -> MstTree {
    assert!(
        words > 0 && weights.len().is_multiple_of(words),
        "whole rows"
    );
    let n = weights.len() / words;
    let row = |c: usize| &weights[c * words..(c + 1) * words];
    let diff_words = |a: usize, b: usize| row(a).iter().zip(row(b)).filter(|(x, y)| x != y).count();
    let edge = |a: usize, b: usize| diff_words(a, b) as f64 * cost.word_cost + cost.child_cost;
    let root_cost = words as f64;

    let mut best: Vec<(f64, Option<usize>)> = vec![(root_cost, None); n];
    let mut in_tree = vec![false; n];
    let mut parents = vec![None; n];
    let mut depth = vec![0usize; n];
    let mut total = 0.0;
    for _ in 0..n {
        let j = (0..n)
            .filter(|&c| !in_tree[c])
            .min_by(|&a, &b| best[a].0.total_cmp(&best[b].0).then(a.cmp(&b)))
            .expect("a channel is left");
        in_tree[j] = true;
        parents[j] = best[j].1;
        depth[j] = parents[j].map_or(1, |p| depth[p] + 1);
        total += best[j].0;
        if depth[j] < max_depth {
            for k in 0..n {
                if !in_tree[k] {
                    let c = edge(j, k);
                    if c < best[k].0 {
                        best[k] = (c, Some(j));
                    }
                }
            }
        }
    }
    let mut word_ops = 0;
    let mut hamming_bits = 0;
    let mut stored_bits = 0;
    for (c, p) in parents.iter().enumerate() {
        match p {
            None => {
                word_ops += words;
                stored_bits += words * 64;
            }
            Some(p) => {
                let d = diff_words(c, *p);
                word_ops += d;
                stored_bits += d * (64 + 16);
                hamming_bits += row(c)
                    .iter()
                    .zip(row(*p))
                    .map(|(x, y)| (x ^ y).count_ones() as usize)
                    .sum::<usize>();
            }
        }
    }
    MstTree {
        bit_mst_bits: bit_mst_weight(weights, words),
        parents,
        depth,
        cost: total,
        dense_cost: (n * words) as f64,
        word_ops,
        hamming_bits,
        dense_bits: n * words * 64,
        stored_bits,
    }
}

/// Weight of the Hamming-distance minimum spanning tree over the rows, plus one full row.
fn bit_mst_weight(weights: &[u64], words: usize) -> usize {
    let n = weights.len() / words;
    if n == 0 {
        return 0;
    }
    let row = |c: usize| &weights[c * words..(c + 1) * words];
    let dist = |a: usize, b: usize| -> usize {
        row(a)
            .iter()
            .zip(row(b))
            .map(|(x, y)| (x ^ y).count_ones() as usize)
            .sum()
    };
    let mut best: Vec<usize> = (0..n).map(|c| dist(0, c)).collect();
    let mut in_tree = vec![false; n];
    in_tree[0] = true;
    let mut total = words * 64;
    for _ in 1..n {
        let j = (0..n)
            .filter(|&c| !in_tree[c])
            .min_by_key(|&c| (best[c], c))
            .expect("a row is left");
        in_tree[j] = true;
        total += best[j];
        for k in 0..n {
            if !in_tree[k] {
                best[k] = best[k].min(dist(j, k));
            }
        }
    }
    total
}

impl MstTree {
    /// Deepest channel.
    pub fn max_depth(&self) -> usize {
        self.depth.iter().copied().max().unwrap_or(0)
    }

    /// Channels computed from scratch.
    pub fn roots(&self) -> usize {
        self.parents.iter().filter(|p| p.is_none()).count()
    }

    /// Graphviz DOT of the tree (edge labels: differing words / bits).
    pub fn to_dot(&self, name: &str, weights: &[u64], words: usize) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=circle, fontsize=9];\n  root [shape=point];\n",
            name.replace('"', "'")
        );
        for (c, p) in self.parents.iter().enumerate() {
            match p {
                None => {
                    let _ = writeln!(s, "  root -> c{c} [label=\"{words}w\"];");
                }
                Some(p) => {
                    let (a, b) = (
                        &weights[c * words..][..words],
                        &weights[p * words..][..words],
                    );
                    let w = a.iter().zip(b).filter(|(x, y)| x != y).count();
                    let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
                    let _ = writeln!(s, "  c{p} -> c{c} [label=\"{w}w/{bits}b\"];");
                }
            }
        }
        s.push_str("}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_become_children_and_strangers_roots() {
        // Eight rows of two words: row 3 copies row 0, the others differ in every word. (A
        // child's fixed cost must stay below a root's two words for the copy to pay.)
        let w = [1u64, 2, 3, 4, 5, 6, 1, 2, 7, 8, 9, 10, 11, 12, 13, 14];
        let cost = CostModel {
            word_cost: 1.5,
            child_cost: 1.0,
        };
        let t = build(&w, 2, 8, cost);
        assert_eq!(t.parents[3], Some(0));
        assert_eq!(t.roots(), 7);
        assert_eq!(t.word_ops, 7 * 2);
        assert_eq!(t.hamming_bits, 0);
        assert!(t.cost < t.dense_cost);
    }

    #[test]
    fn depth_is_bounded() {
        // A chain of rows each one word away from the previous.
        let words = 4;
        let mut w = vec![0u64; 10 * words];
        for c in 1..10 {
            let (prev, cur) = w.split_at_mut(c * words);
            cur[..words].copy_from_slice(&prev[(c - 1) * words..]);
            cur[c % words] ^= 1 << c;
        }
        let unbounded = build(
            &w,
            words,
            usize::MAX,
            CostModel {
                word_cost: 1.0,
                child_cost: 0.0,
            },
        );
        assert_eq!(unbounded.roots(), 1);
        let bounded = build(
            &w,
            words,
            3,
            CostModel {
                word_cost: 1.0,
                child_cost: 0.0,
            },
        );
        assert!(bounded.max_depth() <= 3, "{:?}", bounded.depth);
        assert!(bounded.cost >= unbounded.cost);
        for (c, p) in bounded.parents.iter().enumerate() {
            if let Some(p) = p {
                assert!(bounded.depth[*p] < 3 && bounded.depth[c] == bounded.depth[*p] + 1);
            }
        }
    }
}
