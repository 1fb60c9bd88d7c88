//! The packed binary layout shared by Kestrel's binary operators.
//!
//! - A value binarises to +1 when `x ≥ 0` and to −1 otherwise (NaN too); a **set bit means −1**.
//! - Bits are packed along channels into `u64` words, little-end first: channel `c` is bit
//!   `c % 64` of word `c / 64`. A feature map `[N, C, H, W]` in the float graph is
//!   `[N, H, W, ⌈C/64⌉]` u64 in the binary domain (channels innermost, so one pixel's channels
//!   are contiguous words: an im2col patch is a run of whole words).
//! - Bits past the last real channel are 0 in activations and weights alike, so they never
//!   count in an XOR-popcount: a dot product over K real bits is `K − 2·popcount(a XOR w)`.

/// Bits per packed word.
pub const WORD_BITS: usize = 64;

/// Words needed for `bits` bits.
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(WORD_BITS)
}

/// True when `x` binarises to −1: `x < 0` or NaN (so that b(x) = +1 exactly when `x ≥ 0`,
/// −0 included).
#[inline]
pub fn is_minus_one(x: f32) -> bool {
    !matches!(
        x.partial_cmp(&0.0),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// The packed bit of a float: 1 for −1 (x < 0 or NaN), 0 for +1 (x ≥ 0, including −0).
#[inline]
pub fn sign_bit_f32(x: f32) -> u64 {
    is_minus_one(x) as u64
}

/// Packs `values` (one per bit, in order) into `out` (cleared first).
pub fn pack_into(values: impl IntoIterator<Item = bool>, out: &mut [u64]) {
    out.fill(0);
    for (i, negative) in values.into_iter().enumerate() {
        out[i / WORD_BITS] |= (negative as u64) << (i % WORD_BITS);
    }
}

/// The bit at position `i` of a packed row.
#[inline]
pub fn bit(row: &[u64], i: usize) -> bool {
    (row[i / WORD_BITS] >> (i % WORD_BITS)) & 1 == 1
}

/// True when a packed row has no set bit at or past `bits` (clean padding).
pub fn padding_is_clear(row: &[u64], bits: usize) -> bool {
    let full = bits / WORD_BITS;
    let rem = bits % WORD_BITS;
    let mut words = row[full..].iter();
    if rem != 0 {
        if let Some(w) = words.next() {
            if w >> rem != 0 {
                return false;
            }
        }
    }
    words.all(|w| *w == 0)
}

/// Packs float conv weights `[c_out, c_in, kh, kw]` (binarised: bit set for w < 0) into the
/// packed layout `[c_out, kh, kw, ⌈c_in/64⌉]`.
pub fn pack_conv_weights(
    weights: &[f32],
    c_out: usize,
    c_in: usize,
    kh: usize,
    kw: usize,
) -> Vec<u64> {
    assert_eq!(weights.len(), c_out * c_in * kh * kw, "weights length");
    let cw = words_for(c_in);
    let mut out = vec![0u64; c_out * kh * kw * cw];
    for co in 0..c_out {
        for ci in 0..c_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    let v = weights[((co * c_in + ci) * kh + ky) * kw + kx];
                    out[((co * kh + ky) * kw + kx) * cw + ci / WORD_BITS] |=
                        sign_bit_f32(v) << (ci % WORD_BITS);
                }
            }
        }
    }
    out
}

/// Packs float dense weights `[n_out, k]` into `[n_out, ⌈k/64⌉]`.
pub fn pack_dense_weights(weights: &[f32], n_out: usize, k: usize) -> Vec<u64> {
    assert_eq!(weights.len(), n_out * k, "weights length");
    let kw = words_for(k);
    let mut out = vec![0u64; n_out * kw];
    for (row, words) in weights.chunks_exact(k).zip(out.chunks_exact_mut(kw)) {
        for (i, &v) in row.iter().enumerate() {
            words[i / WORD_BITS] |= sign_bit_f32(v) << (i % WORD_BITS);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_packing() {
        assert_eq!(sign_bit_f32(0.0), 0);
        assert_eq!(sign_bit_f32(-0.0), 0);
        assert_eq!(sign_bit_f32(-1e-30), 1);
        assert_eq!(sign_bit_f32(f32::NAN), 1);
        let mut out = [0u64; 2];
        pack_into((0..70).map(|i| i % 3 == 0), &mut out);
        assert!(bit(&out, 0) && !bit(&out, 1) && bit(&out, 69) && !bit(&out, 68));
        assert!(padding_is_clear(&out, 70));
        out[1] |= 1 << 10;
        assert!(!padding_is_clear(&out, 70));
        assert_eq!(words_for(64), 1);
        assert_eq!(words_for(65), 2);
    }
}
