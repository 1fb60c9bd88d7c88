//! Writes one input plane into the padded i16 layout the int8 depthwise kernels read, as
//! `q − zp` (the parent module): the same placement as the float layout
//! ([`Placement`]: rows `ld` apart, stride 2 as two phase planes), only the interior written
//! (the op zeroes the buffer once per task; 0 is the padding, a real zero).
//!
//! The source is either the previous layer's int8 codes (`q − zp` is one subtraction) or
//! floats, quantized on the way (`q = round_half_even(min(max(x · inv + zp, −128), 127))`, the
//! int8 product kernels' rule, [`crate::kernels::int8::quantize`]). A row at a time through
//! safe slices, which compilers vectorise.

pub use crate::kernels::depthwise::pad::Placement;
use crate::kernels::int8::quantize;

/// A plane to lay out.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// int8 codes with this zero point.
    I8(&'a [i8], i32),
    /// Floats quantized with `1 / scale` and this zero point.
    F32(&'a [f32], f32, i32),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::I8(s, _) => s.len(),
            Source::F32(s, ..) => s.len(),
        }
    }
}

/// Writes the `[h, w]` plane `src` into `buf` at `at` as `q − zp`.
pub fn fill(buf: &mut [i16], src: Source<'_>, [h, w]: [usize; 2], at: &Placement) {
    at.check(buf.len(), src.len(), [h, w]);
    if w == 0 {
        return;
    }
    for y in 0..h {
        let start = (y + at.top) * at.ld;
        match src {
            Source::I8(s, zp) => {
                let row = &s[y * w..][..w];
                put(buf, at, start, row, |q| i16::from(q) - zp as i16);
            }
            Source::F32(s, inv, zp) => {
                let row = &s[y * w..][..w];
                let zf = zp as f32;
                put(buf, at, start, row, |x| {
                    i16::from(quantize(x, inv, zf)) - zp as i16
                });
            }
        }
    }
}

/// One row of `T` into its padded row starting at `start` (both phases at stride 2).
#[inline(always)]
fn put<T: Copy>(buf: &mut [i16], at: &Placement, start: usize, row: &[T], f: impl Fn(T) -> i16) {
    let pl = at.left;
    if at.stride == 1 {
        for (d, &v) in buf[start + pl..][..row.len()].iter_mut().zip(row) {
            *d = f(v);
        }
        return;
    }
    // Stride 2: padded column `i + pl` goes to phase `(i + pl) mod 2`, position
    // `⌊(i + pl)/2⌋`; even `i` land in one phase, odd `i` in the other.
    let (first, second) = buf.split_at_mut(at.phase_len);
    let (even, odd) = if pl.is_multiple_of(2) {
        (&mut first[start + pl / 2..], &mut second[start + pl / 2..])
    } else {
        (
            &mut second[start + pl / 2..],
            &mut first[start + pl.div_ceil(2)..],
        )
    };
    let pairs = row.chunks_exact(2);
    let last = pairs.remainder().first().copied();
    let n = pairs.len();
    for ((e, o), p) in even[..n].iter_mut().zip(&mut odd[..n]).zip(pairs) {
        *e = f(p[0]);
        *o = f(p[1]);
    }
    if let Some(v) = last {
        even[n] = f(v);
    }
}
