//! Kestrel's 2×2 stride-2 max-pool (`kestrel_max_pool_2x2`) against tract's `MaxPool` of the
//! same shape, one thread, side by side in one run: `cargo bench --bench maxpool`.
//!
//! Shapes: the pools of a CIFAR-sized network (`benches/bnn_stem`'s float twin), a detector's
//! early and late stages and an ImageNet stem's output, channels first as the converter writes
//! them. After the criterion runs a summary line per shape prints the medians of interleaved
//! rounds (tract, then Kestrel, per round; the ratio is the median of per-round ratios), the
//! output rate and whether the outputs are equal.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::pool;
use kestrel_runtime::ops::maxpool::MaxPool2x2;
use kestrel_runtime::pool_alloc::PoolAlloc;
use kestrel_runtime::random::random_tensor;
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
use kestrel_runtime::tract_core::ops::nn::DataFormat;
use kestrel_runtime::{LoadOptions, Model};

#[path = "common/paired.rs"]
mod paired;
use paired::paired;

#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

/// (name, channels, input size).
const SHAPES: &[(&str, usize, usize)] = &[
    ("pool_64_32", 64, 32),
    ("pool_128_16", 128, 16),
    ("pool_24_64", 24, 64),
    ("pool_64_112", 64, 112),
    ("pool_96_15", 96, 15),
];

fn plan(label: &str, model: TypedModel) -> Model {
    Model::from_typed(
        label,
        model,
        &LoadOptions { threads: Some(1) },
        Instant::now(),
    )
    .unwrap()
}

fn graph(c: usize, size: usize, kestrel: bool) -> (Model, TVec<TValue>) {
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([1, c, size, size])).unwrap();
    let y = if kestrel {
        m.wire_node("pool", MaxPool2x2, &[x]).unwrap()
    } else {
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![2, 2],
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: Some(tvec![2, 2]),
            input_channels: c,
            output_channels: c,
        };
        m.wire_node("pool", MaxPool::new(spec, None), &[x]).unwrap()
    };
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &[1, c, size, size], 4).unwrap();
    let label = if kestrel { "kestrel" } else { "tract" };
    let model = if kestrel {
        m
    } else {
        m.into_decluttered().unwrap()
    };
    (plan(label, model), tvec!(input.into_tvalue()))
}

fn pools(c: &mut Criterion) {
    let mut group = c.benchmark_group("maxpool");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300));
    let mut summary = vec![];
    for &(name, ch, size) in SHAPES {
        let t = graph(ch, size, false);
        let k = graph(ch, size, true);
        let a = t.0.session().unwrap().run(t.1.clone()).unwrap();
        let b = k.0.session().unwrap().run(k.1.clone()).unwrap();
        let same = if a[0] == b[0] { "equal" } else { "DIFFERENT" };
        for (label, (model, input)) in [("tract", &t), ("kestrel", &k)] {
            let mut session = model.session().unwrap();
            group.bench_function(format!("{name}/{label}"), |bench| {
                bench.iter(|| session.run(input.clone()).unwrap())
            });
        }
        let (tt, tk, ratio) = paired(&t, &k, 101);
        let outputs = (ch * (size / 2) * (size / 2)) as f64;
        summary.push(format!(
            "{name:<12}: tract {:8.2} µs, kestrel {:8.2} µs ({:5.2} outputs/ns), kestrel/tract {ratio:.2}, outputs {same}",
            tt.as_secs_f64() * 1e6,
            tk.as_secs_f64() * 1e6,
            outputs / tk.as_secs_f64() / 1e9,
        ));
    }
    group.finish();
    eprintln!(
        "\nkestrel_max_pool_2x2 (kernel {}) vs tract's MaxPool, one thread, medians of interleaved rounds:",
        pool::select().name()
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, pools);
criterion_main!(benches);
