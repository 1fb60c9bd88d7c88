//! Every 2×2 max-pooling kernel `available()` against the definition, bit for bit: planes
//! from 1×1 to past several whole vectors in both directions, odd and even sizes (the last
//! odd row and column dropped), values including ±∞ and subnormals (no NaN and no zeros:
//! which NaN or which zero's sign comes out is unspecified).

use super::available;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

fn definition(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(oh * ow);
    for r in 0..oh {
        for c in 0..ow {
            let v = [
                src[2 * r * w + 2 * c],
                src[2 * r * w + 2 * c + 1],
                src[(2 * r + 1) * w + 2 * c],
                src[(2 * r + 1) * w + 2 * c + 1],
            ];
            out.push(v.into_iter().fold(f32::NEG_INFINITY, f32::max));
        }
    }
    out
}

#[test]
fn kernels_match_the_definition() {
    let mut rng = SmallRng::seed_from_u64(9);
    for h in [1, 2, 3, 4, 7, 16, 33] {
        for w in (1..=70).chain([112, 113, 224]) {
            let src: Vec<f32> = (0..h * w)
                .map(|_| match rng.random_range(0..12) {
                    0 => f32::INFINITY,
                    1 => f32::NEG_INFINITY,
                    2 => f32::from_bits(1),
                    3 => -f32::from_bits(1),
                    _ => rng.random_range(-8.0f32..8.0),
                })
                .collect();
            let want = definition(&src, h, w);
            for k in available() {
                let mut got = vec![f32::NAN; want.len()];
                k.max_2x2(&src, h, w, &mut got);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} on {h}×{w}: {got:?} vs {want:?}", k.name());
            }
        }
    }
}
