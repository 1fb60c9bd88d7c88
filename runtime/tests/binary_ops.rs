//! Property tests of the binary operators against the float reference
//! (`kestrel_runtime::ops::reference`), exact equality, over many random shapes; and a
//! NNEF round trip of a graph holding every binary op.
//!
//! The kernel the ops use is the one `kernels::binary::select()` picks (every accelerated kernel is
//! compared bit for bit with the portable one in `kernels`' own tests); CI also runs this
//! file with `KESTREL_KERNELS=generic` semantics covered by those kernel tests, and under
//! qemu-aarch64 for NEON.

use kestrel_runtime::ops::bconv::{BinaryConv2d, ConvGeometry, PadMode};
use kestrel_runtime::ops::bdense::BinaryDense;
use kestrel_runtime::ops::bitpack::Bitpack;
use kestrel_runtime::ops::bmaxpool::BinaryMaxPool;
use kestrel_runtime::ops::output_stage::OutputKind;
use kestrel_runtime::ops::packing::{
    bit, is_minus_one, pack_conv_weights, pack_dense_weights, words_for,
};
use kestrel_runtime::ops::{reference, registry};
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{LoadOptions, Model};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

mod common;
use common::write_nnef_tgz;

fn signs(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    // Real-valued (not only ±1) and with exact zeros: binarisation is part of what is tested.
    (0..n)
        .map(|_| match rng.random_range(0..8) {
            0 => 0.0,
            1 => -0.0,
            _ => rng.random_range(-2.0f32..2.0),
        })
        .collect()
}

fn channel_params(rng: &mut SmallRng, c: usize) -> (Vec<f32>, Vec<f32>) {
    let mul = (0..c)
        .map(|i| match i % 5 {
            0 => 0.0,
            1 => -rng.random_range(0.1f32..2.0),
            _ => rng.random_range(0.1f32..2.0),
        })
        .collect::<Vec<_>>();
    // Biases on integer multiples of mul create ties at y = 0.
    let bias = mul
        .iter()
        .map(|&m| {
            if rng.random() {
                -m * rng.random_range(-6i32..6) as f32
            } else {
                rng.random_range(-5.0f32..5.0)
            }
        })
        .collect();
    (mul, bias)
}

fn eval(op: impl EvalOp, input: Tensor) -> Tensor {
    op.eval_out_of_plan(tvec!(input.into_tvalue()))
        .unwrap()
        .unwrap()
        .remove(0)
        .into_tensor()
}

fn slice<T: Datum>(t: &Tensor) -> Vec<T> {
    t.try_as_plain_ram()
        .unwrap()
        .as_slice::<T>()
        .unwrap()
        .to_vec()
}

#[allow(clippy::too_many_arguments)]
fn check_conv(
    rng: &mut SmallRng,
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    g: ConvGeometry,
) {
    let x = signs(rng, n * c_in * h * w);
    let wts = signs(rng, c_out * c_in * g.kernel[0] * g.kernel[1]);
    let (mul, bias) = channel_params(rng, c_out);
    let (dots, oh, ow) = reference::conv_dots(&x, n, h, w, &wts, &g);
    let plane = oh * ow;
    let want = reference::output_stage(&dots, &mul, &bias, |i| (i / plane) % c_out);

    let packed_in = eval(Bitpack, Tensor::from_shape(&[n, c_in, h, w], &x).unwrap());
    let packed_w = pack_conv_weights(&wts, c_out, c_in, g.kernel[0], g.kernel[1]);
    let wt = Tensor::from_shape(
        &[c_out, g.kernel[0], g.kernel[1], words_for(c_in)],
        &packed_w,
    )
    .unwrap();
    let mk = |kind| {
        BinaryConv2d::new(
            g,
            Arc::new(wt.clone()),
            kind,
            Arc::new(tensor1(&mul)),
            Arc::new(tensor1(&bias)),
        )
        .unwrap()
    };
    let got = eval(mk(OutputKind::Float), packed_in.clone());
    assert_eq!(got.shape(), &[n, c_out, oh, ow], "{g:?}");
    let got = slice::<f32>(&got);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            a.to_bits() == b.to_bits(),
            "float out #{i}: {a} vs {b} for {g:?} n={n} h={h} w={w}"
        );
    }
    let bits = eval(mk(OutputKind::Packed), packed_in);
    let ow_words = words_for(c_out);
    assert_eq!(bits.shape(), &[n, oh, ow, ow_words]);
    let bits = slice::<u64>(&bits);
    for b in 0..n {
        for c in 0..c_out {
            for p in 0..plane {
                let y = want[(b * c_out + c) * plane + p];
                let row = &bits[(b * plane + p) * ow_words..][..ow_words];
                assert_eq!(
                    bit(row, c),
                    is_minus_one(y),
                    "packed bit c={c} p={p} y={y} {g:?}"
                );
            }
        }
    }
}

/// (n, c_in, c_out, h, w, kernel, stride, dilation, padding)
type NamedConv = (
    usize,
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 4],
);

#[test]
fn binary_conv_equals_the_float_reference() {
    let mut rng = SmallRng::seed_from_u64(42);
    // Named shapes first: C_in not a multiple of 64, 1x1/3x3/5x5, strides, dilation, both paddings.
    let named: &[NamedConv] = &[
        (1, 3, 8, 7, 9, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        (2, 65, 5, 6, 5, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        (1, 64, 70, 4, 4, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        (1, 130, 3, 9, 8, [5, 5], [1, 2], [1, 1], [2, 2, 2, 2]),
        (1, 10, 4, 11, 10, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        (3, 7, 9, 5, 7, [3, 1], [2, 1], [1, 1], [1, 0, 0, 0]),
        (1, 200, 16, 3, 3, [3, 3], [1, 1], [1, 1], [0, 1, 2, 0]),
    ];
    for &(n, c_in, c_out, h, w, kernel, stride, dilation, padding) in named {
        for pad_mode in [PadMode::Zero, PadMode::One] {
            let g = ConvGeometry {
                c_in,
                c_out,
                kernel,
                stride,
                dilation,
                padding,
                pad_mode,
            };
            check_conv(&mut rng, n, c_in, c_out, h, w, g);
        }
    }
    // Then random shapes.
    for _ in 0..60 {
        let kernel = [rng.random_range(1..6), rng.random_range(1..6)];
        let dilation = [rng.random_range(1..3), rng.random_range(1..3)];
        let mut pad = |k: usize| rng.random_range(0..k);
        let padding = [
            pad(kernel[0]),
            pad(kernel[1]),
            pad(kernel[0]),
            pad(kernel[1]),
        ];
        let h = dilation[0] * (kernel[0] - 1) + 1 + rng.random_range(0..6);
        let w = dilation[1] * (kernel[1] - 1) + 1 + rng.random_range(0..6);
        let g = ConvGeometry {
            c_in: rng.random_range(1..150),
            c_out: rng.random_range(1..80),
            kernel,
            stride: [rng.random_range(1..3), rng.random_range(1..3)],
            dilation,
            padding,
            pad_mode: if rng.random() {
                PadMode::Zero
            } else {
                PadMode::One
            },
        };
        let n = rng.random_range(1..3);
        check_conv(&mut rng, n, g.c_in, g.c_out, h, w, g);
    }
}

#[test]
fn binary_dense_equals_the_float_reference() {
    let mut rng = SmallRng::seed_from_u64(7);
    for &(n, k, n_out) in &[
        (1, 784, 64),
        (2, 1, 3),
        (1, 63, 5),
        (3, 64, 64),
        (1, 65, 130),
        (2, 300, 257),
    ] {
        let x = signs(&mut rng, n * k);
        let wts = signs(&mut rng, n_out * k);
        let (mul, bias) = channel_params(&mut rng, n_out);
        let dots = reference::dense_dots(&x, n, k, &wts, n_out);
        let want = reference::output_stage(&dots, &mul, &bias, |i| i % n_out);
        let packed_in = eval(Bitpack, Tensor::from_shape(&[n, k], &x).unwrap());
        let wt = Tensor::from_shape(&[n_out, words_for(k)], &pack_dense_weights(&wts, n_out, k))
            .unwrap();
        let mk = |kind| {
            BinaryDense::new(
                k,
                Arc::new(wt.clone()),
                kind,
                Arc::new(tensor1(&mul)),
                Arc::new(tensor1(&bias)),
            )
            .unwrap()
        };
        let got = slice::<f32>(&eval(mk(OutputKind::Float), packed_in.clone()));
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "k={k}"
        );
        let bits = slice::<u64>(&eval(mk(OutputKind::Packed), packed_in));
        let ow = words_for(n_out);
        for b in 0..n {
            for o in 0..n_out {
                assert_eq!(
                    bit(&bits[b * ow..][..ow], o),
                    is_minus_one(want[b * n_out + o])
                );
            }
        }
    }
}

#[test]
fn binary_max_pool_is_an_and_on_bits() {
    let mut rng = SmallRng::seed_from_u64(9);
    for &(n, c, h, w, k, s, p) in &[
        (1, 3, 6, 6, [2, 2], [2, 2], [0, 0, 0, 0]),
        (2, 70, 7, 5, [3, 3], [2, 2], [1, 1, 1, 1]),
        (1, 128, 4, 4, [3, 2], [1, 1], [1, 0, 1, 1]),
    ] {
        let x = signs(&mut rng, n * c * h * w);
        let (want, oh, ow) = reference::max_pool(&x, (n, c, h, w), k, s, p);
        let packed = eval(Bitpack, Tensor::from_shape(&[n, c, h, w], &x).unwrap());
        let got = eval(BinaryMaxPool::new(k, s, p).unwrap(), packed);
        let cw = words_for(c);
        assert_eq!(got.shape(), &[n, oh, ow, cw]);
        let bits = slice::<u64>(&got);
        for b in 0..n {
            for ch in 0..c {
                for q in 0..oh * ow {
                    let v = want[(b * c + ch) * oh * ow + q];
                    assert_eq!(bit(&bits[(b * oh * ow + q) * cw..][..cw], ch), v < 0.0);
                }
            }
        }
    }
}

/// bitpack → conv (packed out) → max-pool → conv (packed) → dense (float), written as NNEF
/// with Kestrel's dialect, loaded back by the runtime, and run against direct evaluation.
#[test]
fn nnef_round_trip_of_every_binary_op() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut model = TypedModel::default();
    let x = model
        .add_source("image", f32::fact([1, 3, 12, 12]))
        .unwrap();
    let packed = model.wire_node("pack", Bitpack, &[x]).unwrap();
    let conv = |rng: &mut SmallRng, c_in: usize, c_out: usize, kind: OutputKind| {
        let g = ConvGeometry {
            c_in,
            c_out,
            kernel: [3, 3],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [1, 1, 1, 1],
            pad_mode: PadMode::Zero,
        };
        let w = pack_conv_weights(&signs(rng, c_out * c_in * 9), c_out, c_in, 3, 3);
        let w = Tensor::from_shape(&[c_out, 3, 3, words_for(c_in)], &w).unwrap();
        let (mul, bias) = channel_params(rng, c_out);
        BinaryConv2d::new(
            g,
            Arc::new(w),
            kind,
            Arc::new(tensor1(&mul)),
            Arc::new(tensor1(&bias)),
        )
        .unwrap()
    };
    let c1 = model
        .wire_node("conv1", conv(&mut rng, 3, 70, OutputKind::Packed), &packed)
        .unwrap();
    let pool = model
        .wire_node(
            "pool",
            BinaryMaxPool::new([2, 2], [2, 2], [0; 4]).unwrap(),
            &c1,
        )
        .unwrap();
    let c2 = model
        .wire_node("conv2", conv(&mut rng, 70, 16, OutputKind::Packed), &pool)
        .unwrap();
    // Dense rows are the 6x6 pooled pixels of one word each, 16 real channel bits per word.
    let (mul, bias) = channel_params(&mut rng, 10);
    let wbits: Vec<u64> = (0..10 * 36).map(|_| rng.random::<u64>() & 0xffff).collect();
    let real_bits: usize = 36 * 16;
    let dense = BinaryDense::new(
        real_bits,
        Arc::new(Tensor::from_shape(&[10, 36], &wbits).unwrap()),
        OutputKind::Float,
        Arc::new(tensor1(&mul)),
        Arc::new(tensor1(&bias)),
    )
    .unwrap();
    let y = model.wire_node("fc", dense, &c2).unwrap();
    model.select_output_outlets(&y).unwrap();

    let input = Tensor::from_shape(&[1, 3, 12, 12], &signs(&mut rng, 3 * 144)).unwrap();
    let direct = model
        .clone()
        .into_runnable()
        .unwrap()
        .run(tvec!(input.clone().into_tvalue()))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bnn.nnef.tgz");
    write_nnef_tgz(&model, &path);
    let loaded = Model::load(&path, &LoadOptions { threads: Some(2) }).unwrap();
    let ops: Vec<String> = loaded
        .optimized_graph()
        .nodes()
        .iter()
        .map(|n| n.op().name().to_string())
        .collect();
    for op in [
        "KestrelBitpack",
        "KestrelBinaryConv2d",
        "KestrelBinaryMaxPool",
        "KestrelBinaryDense",
    ] {
        assert!(
            ops.iter().any(|o| o == op),
            "{op} missing after reload: {ops:?}"
        );
    }
    let reloaded = loaded.run(tvec!(input.into_tvalue())).unwrap();
    assert_eq!(
        direct[0].clone().into_tensor(),
        reloaded[0].clone().into_tensor()
    );
}

#[test]
fn bad_parameters_are_load_errors_naming_the_op() {
    let g = ConvGeometry {
        c_in: 3,
        c_out: 2,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [0; 4],
        pad_mode: PadMode::Zero,
    };
    let ok_w = Arc::new(Tensor::zero::<u64>(&[2, 3, 3, 1]).unwrap());
    let mul = Arc::new(tensor1(&[1f32, 1.]));
    let bias = Arc::new(tensor1(&[0f32, 0.]));
    let msg = |r: TractResult<BinaryConv2d>| format!("{:#}", r.unwrap_err());
    let wrong_shape = Arc::new(Tensor::zero::<u64>(&[2, 3, 1, 1]).unwrap());
    assert!(msg(BinaryConv2d::new(
        g,
        wrong_shape,
        OutputKind::Float,
        mul.clone(),
        bias.clone()
    ))
    .contains("kestrel_binary_conv2d: weights must be u64 [2, 3, 3, 1]"));
    let dirty = Arc::new(Tensor::from_shape(&[2, 3, 3, 1], &[1u64 << 5; 18]).unwrap());
    assert!(msg(BinaryConv2d::new(
        g,
        dirty,
        OutputKind::Float,
        mul.clone(),
        bias.clone()
    ))
    .contains("past c_in"));
    let short_bias = Arc::new(tensor1(&[0f32]));
    assert!(msg(BinaryConv2d::new(
        g,
        ok_w.clone(),
        OutputKind::Float,
        mul.clone(),
        short_bias
    ))
    .contains("bias must be 2 f32"));
    let zero = ConvGeometry {
        stride: [0, 1],
        ..g
    };
    assert!(msg(BinaryConv2d::new(
        zero,
        ok_w.clone(),
        OutputKind::Float,
        mul.clone(),
        bias.clone()
    ))
    .contains("must be positive"));
    let nan = Arc::new(tensor1(&[f32::NAN, 1.]));
    assert!(msg(BinaryConv2d::new(
        g,
        ok_w.clone(),
        OutputKind::Packed,
        nan,
        bias.clone()
    ))
    .contains("non-finite"));
    // A kernel larger than the input is an analysis error, not a panic.
    let op = BinaryConv2d::new(g, ok_w, OutputKind::Float, mul, bias).unwrap();
    let fact = u64::fact([1, 2, 2, 1]);
    assert!(format!("{:#}", op.output_facts(&[&fact]).unwrap_err()).contains("does not fit"));
    assert!(format!(
        "{:#}",
        BinaryMaxPool::new([2, 2], [0, 1], [0; 4]).unwrap_err()
    )
    .contains("kestrel_binary_max_pool"));
}

#[test]
fn unknown_padding_mode_in_a_graph_file_is_a_clear_load_error() {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 3, 4, 4])).unwrap();
    let p = model.wire_node("pack", Bitpack, &[x]).unwrap();
    let g = ConvGeometry {
        c_in: 3,
        c_out: 2,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [1; 4],
        pad_mode: PadMode::One,
    };
    let op = BinaryConv2d::new(
        g,
        Arc::new(Tensor::zero::<u64>(&[2, 3, 3, 1]).unwrap()),
        OutputKind::Float,
        Arc::new(tensor1(&[1f32, 1.])),
        Arc::new(tensor1(&[0f32, 0.])),
    )
    .unwrap();
    let y = model.wire_node("conv", op, &p).unwrap();
    model.select_output_outlets(&y).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nnef_dir = dir.path().join("m.nnef");
    registry::nnef().write_to_dir(&model, &nnef_dir).unwrap();
    let graph = nnef_dir.join("graph.nnef");
    let text = std::fs::read_to_string(&graph).unwrap();
    assert!(text.contains("pad_mode = \"one\""), "{text}");
    std::fs::write(
        &graph,
        text.replace("pad_mode = \"one\"", "pad_mode = \"mirror\""),
    )
    .unwrap();
    let err = Model::load(&nnef_dir, &LoadOptions { threads: Some(1) }).unwrap_err();
    let err = kestrel_runtime::error::Chain(&err).to_string();
    assert!(err.contains("unknown padding mode 'mirror'"), "{err}");
}
