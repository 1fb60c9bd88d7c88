//! The fused output stage on the kernel side: what a lane kernel does with its counts
//! instead of storing them ([`super::BinaryKernel::xor_popcount_lanes_store`]).
//!
//! For channel `c` and lane `p` (an output pixel) with popcount `n`:
//!
//! ```text
//! dot = k − 2·n − corr[c·stride + classes[p]]
//! float:  out[c·ld + p] = (mul[c] · (dot as f32)) + bias[c]      (two roundings, no FMA)
//! packed: bit c of pixel p (word c / 64 of out[p·ld ..]) = (dot < threshold[c]) XOR flip[c]
//!         ⟺ (n ≥ bounds[c·stride + classes[p]]) XOR flip[c]
//! ```
//!
//! `k − 2·n` is the one-padding dot product; `corr` is the zero-padding correction of the
//! lane's *border class* (which kernel rows and columns fall in the padding there; class 0 is
//! the interior and always corrects by 0, see the op). With tables of [`CLASSES`] entries
//! (`stride`; 3×3 kernels need 9) a kernel applies it with one table lookup per vector (`vpermd` on x86, `tbl` on NEON) and
//! skips it for vectors of interior lanes. Packed bits are ORed into an output whose bits
//! start clear (kernels may also write whole bytes of 8 channels whose block they own).
//!
//! The packed form's `bounds` ([`packed_bounds`]) move the threshold and the correction onto
//! the count: `dot < t` ⟺ `k − corr − 2n < t` ⟺ `n ≥ ⌊(k − corr − t)/2⌋ + 1`, saturated to u16
//! (counts of the kernels' u16 tiles stay below 65 535). A kernel compares a tile's u16 counts
//! with one table lookup of bounds per channel, border lanes or not.
//!
//! [`LaneStore::put`] is the portable definition every kernel's fused store must equal bit for
//! bit (tests in `super::tests`).

/// Border classes per channel in a correction table (the `vpermd` / `tbl` table size).
pub const CLASSES: usize = 16;

/// Float or packed output, with its per-channel parameters.
#[derive(Debug, Clone, Copy)]
pub enum StoreKind<'a> {
    /// `mul·dot + bias` in f32.
    Float {
        /// Per-channel multiplier.
        mul: &'a [f32],
        /// Per-channel bias.
        bias: &'a [f32],
    },
    /// The bit `(dot < threshold) XOR flip`.
    Packed {
        /// Per-channel threshold.
        threshold: &'a [i32],
        /// Per-channel inversion (0 or 1).
        flip: &'a [u32],
        /// Per channel and border class, the smallest count whose `dot` is below the
        /// threshold: [`packed_bounds`] of this store's `k`, correction tables and thresholds.
        bounds: &'a [u16],
    },
}

/// Where and how a lane job's counts become the op's output (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct LaneStore<'a> {
    kind: StoreKind<'a>,
    k: i32,
    classes: &'a [u8],
    corr: &'a [i32],
    stride: usize,
    out: *mut u8,
    ld: usize,
    channels: usize,
    lanes: usize,
}

// SAFETY: the pointer is only written through at the elements the constructor's contract
// gives this store exclusively.
unsafe impl Send for LaneStore<'_> {}
unsafe impl Sync for LaneStore<'_> {}

impl<'a> LaneStore<'a> {
    /// A store for `channels` × `lanes`: `dot = k − 2·n − corr[c·stride + classes[p]]`
    /// (`stride` ≥ every class; the accelerated kernels need `stride` = [`CLASSES`] and run
    /// the portable [`lanes_store_portable`] otherwise).
    /// `out` is `*mut f32` for [`StoreKind::Float`] (channel `c`, lane `p` at `c·ld + p`) or
    /// `*mut u64` for [`StoreKind::Packed`] (lane `p`'s `ld` words at `p·ld`, bits clear).
    ///
    /// # Safety
    /// Those elements must be valid for writes, and written by nothing else, while the store
    /// is used.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn new(
        kind: StoreKind<'a>,
        k: i32,
        classes: &'a [u8],
        corr: &'a [i32],
        stride: usize,
        out: *mut u8,
        ld: usize,
        channels: usize,
        lanes: usize,
    ) -> LaneStore<'a> {
        match kind {
            StoreKind::Float { mul, bias } => {
                assert!(mul.len() >= channels && bias.len() >= channels);
                assert!(channels <= 1 || ld >= lanes, "float channels overlap");
            }
            StoreKind::Packed {
                threshold,
                flip,
                bounds,
            } => {
                assert!(threshold.len() >= channels && flip.len() >= channels);
                assert!(
                    flip[..channels].iter().all(|&f| f <= 1),
                    "a flip is one bit"
                );
                assert!(ld * 64 >= channels, "packed pixels hold every channel");
                assert!(
                    bounds.len() >= channels * stride,
                    "bounds per channel and class"
                );
                debug_assert!(
                    bounds[..channels * stride]
                        == packed_bounds(k, &corr[..channels * stride], stride, threshold)[..],
                    "bounds are packed_bounds of the store's tables"
                );
            }
        }
        assert!(classes.len() >= lanes, "a class per lane");
        assert!(corr.len() >= channels * stride, "a table per channel");
        assert!(
            (classes[..lanes].iter().copied().max().unwrap_or(0) as usize) < stride,
            "classes fit the table"
        );
        assert!(
            (0..channels).all(|c| corr[c * stride] == 0),
            "class 0 is the interior (kernels skip its correction)"
        );
        LaneStore {
            kind,
            k,
            classes,
            corr,
            stride,
            out,
            ld,
            channels,
            lanes,
        }
    }

    /// Float or packed.
    pub fn kind(&self) -> StoreKind<'a> {
        self.kind
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Lanes.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// `k` of `dot = k − 2·n − corr`.
    pub fn k(&self) -> i32 {
        self.k
    }

    /// The class of each lane.
    pub fn classes(&self) -> &'a [u8] {
        &self.classes[..self.lanes]
    }

    /// Entries per correction table ([`CLASSES`] for the accelerated kernels).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Channel `c`'s correction table (`stride` entries).
    pub fn table(&self, c: usize) -> &'a [i32] {
        &self.corr[c * self.stride..][..self.stride]
    }

    /// The output pointer (see [`LaneStore::new`]) and its `ld`.
    pub fn out(&self) -> (*mut u8, usize) {
        (self.out, self.ld)
    }

    /// The dot product of channel `c` at lane `p` from its popcount `n`.
    #[inline]
    pub fn dot(&self, c: usize, p: usize, n: u32) -> i32 {
        self.k - 2 * n as i32 - self.corr[c * self.stride + self.classes[p] as usize]
    }

    /// Writes channel `c`, lane `p` from its popcount `n` (the portable definition).
    #[inline]
    pub fn put(&self, c: usize, p: usize, n: u32) {
        assert!(c < self.channels && p < self.lanes, "outside the store");
        let dot = self.dot(c, p, n);
        match self.kind {
            StoreKind::Float { mul, bias } => {
                let y = mul[c] * dot as f32;
                // SAFETY: c < channels, p < lanes: writable by the constructor's contract.
                unsafe { *self.out.cast::<f32>().add(c * self.ld + p) = y + bias[c] };
            }
            StoreKind::Packed {
                threshold, flip, ..
            } => {
                let bit = u64::from(u32::from(dot < threshold[c]) ^ flip[c]);
                // SAFETY: as above, word c / 64 of pixel p.
                unsafe { *self.out.cast::<u64>().add(p * self.ld + c / 64) |= bit << (c % 64) };
            }
        }
    }

    /// Writes channel `c`, lanes `p0..p0 + counts.len()` from their popcounts (as
    /// [`LaneStore::put`], with the channel's parameters read once).
    pub fn put_run(&self, c: usize, p0: usize, counts: &[u32]) {
        assert!(
            c < self.channels && p0 + counts.len() <= self.lanes,
            "outside the store"
        );
        let table = self.table(c);
        let classes = &self.classes[p0..][..counts.len()];
        let dots = counts
            .iter()
            .zip(classes)
            .map(|(&n, &cl)| self.k - 2 * n as i32 - table[cl as usize]);
        match self.kind {
            StoreKind::Float { mul, bias } => {
                let (m, b) = (mul[c], bias[c]);
                // SAFETY: channel c, lanes p0.. inside the store (checked above).
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        self.out.cast::<f32>().add(c * self.ld + p0),
                        counts.len(),
                    )
                };
                for (y, dot) in out.iter_mut().zip(dots) {
                    let scaled = m * dot as f32;
                    *y = scaled + b;
                }
            }
            StoreKind::Packed {
                threshold, flip, ..
            } => {
                let (t, f) = (threshold[c], flip[c]);
                let (word, shift) = (c / 64, c % 64);
                for (i, dot) in dots.enumerate() {
                    let bit = u64::from(u32::from(dot < t) ^ f);
                    // SAFETY: word c / 64 of pixel p0 + i, inside the store (checked above).
                    unsafe {
                        *self.out.cast::<u64>().add((p0 + i) * self.ld + word) |= bit << shift
                    };
                }
            }
        }
    }
}

/// The packed output's count bounds (see the module docs): for channel `c` (of
/// `corr.len() / stride`) and class `cl`, `bounds[c·stride + cl]` is the smallest count `n`
/// with `k − 2n − corr[c·stride + cl] < threshold[c]`, clamped to `0..=65 535` (0: every
/// count; 65 535: none a u16 tile holds).
pub fn packed_bounds(k: i32, corr: &[i32], stride: usize, threshold: &[i32]) -> Vec<u16> {
    assert!(stride > 0 && corr.len().is_multiple_of(stride));
    assert!(
        threshold.len() >= corr.len() / stride,
        "a threshold per channel"
    );
    corr.chunks_exact(stride)
        .zip(threshold)
        .flat_map(|(table, &t)| {
            table.iter().map(move |&cr| {
                let x = i64::from(k) - i64::from(cr) - i64::from(t);
                ((x >> 1) + 1).clamp(0, i64::from(u16::MAX)) as u16
            })
        })
        .collect()
}

/// The portable fused lane kernel: per block of up to 256 lanes and per channel, the
/// portable counts (as [`super::generic`]) on the stack, then [`LaneStore::put`].
pub fn lanes_store_portable(job: &super::LaneJob<'_>, store: &LaneStore<'_>) {
    const BLOCK: usize = 256;
    let row = job.taps.len() * job.words;
    assert!(row > 0 && job.weights.len() == store.channels() * row);
    assert_eq!(
        job.lanes,
        store.lanes(),
        "one lane of the store per lane of the job"
    );
    let mut counts = [0u32; BLOCK];
    let mut p0 = 0;
    while p0 < job.lanes {
        let n = (job.lanes - p0).min(BLOCK);
        for (c, weights) in job.weights.chunks_exact(row).enumerate() {
            let counts = &mut counts[..n];
            counts.fill(0);
            for (&tap, tap_weights) in job.taps.iter().zip(weights.chunks_exact(job.words)) {
                for (w, &y) in tap_weights.iter().enumerate() {
                    let x = &job.input[tap + w * job.plane + p0..][..n];
                    for (o, &x) in counts.iter_mut().zip(x) {
                        *o += (x ^ y).count_ones();
                    }
                }
            }
            store.put_run(c, p0, counts);
        }
        p0 += n;
    }
}

/// Checks the contract of [`super::BinaryKernel::store_counts`]: every channel's row inside
/// `counts`.
pub fn check_counts(counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
    let rows = match slots {
        Some(s) => {
            assert_eq!(s.len(), store.channels(), "a slot per channel");
            s.iter().map(|&r| r as usize + 1).max().unwrap_or(0)
        }
        None => store.channels(),
    };
    assert!(
        rows * store.lanes() <= counts.len(),
        "counts must hold every channel's row"
    );
}

/// The portable [`super::BinaryKernel::store_counts`].
pub fn store_counts_portable(counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
    check_counts(counts, slots, store);
    let lanes = store.lanes();
    for c in 0..store.channels() {
        let row = slots.map_or(c, |s| s[c] as usize);
        store.put_run(c, 0, &counts[row * lanes..][..lanes]);
    }
}
