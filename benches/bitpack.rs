//! Bit-packing (`kestrel_bitpack`'s kernels) against the one-bit-at-a-time definition, one
//! thread, side by side in one run: `cargo bench --bench bitpack`.
//!
//! Shapes: the output of a float stem (3→64 3×3 conv at 32×32) that a binary network packs
//! before its first binary conv, two ImageNet-sized stage outputs (one and two words per
//! pixel) and a dense layer's input row. After the criterion runs, a summary line per shape
//! prints the medians of interleaved rounds (definition, portable kernel, selected kernel per
//! round), the selected kernel's rate in values per nanosecond and its speed-up over the
//! definition (the median of per-round ratios).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::bitpack::{self, reference_planes, reference_row};
use kestrel_runtime::ops::packing::words_for;
use kestrel_runtime::random::random_tensor;
use kestrel_runtime::tract_core::internal::*;

/// (name, channels, pixels); channels 0 marks a row of `pixels` values.
const SHAPES: &[(&str, usize, usize)] = &[
    ("planes_64x32x32", 64, 32 * 32),
    ("planes_64x56x56", 64, 56 * 56),
    ("planes_128x28x28", 128, 28 * 28),
    ("row_8192", 0, 8192),
];

type Pack = Box<dyn Fn(&[f32], &mut [u64])>;

/// The definition, the portable kernel and the selected one, for one shape.
fn contenders(channels: usize) -> [(&'static str, Pack); 3] {
    let (generic, best) = (bitpack::generic(), bitpack::select());
    if channels == 0 {
        [
            ("definition", Box::new(reference_row)),
            ("generic", Box::new(move |s, o| generic.pack_row(s, o))),
            (best.name(), Box::new(move |s, o| best.pack_row(s, o))),
        ]
    } else {
        [
            (
                "definition",
                Box::new(move |s, o| reference_planes(s, channels, o)),
            ),
            (
                "generic",
                Box::new(move |s, o| generic.pack_planes(s, channels, o)),
            ),
            (
                best.name(),
                Box::new(move |s, o| best.pack_planes(s, channels, o)),
            ),
        ]
    }
}

fn input(channels: usize, pixels: usize) -> (Vec<f32>, usize) {
    let n = channels.max(1) * pixels;
    let t = random_tensor(DatumType::F32, &[n], 11).unwrap();
    let words = if channels == 0 {
        words_for(pixels)
    } else {
        pixels * words_for(channels)
    };
    let values = t
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec();
    (values, words)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("bitpack");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for &(name, channels, pixels) in SHAPES {
        let (src, words) = input(channels, pixels);
        let mut out = vec![0u64; words];
        for (label, pack) in contenders(channels) {
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| pack(black_box(&src), &mut out))
            });
        }
    }
    group.finish();

    eprintln!("\nbitpack, one thread, medians of interleaved rounds:");
    for &(name, channels, pixels) in SHAPES {
        let (src, words) = input(channels, pixels);
        let mut out = vec![0u64; words];
        let packs = contenders(channels);
        let rounds = 301;
        let mut times = vec![Vec::with_capacity(rounds); packs.len()];
        let mut ratio = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut round = [0f64; 3];
            for (i, (_, pack)) in packs.iter().enumerate() {
                let start = Instant::now();
                for _ in 0..10 {
                    pack(black_box(&src), &mut out);
                }
                round[i] = start.elapsed().as_secs_f64() / 10.0;
                times[i].push(round[i]);
            }
            ratio.push(round[0] / round[2]);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let m: Vec<f64> = times.iter_mut().map(median).collect();
        let values = (channels.max(1) * pixels) as f64;
        eprintln!(
            "  {name:18} definition {:8.2} µs  generic {:8.2} µs  {} {:8.2} µs  \
             {:6.2} values/ns  {:5.1}× the definition",
            m[0] * 1e6,
            m[1] * 1e6,
            packs[2].0,
            m[2] * 1e6,
            values / (m[2] * 1e9),
            median(&mut ratio),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
