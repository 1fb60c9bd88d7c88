//! `kestrel_int8_linear`: the op against its definition (quantize, integer sums, output stage)
//! on NCHW and dense shapes, f32 and i8 inputs and outputs, one and several threads; its NNEF
//! round trip through the runtime's loader; and bad parameters refused with the op's name.

use kestrel_runtime::kernels::int8::quantize;
use kestrel_runtime::ops::int8_linear::{Int8Linear, Int8Output, NO_CLAMP};
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{LoadOptions, Model};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

mod common;
use common::write_nnef_tgz;

struct Params {
    w: Vec<i8>,
    bias: Vec<i32>,
    scale: Vec<f32>,
    o: usize,
    k: usize,
}

fn params(rng: &mut SmallRng, o: usize, k: usize) -> Params {
    Params {
        w: (0..o * k).map(|_| rng.random_range(-127..=127i8)).collect(),
        bias: (0..o).map(|_| rng.random_range(-3000..3000)).collect(),
        scale: (0..o).map(|_| rng.random_range(1e-4..1e-3f32)).collect(),
        o,
        k,
    }
}

fn op(p: &Params, axis: usize, zp: i32, s: f32, clamp: (f32, f32), out: Int8Output) -> Int8Linear {
    Int8Linear::new(
        Arc::new(Tensor::from_shape(&[p.o, p.k], &p.w).unwrap()),
        Arc::new(tensor1(&p.bias)),
        Arc::new(tensor1(&p.scale)),
        axis,
        zp,
        s,
        clamp,
        out,
    )
    .unwrap()
}

/// The definition on `[outer, K, inner]` quantized input codes.
#[allow(clippy::too_many_arguments)]
fn reference(
    p: &Params,
    q: &[i8],
    outer: usize,
    inner: usize,
    zp: i32,
    clamp: (f32, f32),
    out: Int8Output,
) -> Tensor {
    let mut yf = vec![0f32; outer * p.o * inner];
    for b in 0..outer {
        for o in 0..p.o {
            for c in 0..inner {
                let acc: i64 = (0..p.k)
                    .map(|kk| {
                        p.w[o * p.k + kk] as i64
                            * (q[(b * p.k + kk) * inner + c] as i64 - zp as i64)
                    })
                    .sum();
                let y = ((acc + p.bias[o] as i64) as i32 as f32 * p.scale[o])
                    .max(clamp.0)
                    .min(clamp.1);
                yf[(b * p.o + o) * inner + c] = y;
            }
        }
    }
    match out {
        Int8Output::Float => tensor1(&yf),
        Int8Output::Int8 { zero_point, scale } => {
            let v: Vec<i8> = yf
                .iter()
                .map(|&y| quantize(y, 1.0 / scale, zero_point as f32))
                .collect();
            tensor1(&v)
        }
    }
}

fn eval(op: &Int8Linear, input: Tensor) -> Tensor {
    op.eval_out_of_plan(tvec!(input.into_tvalue()))
        .unwrap()
        .unwrap()
        .remove(0)
        .into_tensor()
}

fn flat(t: &Tensor) -> Tensor {
    let mut t = t.clone();
    if let Some(QParams::ZpScale { .. }) = t.datum_type().qparams() {
        // SAFETY: QI8 and i8 share their representation.
        unsafe { t.set_datum_type(i8::datum_type()) };
    }
    let len = t.len();
    t.into_shape(&[len]).unwrap()
}

#[test]
fn int8_linear_equals_its_definition() {
    let mut rng = SmallRng::seed_from_u64(5);
    let (s, zp) = (0.03f32, -7);
    for (shape, axis, o) in [
        (vec![2usize, 24, 7, 9], 1usize, 40usize),
        (vec![1, 16, 37], 1, 9),
        (vec![3, 130], 1, 5),
        // Channels last (NHWC), as tract lays out MobileNet-style graphs.
        (vec![1, 7, 9, 24], 3, 33),
    ] {
        let k = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let p = params(&mut rng, o, k);
        let x: Vec<f32> = (0..outer * k * inner)
            .map(|_| rng.random_range(-4.0..4.0f32))
            .collect();
        let q: Vec<i8> = x.iter().map(|&v| quantize(v, 1.0 / s, zp as f32)).collect();
        for clamp in [(-NO_CLAMP, NO_CLAMP), (0.0, 2.0)] {
            for out in [
                Int8Output::Float,
                Int8Output::Int8 {
                    zero_point: 3,
                    scale: 0.02,
                },
            ] {
                let want = reference(&p, &q, outer, inner, zp, clamp, out);
                let op = op(&p, axis, zp, s, clamp, out);
                let from_f32 = eval(&op, Tensor::from_shape(&shape, &x).unwrap());
                let mut yshape = shape.clone();
                yshape[axis] = o;
                assert_eq!(from_f32.shape(), &yshape[..]);
                assert_eq!(
                    flat(&from_f32),
                    want,
                    "f32 input {shape:?} {clamp:?} {out:?}"
                );
                let qin = Tensor::from_shape(&shape, &q).unwrap();
                assert_eq!(flat(&eval(&op, qin)), want, "i8 input {shape:?}");
            }
        }
    }
}

#[test]
fn int8_linear_round_trips_through_nnef_and_runs_on_threads() {
    let mut rng = SmallRng::seed_from_u64(6);
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 8, 20, 20])).unwrap();
    let (p1, p2) = (params(&mut rng, 24, 8), params(&mut rng, 5, 24));
    let mid = Int8Output::Int8 {
        zero_point: -128,
        scale: 0.05,
    };
    let y1 = model
        .wire_node("expand", op(&p1, 1, 2, 0.04, (0.0, 6.0), mid), &[x])
        .unwrap();
    let y2 = model
        .wire_node(
            "project",
            op(&p2, 1, -128, 0.05, (-NO_CLAMP, NO_CLAMP), Int8Output::Float),
            &y1,
        )
        .unwrap();
    model.select_output_outlets(&y2).unwrap();
    for loaded in reloads_equal(&model, &mut rng) {
        let n = loaded
            .optimized_graph()
            .nodes()
            .iter()
            .filter(|n| n.op().name() == "KestrelInt8Linear")
            .count();
        assert_eq!(n, 2, "both layers reload as the op");
    }
}

/// Writes `model` (input `[1, 8, 20, 20]`) as NNEF, reloads it with 1 and 2 threads and
/// checks each reload computes what `model` does on a random input; returns the reloads.
fn reloads_equal(model: &TypedModel, rng: &mut SmallRng) -> Vec<Model> {
    let input: Vec<f32> = (0..8 * 400)
        .map(|_| rng.random_range(-3.0..3.0f32))
        .collect();
    let input = Tensor::from_shape(&[1, 8, 20, 20], &input).unwrap();
    let direct = model
        .clone()
        .into_runnable()
        .unwrap()
        .run(tvec!(input.clone().into_tvalue()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int8.nnef.tgz");
    write_nnef_tgz(model, &path);
    [1, 2]
        .into_iter()
        .map(|threads| {
            let loaded = Model::load(
                &path,
                &LoadOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let reloaded = loaded.run(tvec!(input.clone().into_tvalue())).unwrap();
            assert_eq!(
                direct[0].clone().into_tensor(),
                reloaded[0].clone().into_tensor(),
                "{threads} threads"
            );
            loaded
        })
        .collect()
}

#[test]
fn bad_int8_linear_parameters_are_errors_naming_the_op() {
    let mut rng = SmallRng::seed_from_u64(7);
    let p = params(&mut rng, 4, 6);
    let w = Arc::new(Tensor::from_shape(&[4, 6], &p.w).unwrap());
    let (bias, scale) = (Arc::new(tensor1(&p.bias)), Arc::new(tensor1(&p.scale)));
    let none = (-NO_CLAMP, NO_CLAMP);
    let cases: Vec<(&str, TractResult<Int8Linear>)> = vec![
        (
            "-128 weight",
            Int8Linear::new(
                Arc::new(tensor2(&[[-128i8; 6]; 4])),
                bias.clone(),
                scale.clone(),
                1,
                0,
                0.1,
                none,
                Int8Output::Float,
            ),
        ),
        (
            "bias length",
            Int8Linear::new(
                w.clone(),
                Arc::new(tensor1(&[1i32, 2])),
                scale.clone(),
                1,
                0,
                0.1,
                none,
                Int8Output::Float,
            ),
        ),
        (
            "zero scale",
            Int8Linear::new(
                w.clone(),
                bias.clone(),
                Arc::new(tensor1(&[0f32; 4])),
                1,
                0,
                0.1,
                none,
                Int8Output::Float,
            ),
        ),
        (
            "zero point",
            Int8Linear::new(
                w.clone(),
                bias.clone(),
                scale.clone(),
                1,
                300,
                0.1,
                none,
                Int8Output::Float,
            ),
        ),
        (
            "input scale",
            Int8Linear::new(
                w.clone(),
                bias.clone(),
                scale.clone(),
                1,
                0,
                f32::NAN,
                none,
                Int8Output::Float,
            ),
        ),
    ];
    for (what, result) in cases {
        let err = result.expect_err(what).to_string();
        assert!(err.contains("kestrel_int8_linear"), "{what}: {err}");
    }
    // A wrong input shape is a typing error, not a panic.
    let op = op(&p, 1, 0, 0.1, none, Int8Output::Float);
    let fact = f32::fact([1, 5, 3]);
    let err = op.output_facts(&[&fact]).unwrap_err().to_string();
    assert!(
        err.contains("kestrel_int8_linear") && err.contains("weights take 6"),
        "{err}"
    );
}

#[test]
fn int8_linear_reads_and_writes_either_layout() {
    let mut rng = SmallRng::seed_from_u64(8);
    let (c, o, h, w) = (24usize, 33usize, 7usize, 9usize);
    let p = params(&mut rng, o, c);
    let x: Vec<f32> = (0..c * h * w)
        .map(|_| rng.random_range(-4.0..4.0f32))
        .collect();
    let nchw = Tensor::from_shape(&[1, c, h, w], &x).unwrap();
    let nhwc = nchw.clone().permute_axes(&[0, 2, 3, 1]).unwrap();
    for out in [
        Int8Output::Float,
        Int8Output::Int8 {
            zero_point: -9,
            scale: 0.03,
        },
    ] {
        let first = op(&p, 1, 4, 0.05, (0.0, NO_CLAMP), out);
        let want = eval(&first, nchw.clone());
        let want_last = want.clone().permute_axes(&[0, 2, 3, 1]).unwrap();
        // Channels first in, channels last out (how tract feeds a depthwise conv).
        let to_last = first.clone().with_axes(1, 3);
        assert_eq!(eval(&to_last, nchw.clone()), want_last, "{out:?}");
        // Channels last in, channels first out.
        let from_last = first.clone().with_axes(3, 1);
        assert_eq!(eval(&from_last, nhwc.clone()), want, "{out:?}");
        let fact = f32::fact([1, h, w, c]);
        let y = from_last.output_facts(&[&fact]).unwrap();
        assert_eq!(y[0].shape.as_concrete().unwrap(), &[1, o, h, w]);
    }
}

#[test]
fn int8_linear_splits_rows_when_columns_are_few() {
    // A 3×3 map (one column block) with 40 output channels: on 2 threads the op packs once,
    // then splits the rows; the result must not depend on the threads. 8-bit and 16-bit
    // inputs.
    let mut rng = SmallRng::seed_from_u64(9);
    let p = params(&mut rng, 40, 64);
    let clamp = (-NO_CLAMP, NO_CLAMP);
    let x: Vec<f32> = (0..64 * 9)
        .map(|_| rng.random_range(-3.0..3.0f32))
        .collect();
    let input = Tensor::from_shape(&[1, 64, 3, 3], &x).unwrap();
    for (bits, op) in [
        (8, op(&p, 1, 1, 0.04, clamp, Int8Output::Float)),
        (16, wide_op(&p, 1, 300, 2e-4, clamp, Int8Output::Float)),
    ] {
        let want = eval(&op, input.clone());
        let mut model = TypedModel::default();
        let src = model.add_source("x", f32::fact([1, 64, 3, 3])).unwrap();
        let y = model.wire_node("pw", op, &[src]).unwrap();
        model.select_output_outlets(&y).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.nnef.tgz");
        write_nnef_tgz(&model, &path);
        for threads in [1, 2, 3] {
            let loaded = Model::load(
                &path,
                &LoadOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let got = loaded.run(tvec!(input.clone().into_tvalue())).unwrap();
            let what = format!("{bits}-bit input, {threads} threads");
            assert_eq!(got[0].clone().into_tensor(), want, "{what}");
        }
    }
}

/// The 16-bit input's definition: codes `q16`, `Σ W·(q16 − zp) + bias` in i64, times the
/// scale, clamped.
fn reference_wide(
    p: &Params,
    q: &[i32],
    (outer, inner): (usize, usize),
    zp: i32,
    clamp: (f32, f32),
    out: Int8Output,
) -> Tensor {
    let mut yf = vec![0f32; outer * p.o * inner];
    for b in 0..outer {
        for o in 0..p.o {
            for c in 0..inner {
                let acc: i64 = (0..p.k)
                    .map(|kk| {
                        p.w[o * p.k + kk] as i64
                            * (q[(b * p.k + kk) * inner + c] as i64 - zp as i64)
                    })
                    .sum::<i64>()
                    + p.bias[o] as i64;
                yf[(b * p.o + o) * inner + c] = (acc as f32 * p.scale[o]).max(clamp.0).min(clamp.1);
            }
        }
    }
    match out {
        Int8Output::Float => tensor1(&yf),
        Int8Output::Int8 { zero_point, scale } => {
            let v: Vec<i8> = yf
                .iter()
                .map(|&y| quantize(y, 1.0 / scale, zero_point as f32))
                .collect();
            tensor1(&v)
        }
    }
}

fn wide_op(
    p: &Params,
    axis: usize,
    zp: i32,
    s: f32,
    clamp: (f32, f32),
    out: Int8Output,
) -> Int8Linear {
    Int8Linear::new_wide(
        Arc::new(Tensor::from_shape(&[p.o, p.k], &p.w).unwrap()),
        Arc::new(tensor1(&p.bias)),
        Arc::new(tensor1(&p.scale)),
        axis,
        zp,
        s,
        clamp,
        out,
    )
    .unwrap()
}

/// Whether the op multiplies a 16-bit input of `k` channels in one product on this CPU
/// (ARMv8.0 NEON: the best int8 kernel has no dot product; `K ≤ MAX_K16`).
fn one_product(k: usize) -> bool {
    #[cfg(target_arch = "aarch64")]
    let no_dot = !std::arch::is_aarch64_feature_detected!("dotprod");
    #[cfg(not(target_arch = "aarch64"))]
    let no_dot = false;
    no_dot && k <= kestrel_runtime::kernels::int8::MAX_K16
}

/// The 16-bit op against its definition bit for bit, in whichever form the CPU's kernel
/// takes: two digit products (x86, aarch64 with dot product, any K past MAX_K16), or one
/// product on 16-bit lanes (ARMv8.0 NEON: CI's qemu Cortex-A72 run).
#[test]
fn a_16_bit_input_equals_its_definition() {
    use kestrel_runtime::kernels::int8::quantize16;
    let mut rng = SmallRng::seed_from_u64(12);
    let (s, zp) = (1.5e-4f32, -2100);
    for (shape, axis, o) in [
        (vec![2usize, 24, 7, 9], 1usize, 40usize),
        (vec![3, 130], 1, 5),
        (vec![1, 7, 9, 24], 3, 33),
        // Columns over several tasks (64 columns each) and a partial last block.
        (vec![1, 16, 13, 11], 1, 12),
        // K past MAX_K16: two digit products where the kernel would take one (aarch64
        // without dot product).
        (vec![1, 600, 21], 1, 6),
        // K = MAX_K16 with ±127 weights (below): one product whose sums may leave i32, so
        // its correction is added in i64.
        (vec![1, 516, 20], 1, 5),
    ] {
        let k = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut p = params(&mut rng, o, k);
        if k == 516 {
            p.w.iter_mut()
                .for_each(|w| *w = if *w < 0 { -127 } else { 127 });
        }
        let mut x: Vec<f32> = (0..outer * k * inner)
            .map(|_| rng.random_range(-4.0..5.5f32))
            .collect();
        x[0] = 1e6; // saturates
        let q: Vec<i32> = x
            .iter()
            .map(|&v| quantize16(v, 1.0 / s, zp as f32))
            .collect();
        for clamp in [(-NO_CLAMP, NO_CLAMP), (0.0, 2.0)] {
            for out in [
                Int8Output::Float,
                Int8Output::Int8 {
                    zero_point: 3,
                    scale: 0.02,
                },
            ] {
                let want = reference_wide(&p, &q, (outer, inner), zp, clamp, out);
                let op = wide_op(&p, axis, zp, s, clamp, out);
                let info = op.info().unwrap().join(" ");
                let form = if one_product(k) {
                    "one product"
                } else {
                    "two digit"
                };
                assert!(info.contains(form), "{info}");
                let got = eval(&op, Tensor::from_shape(&shape, &x).unwrap());
                assert_eq!(flat(&got), want, "{shape:?} {clamp:?} {out:?}");
            }
        }
    }
}

#[test]
fn a_16_bit_input_is_closer_to_float_than_an_8_bit_one() {
    let mut rng = SmallRng::seed_from_u64(13);
    let (o, k, n) = (16usize, 32usize, 64usize);
    let p = params(&mut rng, o, k);
    // Mostly small values and a few peaks 40× larger: what an 8-bit step crushes.
    let x: Vec<f32> = (0..k * n)
        .map(|i| {
            if i % 97 == 0 {
                40.0
            } else {
                rng.random_range(-1.0..1.0f32)
            }
        })
        .collect();
    let (lo, hi) = (-1.0f32, 40.0f32);
    let exact: Vec<f64> = (0..o * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            (0..k)
                .map(|kk| p.w[r * k + kk] as f64 * x[kk * n + c] as f64 * p.scale[r] as f64)
                .sum::<f64>()
                + p.bias[r] as f64 * p.scale[r] as f64
        })
        .collect();
    let input = Tensor::from_shape(&[1, k, n], &x).unwrap();
    let err = |op: &Int8Linear| -> f64 {
        let y = eval(op, input.clone());
        let y = y.to_plain_array_view::<f32>().unwrap();
        y.iter()
            .zip(&exact)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
    };
    // Scales and biases of params are at an input step of 1: rescale both ops to their steps.
    let at = |s: f32| Params {
        w: p.w.clone(),
        bias: p
            .bias
            .iter()
            .map(|b| (*b as f64 / s as f64).round() as i32)
            .collect(),
        scale: p.scale.iter().map(|v| v * s).collect(),
        o,
        k,
    };
    let s8 = (hi - lo) / 255.0;
    let zp8 = (-128.0 - lo / s8).round() as i32;
    let s16 = (hi - lo) / 65535.0;
    let zp16 = (-32768.0 - lo / s16).round() as i32;
    let none = (-NO_CLAMP, NO_CLAMP);
    let e8 = err(&op(&at(s8), 1, zp8, s8, none, Int8Output::Float));
    let e16 = err(&wide_op(&at(s16), 1, zp16, s16, none, Int8Output::Float));
    assert!(e16 * 1000.0 < e8, "16-bit error {e16:.3e}, 8-bit {e8:.3e}");
}

#[test]
fn a_16_bit_op_round_trips_through_nnef_and_refuses_an_i8_input() {
    let mut rng = SmallRng::seed_from_u64(14);
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 8, 20, 20])).unwrap();
    let p = params(&mut rng, 24, 8);
    let y = model
        .wire_node(
            "wide",
            wide_op(&p, 1, 300, 1e-4, (0.0, 6.0), Int8Output::Float),
            &[x],
        )
        .unwrap();
    model.select_output_outlets(&y).unwrap();
    reloads_equal(&model, &mut rng);
    let op = wide_op(&p, 1, 0, 1e-4, (-NO_CLAMP, NO_CLAMP), Int8Output::Float);
    let qi8 = i8::datum_type().with_zp_scale(0, 0.1).fact([1, 8, 3]);
    let err = op.output_facts(&[&qi8]).unwrap_err().to_string();
    assert!(err.contains("16-bit input must be f32"), "{err}");
    let bad = Int8Linear::new_wide(
        Arc::new(Tensor::from_shape(&[p.o, p.k], &p.w).unwrap()),
        Arc::new(tensor1(&p.bias)),
        Arc::new(tensor1(&p.scale)),
        1,
        40000,
        1e-4,
        (-NO_CLAMP, NO_CLAMP),
        Int8Output::Float,
    );
    assert!(bad.unwrap_err().to_string().contains("16-bit code"));
}
