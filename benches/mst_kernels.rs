//! Dense vs MST-ordered XOR-popcount (`kestrel_runtime::kernels::binary::mst`), side by side in one run.
//! `cargo bench --bench mst_kernels` (`-- rows`, `-- lanes`, `-- layer` for one part;
//! `MST_BENCH_MODELS=a.nnef.tgz:b.nnef.tgz` adds models to the layer part).
//!
//! Synthetic weights are built like an MST-regularised layer: each channel copies its parent's
//! packed row and differs from it in a fraction `f` of the row's words (one random bit per
//! differing word; a 4-ary tree over the channels, one root). For each shape and `f` the table
//! on stderr gives the dense kernel's and the MST kernel's median time, their ratio, the
//! executed word-op ratio, and the cost of one child word in dense-word units,
//! `(t_mst / t_dense) / ops` — the `word_cost` of the converter's cost models
//! (`kestrel_quantize::mst::CostModel`):
//!
//! * **rows** (binary dense, `MstSchedule::xor_popcount`): M input rows × N channels.
//! * **lanes** (binary conv2d, `MstSchedule::xor_popcount_lanes`): a conv's lane job, a
//!   "word" being one (tap, input word) of the kernel row.
//! * **layer**: every binary conv of `models/mnist-bnn` (the plain and the MST-regularised
//!   model, and those of `MST_BENCH_MODELS`), the whole
//!   op (layout, kernel, output stage) dense vs with the tree the converter builds for it
//!   (forced, whether or not the cost model would pick it), plus that tree's word-op ratio
//!   and predicted ratio; and, for stride-1 convs, the lane kernel alone on the layer's own
//!   weights and tree (`kernel …` rows, outputs checked equal).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_quantize::mst::{build, MstOptions};
use kestrel_runtime::kernels::binary::mst::MstSchedule;
use kestrel_runtime::kernels::binary::{self as kernels, BinaryKernel, LaneJob, LANE_SLACK};
use kestrel_runtime::ops::bconv::BinaryConv2d;
use kestrel_runtime::pool_alloc::{self, PoolAlloc};
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::tract_core::tract_linalg::multithread::{multithread_tract_scope, Executor};

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

/// A conv's lane job: `k×k` taps of `words` input words, `c_out` channels, `size × size` output
/// (stride 1, padding 1).
struct ConvShape {
    name: &'static str,
    k: usize,
    words: usize,
    channels: usize,
    size: usize,
}

const CONV_SHAPES: [ConvShape; 4] = [
    ConvShape {
        name: "lanes conv3x3 256-256 @14",
        k: 3,
        words: 4,
        channels: 256,
        size: 14,
    },
    ConvShape {
        name: "lanes conv3x3 64-64 @56",
        k: 3,
        words: 1,
        channels: 64,
        size: 56,
    },
    ConvShape {
        name: "lanes conv3x3 32-64 @14 (mnist conv2)",
        k: 3,
        words: 1,
        channels: 64,
        size: 14,
    },
    ConvShape {
        name: "lanes conv3x3 64-64 @7 (mnist conv3)",
        k: 3,
        words: 1,
        channels: 64,
        size: 7,
    },
];

const LANE_FRACTIONS: [f64; 6] = [0.0, 0.05, 0.1, 0.25, 0.5, 1.0];

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Weights of `channels` rows of `w` words where channel c > 0 copies parent (c-1)/4 (a
/// 4-ary tree) and flips one bit in `round(f·w)` distinct words (at least one when `f > 0`).
fn tree_weights(channels: usize, w: usize, f: f64, seed: u64) -> (Vec<u64>, Vec<Option<usize>>) {
    let mut st = seed;
    let mut weights: Vec<u64> = (0..w).map(|_| splitmix(&mut st)).collect();
    let mut parents = vec![None];
    let differing = ((w as f64 * f).round() as usize)
        .max(usize::from(f > 0.0))
        .min(w);
    for c in 1..channels {
        let p = (c - 1) / 4;
        let mut row: Vec<u64> = weights[p * w..(p + 1) * w].to_vec();
        // Distinct words: a partial Fisher-Yates shuffle of the word indices.
        let mut idx: Vec<usize> = (0..w).collect();
        for i in 0..differing {
            let j = i + (splitmix(&mut st) % (w - i) as u64) as usize;
            idx.swap(i, j);
            row[idx[i]] ^= 1 << (splitmix(&mut st) % 64);
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

/// Medians of `dense` and `mst`, their samples interleaved (31 pairs of 20 calls each) so that
/// load changes on the shared machine hit both alike.
fn time_pair(mut dense: impl FnMut(), mut mst: impl FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        dense();
        mst();
    }
    let sample = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..20 {
            f();
        }
        t.elapsed().as_secs_f64() / 20.0
    };
    let (mut d, mut m) = (vec![], vec![]);
    for _ in 0..31 {
        d.push(sample(&mut dense));
        m.push(sample(&mut mst));
    }
    (median(d), median(m))
}

/// The `kestrel` binary's allocator, as on the device (see `binary_layers`).
#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

fn bench(c: &mut Criterion) {
    let _pool = pool_alloc::enable(pool_alloc::cache_bytes_from_env());
    let kernel: &dyn BinaryKernel = kernels::select();
    let mut table = vec![];
    rows(c, kernel, &mut table);
    lanes(c, kernel, &mut table);
    layers(c, &mut table);
    eprintln!("\nkernel: {}", kernel.name());
    for line in table {
        eprintln!("{line}");
    }
}

fn rows(c: &mut Criterion, kernel: &dyn BinaryKernel, table: &mut Vec<String>) {
    for s in &SHAPES {
        let mut st = 7u64;
        let a: Vec<u64> = (0..s.rows * s.words).map(|_| splitmix(&mut st)).collect();
        for &f in &FRACTIONS {
            let (weights, parents) = tree_weights(s.channels, s.words, f, 11);
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
            let mut out2 = out.clone();
            let (dense, mst) = time_pair(
                || kernel.xor_popcount(black_box(&a), &weights, s.words, &mut out),
                || schedule.xor_popcount(kernel, black_box(&a), &mut out2, &mut scratch),
            );
            let ops = schedule.word_ops() as f64 / schedule.dense_word_ops() as f64;
            table.push(line(s.name, f, dense, mst, ops));
        }
    }
}

fn line(name: &str, f: f64, dense: f64, mst: f64, ops: f64) -> String {
    format!(
        "{name:<40} f={f:<5} dense {:>9.1} µs  mst {:>9.1} µs  time ratio {:.3}  word-op ratio {:.3}  child word = {:.2} dense words",
        dense * 1e6,
        mst * 1e6,
        mst / dense,
        ops,
        (mst / dense) / ops
    )
}

fn lanes(c: &mut Criterion, kernel: &dyn BinaryKernel, table: &mut Vec<String>) {
    for s in &CONV_SHAPES {
        let wq = s.size + s.k - 1;
        let plane = wq * wq;
        let lanes = (s.size - 1) * wq + s.size;
        let taps: Vec<usize> = (0..s.k * s.k).map(|t| (t / s.k) * wq + t % s.k).collect();
        let row = taps.len() * s.words;
        let mut st = 5u64;
        let input: Vec<u64> = (0..s.words * plane + LANE_SLACK)
            .map(|_| splitmix(&mut st))
            .collect();
        for &f in &LANE_FRACTIONS {
            let (weights, parents) = tree_weights(s.channels, row, f, 13);
            let schedule = MstSchedule::new(&weights, row, &parents).unwrap();
            let mut offsets = vec![0; schedule.diff_words()];
            schedule.lane_offsets(&taps, s.words, plane, &mut offsets);
            let job = LaneJob {
                input: &input,
                taps: &taps,
                words: s.words,
                plane,
                lanes,
                weights: &weights,
            };
            let mut out = vec![0u32; s.channels * lanes];
            let mut group = c.benchmark_group(format!("mst/{}/f={f}", s.name));
            group
                .measurement_time(Duration::from_secs(1))
                .sample_size(10);
            group.bench_function("dense", |b| {
                b.iter(|| kernel.xor_popcount_lanes(black_box(&job), &mut out))
            });
            group.bench_function("mst", |b| {
                b.iter(|| schedule.xor_popcount_lanes(kernel, black_box(&job), &offsets, &mut out))
            });
            group.finish();
            let mut out2 = out.clone();
            let (dense, mst) = time_pair(
                || kernel.xor_popcount_lanes(black_box(&job), &mut out),
                || schedule.xor_popcount_lanes(kernel, black_box(&job), &offsets, &mut out2),
            );
            let ops = schedule.word_ops() as f64 / schedule.dense_word_ops() as f64;
            table.push(line(s.name, f, dense, mst, ops));
        }
    }
}

/// Every binary conv of the models: the op dense vs with its converter tree, on a random
/// packed input of its input shape.
fn layers(c: &mut Criterion, table: &mut Vec<String>) {
    // The unregularised and the MST-regularised (`train.py --mst-tie`) model, side by side.
    let mut paths: Vec<std::path::PathBuf> = ["mnist-bnn.nnef.tgz", "mnist-bnn-mst.nnef.tgz"]
        .iter()
        .map(|f| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/mnist-bnn")
                .join(f)
        })
        .collect();
    if let Ok(extra) = std::env::var("MST_BENCH_MODELS") {
        paths.extend(extra.split(':').filter(|p| !p.is_empty()).map(Into::into));
    }
    let options = MstOptions::default();
    for path in paths {
        let model = match kestrel_runtime::ops::registry::nnef().model_for_path(&path) {
            Ok(m) => m,
            Err(e) => {
                table.push(format!("{}: not loaded ({e})", path.display()));
                continue;
            }
        };
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for node in model.nodes() {
            let Some(op) = node.op_as::<BinaryConv2d>() else {
                continue;
            };
            let fact = model.outlet_fact(node.inputs[0]).unwrap();
            let shape: Vec<usize> = fact.shape.as_concrete().unwrap().to_vec();
            let mut st = 17u64;
            let words: Vec<u64> = (0..shape.iter().product::<usize>())
                .map(|_| splitmix(&mut st))
                .collect();
            // Channel-padding bits must stay clear, as the bitpack op leaves them.
            let c_in = op.geometry.c_in;
            let cw = op.geometry.in_words();
            let words: Vec<u64> = words
                .chunks(cw)
                .flat_map(|px| {
                    px.iter().enumerate().map(move |(i, &v)| {
                        let bits = (c_in - 64 * i).min(64);
                        if bits == 64 {
                            v
                        } else {
                            v & ((1u64 << bits) - 1)
                        }
                    })
                })
                .collect();
            let input = Tensor::from_shape(&shape, &words).unwrap().into_tvalue();
            let view = op.weights.try_as_plain_ram().unwrap();
            let w = view.as_slice::<u64>().unwrap();
            let row = op.geometry.patch_words();
            let tree = build(w, row, options.max_depth, options.conv_cost);
            let mst_op = op.clone().with_mst(tree.parents.clone()).unwrap();
            let dense_op = op.clone();
            let name = format!("layer {file} {}", node.name);
            // One thread, as the kernel parts (the band split is the same for both).
            let run = |op: &BinaryConv2d| {
                multithread_tract_scope(Executor::SingleThread, || {
                    op.eval_out_of_plan(tvec!(input.clone())).unwrap();
                })
            };
            let mut group = c.benchmark_group(format!("mst/{name}"));
            group
                .measurement_time(Duration::from_secs(1))
                .sample_size(10);
            group.bench_function("dense", |b| b.iter(|| run(black_box(&dense_op))));
            group.bench_function("mst", |b| b.iter(|| run(black_box(&mst_op))));
            group.finish();
            let (dense, mst) = time_pair(|| run(black_box(&dense_op)), || run(black_box(&mst_op)));
            let ops = tree.word_ops as f64 / (w.len()) as f64;
            table.push(format!(
                "{}  predicted {:.3}  roots {}/{}",
                line(&name, f64::NAN, dense, mst, ops),
                tree.cost / tree.dense_cost,
                tree.roots(),
                tree.parents.len()
            ));
            // The kernel alone on the layer's own weights and tree (what the op's lane part
            // runs), for stride-1 "same" convs: a lane job over the padded input plane.
            let g = &op.geometry;
            let k = g.kernel[0];
            if g.kernel == [k, k] && g.stride == [1, 1] && g.dilation == [1, 1] {
                let (h, wd) = (shape[1], shape[2]);
                let wq = wd + k - 1;
                let plane = (h + k - 1) * wq;
                let lanes = (h - 1) * wq + wd;
                let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * wq + t % k).collect();
                let input: Vec<u64> = (0..cw * plane + LANE_SLACK)
                    .map(|_| splitmix(&mut st))
                    .collect();
                let schedule = MstSchedule::new(w, row, &tree.parents).unwrap();
                let mut offsets = vec![0; schedule.diff_words()];
                schedule.lane_offsets(&taps, cw, plane, &mut offsets);
                let job = LaneJob {
                    input: &input,
                    taps: &taps,
                    words: cw,
                    plane,
                    lanes,
                    weights: w,
                };
                let kernel = kernels::select();
                let mut out = vec![0u32; g.c_out * lanes];
                let mut out2 = out.clone();
                let (dense, mst) = time_pair(
                    || kernel.xor_popcount_lanes(black_box(&job), &mut out),
                    || schedule.xor_popcount_lanes(kernel, black_box(&job), &offsets, &mut out2),
                );
                // MST counts sit in tree-order slots.
                for (c, &slot) in schedule.slots().iter().enumerate() {
                    let slot = slot as usize;
                    assert_eq!(
                        out[c * lanes..][..lanes],
                        out2[slot * lanes..][..lanes],
                        "{name}: MST kernel differs from dense at channel {c}"
                    );
                }
                table.push(line(
                    &format!("kernel {file} {}", node.name),
                    f64::NAN,
                    dense,
                    mst,
                    ops,
                ));
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
