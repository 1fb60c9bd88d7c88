//! The `kestrel` binary's global allocator: the system allocator, counted, with a bounded
//! pool of freed blocks for the threads that run inference.
//!
//! Why: tract allocates inside every model run — each op's output tensor, the `TVec`s and
//! reference counts that carry values between nodes, scratch buffers (~830 allocations per
//! run of the bundled model). The sizes repeat exactly from one run to the next, so threads
//! that keep the blocks they free, sorted by size class, serve every allocation of the next
//! run from those and never call the system allocator in steady state. That is
//! what ncnn's `PoolAllocator` does for its blobs and what an arena planner gives TFLite;
//! here it sits under an unmodified tract.
//!
//! How:
//! - A request whose alignment is ≤ 4096 bytes and whose size is ≤ [`MAX_POOLED`] is
//!   *poolable*: it is rounded up to a size class (4 classes per power of two, so at most
//!   25 % slack) and always served by a block of the class's layout — alignment 16 for
//!   requests aligned ≤ 16, else the request's own (tract aligns tensors to 128 and some
//!   packed operands to 256 or 512), each alignment with its own free lists — on every
//!   thread, cached or not. Every other request goes to the system allocator unchanged.
//! - Because a poolable block's system layout depends only on the request's layout, a block
//!   may be freed on any thread: an enrolled thread keeps it, any other returns it to the
//!   system with the layout it was allocated with. `GlobalAlloc`'s rules hold everywhere.
//! - A thread enrols with [`enable`] (the run loop does, and the workers of the inference
//!   thread pool, see [`crate::model`]). The enrolled threads share one pool (`POOL` says
//!   why not one per thread): an array of intrusive free lists behind a mutex, so the
//!   allocator never allocates for itself. The pool keeps at most the byte cap given to
//!   [`enable`]; a block that would exceed it goes back to the system. Dropping the
//!   [`PoolGuard`] returns every kept block to the system.
//! - [`counts`] tells how many allocation requests reached the allocator (Rust-level
//!   `alloc`, `alloc_zeroed`, `realloc`) and how many of them reached the system allocator,
//!   process-wide. "No per-frame allocation" means: zero system allocations per
//!   steady-state frame (`tests/zero_alloc.rs` asserts it, whole frame path including
//!   `Session::run`); Rust-level requests still happen inside tract and are served from the
//!   cache.
//!
//! The library installs nothing: the `kestrel` binary and the tests that measure it declare
//! `#[global_allocator] static A: PoolAlloc = PoolAlloc;`. Without that, [`enable`] only sets
//! a flag nobody reads.
//!
//! `KESTREL_POOL_MB` (read by [`cache_bytes_from_env`]) sets the cap in MiB; `0` switches the
//! pool off (for A/B measurements).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Largest poolable request (64 MiB); larger ones always go to the system allocator.
pub const MAX_POOLED: usize = 1 << 26;
/// Largest alignment a poolable request may ask for (a page).
const MAX_POOLED_ALIGN: usize = 4096;
/// Default cap on the bytes the pool keeps. A cap, not a reservation: the pool holds only
/// blocks a run allocated and freed, in steady state what one run of the model needs per size
/// class (`tests/zero_alloc.rs` prints it: ~26 MiB after the bundled classifier on 640×480
/// frames, ~120 MiB once the 300×300 SSD detector has run too), memory the run takes from the
/// system anyway.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// Smallest class (holds the free-list link).
const MIN_CLASS: usize = 16;
/// Classes: 16, 32, 48, 64, then 4 per power of two up to MAX_POOLED.
const CLASSES: usize = 4 + 4 * (MAX_POOLED.trailing_zeros() as usize - 6);
/// Alignment groups: ≤ 16, 32, 64, …, 4096.
const GROUPS: usize = 1 + (MAX_POOLED_ALIGN.trailing_zeros() - MIN_CLASS.trailing_zeros()) as usize;

/// A poolable request's class: alignment group and class index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class {
    group: usize,
    index: usize,
}

impl Class {
    /// The class serving `layout`, or `None` if it is not poolable.
    fn of(layout: Layout) -> Option<Class> {
        let (size, align) = (layout.size(), layout.align());
        if size == 0 || size > MAX_POOLED || align > MAX_POOLED_ALIGN {
            return None;
        }
        let group = (align.trailing_zeros().max(MIN_CLASS.trailing_zeros())
            - MIN_CLASS.trailing_zeros()) as usize;
        let index = if size <= 64 {
            size.div_ceil(MIN_CLASS) - 1
        } else {
            // size in (2^p, 2^(p+1)], steps of 2^(p-2): classes 5/4, 6/4, 7/4, 8/4 of 2^p.
            let p = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
            let k = size.div_ceil(1 << (p - 2));
            4 + 4 * (p - 6) + (k - 5)
        };
        Some(Class { group, index })
    }

    /// Bytes of a block of this class.
    fn size(self) -> usize {
        if self.index < 4 {
            (self.index + 1) * MIN_CLASS
        } else {
            let (p, k) = (6 + (self.index - 4) / 4, 5 + (self.index - 4) % 4);
            k << (p - 2)
        }
    }

    /// The system layout of a block of this class.
    fn layout(self) -> Layout {
        // Sizes are multiples of 16 and at most MAX_POOLED, alignments powers of two up to
        // a page: always a valid layout.
        Layout::from_size_align(self.size(), MIN_CLASS << self.group).expect("class layout")
    }
}

/// The free lists: one per class, intrusive (the link lives in the freed block), so keeping
/// a block never allocates.
struct Shelves {
    cached: usize,
    heads: [[*mut u8; CLASSES]; GROUPS],
}

// SAFETY: the shelves own the blocks they list (nobody else uses them); the mutex serialises
// access.
unsafe impl Send for Shelves {}

impl Shelves {
    fn pop(&mut self, class: Class) -> Option<*mut u8> {
        let head = &mut self.heads[class.group][class.index];
        let block = *head;
        if block.is_null() {
            return None;
        }
        // SAFETY: a listed block is a live system block of this class's layout, at least 16
        // bytes and 16-aligned, whose first word `push` wrote.
        *head = unsafe { block.cast::<*mut u8>().read() };
        self.cached -= class.size();
        Some(block)
    }

    /// Keeps `block` if the cap allows; false otherwise.
    fn push(&mut self, class: Class, block: *mut u8) -> bool {
        let size = class.size();
        if self.cached + size > CAP.load(Ordering::Relaxed) {
            return false;
        }
        let head = &mut self.heads[class.group][class.index];
        // SAFETY: the caller hands over a block of this class (≥ 16 bytes, 16-aligned) that
        // nobody uses any more.
        unsafe { block.cast::<*mut u8>().write(*head) };
        *head = block;
        self.cached += size;
        true
    }

    /// Returns every kept block to the system.
    fn flush(&mut self) {
        for group in 0..GROUPS {
            for index in 0..CLASSES {
                let class = Class { group, index };
                while let Some(block) = self.pop(class) {
                    count(&SYSTEM_FREES);
                    // SAFETY: kept blocks were allocated from System with this layout.
                    unsafe { System.dealloc(block, class.layout()) };
                }
            }
        }
    }
}

/// The pool shared by the enrolled threads. One pool, not one per thread: blocks travel
/// between the run loop and the executor's workers (rayon's job queue blocks are allocated by
/// the thread that submits work and freed by the worker that takes it), and per-thread caches
/// would fill on one side while the other keeps asking the system. A `std` mutex (a futex on
/// Linux) never allocates; uncontended it costs two atomic operations per request.
static POOL: Mutex<Shelves> = Mutex::new(Shelves {
    cached: 0,
    heads: [[ptr::null_mut(); CLASSES]; GROUPS],
});
/// Cap on the bytes the pool keeps.
static CAP: AtomicUsize = AtomicUsize::new(0);

fn pool() -> std::sync::MutexGuard<'static, Shelves> {
    // Nothing panics while holding the lock; a poisoned pool is still consistent.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// Whether this thread's requests and frees go through the pool. `const`-initialised
    /// and without `Drop`: reading it never allocates or registers a destructor.
    static ENROLLED: Cell<bool> = const { Cell::new(false) };
}

fn enrolled() -> bool {
    ENROLLED.try_with(Cell::get).unwrap_or(false)
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static SYSTEM_ALLOCS: AtomicU64 = AtomicU64::new(0);
static SYSTEM_FREES: AtomicU64 = AtomicU64::new(0);

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Process-wide allocation counters (only counted when [`PoolAlloc`] is the global allocator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rust-level requests: `alloc`, `alloc_zeroed` and `realloc` calls.
    pub requests: u64,
    /// Of those, the ones that reached the system allocator (a cache miss or a request that
    /// is not poolable). A same-class `realloc` reaches neither cache nor system.
    pub system_allocs: u64,
    /// Blocks returned to the system allocator.
    pub system_frees: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, earlier: Counts) -> Counts {
        Counts {
            requests: self.requests - earlier.requests,
            system_allocs: self.system_allocs - earlier.system_allocs,
            system_frees: self.system_frees - earlier.system_frees,
        }
    }
}

/// The counters now.
pub fn counts() -> Counts {
    Counts {
        requests: REQUESTS.load(Ordering::Relaxed),
        system_allocs: SYSTEM_ALLOCS.load(Ordering::Relaxed),
        system_frees: SYSTEM_FREES.load(Ordering::Relaxed),
    }
}

/// The pool's cap from `KESTREL_POOL_MB` (MiB; `0` disables caching), else
/// [`DEFAULT_CACHE_BYTES`]. An unreadable value is ignored with a warning.
pub fn cache_bytes_from_env() -> usize {
    match std::env::var("KESTREL_POOL_MB") {
        Err(_) => DEFAULT_CACHE_BYTES,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(mb) => mb.saturating_mul(1 << 20),
            Err(_) => {
                log::warn!("KESTREL_POOL_MB={v:?} is not a number of MiB; using the default");
                DEFAULT_CACHE_BYTES
            }
        },
    }
}

/// Enrols this thread: from now on its requests are served from the pool and the blocks it
/// frees are kept there, up to `cap_bytes` in all (0: keeps none). Until the guard is
/// dropped; dropping it also returns every kept block to the system.
pub fn enable(cap_bytes: usize) -> PoolGuard {
    enable_here(cap_bytes);
    PoolGuard {
        _not_send: PhantomData,
    }
}

/// [`enable`] without a guard, for threads whose end is a callback (the executor's workers:
/// their exit handler calls [`disable_here`]).
pub fn enable_here(cap_bytes: usize) {
    CAP.store(cap_bytes, Ordering::Relaxed);
    ENROLLED.with(|e| e.set(cap_bytes > 0));
}

/// Withdraws this thread (its frees go to the system again).
pub fn disable_here() {
    ENROLLED.with(|e| e.set(false));
}

/// Bytes the pool keeps now.
pub fn cached_bytes() -> usize {
    pool().cached
}

/// Keeps this thread enrolled (see [`enable`]); not `Send`: it belongs to its thread.
#[must_use = "the pool is flushed when the guard is dropped"]
pub struct PoolGuard {
    _not_send: PhantomData<*const ()>,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        disable_here();
        pool().flush();
    }
}

/// The global allocator (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct PoolAlloc;

impl PoolAlloc {
    /// A block for poolable `class`: from the pool on an enrolled thread, else from the system.
    unsafe fn take(class: Class, zeroed: bool, size: usize) -> *mut u8 {
        if let Some(block) = enrolled().then(|| pool().pop(class)).flatten() {
            if zeroed {
                // SAFETY: the block holds at least `size` bytes.
                unsafe { block.write_bytes(0, size) };
            }
            return block;
        }
        count(&SYSTEM_ALLOCS);
        // SAFETY: class layouts have a non-zero size.
        unsafe {
            if zeroed {
                System.alloc_zeroed(class.layout())
            } else {
                System.alloc(class.layout())
            }
        }
    }

    /// Frees a block of poolable `class`: into the pool on an enrolled thread, else to the system.
    unsafe fn give(class: Class, block: *mut u8) {
        if !(enrolled() && pool().push(class, block)) {
            count(&SYSTEM_FREES);
            // SAFETY: every block of a poolable layout was allocated with the class layout.
            unsafe { System.dealloc(block, class.layout()) }
        }
    }
}

// SAFETY: every block handed out is either a system block of the request's own layout (not
// poolable) or a system block of the request's class layout, which is at least as large and
// at least as aligned; the class is a function of the layout alone, so `dealloc` and
// `realloc` (which receive the same layout) find the same class on any thread.
unsafe impl GlobalAlloc for PoolAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&REQUESTS);
        match Class::of(layout) {
            Some(class) => unsafe { Self::take(class, false, layout.size()) },
            None => {
                count(&SYSTEM_ALLOCS);
                unsafe { System.alloc(layout) }
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&REQUESTS);
        match Class::of(layout) {
            Some(class) => unsafe { Self::take(class, true, layout.size()) },
            None => {
                count(&SYSTEM_ALLOCS);
                unsafe { System.alloc_zeroed(layout) }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Class::of(layout) {
            Some(class) => unsafe { Self::give(class, ptr) },
            None => {
                count(&SYSTEM_FREES);
                unsafe { System.dealloc(ptr, layout) }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&REQUESTS);
        // SAFETY: the caller guarantees new_size, rounded to the alignment, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old, new) = (Class::of(layout), Class::of(new_layout));
        match (old, new) {
            // The block already fits the new size.
            (Some(a), Some(b)) if a == b => ptr,
            (None, None) => {
                count(&SYSTEM_ALLOCS);
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            // Same alignment group on a thread that keeps nothing: let the system grow the
            // block in place if it can (libc realloc for the ≤ 16 group).
            (Some(a), Some(b)) if a.group == b.group && !enrolled() => {
                count(&SYSTEM_ALLOCS);
                unsafe { System.realloc(ptr, a.layout(), b.size()) }
            }
            _ => {
                let fresh = match new {
                    Some(class) => unsafe { Self::take(class, false, new_size) },
                    None => {
                        count(&SYSTEM_ALLOCS);
                        unsafe { System.alloc(new_layout) }
                    }
                };
                if !fresh.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                fresh
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide: tests that fill it take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn classes_cover_sizes_with_bounded_slack() {
        assert_eq!(CLASSES, 84);
        let mut last = 0;
        for index in 0..CLASSES {
            let size = Class { group: 0, index }.size();
            assert!(size > last, "classes increase");
            last = size;
        }
        assert_eq!(last, MAX_POOLED);
        for size in (1..5000).chain([65, 127, 128, 129, 1 << 20, (1 << 20) + 1, MAX_POOLED]) {
            let class = Class::of(Layout::from_size_align(size, 8).unwrap()).unwrap();
            let got = class.size();
            assert!(got >= size, "{size} -> {got}");
            assert!(got <= (size * 5 / 4).max(16) + 16, "{size} -> {got}: slack");
            if class.index > 0 {
                let smaller = Class {
                    index: class.index - 1,
                    ..class
                };
                assert!(
                    smaller.size() < size,
                    "{size}: the smallest class that fits"
                );
            }
        }
    }

    #[test]
    fn alignment_picks_the_group_and_large_or_odd_requests_are_not_pooled() {
        let of = |s, a| Class::of(Layout::from_size_align(s, a).unwrap());
        assert_eq!(GROUPS, 9);
        assert_eq!(of(100, 8).unwrap().group, 0);
        assert_eq!(of(100, 16).unwrap().group, 0);
        assert_eq!(of(100, 16).unwrap().layout().align(), 16);
        assert_eq!(of(100, 32).unwrap().group, 1);
        assert_eq!(of(100, 128).unwrap().layout().align(), 128);
        assert_eq!(of(8, 128).unwrap().layout().align(), 128);
        assert_eq!(of(24576, 256).unwrap().layout().align(), 256);
        assert_eq!(of(100, 4096).unwrap().group, GROUPS - 1);
        assert!(of(100, 8192).is_none());
        assert!(of(MAX_POOLED + 1, 8).is_none());
        assert!(of(0, 8).is_none());
    }

    #[test]
    fn an_enrolled_thread_reuses_its_blocks_and_respects_the_cap() {
        // The test binary's allocator is the system one: exercise PoolAlloc directly.
        let _turn = TURN.lock().unwrap();
        let a = PoolAlloc;
        let layout = Layout::from_size_align(1000, 128).unwrap();
        std::thread::spawn(move || unsafe {
            let guard = enable(6000);
            let p = a.alloc(layout);
            assert_eq!(p as usize % 128, 0);
            p.write_bytes(7, 1000);
            a.dealloc(p, layout);
            assert_eq!(cached_bytes(), 1024);
            let q = a.alloc_zeroed(layout);
            assert_eq!(q, p, "the freed block comes back");
            assert!(std::slice::from_raw_parts(q, 1000).iter().all(|&b| b == 0));
            // Growing within the class keeps the block; past it moves the contents.
            let q = a.realloc(q, layout, 1024);
            assert_eq!(q, p);
            q.write_bytes(9, 1024);
            let big = Layout::from_size_align(1024, 128).unwrap();
            let r = a.realloc(q, big, 3000);
            assert_ne!(r, q);
            assert!(std::slice::from_raw_parts(r, 1024).iter().all(|&b| b == 9));
            assert_eq!(cached_bytes(), 1024, "the old block was cached");
            // Cap 6000: a 3584-byte block still fits (4608 cached), a 3072-byte one then does not.
            let other = a.alloc(Layout::from_size_align(3500, 16).unwrap());
            a.dealloc(other, Layout::from_size_align(3500, 16).unwrap());
            assert_eq!(cached_bytes(), 1024 + 3584);
            a.dealloc(r, Layout::from_size_align(3000, 128).unwrap());
            assert_eq!(
                cached_bytes(),
                1024 + 3584,
                "over the cap: freed to the system"
            );
            drop(guard);
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_block_freed_on_another_thread_goes_to_the_system_or_the_pool() {
        let _turn = TURN.lock().unwrap();
        let a = PoolAlloc;
        let layout = Layout::from_size_align(200, 8).unwrap();
        let p = unsafe { a.alloc(layout) } as usize;
        // A thread that is not enrolled returns it to the system with its class layout.
        std::thread::spawn(move || unsafe { a.dealloc(p as *mut u8, layout) })
            .join()
            .unwrap();
        let p = unsafe { a.alloc(layout) } as usize;
        std::thread::spawn(move || unsafe {
            let _guard = enable(1 << 20);
            a.dealloc(p as *mut u8, layout);
            assert_eq!(cached_bytes(), 224);
        })
        .join()
        .unwrap();
    }
}
