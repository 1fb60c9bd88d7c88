//! Kestrel's float 1×1 convolution (`kestrel_linear`) against tract's 1×1 `Conv` of the same
//! shape (decluttered to its matrix product, bias and ReLU fused by tract), one thread, side by
//! side in one run: `cargo bench --bench linear`.
//!
//! Shapes: the pointwise layers of a MobileNet-class network at 224×224 input (expansion,
//! projection and the late wide layers), channels first as the converter writes them. After
//! the criterion runs a summary line per shape prints the medians of interleaved rounds
//! (tract, then Kestrel, per round; the ratio is the median of per-round ratios), the
//! multiply-add rate and the largest difference between the two outputs (summation order
//! only).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::linear;
use kestrel_runtime::ops::depthwise::Fused;
use kestrel_runtime::ops::linear::Linear;
use kestrel_runtime::pool_alloc::PoolAlloc;
use kestrel_runtime::random::random_tensor;
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use kestrel_runtime::tract_core::ops::math;
use kestrel_runtime::tract_core::ops::nn::DataFormat;
use kestrel_runtime::{LoadOptions, Model};

#[path = "common/paired.rs"]
mod paired;
use paired::paired;

#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

/// (name, input channels, output channels, plane size).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("pw_16_64_112", 16, 64, 112),
    ("pw_64_24_56", 64, 24, 56),
    ("pw_24_72_56", 24, 72, 56),
    ("pw_128_128_28", 128, 128, 28),
    ("pw_256_256_14", 256, 256, 14),
    ("pw_512_512_7", 512, 512, 7),
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

/// `x [1, k, s, s]` → 1×1 conv (k → o) with a bias → ReLU.
fn graph(k: usize, o: usize, s: usize, kestrel: bool) -> (Model, TVec<TValue>) {
    let w = random_tensor(DatumType::F32, &[o, k], 1).unwrap();
    let b = random_tensor(DatumType::F32, &[o], 2).unwrap();
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([1, k, s, s])).unwrap();
    let y = if kestrel {
        let op = Linear::new(Arc::new(w), Arc::new(b), 1, Fused::Relu).unwrap();
        m.wire_node("pw", op, &[x]).unwrap()
    } else {
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![1, 1],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: None,
                input_channels: k,
                output_channels: o,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let w = m
            .add_const("w", w.into_shape(&[o, k, 1, 1]).unwrap())
            .unwrap();
        let b = m.add_const("b", b).unwrap();
        let y = m.wire_node("pw", conv, &[x, w, b]).unwrap();
        let zero = m
            .add_const("zero", tensor0(0f32).broadcast_into_rank(4).unwrap())
            .unwrap();
        m.wire_node("relu", math::max(), &[y[0], zero]).unwrap()
    };
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &[1, k, s, s], 4).unwrap();
    let label = if kestrel { "kestrel" } else { "tract" };
    let model = if kestrel {
        m
    } else {
        m.into_decluttered().unwrap()
    };
    (plan(label, model), tvec!(input.into_tvalue()))
}

fn max_diff(a: &TValue, b: &TValue) -> f32 {
    let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn pointwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300));
    let mut summary = vec![];
    for &(name, k, o, s) in SHAPES {
        let t = graph(k, o, s, false);
        let kk = graph(k, o, s, true);
        let a = t.0.session().unwrap().run(t.1.clone()).unwrap();
        let b = kk.0.session().unwrap().run(kk.1.clone()).unwrap();
        let diff = max_diff(&a[0], &b[0]);
        for (label, (model, input)) in [("tract", &t), ("kestrel", &kk)] {
            let mut session = model.session().unwrap();
            group.bench_function(format!("{name}/{label}"), |bench| {
                bench.iter(|| session.run(input.clone()).unwrap())
            });
        }
        let (tt, tk, ratio) = paired(&t, &kk, 101);
        let macs = (k * o * s * s) as f64;
        summary.push(format!(
            "{name:<14}: tract {:8.1} µs, kestrel {:8.1} µs ({:5.2} MAC/ns), kestrel/tract {ratio:.2}, max |diff| {diff:.1e}",
            tt.as_secs_f64() * 1e6,
            tk.as_secs_f64() * 1e6,
            macs / tk.as_secs_f64() / 1e9,
        ));
    }
    group.finish();
    eprintln!(
        "\nkestrel_linear (kernel {}) vs tract's 1x1 Conv, one thread, medians of interleaved rounds:",
        linear::select().name()
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, pointwise);
criterion_main!(benches);
