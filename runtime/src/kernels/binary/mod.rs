//! Bit kernels of the binary operators, behind one trait, chosen once at start-up.
//!
//! Every binary layer reduces to one of two XOR-popcount primitives over bit-packed words
//! (bit 1 meaning −1; the op turns popcounts into dot products, `dot = K − 2·popcount`, padding
//! bits are 0 on both sides so they never count, and applies its fused output stage):
//!
//! * [`BinaryKernel::xor_popcount`], a matrix product over packed rows (binary dense):
//!
//!   ```text
//!   out[m·N + n] = Σ_{l < words} popcount(a[m·words + l] XOR b[n·words + l])     (m < M, n < N)
//!   ```
//!
//! * [`BinaryKernel::xor_popcount_lanes`], the same with **pixels as vector lanes** (binary
//!   conv2d without im2col, see [`LaneJob`]): the input is laid out word-plane by word-plane
//!   (all pixels' word 0, then all pixels' word 1…), so a tap of a convolution is one offset
//!   into that buffer and consecutive output pixels read consecutive words. Each weight word is
//!   broadcast to every lane; a register tile holds several pixel vectors × several output
//!   channels, and its counts are stored channel-major (`[channel][pixel]`), which is already
//!   the float graph's NCHW order.
//! * [`BinaryKernel::xor_popcount_lanes_store`], the lane form with the **fused output
//!   stage** ([`store`]): the tile's accumulators become the op's float or packed output in the
//!   tile's epilogue (affine or threshold per channel, zero-padding border correction per lane
//!   class), written straight into the output tensor; no counts are stored and re-read.
//!
//! Implementations: [`generic`] (portable, `u64::count_ones`), `x86` (POPCNT, AVX2, AVX-512
//! VPOPCNTDQ) and `neon` (aarch64). The accelerated ones implement only the unchecked
//! `RawKernel` and reach the ops through one safe front, `Checked` (shape checks, portable
//! fallbacks); a value of theirs exists only after its CPU features were detected. [`select`]
//! picks the best one the CPU supports, once;
//! `KESTREL_KERNELS=generic` forces the portable one (`KESTREL_KERNELS=NAME`, e.g. `x86-avx2`,
//! a given one, in both this family and the int8 one). Every accelerated kernel is tested bit for
//! bit against the portable one (on aarch64 under qemu in CI).

/// Walks a lane job in tiles: channel blocks of `$nr` (then single channels) × lane blocks of
/// `$mr` vectors of `$l` lanes (then single vectors, the last one partial), calling
/// `$tile::<MR, NR>(input + p, taps, words, plane, weights + c·row, row, valid, sink, c, p)`
/// with `valid` the lanes of the tile that exist and `sink` (a [`Sink`]) where its results go.
/// (Used by the x86 and NEON kernels only.)
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! drive_lanes {
    ($tile:ident, $l:expr, $mr:literal, $nr:literal, $job:expr, $sink:expr) => {{
        let job: &$crate::kernels::binary::LaneJob<'_> = $job;
        let sink: $crate::kernels::binary::Sink<'_> = $sink;
        let row = job.taps.len() * job.words;
        let channels = job.weights.len() / row;
        let (input, weights, lanes) = (job.input.as_ptr(), job.weights.as_ptr(), job.lanes);
        macro_rules! channel_block {
            ($n:literal, $c:expr) => {{
                let w = weights.add($c * row);
                let mut p = 0;
                while p + $mr * $l <= lanes {
                    $tile::<$mr, $n>(
                        input.add(p),
                        job.taps,
                        job.words,
                        job.plane,
                        w,
                        row,
                        $mr * $l,
                        sink,
                        $c,
                        p,
                    );
                    p += $mr * $l;
                }
                while p < lanes {
                    let valid = (lanes - p).min($l);
                    $tile::<1, $n>(
                        input.add(p),
                        job.taps,
                        job.words,
                        job.plane,
                        w,
                        row,
                        valid,
                        sink,
                        $c,
                        p,
                    );
                    p += $l;
                }
            }};
        }
        let mut c = 0;
        while c + $nr <= channels {
            channel_block!($nr, c);
            c += $nr;
        }
        while c < channels {
            channel_block!(1, c);
            c += 1;
        }
    }};
}

/// Where a lane tile's results go (the x86 and NEON kernels').
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sink<'a> {
    /// Raw counts: channel `c`, lane `p` at `out[c·ld + p]`.
    Counts {
        /// The counts.
        out: *mut u32,
        /// Distance between channels.
        ld: usize,
    },
    /// Through the fused output stage.
    Store(&'a LaneStore<'a>),
}

pub mod generic;
pub mod mst;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod store;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

pub use store::{LaneStore, StoreKind};

/// An XOR-popcount matrix product over bit-packed rows.
pub trait BinaryKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-popcnt`, `neon`…).
    fn name(&self) -> &'static str;

    /// Computes `out[m·n_rows + n] = Σ_l popcount(a[m·words + l] ^ b[n·words + l])` for every
    /// row `m` of `a` and `n` of `b`. `a.len()` and `b.len()` are multiples of `words`;
    /// `out.len() == (a.len() / words) · (b.len() / words)`. `words` may be any size ≥ 1.
    fn xor_popcount(&self, a: &[u64], b: &[u64], words: usize, out: &mut [u32]);

    /// Computes, for every channel `c` and lane `p < job.lanes` (see [`LaneJob`]),
    /// `out[c·lanes + p] = Σ_t Σ_w popcount(input[taps[t] + w·plane + p] ^ weights[(c·T + t)·W + w])`
    /// with `T = taps.len()`, `W = words`. The job must pass [`LaneJob::check`].
    fn xor_popcount_lanes(&self, job: &LaneJob<'_>, out: &mut [u32]);

    /// The same lane job with the fused output stage: each channel's counts go through
    /// `store` (channel `c` of the job is channel `c` of the store, lane `p` its lane `p`;
    /// see [`store`]) straight into the op's output, never stored as counts. Channels of the
    /// store = channels of `job.weights`, lanes of the store = `job.lanes`. Default: the
    /// portable [`store::lanes_store_portable`].
    fn xor_popcount_lanes_store(&self, job: &LaneJob<'_>, store: &LaneStore<'_>) {
        store::lanes_store_portable(job, store)
    }

    /// The fused output stage applied to stored counts (MST layers, whose children need
    /// their parents' counts; layers with more border classes than the kernels' tables):
    /// channel `c`'s `store.lanes()` counts are row `slots[c]` (or `c`) of `counts`. The same
    /// values as [`BinaryKernel::xor_popcount_lanes_store`]. Default: the portable
    /// [`LaneStore::put_run`] per channel.
    fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        store::store_counts_portable(counts, slots, store)
    }

    /// The children phase of an MST lane job (see [`mst::ChildJob`]): every child's counts
    /// from its parent's plus its differing words. The job must pass [`mst::ChildJob::check`].
    /// Default: the portable loop [`mst::children_portable`].
    fn mst_children_lanes(&self, job: &mst::ChildJob<'_>, counts: &mut [u32]) {
        mst::children_portable(job, counts)
    }
}

/// One ISA's binary kernels without checks: what `x86` and `neon` implement, behind the one
/// safe front [`Checked`]. A value of an implementing type exists only after its `detect()`
/// found the CPU features it needs (the types have a private field and no constructor), so
/// neither the front nor the kernel checks them per call.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) trait RawKernel: Send + Sync + Debug + 'static {
    /// Short name, for logs and benchmarks.
    const NAME: &'static str;

    /// [`BinaryKernel::xor_popcount`] over `rows`.
    ///
    /// # Safety
    /// [`check_dims`]`(a, b, words, out)` returned `(m, n)` for `rows`.
    unsafe fn xor_popcount(&self, rows: Rows<'_>, out: &mut [u32]);

    /// A lane job, its results into `sink`.
    ///
    /// # Safety
    /// The job passed [`LaneJob::check`] against the sink's counts (channels × lanes), or
    /// [`LaneJob::check_store`] against its store, whose stride is `store::CLASSES`.
    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>);

    /// [`BinaryKernel::store_counts`]. Default: the portable loop.
    ///
    /// # Safety
    /// `store::check_counts(counts, slots, store)` holds and the store's stride is
    /// `store::CLASSES`.
    unsafe fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        store::store_counts_portable(counts, slots, store)
    }

    /// [`BinaryKernel::mst_children_lanes`].
    ///
    /// # Safety
    /// The job passed [`mst::ChildJob::check`] against `counts`.
    unsafe fn children(&self, job: &mst::ChildJob<'_>, counts: &mut [u32]);
}

/// The operands of an XOR-popcount over rows: `m` rows of `a` and `n` of `b`, `words` each.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub a: &'a [u64],
    pub b: &'a [u64],
    pub words: usize,
    pub m: usize,
    pub n: usize,
}

/// The safe front of a [`RawKernel`], written once: it checks every job's shapes, sends
/// stores with more border classes than the kernels' tables to the portable code, and calls
/// the kernel with what its `# Safety` sections ask for.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Debug)]
pub(crate) struct Checked<K>(pub(crate) K);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl<K: RawKernel> BinaryKernel for Checked<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn xor_popcount(&self, a: &[u64], b: &[u64], words: usize, out: &mut [u32]) {
        let (m, n) = check_dims(a, b, words, out);
        let rows = Rows { a, b, words, m, n };
        // SAFETY: check_dims returned (m, n).
        unsafe { self.0.xor_popcount(rows, out) }
    }

    fn xor_popcount_lanes(&self, job: &LaneJob<'_>, out: &mut [u32]) {
        job.check(out);
        // SAFETY: the job passed its check against `out`.
        unsafe { self.0.lanes(job, counts_sink(job, out)) }
    }

    fn xor_popcount_lanes_store(&self, job: &LaneJob<'_>, store: &LaneStore<'_>) {
        job.check_store(store);
        if store.stride() != store::CLASSES {
            return store::lanes_store_portable(job, store);
        }
        // SAFETY: the job passed its check against the store, whose stride is CLASSES.
        unsafe { self.0.lanes(job, Sink::Store(store)) }
    }

    fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        store::check_counts(counts, slots, store);
        if store.stride() != store::CLASSES {
            return store::store_counts_portable(counts, slots, store);
        }
        // SAFETY: checked just above.
        unsafe { self.0.store_counts(counts, slots, store) }
    }

    fn mst_children_lanes(&self, job: &mst::ChildJob<'_>, counts: &mut [u32]) {
        job.check(counts);
        // SAFETY: the job passed its check against `counts`.
        unsafe { self.0.children(job, counts) }
    }
}

/// Words a [`LaneJob`]'s input must hold past the last lane of its last word plane, so that
/// kernels may load whole vectors (up to 16 lanes) at the end of a row of lanes.
pub const LANE_SLACK: usize = 16;

/// A pixel-lane XOR-popcount: `lanes` consecutive output positions × the output channels of
/// `weights`, every lane reading `input` at the same offsets shifted by its index.
///
/// For a convolution, `input` is the padded image laid out as word planes (`plane` words
/// apart), `taps[t]` the offset of kernel tap `t`'s word 0 for lane 0, and `weights` the packed
/// weights `[C_out, taps, words]` exactly as the op stores them (`[C_out, KH, KW, ⌈C_in/64⌉]`).
#[derive(Debug, Clone, Copy)]
pub struct LaneJob<'a> {
    /// Word planes of the input.
    pub input: &'a [u64],
    /// Offset of each tap's first word plane for lane 0.
    pub taps: &'a [usize],
    /// Words per tap (`⌈C_in/64⌉`).
    pub words: usize,
    /// Distance between word `w` and `w + 1` of one tap and lane.
    pub plane: usize,
    /// Number of lanes (output positions).
    pub lanes: usize,
    /// Packed weights `[channels][taps][words]`.
    pub weights: &'a [u64],
}

impl LaneJob<'_> {
    /// Checks the contract of [`BinaryKernel::xor_popcount_lanes`] (shapes, and that every
    /// tap's last word plane holds `lanes + LANE_SLACK` words); returns the channel count.
    pub fn check(&self, out: &[u32]) -> usize {
        let channels = self.check_input();
        assert_eq!(
            out.len(),
            channels * self.lanes,
            "out must hold channels × lanes"
        );
        channels
    }

    /// Checks the contract of [`BinaryKernel::xor_popcount_lanes_store`]: as
    /// [`LaneJob::check`], with the store's channels and lanes those of the job.
    pub fn check_store(&self, store: &LaneStore<'_>) {
        let channels = self.check_input();
        assert!(
            store.channels() == channels && store.lanes() == self.lanes,
            "the store must be channels × lanes of the job"
        );
    }

    /// Checks shapes and input reads; returns the channel count.
    fn check_input(&self) -> usize {
        let row = self.taps.len() * self.words;
        assert!(row > 0, "a lane job needs taps and words");
        assert_eq!(
            self.weights.len() % row,
            0,
            "weights are not whole channels"
        );
        let channels = self.weights.len() / row;
        let last = self.taps.iter().max().expect("taps") + (self.words - 1) * self.plane;
        assert!(
            last + self.lanes + LANE_SLACK <= self.input.len(),
            "lane job reads past its input"
        );
        channels
    }
}

/// The sink of a lane kernel storing counts into `out` (`[channel][lane]`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn counts_sink<'a>(job: &LaneJob<'_>, out: &'a mut [u32]) -> Sink<'a> {
    Sink::Counts {
        out: out.as_mut_ptr(),
        ld: job.lanes,
    }
}

/// Checks the shape contract of [`BinaryKernel::xor_popcount`]; returns (M, N).
pub fn check_dims(a: &[u64], b: &[u64], words: usize, out: &[u32]) -> (usize, usize) {
    assert!(words > 0, "words must be positive");
    assert_eq!(a.len() % words, 0, "a is not whole rows");
    assert_eq!(b.len() % words, 0, "b is not whole rows");
    let (m, n) = (a.len() / words, b.len() / words);
    assert_eq!(out.len(), m * n, "out must hold M×N counts");
    (m, n)
}

/// The portable kernel.
pub fn generic() -> &'static dyn BinaryKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last (for tests, benchmarks and
/// [`select`]): `generic`, then `x86-popcnt`, `x86-avx2`, `x86-avx512` on x86-64, or `neon` on
/// aarch64.
pub fn available() -> Vec<&'static dyn BinaryKernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(
        [
            x86::Popcnt::detect(),
            x86::Avx2::detect(),
            x86::Avx512::detect(),
        ]
        .into_iter()
        .flatten(),
    );
    #[cfg(target_arch = "aarch64")]
    kernels.extend(neon::Neon::detect());
    kernels
}

/// The kernel the ops use: the fastest available, unless `KESTREL_KERNELS` names another
/// (`generic`, or e.g. `x86-avx2`). Decided once per process.
pub fn select() -> &'static dyn BinaryKernel {
    static CHOICE: OnceLock<&'static dyn BinaryKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("binary", available(), |k| k.name()))
}
