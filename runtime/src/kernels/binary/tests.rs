//! Every kernel `available()` returns on this machine (x86-64 here, aarch64 under qemu in CI)
//! must equal the portable one bit for bit: a grid of shapes with every tail case, random
//! shapes, the benchmark layer shapes, and rows long and dense enough to overflow narrow
//! accumulators that are widened too late.

use super::store::{lanes_store_portable, packed_bounds, CLASSES};
use super::{available, generic, LaneJob, LaneStore, StoreKind, LANE_SLACK};
use crate::kernels::{known_kernel_name, pick_by_name};
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
fn kestrel_kernels_picks_a_binary_kernel_by_name() {
    let pick = |var| pick_by_name(var, available(), |k| k.name()).name();
    let best = available().last().unwrap().name();
    assert_eq!(pick(None), best);
    assert_eq!(pick(Some("")), best);
    assert_eq!(pick(Some("generic")), "generic");
    // An int8 kernel's name (the variable is shared) and a typo: the best binary kernel.
    assert_eq!(pick(Some("neon-dotprod")), best);
    assert_eq!(pick(Some("no-such-kernel")), best);
    for kernel in available() {
        assert_eq!(pick(Some(kernel.name())), kernel.name());
    }
    assert!(known_kernel_name("generic") && !known_kernel_name("no-such-kernel"));
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

/// Runs every available kernel's lane form on one random job and compares with the generic
/// kernel (and, for a few lanes, with a direct count).
fn check_lanes(
    rng: &mut SmallRng,
    taps: &[usize],
    words: usize,
    plane: usize,
    lanes: usize,
    channels: usize,
    fill: Fill,
) {
    let last = taps.iter().max().unwrap() + (words - 1) * plane;
    let len = last + lanes + LANE_SLACK + rng.random_range(0..3);
    let pick = |rng: &mut SmallRng, ones: bool| match fill {
        Fill::Random => rng.random::<u64>(),
        Fill::Extreme => {
            if ones {
                u64::MAX
            } else {
                0
            }
        }
    };
    let input: Vec<u64> = (0..len).map(|_| pick(rng, true)).collect();
    let weights: Vec<u64> = (0..channels * taps.len() * words)
        .map(|_| pick(rng, false))
        .collect();
    let job = LaneJob {
        input: &input,
        taps,
        words,
        plane,
        lanes,
        weights: &weights,
    };
    let mut want = vec![u32::MAX; channels * lanes];
    generic().xor_popcount_lanes(&job, &mut want);
    for (c, p) in [(0, 0), (channels - 1, lanes.saturating_sub(1))] {
        if lanes == 0 {
            break;
        }
        let mut direct = 0;
        for (t, &tap) in taps.iter().enumerate() {
            for w in 0..words {
                let y = weights[(c * taps.len() + t) * words + w];
                direct += (input[tap + w * plane + p] ^ y).count_ones();
            }
        }
        assert_eq!(
            want[c * lanes + p],
            direct,
            "generic lanes: channel {c} lane {p}"
        );
    }
    for kernel in available() {
        let mut got = vec![u32::MAX; channels * lanes];
        kernel.xor_popcount_lanes(&job, &mut got);
        assert_eq!(
            got,
            want,
            "{} lanes differ: taps {taps:?} words {words} plane {plane} lanes {lanes} channels {channels} {fill:?}",
            kernel.name()
        );
    }
    check_store(rng, &job, &want, channels);
}

/// Every kernel's fused store ([`super::BinaryKernel::xor_popcount_lanes_store`]) on `job`
/// equals the portable one, which equals the store's formula on the counts `want`: float
/// (random multipliers, zero among them) and packed output (random thresholds and flips),
/// random border classes and correction tables.
fn check_store(rng: &mut SmallRng, job: &LaneJob<'_>, want: &[u32], channels: usize) {
    let lanes = job.lanes;
    // Border lanes everywhere, at the ends only (a conv's rows), or none (one padding): the
    // kernels' tiles skip the tables when all their lanes are interior.
    let pattern = rng.random_range(0..3);
    let classes: Vec<u8> = (0..lanes)
        .map(|p| match pattern {
            0 if rng.random() => 0,
            1 if p >= 3 && p + 3 < lanes => 0,
            0 | 1 => rng.random_range(0..CLASSES as u8),
            _ => 0,
        })
        .collect();
    let mut corr: Vec<i32> = (0..channels * CLASSES)
        .map(|_| rng.random_range(-60..60))
        .collect();
    for c in 0..channels {
        corr[c * CLASSES] = 0;
    }
    let k = rng.random_range(0..2000);
    let mul: Vec<f32> = (0..channels)
        .map(|_| [0.5, -1.25, 0.0, 2.0, 0.3, -0.7][rng.random_range(0..6)])
        .collect();
    let bias: Vec<f32> = (0..channels).map(|_| rng.random_range(-9.0..9.0)).collect();
    let threshold: Vec<i32> = (0..channels)
        .map(|_| match rng.random_range(0..8) {
            0 => i32::MAX,
            1 => i32::MIN,
            _ => k - rng.random_range(0..2 * k + 2),
        })
        .collect();
    let flip: Vec<u32> = (0..channels).map(|_| rng.random_range(0..2)).collect();
    let bounds = packed_bounds(k, &corr, CLASSES, &threshold);
    let ld = lanes + 3;
    let words = channels.div_ceil(64);
    let run = |f: &dyn Fn(&LaneStore<'_>), kind: StoreKind<'_>| -> (Vec<f32>, Vec<u64>) {
        let mut float = vec![f32::NAN; channels * ld];
        let mut packed = vec![0u64; lanes * words];
        let (out, ld) = match kind {
            StoreKind::Float { .. } => (float.as_mut_ptr().cast::<u8>(), ld),
            StoreKind::Packed { .. } => (packed.as_mut_ptr().cast::<u8>(), words),
        };
        // SAFETY: the buffers hold channels × ld floats or lanes × words words, used only
        // through this store while it lives.
        let store =
            unsafe { LaneStore::new(kind, k, &classes, &corr, CLASSES, out, ld, channels, lanes) };
        f(&store);
        (float, packed)
    };
    for kind in [
        StoreKind::Float {
            mul: &mul,
            bias: &bias,
        },
        StoreKind::Packed {
            threshold: &threshold,
            flip: &flip,
            bounds: &bounds,
        },
    ] {
        let portable = run(&|s| lanes_store_portable(job, s), kind);
        let (float, packed) = &portable;
        for c in 0..channels {
            for p in 0..lanes {
                let dot =
                    k - 2 * want[c * lanes + p] as i32 - corr[c * CLASSES + classes[p] as usize];
                match kind {
                    StoreKind::Float { .. } => {
                        let y = mul[c] * dot as f32 + bias[c];
                        assert_eq!(
                            float[c * ld + p].to_bits(),
                            y.to_bits(),
                            "float c {c} p {p}"
                        );
                    }
                    StoreKind::Packed { .. } => {
                        let bit = (dot < threshold[c]) ^ (flip[c] != 0);
                        assert_eq!(
                            packed[p * words + c / 64] >> (c % 64) & 1 == 1,
                            bit,
                            "bit c {c} p {p}"
                        );
                    }
                }
            }
        }
        // The counts in rows permuted as MST slots, for `store_counts`.
        let mut slots: Vec<u32> = (0..channels as u32).collect();
        for i in (1..channels).rev() {
            slots.swap(i, rng.random_range(0..=i));
        }
        let mut permuted = vec![0u32; channels * lanes];
        for (c, &slot) in slots.iter().enumerate() {
            permuted[slot as usize * lanes..][..lanes].copy_from_slice(&want[c * lanes..][..lanes]);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for kernel in available() {
            let fused = run(&|s| kernel.xor_popcount_lanes_store(job, s), kind);
            let stored = run(&|s| kernel.store_counts(want, None, s), kind);
            let slotted = run(&|s| kernel.store_counts(&permuted, Some(&slots), s), kind);
            for (got, what) in [
                (fused, "fused store"),
                (stored, "store_counts"),
                (slotted, "store_counts (slots)"),
            ] {
                assert!(
                    bits(&got.0) == bits(&portable.0) && got.1 == portable.1,
                    "{} {what} differs: {kind:?} lanes {lanes} channels {channels} taps {:?} words {}",
                    kernel.name(),
                    job.taps,
                    job.words
                );
            }
        }
    }
}

#[test]
fn lanes_equal_generic_on_conv_like_jobs() {
    let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c05);
    // 3x3 taps over a padded row of 20, 1x1, 5 taps with gaps; every tail of lanes and channels.
    let row = 20;
    let three: Vec<usize> = (0..3)
        .flat_map(|ky| (0..3).map(move |kx| ky * row + kx))
        .collect();
    for (taps, words) in [
        (three.clone(), 1),
        (three, 3),
        (vec![0], 8),
        (vec![5, 0, 17, 3, 40], 2),
    ] {
        for lanes in [1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 48, 49, 61] {
            for channels in [1, 3, 4, 5, 8, 9, 13, 17] {
                let plane = 60 + lanes;
                check_lanes(&mut rng, &taps, words, plane, lanes, channels, Fill::Random);
            }
        }
    }
}

#[test]
fn lanes_equal_generic_on_random_and_long_jobs() {
    let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c06);
    for _ in 0..200 {
        let n_taps = rng.random_range(1..=12);
        let taps: Vec<usize> = (0..n_taps).map(|_| rng.random_range(0..50)).collect();
        let words = rng.random_range(1..=10);
        let lanes = rng.random_range(0..=70);
        let plane = rng.random_range(50..=150);
        let channels = [rng.random_range(1..=20), 64, 72, 130][rng.random_range(0..4)];
        check_lanes(&mut rng, &taps, words, plane, lanes, channels, Fill::Random);
    }
    // Maximal counts at the NEON register tiles' limit (1 023 tap words) and just past it,
    // and over more steps than a NEON u16 block (2048 tap words) holds.
    for (n_taps, words) in [(3, 341), (1, 1023), (1, 1024), (9, 300), (1, 4097)] {
        let taps: Vec<usize> = (0..n_taps).collect();
        for lanes in [5, 8, 24] {
            check_lanes(&mut rng, &taps, words, 40, lanes, 9, Fill::Extreme);
        }
    }
}
