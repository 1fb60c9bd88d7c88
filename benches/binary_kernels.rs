//! Criterion benchmarks of the XOR-popcount kernels (`kestrel_runtime::kernels`) on the layer
//! shapes of binary networks, plus a register-only "peak" of the same core (XOR + popcount on
//! values held in registers, no loads) so kernel/peak ratios can be quoted.
//! `cargo bench --bench binary_kernels`.
//!
//! Two primitives: the row form (`xor_popcount`, binary dense; M rows × N weight rows) and the
//! lane form (`xor_popcount_lanes`, binary conv; M = output lanes of one image in the conv's
//! lane layout, N = output channels, words = taps × words per tap), the latter also through
//! the fused output stage with packed bits out (`… packed` rows). Every available kernel is
//! run on every shape; at the end a table (stderr) gives the median time per call, bit-MAC/s
//! = M·N·words·64 / median and the ratio to the peak of the matching instruction set, and the
//! same for the fastest sample (steadier on a shared machine): the portable peak for
//! `generic`, `POPCNT` for `x86-popcnt`, the AVX2 loop for `x86-avx2` (whose lane form is
//! scalar POPCNT: its lane rows compare with the POPCNT peak), AVX-512 for `x86-avx512`, NEON
//! for `neon`. Single thread.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kestrel_runtime::kernels::binary::store::{packed_bounds, LaneStore, StoreKind, CLASSES};
use kestrel_runtime::kernels::binary::{self as kernels, BinaryKernel};

#[path = "common/peak.rs"]
mod peak;

/// One layer: M input rows (pixels or batch), N weight rows (output channels), words per row.
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    words: usize,
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "conv3x3 64-64 @56",
        m: 3136,
        n: 64,
        words: 9,
    },
    Shape {
        name: "conv3x3 256-256 @14",
        m: 196,
        n: 256,
        words: 36,
    },
    Shape {
        name: "conv1x1 512-512 @7",
        m: 49,
        n: 512,
        words: 8,
    },
    Shape {
        name: "dense 784-64",
        m: 1,
        n: 64,
        words: 13,
    },
    Shape {
        name: "dense 4096-4096",
        m: 1,
        n: 4096,
        words: 64,
    },
];

/// Lane jobs of the conv layers: (name, taps per side, words per tap, plane row length,
/// output rows, output columns, channels) — a k×k stride-1 conv, rows padded by k − 1.
const LANE_SHAPES: [(&str, usize, usize, usize, usize, usize, usize); 3] = [
    ("lanes conv3x3 64-64 @56", 3, 1, 58, 56, 56, 64),
    ("lanes conv3x3 256-256 @14", 3, 4, 16, 14, 14, 256),
    ("lanes conv1x1 512-512 @7", 1, 8, 7, 7, 7, 512),
];

/// splitmix64: reproducible random words without another dependency.
fn random_words(len: usize, seed: u64) -> Vec<u64> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// Median of the measured samples: criterion calls `iter_custom` for warm-up first, then
/// exactly `sample_size` times; the last `sample_size` per-iteration times are the samples.
/// Returns (median, fastest); NaN when the benchmark was filtered out (`cargo bench -- FILTER`).
/// The fastest sample is the steadier figure on a shared machine.
fn median_of_last(times: &[f64], n: usize) -> (f64, f64) {
    let mut last = times[times.len().saturating_sub(n)..].to_vec();
    last.sort_by(f64::total_cmp);
    let median = last.get(last.len() / 2).copied().unwrap_or(f64::NAN);
    (median, last.first().copied().unwrap_or(f64::NAN))
}

const SAMPLES: usize = 50;

/// Benchmarks `body(iters)` (returns the elapsed time of `iters` calls) and returns the median
/// and fastest sample, in seconds per call.
fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    mut body: impl FnMut(u64) -> Duration,
) -> (f64, f64) {
    let times = RefCell::new(Vec::new());
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let elapsed = body(iters);
            times
                .borrow_mut()
                .push(elapsed.as_secs_f64() / iters as f64);
            elapsed
        })
    });
    median_of_last(&times.into_inner(), SAMPLES)
}

/// Iterations of one call of a peak loop (bits per iteration: see `peak`).
const PEAK_ITERS: u64 = 4096;

/// Times a peak loop; returns bit-MAC/s at the median and at the fastest sample.
fn peak_rate(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    bits_per_iter: u64,
    f: impl Fn(u64) -> u64,
) -> (f64, f64) {
    let (median, fastest) = measure(group, id, |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f(black_box(PEAK_ITERS)));
        }
        start.elapsed()
    });
    let bits = (PEAK_ITERS * bits_per_iter) as f64;
    (bits / median, bits / fastest)
}

fn binary_kernels(c: &mut Criterion) {
    // Peaks first: (name, (bit-MAC/s at the median, at the fastest sample)).
    let mut peaks: Vec<(&str, (f64, f64))> = Vec::new();
    {
        let mut group = c.benchmark_group("binary_peak");
        group.sample_size(SAMPLES);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for name in peak::NAMES {
            let Some((_, bits)) = peak::run(name, 1) else {
                continue;
            };
            group.throughput(Throughput::Elements(PEAK_ITERS * bits));
            let f = |n| peak::run(name, n).map_or(0, |(r, _)| r);
            peaks.push((name, peak_rate(&mut group, name, bits, f)));
        }
        group.finish();
    }
    let peak_of = |kernel: &str| -> (&str, (f64, f64)) {
        let want = peak::peak_name(kernel);
        *peaks.iter().find(|(p, _)| *p == want).unwrap_or(&peaks[0])
    };

    // Layer shapes × kernels.
    let mut rows = Vec::new();
    for (s, shape) in SHAPES.iter().enumerate() {
        let Shape { name, m, n, words } = *shape;
        let a = random_words(m * words, 2 * s as u64 + 1);
        let b = random_words(n * words, 2 * s as u64 + 2);
        let bit_macs = (m * n * words * 64) as u64;
        let mut group = c.benchmark_group(format!("binary/{name}"));
        group.sample_size(SAMPLES);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(bit_macs));
        for kernel in kernels::available() {
            let mut out = vec![0u32; m * n];
            let kernel: &dyn BinaryKernel = kernel;
            let (t, fastest) = measure(&mut group, kernel.name(), |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    kernel.xor_popcount(black_box(&a), black_box(&b), words, black_box(&mut out));
                }
                start.elapsed()
            });
            rows.push((
                name.to_string(),
                m,
                n,
                words,
                kernel.name(),
                t,
                fastest,
                bit_macs as f64,
            ));
        }
        group.finish();
    }

    for (s, &(name, k, words, wq, oh, ow, channels)) in LANE_SHAPES.iter().enumerate() {
        let lanes = (oh - 1) * wq + ow;
        let hq = oh + k - 1;
        let plane = hq * wq;
        let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * wq + t % k).collect();
        let input = random_words(words * plane + kernels::LANE_SLACK, 100 + s as u64);
        let weights = random_words(channels * k * k * words, 200 + s as u64);
        let job = kernels::LaneJob {
            input: &input,
            taps: &taps,
            words,
            plane,
            lanes,
            weights: &weights,
        };
        let bit_macs = (lanes * channels * k * k * words * 64) as u64;
        let mut group = c.benchmark_group(format!("binary/{name}"));
        group.sample_size(SAMPLES);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.throughput(Throughput::Elements(bit_macs));
        // The fused output stage's parameters, packed bits out (what a binary conv followed
        // by another binary layer runs): interior lanes, one threshold and flip per channel.
        let classes = vec![0u8; lanes];
        let corr = vec![0i32; channels * CLASSES];
        let k_bits = (k * k * words * 64) as i32;
        let threshold: Vec<i32> = (0..channels as i32).map(|c| c % 7 - 3).collect();
        let bounds = packed_bounds(k_bits, &corr, CLASSES, &threshold);
        let flip: Vec<u32> = (0..channels as u32).map(|c| c % 2).collect();
        let ld = channels.div_ceil(64);
        for kernel in kernels::available() {
            let mut out = vec![0u32; lanes * channels];
            let mut packed = vec![0u64; lanes * ld];
            for fused in [false, true] {
                let id = if fused {
                    format!("{} packed", kernel.name())
                } else {
                    kernel.name().to_string()
                };
                let (t, fastest) = measure(&mut group, &id, |iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        if !fused {
                            kernel.xor_popcount_lanes(black_box(&job), black_box(&mut out));
                            continue;
                        }
                        // SAFETY: `packed` holds lanes × ld words, written only through this
                        // store while it lives (bits accumulate across calls: the same work).
                        let store = unsafe {
                            LaneStore::new(
                                StoreKind::Packed {
                                    threshold: &threshold,
                                    flip: &flip,
                                    bounds: &bounds,
                                },
                                k_bits,
                                &classes,
                                &corr,
                                CLASSES,
                                packed.as_mut_ptr().cast(),
                                ld,
                                channels,
                                lanes,
                            )
                        };
                        kernel.xor_popcount_lanes_store(black_box(&job), black_box(&store));
                    }
                    start.elapsed()
                });
                rows.push((
                    if fused {
                        format!("{name} packed")
                    } else {
                        name.to_string()
                    },
                    lanes,
                    channels,
                    k * k * words,
                    kernel.name(),
                    t,
                    fastest,
                    bit_macs as f64,
                ));
            }
        }
        group.finish();
    }

    eprintln!();
    eprintln!("peaks (register-only XOR+popcount), bit-MAC/s at the median / fastest sample:");
    for (name, (median, fastest)) in &peaks {
        eprintln!(
            "  {name:<16} {:>7.1} G / {:>7.1} G",
            median / 1e9,
            fastest / 1e9
        );
    }
    eprintln!();
    eprintln!(
        "{:<26} {:>5} {:>4} {:>5}  {:<10} {:>11} {:>9} {:>6}   {:>10} {:>9} {:>6}",
        "shape",
        "M",
        "N",
        "words",
        "kernel",
        "median",
        "bit-MAC/s",
        "/peak",
        "fastest",
        "bit-MAC/s",
        "/peak"
    );
    for (name, m, n, words, kernel, median, fastest, bit_macs) in rows {
        if median.is_nan() {
            continue;
        }
        // The lane form of x86-avx2 is scalar POPCNT.
        let is_scalar_lanes = name.starts_with("lanes") && kernel == "x86-avx2";
        let (peak_name, (peak_median, peak_fastest)) = peak_of(if is_scalar_lanes {
            "x86-popcnt"
        } else {
            kernel
        });
        eprintln!(
            "{name:<26} {m:>5} {n:>4} {words:>5}  {kernel:<10} {:>8.2} µs {:>7.1} G {:>5.0}%   {:>7.2} µs {:>7.1} G {:>5.0}%  (peak: {peak_name})",
            median * 1e6,
            bit_macs / median / 1e9,
            100.0 * bit_macs / median / peak_median,
            fastest * 1e6,
            bit_macs / fastest / 1e9,
            100.0 * bit_macs / fastest / peak_fastest,
        );
    }
}

criterion_group!(benches, binary_kernels);
criterion_main!(benches);
