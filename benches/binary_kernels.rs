//! Criterion benchmarks of the XOR-popcount kernels (`kestrel_runtime::kernels`) on the layer
//! shapes of binary networks, plus a register-only "peak" of the same core (XOR + popcount on
//! values held in registers, no loads) so kernel/peak ratios can be quoted.
//! `cargo bench --bench binary_kernels`.
//!
//! Every available kernel is run on every shape; at the end a table (stderr) gives the median
//! time per call, bit-MAC/s = M·N·words·64 / median and the ratio to the peak of the matching
//! instruction set, and the same for the fastest sample (steadier on a shared machine) (the scalar peak for `generic`/`x86-popcnt`, the SIMD peak for
//! `x86-avx2`/`neon`). Single thread.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kestrel_runtime::kernels::{self, BinaryKernel};

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

/// Bit-MACs done by one call of a peak loop of `iters` iterations: 8 lanes of 64 bits (scalar)
/// or 4 vectors of 256 bits (AVX2) / 8 vectors of 128 bits (NEON) per iteration.
const PEAK_ITERS: u64 = 4096;

mod peak {
    //! Register-only loops: XOR + popcount + accumulate on values that never leave registers.
    //! The XOR operand changes every iteration so nothing can be hoisted.

    use std::hint::black_box;

    /// Bits per iteration of [`scalar`].
    pub const SCALAR_BITS: u64 = 8 * 64;

    /// Portable `count_ones` (what the `generic` kernel compiles to on this target).
    #[allow(clippy::needless_range_loop)]
    pub fn scalar_portable(iters: u64) -> u64 {
        let x: [u64; 8] = black_box([1, 2, 3, 4, 5, 6, 7, 8].map(|i| i * 0x0123_4567_89ab_cdef));
        let mut k = black_box(0x9e37_79b9_7f4a_7c15u64);
        let mut acc = [0u64; 8];
        for _ in 0..iters {
            for i in 0..8 {
                acc[i] += u64::from((x[i] ^ k).count_ones());
            }
            k = k.wrapping_add(1);
        }
        acc.iter().sum()
    }

    /// Scalar `POPCNT`, eight independent accumulators.
    ///
    /// # Safety
    /// The CPU must have POPCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn scalar(iters: u64) -> u64 {
        let x: [u64; 8] = black_box([1, 2, 3, 4, 5, 6, 7, 8].map(|i| i * 0x0123_4567_89ab_cdef));
        let mut k = black_box(0x9e37_79b9_7f4a_7c15u64);
        let mut acc = [0u64; 8];
        for _ in 0..iters {
            for i in 0..8 {
                acc[i] += u64::from((x[i] ^ k).count_ones());
            }
            k = k.wrapping_add(1);
        }
        acc.iter().sum()
    }

    /// Bits per iteration of [`avx2`].
    #[cfg(target_arch = "x86_64")]
    pub const AVX2_BITS: u64 = 4 * 256;

    /// AVX2: the kernel's per-256-bit sequence (xor, and, shift, and, 2 × vpshufb, add, add
    /// into byte accumulators) on four independent streams, `vpsadbw` every 31 iterations.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn avx2(iters: u64) -> u64 {
        use std::arch::x86_64::*;
        let lut = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        let one = _mm256_set1_epi64x(1);
        let x = black_box([1i64, 2, 3, 4].map(|i| _mm256_set1_epi64x(i * 0x0123_4567_89ab_cdef)));
        let mut k = black_box(_mm256_set1_epi64x(0x1e37_79b9_7f4a_7c15));
        let mut total = zero;
        let mut done = 0;
        while done < iters {
            let block = (iters - done).min(31);
            let mut acc = [zero; 4];
            for _ in 0..block {
                for i in 0..4 {
                    let v = _mm256_xor_si256(x[i], k);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                    let c =
                        _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
                    acc[i] = _mm256_add_epi8(acc[i], c);
                }
                k = _mm256_add_epi64(k, one);
            }
            for a in acc {
                total = _mm256_add_epi64(total, _mm256_sad_epu8(a, zero));
            }
            done += block;
        }
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), total);
        lanes.iter().sum()
    }

    /// Bits per iteration of [`neon`].
    #[cfg(target_arch = "aarch64")]
    pub const NEON_BITS: u64 = 8 * 128;

    /// NEON: eor + cnt + uadalp on eight independent 128-bit streams, widened every 1024
    /// iterations.
    #[cfg(target_arch = "aarch64")]
    #[allow(clippy::needless_range_loop)]
    pub fn neon(iters: u64) -> u64 {
        use std::arch::aarch64::*;
        // SAFETY: NEON is baseline on aarch64 (the target enables it).
        unsafe {
            let x = black_box([1u64, 2, 3, 4, 5, 6, 7, 8].map(|i| vdupq_n_u8(i as u8 * 37)));
            let mut k = black_box(vdupq_n_u8(0x5a));
            let one = vdupq_n_u8(1);
            let mut total = vdupq_n_u32(0);
            let mut done = 0;
            while done < iters {
                let block = (iters - done).min(1024);
                let mut acc = [vdupq_n_u16(0); 8];
                for _ in 0..block {
                    for i in 0..8 {
                        acc[i] = vpadalq_u8(acc[i], vcntq_u8(veorq_u8(x[i], k)));
                    }
                    k = vaddq_u8(k, one);
                }
                for a in acc {
                    total = vpadalq_u16(total, a);
                }
                done += block;
            }
            u64::from(vaddvq_u32(total))
        }
    }
}

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
        group.throughput(Throughput::Elements(PEAK_ITERS * peak::SCALAR_BITS));
        peaks.push((
            "scalar-portable",
            peak_rate(
                &mut group,
                "scalar-portable",
                peak::SCALAR_BITS,
                peak::scalar_portable,
            ),
        ));
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("popcnt") {
                // SAFETY: POPCNT is present (checked).
                let f = |n| unsafe { peak::scalar(n) };
                peaks.push((
                    "popcnt",
                    peak_rate(&mut group, "popcnt", peak::SCALAR_BITS, f),
                ));
            }
            if is_x86_feature_detected!("avx2") {
                group.throughput(Throughput::Elements(PEAK_ITERS * peak::AVX2_BITS));
                // SAFETY: AVX2 is present (checked).
                let f = |n| unsafe { peak::avx2(n) };
                peaks.push(("avx2", peak_rate(&mut group, "avx2", peak::AVX2_BITS, f)));
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            group.throughput(Throughput::Elements(PEAK_ITERS * peak::NEON_BITS));
            peaks.push((
                "neon",
                peak_rate(&mut group, "neon", peak::NEON_BITS, peak::neon),
            ));
        }
        group.finish();
    }
    let peak_of = |kernel: &str| -> (&str, (f64, f64)) {
        let want = match kernel {
            "generic" => "scalar-portable",
            "x86-popcnt" => "popcnt",
            "x86-avx2" => "avx2",
            "neon" => "neon",
            _ => "scalar-portable",
        };
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
                name,
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
        "{:<22} {:>5} {:>4} {:>5}  {:<10} {:>11} {:>9} {:>6}   {:>10} {:>9} {:>6}",
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
        let (peak_name, (peak_median, peak_fastest)) = peak_of(kernel);
        eprintln!(
            "{name:<22} {m:>5} {n:>4} {words:>5}  {kernel:<10} {:>8.2} µs {:>7.1} G {:>5.0}%   {:>7.2} µs {:>7.1} G {:>5.0}%  (peak: {peak_name})",
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
