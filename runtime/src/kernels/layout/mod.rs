//! Channels-last to channels-first copies of f32 images (`kestrel_channels_first`).
//!
//! One image of `hw` pixels of `c` channels, pixel-major (`src[p·c + ch]`), becomes `c`
//! planes of `hw` values (`dst[ch·hw + p]`). Pure data movement: every kernel writes the same
//! bits. The NEON kernel de-interleaves 4 pixels of 3 or 4 channels per `ld3` / `ld4` and
//! stores one register per plane; other channel counts, the last 0–3 pixels and other targets
//! take the portable loop ([`portable`]), which LLVM unrolls per channel count 1–4.

#[cfg(target_arch = "aarch64")]
pub mod neon;

#[cfg(test)]
mod tests;

/// Checks the lengths of [`to_channels_first`]'s slices.
fn check(src: &[f32], hw: usize, c: usize, dst: &[f32]) {
    assert!(
        src.len() == hw * c && dst.len() == hw * c,
        "to_channels_first: {} and {} floats for {hw} pixels of {c} channels",
        src.len(),
        dst.len()
    );
}

/// The portable kernel: pixel by pixel, channel by channel.
pub fn portable(src: &[f32], hw: usize, c: usize, dst: &mut [f32]) {
    check(src, hw, c, dst);
    match c {
        1 => dst.copy_from_slice(src),
        2 => pixels::<2>(src, hw, 0, dst),
        3 => pixels::<3>(src, hw, 0, dst),
        4 => pixels::<4>(src, hw, 0, dst),
        _ => {
            for (p, px) in src.chunks_exact(c).enumerate() {
                for (ch, v) in px.iter().enumerate() {
                    dst[ch * hw + p] = *v;
                }
            }
        }
    }
}

/// Pixels `from..hw` of a `C`-channel image (the lengths checked by the caller).
fn pixels<const C: usize>(src: &[f32], hw: usize, from: usize, dst: &mut [f32]) {
    for p in from..hw {
        for ch in 0..C {
            dst[ch * hw + p] = src[p * C + ch];
        }
    }
}

/// `src` (`hw` pixels of `c` channels, channels last) into `dst` channels first, by the
/// fastest kernel this CPU has (module docs). Panics when the lengths disagree.
pub fn to_channels_first(src: &[f32], hw: usize, c: usize, dst: &mut [f32]) {
    check(src, hw, c, dst);
    #[cfg(target_arch = "aarch64")]
    if c == 3 || c == 4 {
        let done = neon::to_channels_first(src, hw, c, dst);
        match c {
            3 => pixels::<3>(src, hw, done, dst),
            _ => pixels::<4>(src, hw, done, dst),
        }
        return;
    }
    portable(src, hw, c, dst)
}
