//! `kestrel_linear` against a direct f64 reference over shapes of 1×1 convolutions and dense
//! layers (batch, plane sizes that fill and do not fill the tiles, channel counts around the
//! 8-row blocks, every fused activation), on one and on two threads; a NNEF round trip; and
//! bad parameters refused with the op's name.
//!
//! The kernel is the one `kernels::linear::select()` picks (every kernel is compared bit for
//! bit with the portable one in the kernels' own tests, under qemu for NEON).

use kestrel_runtime::ops::depthwise::Fused;
use kestrel_runtime::ops::linear::Linear;
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{LoadOptions, Model};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

mod common;
use common::write_nnef_tgz;

struct Case {
    op: Linear,
    w: Vec<f32>,
    b: Vec<f32>,
    x: Tensor,
    axis: usize,
}

fn random(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// An op of `o` outputs reading `shape`, contracting `axis`.
fn case(rng: &mut SmallRng, shape: &[usize], axis: usize, o: usize, fused: Fused) -> Case {
    let k = shape[axis];
    let (w, b) = (random(rng, o * k), random(rng, o));
    let x = Tensor::from_shape(shape, &random(rng, shape.iter().product())).unwrap();
    let op = Linear::new(
        Arc::new(Tensor::from_shape(&[o, k], &w).unwrap()),
        Arc::new(tensor1(&b)),
        axis,
        fused,
    )
    .unwrap();
    Case { op, w, b, x, axis }
}

fn activation(f: Fused, v: f64) -> f64 {
    match f {
        Fused::Relu => v.max(0.0),
        Fused::Clip(hi) => v.max(0.0).min(hi as f64),
        Fused::None | Fused::HardSwish => v,
    }
}

/// Checks the op's output against the f64 reference, within `(K+1)·ε` of the sum of the
/// terms' magnitudes.
fn check(c: &Case, got: &Tensor) {
    let s = c.x.shape();
    let (k, o) = (s[c.axis], c.b.len());
    let outer: usize = s[..c.axis].iter().product();
    let inner: usize = s[c.axis + 1..].iter().product();
    let mut want_shape = s.to_vec();
    want_shape[c.axis] = o;
    assert_eq!(got.shape(), want_shape.as_slice());
    let x = c.x.try_as_plain_ram().unwrap();
    let x = x.as_slice::<f32>().unwrap();
    let y = got.try_as_plain_ram().unwrap();
    let y = y.as_slice::<f32>().unwrap();
    for n in 0..outer {
        for r in 0..o {
            for col in 0..inner {
                let terms =
                    (0..k).map(|kk| c.w[r * k + kk] as f64 * x[(n * k + kk) * inner + col] as f64);
                let magnitude = c.b[r].abs() as f64 + terms.clone().map(f64::abs).sum::<f64>();
                let want = activation(c.op.fused, c.b[r] as f64 + terms.sum::<f64>());
                let got = y[(n * o + r) * inner + col] as f64;
                let bound = (k + 1) as f64 * f32::EPSILON as f64 * magnitude;
                assert!(
                    (got - want).abs() <= bound,
                    "{s:?} axis {} [{n}, {r}, {col}]: {got} vs {want}",
                    c.axis
                );
            }
        }
    }
}

fn eval(op: &Linear, x: &Tensor) -> Tensor {
    op.eval_out_of_plan(tvec!(x.clone().into_tvalue()))
        .unwrap()
        .unwrap()
        .remove(0)
        .into_tensor()
}

const FUSED: [Fused; 3] = [Fused::None, Fused::Relu, Fused::Clip(0.5)];

#[test]
fn linear_equals_the_f64_reference() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut cases = 0;
    for (shape, axis) in [
        (vec![1, 16, 7, 7], 1),
        (vec![2, 24, 5, 13], 1),
        (vec![1, 40, 1, 1], 1),
        (vec![3, 17], 1),
        (vec![9, 4, 6], 1),
        (vec![33], 0),
    ] {
        for o in [1, 8, 13, 40] {
            let fused = FUSED[cases % FUSED.len()];
            let c = case(&mut rng, &shape, axis, o, fused);
            check(&c, &eval(&c.op, &c.x));
            cases += 1;
        }
    }
    assert_eq!(cases, 24);
}

/// A one-op graph of `op` reading `shape`.
fn graph(op: &Linear, shape: &[usize]) -> TypedModel {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(shape)).unwrap();
    let y = model.wire_node("fc", op.clone(), &[x]).unwrap();
    model.select_output_outlets(&y).unwrap();
    model
}

#[test]
fn two_threads_give_the_same_rows_and_the_graph_round_trips() {
    let mut rng = SmallRng::seed_from_u64(8);
    let c = case(&mut rng, &[2, 24, 9, 11], 1, 37, Fused::Clip(6.0));
    let model = graph(&c.op, c.x.shape());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fc.nnef.tgz");
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
        assert!(ops.iter().any(|o| o == "KestrelLinear"), "{ops:?}");
        let out = loaded.run(tvec!(c.x.clone().into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), one, "{threads} threads");
    }
    check(&c, &one);
}

#[test]
fn bad_parameters_are_errors_naming_the_op() {
    let w = |shape: &[usize]| Arc::new(Tensor::zero::<f32>(shape).unwrap());
    let b = |n: usize| Arc::new(Tensor::zero::<f32>(&[n]).unwrap());
    let msg = |r: TractResult<Linear>| format!("{:#}", r.unwrap_err());
    for (weights, bias, fused, expect) in [
        (
            w(&[2, 3, 1]),
            b(2),
            Fused::None,
            "weights must be f32 [O, K]",
        ),
        (w(&[2, 0]), b(2), Fused::None, "O, K > 0"),
        (w(&[2, 3]), b(3), Fused::None, "bias must be f32 [2]"),
        (w(&[2, 3]), b(2), Fused::Clip(f32::INFINITY), "finite"),
        (w(&[2, 3]), b(2), Fused::HardSwish, "no fused HardSwish"),
    ] {
        let m = msg(Linear::new(weights, bias, 1, fused));
        assert!(m.contains("kestrel_linear") && m.contains(expect), "{m}");
    }
    let op = Linear::new(w(&[2, 3]), b(2), 1, Fused::None).unwrap();
    for wrong in [f32::fact([1, 4, 8]), f32::fact([3])] {
        let m = format!("{:#}", op.output_facts(&[&wrong]).unwrap_err());
        assert!(
            m.contains("kestrel_linear") && m.contains("3 channels on axis 1"),
            "{m}"
        );
    }
}
