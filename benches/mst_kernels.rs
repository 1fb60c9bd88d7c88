//! Dense vs MST-ordered XOR-popcount (`kestrel_runtime::kernels::mst`), side by side in one run.
//! `cargo bench --bench mst_kernels`.
//!
//! Weights are built like an MST-regularised layer: each channel copies its parent's packed
//! row and differs from it in a fraction `f` of the row's words (one random bit per differing
//! word; a tree of depth ≤ 4 over the channels). For each layer shape and `f` the table on
//! stderr gives the dense kernel's and the MST kernel's median time, their ratio, the executed
//! word-op ratio, and the cost of one child word in dense-word units,
//! `(t_mst / t_dense) / f` — the `word_cost` of the converter's cost model
//! (`kestrel_quantize::mst::CostModel`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::mst::MstSchedule;
use kestrel_runtime::kernels::{self, BinaryKernel};

struct Shape {
    name: &'static str,
    rows: usize,
    channels: usize,
    words: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "conv3x3 256-256 @14",
        rows: 196,
        channels: 256,
        words: 36,
    },
    Shape {
        name: "conv3x3 64-64 @7 (mnist-bnn conv3)",
        rows: 49,
        channels: 64,
        words: 9,
    },
    Shape {
        name: "dense 3136-128 (mnist-bnn fc1)",
        rows: 1,
        channels: 128,
        words: 49,
    },
];

const FRACTIONS: [f64; 4] = [0.05, 0.1, 0.25, 0.5];

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Weights where channel c > 0 copies parent (c-1)/4 (a 4-ary tree) and flips one bit in a
/// fraction `f` of its words.
fn tree_weights(s: &Shape, f: f64, seed: u64) -> (Vec<u64>, Vec<Option<usize>>) {
    let mut st = seed;
    let w = s.words;
    let mut weights: Vec<u64> = (0..w).map(|_| splitmix(&mut st)).collect();
    let mut parents = vec![None];
    let differing = ((w as f64 * f).round() as usize).max(1);
    for c in 1..s.channels {
        let p = (c - 1) / 4;
        let mut row: Vec<u64> = weights[p * w..(p + 1) * w].to_vec();
        for _ in 0..differing {
            let l = (splitmix(&mut st) % w as u64) as usize;
            row[l] ^= 1 << (splitmix(&mut st) % 64);
        }
        weights.extend(row);
        parents.push(Some(p));
    }
    (weights, parents)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let samples = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..20 {
                f();
            }
            t.elapsed().as_secs_f64() / 20.0
        })
        .collect();
    median(samples)
}

fn bench(c: &mut Criterion) {
    let kernel: &dyn BinaryKernel = kernels::select();
    let mut table = vec![];
    for s in &SHAPES {
        let mut st = 7u64;
        let a: Vec<u64> = (0..s.rows * s.words).map(|_| splitmix(&mut st)).collect();
        for &f in &FRACTIONS {
            let (weights, parents) = tree_weights(s, f, 11);
            let schedule = MstSchedule::new(&weights, s.words, &parents).unwrap();
            let mut out = vec![0u32; s.rows * s.channels];
            let mut scratch = vec![];
            let mut group = c.benchmark_group(format!("mst/{}/f={f}", s.name));
            group
                .measurement_time(Duration::from_secs(2))
                .sample_size(20);
            group.bench_function("dense", |b| {
                b.iter(|| kernel.xor_popcount(black_box(&a), &weights, s.words, &mut out))
            });
            group.bench_function("mst", |b| {
                b.iter(|| schedule.xor_popcount(kernel, black_box(&a), &mut out, &mut scratch))
            });
            group.finish();
            // Side by side, interleaved, for the table.
            let dense = time(|| kernel.xor_popcount(black_box(&a), &weights, s.words, &mut out));
            let mst = time(|| schedule.xor_popcount(kernel, black_box(&a), &mut out, &mut scratch));
            let ops = schedule.word_ops() as f64 / schedule.dense_word_ops() as f64;
            table.push(format!(
                "{:<36} f={f:<5} dense {:>9.1} µs  mst {:>9.1} µs  time ratio {:.2}  word-op ratio {:.2}  child word = {:.2} dense words",
                s.name,
                dense * 1e6,
                mst * 1e6,
                mst / dense,
                ops,
                (mst / dense) / ops
            ));
        }
    }
    eprintln!("\nkernel: {}", kernel.name());
    for line in table {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
