//! `kestrel_depthwise` against a direct f64 reference over random shapes (kernel sizes,
//! strides, paddings, plane sizes, batch, every fused activation), on one and on two threads;
//! a NNEF round trip; the input HardSwish (tract's, bit for bit); and bad parameters refused
//! with the op's name.
//!
//! The kernel is the one `kernels::depthwise::select()` picks (every vector kernel is compared
//! bit for bit with the FMA reference in the kernels' own tests, under qemu for NEON).

use kestrel_runtime::ops::depthwise::{Depthwise, Fused, InputActivation, Precision};
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{LoadOptions, Model};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

mod common;
use common::write_nnef_tgz;

struct Case {
    op: Depthwise,
    w: Vec<f32>,
    b: Vec<f32>,
    x: Tensor,
}

fn random(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn case(rng: &mut SmallRng, shape: [usize; 4], k: [usize; 2], s: [usize; 2], fused: Fused) -> Case {
    let c = shape[1];
    let padding = [
        rng.random_range(0..k[0]),
        rng.random_range(0..k[1]),
        rng.random_range(0..k[0]),
        rng.random_range(0..k[1]),
    ];
    let w = random(rng, c * k[0] * k[1]);
    let b = random(rng, c);
    let x = Tensor::from_shape(&shape, &random(rng, shape.iter().product())).unwrap();
    let op = Depthwise::new(
        Arc::new(Tensor::from_shape(&[c, k[0], k[1]], &w).unwrap()),
        Arc::new(tensor1(&b)),
        s,
        padding,
        fused,
    )
    .unwrap();
    Case { op, w, b, x }
}

fn activation(f: Fused, v: f64) -> f64 {
    match f {
        Fused::None => v,
        Fused::Relu => v.max(0.0),
        Fused::Clip(hi) => v.max(0.0).min(hi as f64),
        Fused::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
    }
}

/// Checks the op's output against the f64 reference: within `2·(taps+1)·ε` of the sum of
/// the terms' magnitudes (HardSwish: 1.5 times that).
fn check(c: &Case, got: &Tensor) {
    let s = c.x.shape();
    let (n, ch, h, w) = (s[0], s[1], s[2], s[3]);
    let [kh, kw] = c.op.kernel();
    let [pt, pl, _, _] = c.op.padding;
    let g = got.shape();
    assert_eq!((g[0], g[1]), (n, ch));
    let (oh, ow) = (g[2], g[3]);
    let x = c.x.try_as_plain_ram().unwrap();
    let x = x.as_slice::<f32>().unwrap();
    let y = got.try_as_plain_ram().unwrap();
    let y = y.as_slice::<f32>().unwrap();
    for b in 0..n {
        for ci in 0..ch {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut acc, mut mag) = (c.b[ci] as f64, c.b[ci].abs() as f64);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * c.op.stride[0] + ky) as isize - pt as isize;
                            let ix = (ox * c.op.stride[1] + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let v = x[((b * ch + ci) * h + iy as usize) * w + ix as usize] as f64;
                            let t = c.w[(ci * kh + ky) * kw + kx] as f64 * v;
                            acc += t;
                            mag += t.abs();
                        }
                    }
                    let want = activation(c.op.fused, acc);
                    let have = y[((b * ch + ci) * oh + oy) * ow + ox] as f64;
                    let bound = 1.5 * 2.0 * (kh * kw + 1) as f64 * f32::EPSILON as f64 * mag
                        + 1e-7 * want.abs();
                    assert!(
                        (have - want).abs() <= bound,
                        "{:?} {s:?}: ({b}, {ci}, {oy}, {ox}) {have} vs {want}",
                        c.op
                    );
                }
            }
        }
    }
}

fn eval(op: &Depthwise, x: &Tensor) -> Tensor {
    op.eval_out_of_plan(tvec!(x.clone().into_tvalue()))
        .unwrap()
        .unwrap()
        .remove(0)
        .into_tensor()
}

const FUSED: [Fused; 4] = [Fused::None, Fused::Relu, Fused::Clip(0.5), Fused::HardSwish];

#[test]
fn depthwise_equals_the_f64_reference() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut cases = 0;
    for k in [[1, 1], [3, 3], [5, 5], [7, 7], [3, 5]] {
        for s in [[1, 1], [2, 2], [1, 2], [2, 1]] {
            for hw in [[7, 7], [8, 13], [17, 33], [14, 14]] {
                if hw[0] + 2 * (k[0] - 1) < k[0] {
                    continue;
                }
                let fused = FUSED[cases % FUSED.len()];
                let n = 1 + cases % 2;
                let c = case(&mut rng, [n, 3, hw[0], hw[1]], k, s, fused);
                check(&c, &eval(&c.op, &c.x));
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 80);
}

/// A one-op graph of `op` reading `[n, c, h, w]`.
fn graph(op: &Depthwise, shape: &[usize]) -> TypedModel {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(shape)).unwrap();
    let y = model.wire_node("dw", op.clone(), &[x]).unwrap();
    model.select_output_outlets(&y).unwrap();
    model
}

#[test]
fn two_threads_give_the_same_planes_and_the_graph_round_trips() {
    let mut rng = SmallRng::seed_from_u64(8);
    let c = case(&mut rng, [2, 5, 19, 23], [5, 5], [2, 2], Fused::Clip(6.0));
    let model = graph(&c.op, c.x.shape());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dw.nnef.tgz");
    write_nnef_tgz(&model, &path);
    let one = eval(&c.op, &c.x);
    for threads in [1, 2] {
        let loaded = Model::load(
            &path,
            &LoadOptions {
                threads: Some(threads),
            },
        )
        .unwrap();
        let ops: Vec<String> = loaded
            .optimized_graph()
            .nodes()
            .iter()
            .map(|n| n.op().name().to_string())
            .collect();
        assert!(ops.iter().any(|o| o == "KestrelDepthwise"), "{ops:?}");
        let out = loaded.run(tvec!(c.x.clone().into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), one, "{threads} threads");
    }
    check(&c, &one);
}

#[test]
fn bad_parameters_are_errors_naming_the_op() {
    let w = |shape: &[usize]| Arc::new(Tensor::zero::<f32>(shape).unwrap());
    let b = Arc::new(tensor1(&[0f32; 2]));
    let msg = |r: TractResult<Depthwise>| format!("{:#}", r.unwrap_err());
    let none = Fused::None;
    for (weights, stride, padding, fused, expect) in [
        (
            w(&[2, 3]),
            [1, 1],
            [0; 4],
            none,
            "weights must be f32 [C, KH, KW]",
        ),
        (w(&[2, 9, 9]), [1, 1], [0; 4], none, "KH, KW in 1..=7"),
        (w(&[3, 3, 3]), [1, 1], [0; 4], none, "bias must be f32 [3]"),
        (
            w(&[2, 3, 3]),
            [3, 1],
            [0; 4],
            none,
            "strides must be 1 or 2",
        ),
        (
            w(&[2, 3, 3]),
            [1, 1],
            [3, 0, 0, 0],
            none,
            "smaller than the kernel",
        ),
        (
            w(&[2, 3, 3]),
            [1, 1],
            [0; 4],
            Fused::Clip(f32::NAN),
            "finite and positive",
        ),
    ] {
        let m = msg(Depthwise::new(weights, b.clone(), stride, padding, fused));
        assert!(m.contains("kestrel_depthwise") && m.contains(expect), "{m}");
    }
    let op = Depthwise::new(w(&[2, 3, 3]), b, [1, 1], [0; 4], none).unwrap();
    let small = f32::fact([1, 2, 2, 2]);
    assert!(format!("{:#}", op.output_facts(&[&small]).unwrap_err()).contains("does not fit"));
    let wrong_c = f32::fact([1, 3, 8, 8]);
    assert!(format!("{:#}", op.output_facts(&[&wrong_c]).unwrap_err())
        .contains("[N, 2, H, W] or [2, H, W]"));
}

/// The op with its input HardSwish gives the bits of tract's HardSwish followed by the op
/// without it, and the attribute survives the NNEF round trip; an unknown input activation in
/// a graph file is a load error naming the op and the value.
#[test]
fn the_input_hardswish_is_tracts_and_round_trips() {
    let mut rng = SmallRng::seed_from_u64(9);
    for s in [[1, 1], [2, 2]] {
        let c = case(&mut rng, [1, 6, 13, 17], [3, 3], s, Fused::HardSwish);
        // Inputs across HardSwish's bends at -3 and 3.
        let x =
            c.x.clone()
                .into_plain_array::<f32>()
                .unwrap()
                .mapv(|v| v * 8.0);
        let x = x.into_tensor();
        let fused = c.op.clone().with_input(InputActivation::HardSwish);
        let mut hs = x.clone();
        kestrel_runtime::tract_core::ops::nn::hard_swish()
            .0
            .eval_in_place(&mut hs, None)
            .unwrap();
        let want = eval(&c.op, &hs);
        assert_eq!(eval(&fused, &x), want, "stride {s:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dw.nnef.tgz");
        write_nnef_tgz(&graph(&fused, x.shape()), &path);
        let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
        let out = loaded.run(tvec!(x.clone().into_tvalue())).unwrap();
        assert_eq!(
            out[0].clone().into_tensor(),
            want,
            "round trip, stride {s:?}"
        );
    }

    let c = case(&mut rng, [1, 2, 8, 8], [3, 3], [1, 1], Fused::None);
    let op = c.op.with_input(InputActivation::HardSwish);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dw.nnef");
    kestrel_runtime::ops::registry::nnef()
        .write_to_dir(&graph(&op, &[1, 2, 8, 8]), &dir)
        .unwrap();
    let text = dir.join("graph.nnef");
    let graph_text = std::fs::read_to_string(&text).unwrap();
    assert!(
        graph_text.contains("input_activation = \"hardswish\""),
        "{graph_text}"
    );
    std::fs::write(
        &text,
        graph_text.replace(
            "input_activation = \"hardswish\"",
            "input_activation = \"gelu\"",
        ),
    )
    .unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).expect_err("a load error");
    let msg = kestrel_runtime::error::Chain(&err).to_string();
    assert!(
        msg.contains("kestrel_depthwise") && msg.contains("gelu"),
        "{msg}"
    );
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// At `precision = "f16"` the op is within binary16's bound of the f32 op (equal where the
/// core has no FEAT_FP16: the f32 kernels run), on one and two threads, with an input
/// HardSwish too; the attribute survives the NNEF round trip; an unknown precision is a load
/// error naming the op.
#[test]
fn the_f16_precision_is_within_its_bound_and_round_trips() {
    let mut rng = SmallRng::seed_from_u64(10);
    let half = kestrel_runtime::kernels::depthwise::fp16::select().is_some();
    for (k, s, input) in [
        ([3, 3], [1, 1], InputActivation::HardSwish),
        ([5, 5], [2, 2], InputActivation::None),
        ([3, 3], [2, 2], InputActivation::HardSwish),
        ([7, 7], [1, 1], InputActivation::None),
    ] {
        let c = case(&mut rng, [2, 4, 15, 29], k, s, Fused::Clip(6.0));
        let f32_op = c.op.clone().with_input(input);
        let f16_op = f32_op.clone().with_precision(Precision::F16).unwrap();
        let want = eval(&f32_op, &c.x);
        let got = eval(&f16_op, &c.x);
        let (want, got) = (floats(&want), floats(&got));
        // Inputs in [-1, 1], weights in [-1, 1], bias in [-1, 1] (`case`): |sum| ≤ 1 + K²,
        // and each output within (T + 3)·2⁻¹¹ of that, HardSwish steps included.
        let taps = (k[0] * k[1]) as f32;
        let bound = (taps + 6.0) * 2f32.powi(-11) * (1.0 + taps);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= bound, "{k:?} {s:?}: {worst} > {bound}");
        if !half {
            assert_eq!(worst, 0.0, "no FEAT_FP16: the f32 kernels run");
        }

        for (threads, out) in reloaded(&f16_op, &c.x) {
            assert_eq!(floats(&out), got, "round trip, {threads} threads");
        }
    }

    let c = case(&mut rng, [1, 2, 8, 8], [3, 3], [1, 1], Fused::None);
    let op = c.op.with_precision(Precision::F16).unwrap();
    let msg = load_error_after(&op, "precision = \"f16\"", "precision = \"bf16\"");
    assert!(
        msg.contains("kestrel_depthwise") && msg.contains("bf16"),
        "{msg}"
    );
}

/// The op's one-op graph written as `.nnef.tgz` and reloaded on one and on two threads: its
/// output on `x`, by thread count.
fn reloaded(op: &Depthwise, x: &Tensor) -> Vec<(usize, Tensor)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dw.nnef.tgz");
    write_nnef_tgz(&graph(op, x.shape()), &path);
    [1, 2]
        .into_iter()
        .map(|threads| {
            let options = LoadOptions {
                threads: Some(threads),
            };
            let loaded = Model::load(&path, &options).unwrap();
            let out = loaded.run(tvec!(x.clone().into_tvalue())).unwrap();
            (threads, out[0].clone().into_tensor())
        })
        .collect()
}

/// The load error of the op's one-op graph (on an `[1, 2, 8, 8]` input) written as a NNEF
/// directory with `from` replaced by `to` in its text (which must hold `from`).
fn load_error_after(op: &Depthwise, from: &str, to: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dw.nnef");
    kestrel_runtime::ops::registry::nnef()
        .write_to_dir(&graph(op, &[1, 2, 8, 8]), &dir)
        .unwrap();
    let text = dir.join("graph.nnef");
    let graph_text = std::fs::read_to_string(&text).unwrap();
    assert!(graph_text.contains(from), "{graph_text}");
    std::fs::write(&text, graph_text.replace(from, to)).unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).expect_err("a load error");
    kestrel_runtime::error::Chain(&err).to_string()
}

/// The i8 codes of a QI8 tensor.
fn codes(t: &Tensor) -> Vec<i8> {
    // SAFETY: a QI8 tensor holds i8 values.
    unsafe { t.as_slice_unchecked::<i8>() }.to_vec()
}

/// With `output = "int8"` the op writes the codes the next int8 layer would make of its f32
/// output (`kernels::int8::quantize`): bit for bit at f32 precision, within a code (plus
/// binary16's bound) at f16 where the core has FEAT_FP16; typed `QI8`, on one and two
/// threads, through the NNEF round trip; a bad zero point is a load error naming the op.
#[test]
fn int8_codes_out_are_the_next_layers_quantization() {
    use kestrel_runtime::kernels::int8::quantize;
    use kestrel_runtime::ops::int8_linear::Int8Output;
    let mut rng = SmallRng::seed_from_u64(11);
    let half = kestrel_runtime::kernels::depthwise::fp16::select().is_some();
    let (zero_point, scale) = (-7, 0.02f32);
    let output = Int8Output::Int8 { zero_point, scale };
    for (k, s, fused, input) in [
        ([3, 3], [1, 1], Fused::HardSwish, InputActivation::HardSwish),
        ([5, 5], [2, 2], Fused::Relu, InputActivation::None),
        ([3, 3], [2, 2], Fused::Clip(6.0), InputActivation::HardSwish),
        ([7, 7], [1, 1], Fused::None, InputActivation::None),
    ] {
        let c = case(&mut rng, [2, 4, 15, 29], k, s, fused);
        for precision in [Precision::F32, Precision::F16] {
            let float =
                c.op.clone()
                    .with_input(input)
                    .with_precision(precision)
                    .unwrap();
            let op = float.clone().with_output(output).unwrap();
            let want: Vec<i8> = floats(&eval(&float, &c.x))
                .iter()
                .map(|&v| quantize(v, 1.0 / scale, zero_point as f32))
                .collect();
            let got = eval(&op, &c.x);
            assert_eq!(
                got.datum_type(),
                DatumType::QI8(QParams::ZpScale { zero_point, scale })
            );
            let got = codes(&got);
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap();
            if precision == Precision::F16 && half {
                // The f16 op's own bound (the test above) in codes, plus the stage's rounding.
                let taps = (k[0] * k[1]) as f32;
                let bound = 1.0 + (taps + 12.0) * 2f32.powi(-11) * (1.0 + taps) / scale;
                assert!(worst as f32 <= bound, "{k:?} {fused:?}: {worst} > {bound}");
            } else {
                assert_eq!(
                    worst, 0,
                    "{k:?} {fused:?} {precision:?}: the f32 output quantized"
                );
            }

            for (threads, out) in reloaded(&op, &c.x) {
                assert_eq!(codes(&out), got, "round trip, {threads} threads");
            }
        }
    }

    let c = case(&mut rng, [1, 2, 8, 8], [3, 3], [1, 1], Fused::None);
    let op = c.op.with_output(output).unwrap();
    let msg = load_error_after(&op, "output_zero_point = -7", "output_zero_point = 300");
    assert!(
        msg.contains("kestrel_depthwise") && msg.contains("300"),
        "{msg}"
    );
}
