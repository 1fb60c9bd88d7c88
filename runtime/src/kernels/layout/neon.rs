//! The NEON channels-first copy: 4 pixels of 3 (4) channels per `ld3` (`ld4`), one `st1` per
//! plane.

use std::arch::aarch64::*;

/// Copies the whole groups of 4 pixels of a 3- or 4-channel image (`c`, lengths checked by
/// the caller) into `dst`'s planes; returns how many pixels it did (the rest is the caller's).
pub fn to_channels_first(src: &[f32], hw: usize, c: usize, dst: &mut [f32]) -> usize {
    let whole = hw - hw % 4;
    assert!(
        (c == 3 || c == 4) && src.len() >= whole * c && dst.len() >= (c - 1) * hw + whole,
        "neon to_channels_first: bad lengths"
    );
    // SAFETY: NEON is baseline on aarch64; pixel groups below `whole` read `4·c` floats of
    // `src` at `p·c` and write 4 floats at `ch·hw + p` for `ch < c`, inside both slices
    // (asserted above).
    unsafe {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        if c == 3 {
            for p in (0..whole).step_by(4) {
                let v = vld3q_f32(s.add(p * 3));
                vst1q_f32(d.add(p), v.0);
                vst1q_f32(d.add(hw + p), v.1);
                vst1q_f32(d.add(2 * hw + p), v.2);
            }
        } else {
            for p in (0..whole).step_by(4) {
                let v = vld4q_f32(s.add(p * 4));
                vst1q_f32(d.add(p), v.0);
                vst1q_f32(d.add(hw + p), v.1);
                vst1q_f32(d.add(2 * hw + p), v.2);
                vst1q_f32(d.add(3 * hw + p), v.3);
            }
        }
    }
    whole
}
