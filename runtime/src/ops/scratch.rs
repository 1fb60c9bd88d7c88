//! Per-thread scratch buffers of Kestrel's ops, reused across runs so that a steady-state
//! inference allocates nothing but its output tensors.
//!
//! Each thread (the one running the plan and every worker of the tract executor) owns one
//! buffer per slot; an op borrows a slot for the duration of a closure, the buffer grows to the
//! largest size ever asked for and is never shrunk (a few hundred KiB for the layers Kestrel
//! runs; it lives as long as the thread). The contents are whatever the last user left:
//! callers initialise what they read. A slot that is already borrowed on this thread (not done
//! by Kestrel's ops, which use distinct slots when they nest) falls back to a temporary
//! allocation rather than failing.
//!
//! Thread-locals rather than tract's `OpState`: the op's tasks run on the executor's worker
//! threads, which need scratch of their own (per-band counts) anyway, and one mechanism for
//! both keeps the ops stateless (`EvalOp::is_stateless`), so tract can share them freely.

use std::cell::RefCell;
use std::thread::LocalKey;

thread_local! {
    static WORDS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    static COUNTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static OFFSETS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    static BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static INTS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    static FLOATS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PLANE_OUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SHORTS: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
    static HALVES: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    static CODES: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
}

fn with<T: Copy + Default, R>(
    slot: &'static LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, T::default());
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![T::default(); len]),
    })
}

/// `len` words of scratch (packed input layouts).
pub(crate) fn words<R>(len: usize, f: impl FnOnce(&mut [u64]) -> R) -> R {
    with(&WORDS, len, f)
}

/// `len` popcounts of scratch.
pub(crate) fn counts<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    with(&COUNTS, len, f)
}

/// `len` offsets of scratch.
pub(crate) fn offsets<R>(len: usize, f: impl FnOnce(&mut [usize]) -> R) -> R {
    with(&OFFSETS, len, f)
}

/// `len` bytes of scratch (packed int8 inputs).
pub(crate) fn bytes<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with(&BYTES, len, f)
}

/// `len` i32 sums of scratch (the digit products of a 16-bit int8 input).
pub(crate) fn ints<R>(len: usize, f: impl FnOnce(&mut [i32]) -> R) -> R {
    with(&INTS, len, f)
}

/// `len` floats of scratch (the padded planes of a depthwise convolution).
pub(crate) fn floats<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with(&FLOATS, len, f)
}

/// `len` floats of scratch beside [`floats`] (a depthwise plane's f32 output before it is
/// quantized).
pub(crate) fn plane_out<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with(&PLANE_OUT, len, f)
}

/// Element types of padded planes, each with its scratch slot: a task loop generic over the
/// precision borrows its buffer through this.
pub(crate) trait Padded: Copy + Default + 'static {
    /// `len` values of this type's scratch slot.
    fn scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

impl Padded for f32 {
    fn scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
        floats(len, f)
    }
}

impl Padded for u16 {
    fn scratch<R>(len: usize, f: impl FnOnce(&mut [u16]) -> R) -> R {
        halves(len, f)
    }
}

/// `len` binary16 values of scratch (the padded planes of an f16 depthwise convolution).
pub(crate) fn halves<R>(len: usize, f: impl FnOnce(&mut [u16]) -> R) -> R {
    with(&HALVES, len, f)
}

/// `len` i16 values of scratch (the padded planes of an int8 depthwise convolution).
pub(crate) fn shorts<R>(len: usize, f: impl FnOnce(&mut [i16]) -> R) -> R {
    with(&SHORTS, len, f)
}

/// `len` i8 codes of scratch (the padded planes of an int8 depthwise convolution, codes
/// layout).
pub(crate) fn codes<R>(len: usize, f: impl FnOnce(&mut [i8]) -> R) -> R {
    with(&CODES, len, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_nested_borrows_still_work() {
        let first = words(100, |w| {
            w.fill(7);
            w.as_ptr() as usize
        });
        let again = words(50, |w| {
            assert!(w.iter().all(|&v| v == 7), "contents kept");
            w.as_ptr() as usize
        });
        assert_eq!(first, again, "no new allocation for a smaller request");
        words(10, |outer| {
            outer[0] = 1;
            words(10, |inner| inner.fill(2));
            assert_eq!(outer[0], 1, "a nested borrow gets its own buffer");
        });
    }
}
