//! Every kernel `available()` returns on this machine (x86-64 here, aarch64 under qemu in CI)
//! must equal the portable one bit for bit: a grid of shapes with every tail case, random
//! shapes, the benchmark layer shapes, and rows long and dense enough to overflow narrow
//! accumulators that are widened too late.

use super::{available, generic};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Runs every available kernel on one shape and compares with the generic kernel.
fn check(rng: &mut SmallRng, m: usize, n: usize, words: usize, fill: Fill) {
    let gen = |rng: &mut SmallRng, len: usize, ones: bool| -> Vec<u64> {
        (0..len)
            .map(|_| match fill {
                Fill::Random => rng.random::<u64>(),
                Fill::Extreme => {
                    if ones {
                        u64::MAX
                    } else {
                        0
                    }
                }
            })
            .collect()
    };
    let a = gen(rng, m * words, true);
    let b = gen(rng, n * words, false);
    let mut want = vec![0u32; m * n];
    generic().xor_popcount(&a, &b, words, &mut want);
    if fill == Fill::Extreme {
        assert!(want.iter().all(|&v| v as usize == 64 * words));
    }
    for kernel in available() {
        let mut got = vec![u32::MAX; m * n];
        kernel.xor_popcount(&a, &b, words, &mut got);
        assert_eq!(
            got,
            want,
            "{} differs: M={m} N={n} words={words} {fill:?}",
            kernel.name()
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fill {
    Random,
    Extreme,
}

#[test]
fn available_starts_with_generic_and_names_are_unique() {
    let kernels = available();
    assert_eq!(kernels[0].name(), "generic");
    let mut names: Vec<_> = kernels.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), kernels.len());
}

#[test]
fn equals_generic_on_a_grid_of_shapes() {
    let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c01);
    let words_set = [
        1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 16, 18, 31, 36, 63, 64, 65, 124, 125, 126, 129,
    ];
    let mut cases = 0;
    for &words in &words_set {
        for m in [1, 2, 3, 4, 5, 7, 9] {
            for n in [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 17] {
                check(&mut rng, m, n, words, Fill::Random);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, words_set.len() * 7 * 11);
}

#[test]
fn equals_generic_on_random_shapes() {
    let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c02);
    for _ in 0..300 {
        let m = rng.random_range(1..=40);
        let n = rng.random_range(1..=70);
        let words = rng.random_range(1..=140);
        check(&mut rng, m, n, words, Fill::Random);
    }
    // The layer shapes of the benchmarks, trimmed in M.
    for (m, n, words) in [
        (49, 64, 9),
        (17, 256, 36),
        (49, 512, 8),
        (1, 64, 13),
        (1, 4096, 64),
    ] {
        check(&mut rng, m, n, words, Fill::Random);
    }
}

#[test]
fn exact_at_maximal_counts_and_long_rows() {
    // All bits differ: every byte/u16 lane holds its maximum, so narrow accumulators that
    // are widened too late would wrap. 8195 words crosses the NEON u16 block (4096 words)
    // twice with an odd tail; 124/125/248/249 cross the AVX2 byte block (31 chunks).
    let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c03);
    for words in [1, 3, 123, 124, 125, 128, 248, 249, 4095, 4096, 4097, 8195] {
        for (m, n) in [(1, 1), (1, 13), (5, 9), (4, 4)] {
            check(&mut rng, m, n, words, Fill::Extreme);
            check(&mut rng, m, n, words, Fill::Random);
        }
    }
}
