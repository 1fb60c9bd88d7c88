//! `x86-popcnt`: scalar `POPCNT` kernels, rows (`MR = 2` × `NR = 4`, see the parent module's
//! design) and lanes ([`super::popcnt_lanes`]); also the `x86-avx2` kernel's MST and
//! short-row code.
//!
//! Every `unsafe` block of its `RawKernel` impl relies on the same two facts: a value of the
//! kernel type exists only after its `detect()` found the CPU features, and the job's shapes
//! are the callers' `# Safety` contract (checked by the safe front, `Checked`), which is all
//! the drivers read and write.

use super::super::mst::{children_portable, ChildJob};
use super::super::{BinaryKernel, Checked, LaneJob, RawKernel, Rows, Sink};
use super::popcnt_lanes::popcnt_lanes;

/// Scalar `POPCNT` kernel, 2×4 register blocking. Exists only once `POPCNT` is detected.
#[derive(Debug)]
pub struct Popcnt(());

impl Popcnt {
    /// The kernel, if this CPU has `POPCNT`.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Popcnt> = Checked(Popcnt(()));
        is_x86_feature_detected!("popcnt").then_some(&KERNEL as &dyn BinaryKernel)
    }
}

impl RawKernel for Popcnt {
    const NAME: &'static str = "x86-popcnt";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe { popcnt_driver(r, out.as_mut_ptr()) }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see the module docs.
        unsafe { popcnt_lanes(job, sink) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see the module docs.
        unsafe { popcnt_children(job, counts) }
    }
}

/// The portable MST children loop with `POPCNT` enabled.
///
/// # Safety
/// POPCNT must be available.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn popcnt_children(job: &ChildJob<'_>, counts: &mut [u32]) {
    children_portable(job, counts)
}

/// POPCNT kernel over the whole output.
///
/// # Safety
/// POPCNT must be available; `rows` as `check_dims` returns them, `out` valid for m·n
/// elements.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn popcnt_driver(rows: Rows<'_>, out: *mut u32) {
    let (a, b, words) = (rows.a.as_ptr(), rows.b.as_ptr(), rows.words);
    let (m, n) = (rows.m, rows.n);
    // SAFETY: every tile reads rows i..i+MR of a and j..j+NR of b (in range: the driver keeps
    // i + MR <= m, j + NR <= n) and writes out[(i+r)·n + j + c] for r < MR, c < NR.
    unsafe { drive_tiles!(popcnt_tile, a, b, words, out, m, n) }
}

/// One `MR`×`NR` tile with scalar POPCNT: `out[r·ldo + c] = Σ_l popcnt(a[r·words+l] ^ b[c·words+l])`.
///
/// # Safety
/// POPCNT must be available; `a` valid for MR·words, `b` for NR·words reads, and
/// `out[r·ldo + c]` writable for r < MR, c < NR.
#[target_feature(enable = "popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn popcnt_tile<const MR: usize, const NR: usize>(
    a: *const u64,
    b: *const u64,
    words: usize,
    out: *mut u32,
    ldo: usize,
) {
    let mut acc = [[0u64; NR]; MR];
    for l in 0..words {
        let mut x = [0u64; MR];
        for r in 0..MR {
            // SAFETY: r < MR, l < words: inside the MR rows of a (caller's contract).
            x[r] = unsafe { *a.add(r * words + l) };
        }
        for c in 0..NR {
            // SAFETY: c < NR, l < words: inside the NR rows of b (caller's contract).
            let y = unsafe { *b.add(c * words + l) };
            for r in 0..MR {
                acc[r][c] += u64::from((x[r] ^ y).count_ones());
            }
        }
    }
    for r in 0..MR {
        for c in 0..NR {
            // SAFETY: r < MR, c < NR: writable by the caller's contract. (The trait's
            // counts are u32, as in the generic kernel.)
            unsafe { *out.add(r * ldo + c) = acc[r][c] as u32 };
        }
    }
}
