//! Binary layers against tract's own f32 layers of the same shape, one thread, side by side in
//! one run: `cargo bench --bench binary_layers`.
//!
//! Each binary layer is the whole op (lane layout, XOR-popcount kernel, fused float output
//! stage) run through a planned graph; the f32 layer is tract-core's `Conv` (its im2col +
//! packed matmul kernels; a dense layer is a 1×1 conv on a 1×1 map). After the criterion runs,
//! a summary line per shape prints the medians, the binary bit-MAC/s (useful MACs: output
//! pixels × channels × taps × C_in), its share of the register-only XOR+popcount peak of the
//! selected kernel's instruction set (`common/peak.rs`; layer runs and peak loops alternate,
//! the share is the median of the per-round ratios: [`paired_share`]), the f32
//! MAC/s, the speed ratio, and the binary layer's median with the runtime at 2 threads.
//!
//! Both run under the `kestrel` binary's allocator ([`kestrel_runtime::pool_alloc`]), as on
//! the device: without it glibc gave each run's 800 KB output (3×3 64→64 @56) fresh pages
//! from the kernel (page faults, `unmap_page_range`: ~5% of the layer's profile).
//! `KESTREL_POOL_MB=0` measures with the system allocator.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel_runtime::ops::bconv::{BinaryConv2d, ConvGeometry, PadMode};
use kestrel_runtime::ops::bdense::BinaryDense;
use kestrel_runtime::ops::output_stage::OutputKind;
use kestrel_runtime::ops::packing::words_for;
use kestrel_runtime::pool_alloc::{self, PoolAlloc};
use kestrel_runtime::random::random_tensor;
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use kestrel_runtime::tract_core::ops::nn::DataFormat;
use kestrel_runtime::{LoadOptions, Model};

#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

#[path = "common/peak.rs"]
mod peak;

/// (name, c_in, c_out, kernel, spatial size); kernel 0 marks a dense layer (K = c_in).
const SHAPES: &[(&str, usize, usize, usize, usize)] = &[
    ("conv3x3_64x64_56", 64, 64, 3, 56),
    ("conv3x3_256x256_14", 256, 256, 3, 14),
    ("conv1x1_512x512_7", 512, 512, 1, 7),
    ("dense_784x64", 784, 64, 0, 1),
    ("dense_4096x4096", 4096, 4096, 0, 1),
];

fn random_words(n: usize, seed: u64) -> Vec<u64> {
    let t = random_tensor(DatumType::F32, &[n * 2], seed).unwrap();
    let v = t.try_as_plain_ram().unwrap();
    v.as_slice::<f32>()
        .unwrap()
        .chunks(2)
        .map(|p| {
            ((p[0].to_bits() as u64) << 32)
                ^ (p[1].to_bits() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
        .collect()
}

fn plan(label: &str, model: TypedModel) -> Model {
    plan_threads(label, model, 1)
}

fn plan_threads(label: &str, model: TypedModel, threads: usize) -> Model {
    Model::from_typed(
        label,
        model,
        &LoadOptions {
            threads: Some(threads),
        },
        Instant::now(),
    )
    .unwrap()
}

/// The binary layer and its input.
fn binary(c_in: usize, c_out: usize, k: usize, size: usize) -> (Model, TVec<TValue>) {
    binary_threads(c_in, c_out, k, size, 1)
}

/// The binary layer planned for `threads` threads, and its input.
fn binary_threads(
    c_in: usize,
    c_out: usize,
    k: usize,
    size: usize,
    threads: usize,
) -> (Model, TVec<TValue>) {
    let plan = |label: &str, m: TypedModel| plan_threads(label, m, threads);
    let mut m = TypedModel::default();
    let ones = Arc::new(tensor1(&vec![1f32; c_out]));
    let zeros = Arc::new(tensor1(&vec![0f32; c_out]));
    let cw = words_for(c_in);
    if k == 0 {
        let x = m.add_source("x", u64::fact([1, cw])).unwrap();
        let w = Tensor::from_shape(&[c_out, cw], &mask(random_words(c_out * cw, 1), c_in)).unwrap();
        let op = BinaryDense::new(c_in, Arc::new(w), OutputKind::Float, ones, zeros).unwrap();
        let y = m.wire_node("dense", op, &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let input = Tensor::from_shape(&[1, cw], &mask(random_words(cw, 2), c_in)).unwrap();
        (plan("binary", m), tvec!(input.into_tvalue()))
    } else {
        let g = ConvGeometry {
            c_in,
            c_out,
            kernel: [k, k],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [k / 2; 4],
            pad_mode: PadMode::Zero,
        };
        let x = m.add_source("x", u64::fact([1, size, size, cw])).unwrap();
        let w = Tensor::from_shape(
            &[c_out, k, k, cw],
            &mask(random_words(c_out * k * k * cw, 1), c_in),
        )
        .unwrap();
        let op = BinaryConv2d::new(g, Arc::new(w), OutputKind::Float, ones, zeros).unwrap();
        let y = m.wire_node("conv", op, &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let input = Tensor::from_shape(
            &[1, size, size, cw],
            &mask(random_words(size * size * cw, 2), c_in),
        )
        .unwrap();
        (plan("binary", m), tvec!(input.into_tvalue()))
    }
}

/// Clears channel-padding bits (every row of `bits` real bits, packed in whole words).
fn mask(mut words: Vec<u64>, bits: usize) -> Vec<u64> {
    let cw = words_for(bits);
    let rem = bits % 64;
    if rem != 0 {
        for row in words.chunks_mut(cw) {
            row[cw - 1] &= (1u64 << rem) - 1;
        }
    }
    words
}

/// tract's f32 conv of the same shape, and its input.
fn float(c_in: usize, c_out: usize, k: usize, size: usize) -> (Model, TVec<TValue>) {
    let (k, size) = if k == 0 { (1, 1) } else { (k, size) };
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([1, c_in, size, size])).unwrap();
    let w = m
        .add_const(
            "w",
            random_tensor(DatumType::F32, &[c_out, c_in, k, k], 3).unwrap(),
        )
        .unwrap();
    let b = m
        .add_const("b", Tensor::zero::<f32>(&[c_out]).unwrap())
        .unwrap();
    let pool_spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec![k, k],
        padding: PaddingSpec::Explicit(tvec![k / 2, k / 2], tvec![k / 2, k / 2]),
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
    m.select_output_outlets(&y).unwrap();
    let input = random_tensor(DatumType::F32, &[1, c_in, size, size], 4).unwrap();
    (
        plan("f32", m.into_decluttered().unwrap()),
        tvec!(input.into_tvalue()),
    )
}

fn median(model: &Model, inputs: &TVec<TValue>, runs: usize) -> Duration {
    let mut s = model.session().unwrap();
    for _ in 0..3 {
        s.run(inputs.clone()).unwrap();
    }
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            s.run(inputs.clone()).unwrap();
            start.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

/// The layer's median time and its share of the register-only peak, measured interleaved:
/// each of `runs` rounds times one layer run and then one peak loop of about the same length,
/// and the share is the median over rounds of (layer bit-MAC/s) / (peak bit-MAC/s) of the same
/// round. On this shared machine load changes between separate measurements move the peak and
/// the layer apart; within a round both see the same load.
fn paired_share(
    model: &Model,
    inputs: &TVec<TValue>,
    bit_macs: f64,
    runs: usize,
) -> (Duration, f64) {
    let name = peak::peak_name(kestrel_runtime::kernels::binary::select().name());
    let mut s = model.session().unwrap();
    for _ in 0..3 {
        s.run(inputs.clone()).unwrap();
    }
    // Peak iterations of about one layer run.
    let probe = Instant::now();
    let (_, bits) = peak::run(name, std::hint::black_box(1 << 12)).unwrap();
    let per_iter = probe.elapsed().as_secs_f64() / f64::from(1 << 12);
    let start = Instant::now();
    s.run(inputs.clone()).unwrap();
    let iters = ((start.elapsed().as_secs_f64() / per_iter) as u64).max(1 << 10);
    let mut times = vec![];
    let mut shares = vec![];
    for _ in 0..runs {
        let start = Instant::now();
        s.run(inputs.clone()).unwrap();
        let layer = start.elapsed();
        let start = Instant::now();
        std::hint::black_box(peak::run(name, std::hint::black_box(iters)));
        let peak = (iters * bits) as f64 / start.elapsed().as_secs_f64();
        times.push(layer);
        shares.push(bit_macs / layer.as_secs_f64() / peak);
    }
    times.sort();
    shares.sort_by(f64::total_cmp);
    (times[runs / 2], shares[runs / 2])
}

/// Register-only peak of the selected kernel's instruction set, bit-MAC/s (median of 31 runs).
fn peak_rate() -> (&'static str, f64) {
    let name = peak::peak_name(kestrel_runtime::kernels::binary::select().name());
    let iters = 1 << 16;
    let mut t: Vec<(f64, u64)> = (0..31)
        .map(|_| {
            let start = Instant::now();
            let (r, bits) = peak::run(name, std::hint::black_box(iters)).unwrap();
            std::hint::black_box(r);
            (start.elapsed().as_secs_f64(), bits)
        })
        .collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, bits) = t[15];
    (name, (iters * bits) as f64 / secs)
}

fn layers(c: &mut Criterion) {
    let _pool = pool_alloc::enable(pool_alloc::cache_bytes_from_env());
    let mut group = c.benchmark_group("layer");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut summary = vec![];
    for &(name, c_in, c_out, k, size) in SHAPES {
        let (bm, bi) = binary(c_in, c_out, k, size);
        let (fm, fi) = float(c_in, c_out, k, size);
        let mut bs = bm.session().unwrap();
        group.bench_function(format!("{name}/binary"), |b| {
            b.iter(|| bs.run(bi.clone()).unwrap())
        });
        let mut fs = fm.session().unwrap();
        group.bench_function(format!("{name}/f32"), |b| {
            b.iter(|| fs.run(fi.clone()).unwrap())
        });
        // Side by side, for the ratio.
        let kk = if k == 0 { 1 } else { k * k };
        let macs = (c_in * c_out * kk * size * size) as f64;
        let (tb, share) = paired_share(&bm, &bi, macs, 61);
        let tf = median(&fm, &fi, 31);
        let (bm2, bi2) = binary_threads(c_in, c_out, k, size, 2);
        let tb2 = median(&bm2, &bi2, 31);
        summary.push(format!(
            "{name:<20} binary {:>8.1} us {:>6.1} Gbit-MAC/s {:>4.0}% of peak | f32 {:>8.1} us {:>5.1} GMAC/s | {:>5.1}x | 2 threads {:>8.1} us",
            tb.as_secs_f64() * 1e6,
            macs / tb.as_secs_f64() / 1e9,
            100.0 * share,
            tf.as_secs_f64() * 1e6,
            macs / tf.as_secs_f64() / 1e9,
            tf.as_secs_f64() / tb.as_secs_f64(),
            tb2.as_secs_f64() * 1e6,
        ));
    }
    group.finish();
    let (peak_name, peak) = peak_rate();
    eprintln!(
        "\nbinary vs f32, one thread, kernel {}, peak ({peak_name}) {:.1} Gbit-MAC/s:",
        kestrel_runtime::kernels::binary::select().name(),
        peak / 1e9
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
