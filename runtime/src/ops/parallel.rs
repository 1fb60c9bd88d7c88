//! Splitting an op's work over the runtime's threads: the executor tract runs the plan with
//! (`--threads`), so binary ops and tract's own kernels share one pool and one setting.
//! Tasks are indices (no task list is allocated); a task that writes a part of a shared output
//! goes through [`Disjoint`].

use std::marker::PhantomData;

use rayon::prelude::*;
use tract_linalg::multithread::{current_tract_executor, Executor};

/// Threads of the current tract executor (1 when single-threaded).
pub fn threads() -> usize {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        Executor::RayonGlobal => rayon::current_num_threads(),
        Executor::SingleThread => 1,
    }
}

/// Runs `f(0) … f(n − 1)` on the current tract executor (inline when single-threaded or when
/// there is one task).
pub fn run_indexed(n: usize, f: impl Fn(usize) + Sync + Send) {
    match current_tract_executor() {
        Executor::MultiThread(pool) if n > 1 => pool.install(|| (0..n).into_par_iter().for_each(f)),
        Executor::RayonGlobal if n > 1 => (0..n).into_par_iter().for_each(f),
        _ => (0..n).for_each(f),
    }
}

/// A mutable buffer that tasks of [`run_indexed`] write in disjoint parts. It holds the
/// buffer's exclusive borrow for `'a`, so no part can outlive the buffer and nothing else can
/// touch the buffer while parts are handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _buf: PhantomData<&'a mut [T]>,
}

// SAFETY: a `Disjoint` only hands out sub-slices through `part`, whose callers guarantee that
// parts used at the same time do not overlap; T itself crosses threads.
unsafe impl<T: Send> Send for Disjoint<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// Wraps `buf` for the duration of its borrow.
    pub(crate) fn new(buf: &'a mut [T]) -> Disjoint<'a, T> {
        Disjoint {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// A pointer to element `start`, for writes through raw pointers into a region
    /// `start..end` (checked to lie in the buffer) whose elements the caller writes alone.
    pub(crate) fn ptr(&self, start: usize, end: usize) -> *mut T {
        assert!(start <= end && end <= self.len, "region out of the buffer");
        // SAFETY: in bounds (checked).
        unsafe { self.ptr.add(start) }
    }

    /// The part `start..start + len`, valid as long as the wrapped borrow.
    ///
    /// # Safety
    /// No two parts alive at the same time (in any thread) may overlap.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part(&self, start: usize, len: usize) -> &'a mut [T] {
        assert!(start + len <= self.len, "part out of the buffer");
        // SAFETY: in bounds (checked); the buffer is borrowed for 'a; exclusive by the
        // caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
