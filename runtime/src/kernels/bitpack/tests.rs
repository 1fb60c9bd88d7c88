//! Every bit-packing kernel `available()` returns against the scalar definitions, bit for
//! bit: channel counts around each half-word and word boundary, planes from one pixel to past
//! several whole blocks of every vector width (tails of every length), rows around whole
//! words; values include ±0, NaN, ±∞ and subnormals.

use super::{available, reference_planes, reference_row};
use crate::ops::packing::words_for;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

fn values(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.random_range(0..16) {
            0 => 0.0,
            1 => -0.0,
            2 => f32::NAN,
            3 => -f32::NAN,
            4 => f32::INFINITY,
            5 => f32::NEG_INFINITY,
            6 => f32::from_bits(1),
            7 => -f32::from_bits(1),
            _ => rng.random_range(-1.0f32..1.0),
        })
        .collect()
}

#[test]
fn planes_match_the_definition() {
    let mut rng = SmallRng::seed_from_u64(7);
    let channels = [1, 3, 31, 32, 33, 63, 64, 65, 96, 100, 128, 130];
    let planes = (1..=70).chain([127, 128, 129, 196, 1024]);
    for plane in planes {
        for &c in &channels {
            let src = values(&mut rng, c * plane);
            let mut want = vec![0u64; plane * words_for(c)];
            reference_planes(&src, c, &mut want);
            for k in available() {
                let mut got = vec![u64::MAX; want.len()];
                k.pack_planes(&src, c, &mut got);
                assert_eq!(
                    got,
                    want,
                    "{} planes: {c} channels × {plane} pixels",
                    k.name()
                );
            }
        }
    }
}

#[test]
fn rows_match_the_definition() {
    let mut rng = SmallRng::seed_from_u64(8);
    for len in (0..=200).chain([511, 512, 513, 4096]) {
        let src = values(&mut rng, len);
        let mut want = vec![0u64; words_for(len)];
        reference_row(&src, &mut want);
        for k in available() {
            let mut got = vec![u64::MAX; want.len()];
            k.pack_row(&src, &mut got);
            assert_eq!(got, want, "{} row of {len}", k.name());
        }
    }
}

#[test]
fn signs_follow_the_packing_rule() {
    // bit 1 (−1) for x < 0 and NaN, bit 0 (+1) for x ≥ 0 with −0 included.
    let src = [
        1.0f32,
        -1.0,
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for k in available() {
        let mut row = [0u64; 1];
        k.pack_row(&src, &mut row);
        assert_eq!(row[0], 0b101_0010, "{} row", k.name());
        let mut planes = [0u64; 1];
        k.pack_planes(&src, src.len(), &mut planes);
        assert_eq!(planes[0], 0b101_0010, "{} planes", k.name());
    }
}
