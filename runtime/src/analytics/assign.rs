//! Optimal gated linear assignment: the association step of SORT (Bewley et al., 2016) and
//! ByteTrack (Zhang et al., ECCV 2022).
//!
//! # What it computes
//!
//! Given `rows × cols` weights `w(i, j)` (for the tracker: the IoU of track `i`'s predicted
//! box with detection `j`) and a gate, a pair is *admissible* when its weight is finite,
//! positive and at least the gate. [`Assigner::solve`] returns a matching — each row and each
//! column in at most one pair, only admissible pairs — of maximum total weight. With IoU
//! weights that is the minimum of `Σ (1 − IoU)` over matched pairs that the SORT formulation
//! states, with no pair below the gate ever matched. (ByteTrack's `lapjv(…, extend_cost=True,
//! cost_limit=1 − gate)` maximises `Σ (IoU − gate)` instead, which favours fewer, stronger
//! pairs; a caller wanting that passes `IoU − gate` as the weight and a gate of 0.)
//!
//! # How
//!
//! 1. The weights are evaluated once each into a dense matrix (`O(rows·cols)`); inadmissible
//!    pairs are stored as 0.
//! 2. The bipartite graph of admissible pairs is split into connected components by a
//!    breadth-first search over that matrix (`O(rows·cols)`). Pairs in different components
//!    never compete, so the optimum is the union of the components' optima.
//! 3. Each component of `r` rows and `c` columns is solved by the Hungarian method in its
//!    shortest-augmenting-path form (Jonker–Volgenant; the `O(n²m)` variant with row and
//!    column potentials) on costs `−w` with `n = min(r, c)` and `m = max(r, c)`, an
//!    inadmissible pair costing 0: a row assigned through an inadmissible pair is unmatched.
//!    Every matching of the component extends to such an assignment with the same total, so
//!    the minimum-cost assignment is a maximum-weight matching. Components of one row or one
//!    column take the best pair directly.
//!
//! Camera scenes give components of one or two boxes, so a frame of 100 separated objects
//! costs the `O(n²)` weight matrix plus near-linear assignment; a single dense component
//! costs `O(n³)` (128 × 128 at worst for the tracker).
//!
//! # Memory
//!
//! [`Assigner::new`] allocates every buffer at its final size for the largest problem it
//! accepts (`max_rows × max_cols` weights, potentials, component lists); `solve` only indexes
//! into them and never allocates. Asking for more rows or columns than the capacity is a
//! caller bug and panics.
//!
//! Ties are broken deterministically (by index order): the same input gives the same output.

/// Intersection over union of two boxes `[x0, y0, x1, y1]`; 0 for disjoint, empty or
/// non-finite boxes. Scaling both axes (pixels or relative coordinates, any aspect ratio)
/// does not change it.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    // `!(x > 0)` also catches NaN.
    if !(iw > 0.0 && ih > 0.0) {
        return 0.0;
    }
    let inter = iw * ih;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    let v = inter / union;
    if v.is_finite() && v > 0.0 {
        v.min(1.0)
    } else {
        0.0
    }
}

/// Marks a row or column with no match (`usize::MAX` fits every index the buffers allow).
const NONE: usize = usize::MAX;

/// Gated maximum-weight bipartite matching with reusable scratch memory (see the module docs).
#[derive(Debug, Clone)]
pub struct Assigner {
    max_rows: usize,
    max_cols: usize,
    rows: usize,
    cols: usize,
    /// Admissible weights, row-major with stride `cols`; 0 for inadmissible pairs.
    weights: Vec<f32>,
    /// Row `i`'s matched column, or `NONE`.
    row_match: Vec<usize>,
    /// Column `j`'s matched row, or `NONE`.
    col_match: Vec<usize>,
    /// Visited flags of the component search.
    row_seen: Vec<bool>,
    col_seen: Vec<bool>,
    /// Rows (columns) grouped by component, in discovery order; also the search queues.
    comp_rows: Vec<usize>,
    comp_cols: Vec<usize>,
    /// Hungarian scratch, indexed 0..=m (index 0 is the virtual column/row).
    u: Vec<f64>,
    v: Vec<f64>,
    p: Vec<usize>,
    way: Vec<usize>,
    minv: Vec<f64>,
    used: Vec<bool>,
}

impl Assigner {
    /// An assigner for problems up to `max_rows × max_cols`, all memory allocated now.
    pub fn new(max_rows: usize, max_cols: usize) -> Assigner {
        let k = max_rows.max(max_cols) + 1;
        Assigner {
            max_rows,
            max_cols,
            rows: 0,
            cols: 0,
            weights: vec![0.0; max_rows * max_cols],
            row_match: vec![NONE; max_rows],
            col_match: vec![NONE; max_cols],
            row_seen: vec![false; max_rows],
            col_seen: vec![false; max_cols],
            comp_rows: vec![0; max_rows],
            comp_cols: vec![0; max_cols],
            u: vec![0.0; k],
            v: vec![0.0; k],
            p: vec![0; k],
            way: vec![0; k],
            minv: vec![0.0; k],
            used: vec![false; k],
        }
    }

    /// The largest `(rows, cols)` accepted.
    pub fn capacity(&self) -> (usize, usize) {
        (self.max_rows, self.max_cols)
    }

    /// Solves one problem: evaluates `weight(row, col)` once for every pair, and finds a
    /// maximum-total-weight matching over the admissible pairs (finite, `> 0` and `≥ gate`).
    /// Returns the number of matched pairs; read them with [`Assigner::row_match`],
    /// [`Assigner::col_match`] or [`Assigner::pairs`].
    ///
    /// # Panics
    ///
    /// If `rows` or `cols` exceeds the capacity given to [`Assigner::new`].
    pub fn solve(
        &mut self,
        rows: usize,
        cols: usize,
        gate: f32,
        mut weight: impl FnMut(usize, usize) -> f32,
    ) -> usize {
        assert!(
            rows <= self.max_rows && cols <= self.max_cols,
            "assignment of {rows}×{cols} exceeds the capacity {}×{}",
            self.max_rows,
            self.max_cols
        );
        self.rows = rows;
        self.cols = cols;
        for i in 0..rows {
            let row = &mut self.weights[i * cols..(i + 1) * cols];
            for (j, slot) in row.iter_mut().enumerate() {
                let w = weight(i, j);
                // NaN fails both comparisons.
                *slot = if w >= gate && w > 0.0 && w.is_finite() {
                    w
                } else {
                    0.0
                };
            }
        }
        self.row_match[..rows].fill(NONE);
        self.col_match[..cols].fill(NONE);
        self.row_seen[..rows].fill(false);
        self.col_seen[..cols].fill(false);

        let (mut nr, mut nc) = (0, 0);
        let mut matched = 0;
        for start in 0..rows {
            if self.row_seen[start]
                || !self.weights[start * cols..(start + 1) * cols]
                    .iter()
                    .any(|&w| w > 0.0)
            {
                continue;
            }
            // Breadth-first search of the component: comp_rows[r0..nr], comp_cols[c0..nc].
            let (r0, c0) = (nr, nc);
            self.row_seen[start] = true;
            self.comp_rows[nr] = start;
            nr += 1;
            let (mut rh, mut ch) = (r0, c0);
            while rh < nr || ch < nc {
                while rh < nr {
                    let i = self.comp_rows[rh];
                    rh += 1;
                    for j in 0..cols {
                        if !self.col_seen[j] && self.weights[i * cols + j] > 0.0 {
                            self.col_seen[j] = true;
                            self.comp_cols[nc] = j;
                            nc += 1;
                        }
                    }
                }
                while ch < nc {
                    let j = self.comp_cols[ch];
                    ch += 1;
                    for i in 0..rows {
                        if !self.row_seen[i] && self.weights[i * cols + j] > 0.0 {
                            self.row_seen[i] = true;
                            self.comp_rows[nr] = i;
                            nr += 1;
                        }
                    }
                }
            }
            matched += self.solve_component(r0, nr, c0, nc);
        }
        debug_assert!(nr <= rows && nc <= cols);
        matched
    }

    /// Solves the component `comp_rows[r0..r1] × comp_cols[c0..c1]`; returns its match count.
    fn solve_component(&mut self, r0: usize, r1: usize, c0: usize, c1: usize) -> usize {
        let cols = self.cols;
        let (nr, nc) = (r1 - r0, c1 - c0);
        if nr == 1 || nc == 1 {
            // One side is a single vertex: its best admissible pair.
            let mut best = (0.0f32, NONE, NONE);
            for &i in &self.comp_rows[r0..r1] {
                for &j in &self.comp_cols[c0..c1] {
                    let w = self.weights[i * cols + j];
                    if w > best.0 {
                        best = (w, i, j);
                    }
                }
            }
            if best.1 == NONE {
                return 0;
            }
            self.row_match[best.1] = best.2;
            self.col_match[best.2] = best.1;
            return 1;
        }
        // Hungarian method, n ≤ m, 1-based with a virtual column 0 (Jonker–Volgenant style
        // shortest augmenting paths with potentials u, v).
        let transposed = nr > nc;
        let (n, m) = if transposed { (nc, nr) } else { (nr, nc) };
        let weights = &self.weights;
        let (comp_rows, comp_cols) = (&self.comp_rows[r0..r1], &self.comp_cols[c0..c1]);
        // Row/column (1-based, component-local) to the weight matrix's indices.
        let pair = |a: usize, b: usize| -> (usize, usize) {
            if transposed {
                (comp_rows[b - 1], comp_cols[a - 1])
            } else {
                (comp_rows[a - 1], comp_cols[b - 1])
            }
        };
        let cost = |a: usize, b: usize| -> f64 {
            let (i, j) = pair(a, b);
            -f64::from(weights[i * cols + j])
        };
        let (u, v, p, way, minv, used) = (
            &mut self.u[..=m],
            &mut self.v[..=m],
            &mut self.p[..=m],
            &mut self.way[..=m],
            &mut self.minv[..=m],
            &mut self.used[..=m],
        );
        u.fill(0.0);
        v.fill(0.0);
        p.fill(0);
        way.fill(0);
        for a in 1..=n {
            p[0] = a;
            let mut j0 = 0;
            minv.fill(f64::INFINITY);
            used.fill(false);
            loop {
                used[j0] = true;
                let i0 = p[j0];
                let mut delta = f64::INFINITY;
                let mut j1 = 0;
                for j in 1..=m {
                    if !used[j] {
                        let cur = cost(i0, j) - u[i0] - v[j];
                        if cur < minv[j] {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                        if minv[j] < delta {
                            delta = minv[j];
                            j1 = j;
                        }
                    }
                }
                // n ≤ m and every cost is finite: an unused column always exists and is
                // picked. Guard anyway rather than loop forever.
                if j1 == 0 {
                    debug_assert!(false, "no augmenting column");
                    break;
                }
                for j in 0..=m {
                    if used[j] {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
                if p[j0] == 0 {
                    break;
                }
            }
            // Augment along the path back to the virtual column.
            while j0 != 0 {
                let j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            }
        }
        let mut matched = 0;
        for (b, &a) in p.iter().enumerate().skip(1) {
            if a == 0 {
                continue;
            }
            let (i, j) = pair(a, b);
            if weights[i * cols + j] > 0.0 {
                self.row_match[i] = j;
                self.col_match[j] = i;
                matched += 1;
            }
        }
        matched
    }

    /// The column matched to `row` by the last [`Assigner::solve`], if any.
    pub fn row_match(&self, row: usize) -> Option<usize> {
        if row >= self.rows {
            return None;
        }
        let j = self.row_match[row];
        (j != NONE).then_some(j)
    }

    /// The row matched to `col` by the last [`Assigner::solve`], if any.
    pub fn col_match(&self, col: usize) -> Option<usize> {
        if col >= self.cols {
            return None;
        }
        let i = self.col_match[col];
        (i != NONE).then_some(i)
    }

    /// The weight the last [`Assigner::solve`] stored for a pair: the weight if admissible,
    /// else 0.
    pub fn weight(&self, row: usize, col: usize) -> f32 {
        if row < self.rows && col < self.cols {
            self.weights[row * self.cols + col]
        } else {
            0.0
        }
    }

    /// The matched `(row, col)` pairs of the last [`Assigner::solve`], by row.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.row_match[..self.rows]
            .iter()
            .enumerate()
            .filter(|(_, &j)| j != NONE)
            .map(|(i, &j)| (i, j))
    }

    /// Total weight of the last matching.
    pub fn total_weight(&self) -> f32 {
        self.pairs().map(|(i, j)| self.weight(i, j)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Best total over all matchings of admissible pairs (exhaustive).
    fn brute_force(w: &[f32], rows: usize, cols: usize, gate: f32) -> f64 {
        fn go(w: &[f32], rows: usize, cols: usize, gate: f32, i: usize, used: &mut [bool]) -> f64 {
            if i == rows {
                return 0.0;
            }
            let mut best = go(w, rows, cols, gate, i + 1, used);
            for j in 0..cols {
                let x = w[i * cols + j];
                if !used[j] && x.is_finite() && x > 0.0 && x >= gate {
                    used[j] = true;
                    best = best.max(x as f64 + go(w, rows, cols, gate, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(w, rows, cols, gate, 0, &mut vec![false; cols])
    }

    /// The last matching is a matching of admissible pairs, consistent both ways; returns
    /// its total.
    fn check_valid(a: &Assigner, w: &[f32], rows: usize, cols: usize, gate: f32) -> f64 {
        let mut total = 0.0;
        let mut seen = vec![false; cols];
        for i in 0..rows {
            if let Some(j) = a.row_match(i) {
                assert!(j < cols && !seen[j]);
                seen[j] = true;
                assert_eq!(a.col_match(j), Some(i));
                let x = w[i * cols + j];
                assert!(
                    x.is_finite() && x > 0.0 && x >= gate,
                    "inadmissible pair matched"
                );
                total += x as f64;
            }
        }
        for j in 0..cols {
            if let Some(i) = a.col_match(j) {
                assert_eq!(a.row_match(i), Some(j));
            }
        }
        total
    }

    fn random_matrix(rng: &mut SmallRng, rows: usize, cols: usize, density: f64) -> Vec<f32> {
        (0..rows * cols)
            .map(|_| {
                if rng.random_bool(density) {
                    rng.random_range(0.0f32..1.0)
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Random small problems of every shape up to 7×7 and several densities and gates: the
    /// total equals the exhaustive optimum, and only admissible pairs are matched.
    #[test]
    fn matches_brute_force_on_random_small_matrices() {
        let mut rng = SmallRng::seed_from_u64(2022);
        let mut a = Assigner::new(7, 7);
        for trial in 0..3000 {
            let rows = rng.random_range(0..=7);
            let cols = rng.random_range(0..=7);
            let density = [0.2, 0.5, 1.0][trial % 3];
            let gate = [0.0, 0.2, 0.5][(trial / 3) % 3];
            let w = random_matrix(&mut rng, rows, cols, density);
            let n = a.solve(rows, cols, gate, |i, j| w[i * cols + j]);
            let total = check_valid(&a, &w, rows, cols, gate);
            assert_eq!(n, a.pairs().count());
            let best = brute_force(&w, rows, cols, gate);
            assert!(
                (total - best).abs() < 1e-5,
                "trial {trial}: {rows}×{cols} gate {gate}: got {total}, best {best}, w {w:?}"
            );
        }
    }

    /// Block-structured problems (random blocks of up to 5×5, rows and columns shuffled, so
    /// many components): the total equals the sum of the blocks' exhaustive optima.
    #[test]
    fn matches_brute_force_per_component() {
        let mut rng = SmallRng::seed_from_u64(16);
        let mut a = Assigner::new(64, 64);
        for _trial in 0..50 {
            let mut blocks = Vec::new();
            let (mut rows, mut cols) = (0, 0);
            while rows < 50 && cols < 50 {
                let (r, c) = (rng.random_range(1..=5), rng.random_range(1..=5));
                blocks.push((rows, r, cols, c));
                rows += r;
                cols += c;
            }
            let mut w = vec![0.0f32; rows * cols];
            let mut best = 0.0;
            for &(r0, r, c0, c) in &blocks {
                let b = random_matrix(&mut rng, r, c, 0.7);
                for i in 0..r {
                    for j in 0..c {
                        w[(r0 + i) * cols + c0 + j] = b[i * c + j];
                    }
                }
                best += brute_force(&b, r, c, 0.2);
            }
            // Shuffle rows and columns (Fisher–Yates).
            let mut rp: Vec<usize> = (0..rows).collect();
            let mut cp: Vec<usize> = (0..cols).collect();
            for k in (1..rows).rev() {
                rp.swap(k, rng.random_range(0..=k));
            }
            for k in (1..cols).rev() {
                cp.swap(k, rng.random_range(0..=k));
            }
            let ws: Vec<f32> = (0..rows * cols)
                .map(|x| w[rp[x / cols] * cols + cp[x % cols]])
                .collect();
            a.solve(rows, cols, 0.2, |i, j| ws[i * cols + j]);
            let total = check_valid(&a, &ws, rows, cols, 0.2);
            assert!((total - best).abs() < 1e-4, "got {total}, best {best}");
        }
    }

    /// A dense 128×128 problem (one component) is solved to a valid matching at least as good
    /// as the greedy one; and a permutation-with-noise instance finds the permutation.
    #[test]
    fn dense_full_size() {
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 128;
        let mut a = Assigner::new(n, n);
        let w = random_matrix(&mut rng, n, n, 1.0);
        a.solve(n, n, 0.0, |i, j| w[i * n + j]);
        let total = check_valid(&a, &w, n, n, 0.0);
        // Greedy: repeatedly the largest remaining pair.
        let mut order: Vec<usize> = (0..n * n).collect();
        order.sort_by(|&x, &y| w[y].total_cmp(&w[x]));
        let (mut ur, mut uc, mut greedy) = (vec![false; n], vec![false; n], 0.0f64);
        for x in order {
            let (i, j) = (x / n, x % n);
            if !ur[i] && !uc[j] && w[x] > 0.0 {
                ur[i] = true;
                uc[j] = true;
                greedy += w[x] as f64;
            }
        }
        assert!(total >= greedy - 1e-4, "{total} < greedy {greedy}");
        // A hidden permutation of strong pairs among weak noise.
        let perm: Vec<usize> = (0..n).map(|i| (i * 37 + 11) % n).collect();
        let w: Vec<f32> = (0..n * n)
            .map(|x| {
                if perm[x / n] == x % n {
                    0.9
                } else {
                    rng.random_range(0.0f32..0.3)
                }
            })
            .collect();
        assert_eq!(a.solve(n, n, 0.1, |i, j| w[i * n + j]), n);
        for (i, &p) in perm.iter().enumerate() {
            assert_eq!(a.row_match(i), Some(p));
        }
    }

    /// Non-finite weights are inadmissible; empty problems match nothing; each weight is
    /// evaluated exactly once.
    #[test]
    fn edge_cases() {
        let mut a = Assigner::new(4, 4);
        assert_eq!(a.solve(0, 4, 0.2, |_, _| 1.0), 0);
        assert_eq!(a.solve(4, 0, 0.2, |_, _| 1.0), 0);
        assert_eq!(a.row_match(0), None);
        let w = [f32::NAN, 0.5, f32::INFINITY, 0.3];
        assert_eq!(a.solve(2, 2, 0.2, |i, j| w[i * 2 + j]), 1);
        assert_eq!(a.row_match(0), Some(1));
        assert_eq!(a.row_match(1), None);
        assert_eq!(a.solve(2, 2, 0.9, |i, j| w[i * 2 + j]), 0);
        let mut calls = 0;
        a.solve(3, 4, 0.2, |_, _| {
            calls += 1;
            0.5
        });
        assert_eq!(calls, 12);
        // Maximum total, not greedy: 0.6 + 0.6 beats 0.9 alone.
        let w = [0.9, 0.6, 0.6, 0.0];
        assert_eq!(a.solve(2, 2, 0.2, |i, j| w[i * 2 + j]), 2);
        assert_eq!((a.row_match(0), a.row_match(1)), (Some(1), Some(0)));
        assert!((a.total_weight() - 1.2).abs() < 1e-6);
    }

    /// Buffers are sized once: a full-capacity solve leaves every buffer where it was.
    #[test]
    fn buffers_never_move() {
        let mut a = Assigner::new(128, 128);
        let ptrs = |a: &Assigner| {
            (
                a.weights.as_ptr(),
                a.weights.capacity(),
                a.u.as_ptr(),
                a.comp_rows.as_ptr(),
            )
        };
        let before = ptrs(&a);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..5 {
            let w = random_matrix(&mut rng, 128, 128, 0.3);
            a.solve(128, 128, 0.1, |i, j| w[i * 128 + j]);
        }
        assert_eq!(ptrs(&a), before);
    }

    #[test]
    #[should_panic(expected = "exceeds the capacity")]
    fn over_capacity_panics() {
        Assigner::new(2, 2).solve(3, 1, 0.2, |_, _| 1.0);
    }

    #[test]
    fn iou_values() {
        let a = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert!((iou(&a, &[0.5, 0.0, 1.5, 1.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou(&a, &[f32::NAN, 0.0, 1.0, 1.0]), 0.0);
        assert_eq!(iou(&a, &[0.5, 0.5, 0.5, 0.9]), 0.0);
        // Scaling an axis (another frame aspect ratio) does not change IoU.
        let (b, c) = ([0.1f32, 0.2, 0.5, 0.6], [0.3f32, 0.1, 0.7, 0.5]);
        let s = |x: [f32; 4]| [x[0] * 1920.0, x[1] * 1080.0, x[2] * 1920.0, x[3] * 1080.0];
        assert!((iou(&b, &c) - iou(&s(b), &s(c))).abs() < 1e-6);
    }
}
