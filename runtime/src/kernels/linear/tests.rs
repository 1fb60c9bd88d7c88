//! The float product kernels: every kernel `available()` returns against the portable one bit
//! for bit, over row counts that fill and do not fill a block, every column tail of the 16-,
//! 8-, 4- and 1-column tiles, strides longer than the rows, sub-ranges of blocks and each
//! clamp; and the portable one against an f64 sum within the rounding bound of K + 1 terms.

use super::{available, generic, Clamp, Job, PackedWeights, ROWS};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

struct Case {
    w: PackedWeights,
    weights: Vec<f32>,
    bias: Vec<f32>,
    x: Vec<f32>,
    x_stride: usize,
    cols: usize,
}

fn case(rng: &mut SmallRng, rows: usize, k: usize, cols: usize, pad: usize) -> Case {
    let weights: Vec<f32> = (0..rows * k)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let bias: Vec<f32> = (0..rows).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let x_stride = cols + pad;
    let x = (0..k * x_stride)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    Case {
        w: PackedWeights::new(&weights, &bias, rows, k),
        weights,
        bias,
        x,
        x_stride,
        cols,
    }
}

impl Case {
    fn job(&self, blocks: std::ops::Range<usize>, y_stride: usize, clamp: Clamp) -> Job<'_> {
        Job {
            w: &self.w,
            blocks,
            x: &self.x,
            x_stride: self.x_stride,
            cols: self.cols,
            y_stride,
            clamp,
        }
    }
}

const CLAMPS: [Clamp; 3] = [
    Clamp::NONE,
    Clamp {
        low: 0.0,
        high: f32::INFINITY,
        on: true,
    },
    Clamp {
        low: 0.0,
        high: 6.0,
        on: true,
    },
];

#[test]
fn every_kernel_gives_the_portable_kernels_bits() {
    let mut rng = SmallRng::seed_from_u64(7);
    let kernels = available();
    for rows in [1, 5, 8, 13, 24] {
        for k in [1, 3, 16, 67] {
            for cols in [
                0, 1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 31, 32, 45, 49, 64,
            ] {
                let pad = rng.random_range(0..3);
                let case = case(&mut rng, rows, k, cols, pad);
                let blocks = case.w.blocks();
                for (ci, &clamp) in CLAMPS.iter().enumerate() {
                    let y_stride = cols + ci;
                    for range in [0..blocks, blocks - 1..blocks, 0..blocks - 1] {
                        let job = case.job(range.clone(), y_stride, clamp);
                        let len = job.out_rows() * y_stride;
                        let mut want = vec![f32::NAN; len];
                        generic().run(&job, &mut want);
                        for kernel in &kernels {
                            let mut got = vec![f32::NAN; len];
                            kernel.run(&job, &mut got);
                            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                                let written = i % y_stride < cols;
                                assert!(
                                    !written || g.to_bits() == w.to_bits(),
                                    "{} rows {rows} k {k} cols {cols} blocks {range:?} \
                                     {clamp:?}: y[{i}] = {g}, portable {w}",
                                    kernel.name()
                                );
                                assert!(
                                    written || g.is_nan(),
                                    "{} wrote y[{i}] between rows",
                                    kernel.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_portable_kernel_is_the_product() {
    let mut rng = SmallRng::seed_from_u64(11);
    for (rows, k, cols) in [(13, 67, 21), (8, 1, 3), (3, 200, 17)] {
        let case = case(&mut rng, rows, k, cols, 2);
        for clamp in CLAMPS {
            let job = case.job(0..case.w.blocks(), cols, clamp);
            let mut y = vec![0f32; rows * cols];
            generic().run(&job, &mut y);
            for o in 0..rows {
                for c in 0..cols {
                    let terms = (0..k).map(|kk| {
                        case.weights[o * k + kk] as f64 * case.x[kk * case.x_stride + c] as f64
                    });
                    let magnitude: f64 =
                        case.bias[o].abs() as f64 + terms.clone().map(f64::abs).sum::<f64>();
                    let exact = case.bias[o] as f64 + terms.sum::<f64>();
                    let want = if clamp.on {
                        exact.max(clamp.low as f64).min(clamp.high as f64)
                    } else {
                        exact
                    };
                    let bound = (k + 1) as f64 * f32::EPSILON as f64 * magnitude;
                    let got = y[o * cols + c] as f64;
                    assert!(
                        (got - want).abs() <= bound,
                        "rows {rows} k {k} [{o}, {c}] {clamp:?}: {got} vs {want} (bound {bound})"
                    );
                }
            }
        }
    }
}

#[test]
fn packing_pads_the_last_block_with_zeros() {
    let w: Vec<f32> = (0..3 * 2).map(|v| v as f32 + 1.0).collect();
    let p = PackedWeights::new(&w, &[0.5, 1.5, 2.5], 3, 2);
    assert_eq!((p.blocks(), p.rows_in(0)), (1, 3));
    assert_eq!(
        &p.block(0)[..ROWS],
        &[1.0, 3.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        &p.block(0)[ROWS..],
        &[2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(p.bias(0), &[0.5, 1.5, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
#[should_panic(expected = "input holds")]
fn a_short_input_is_refused_before_any_read() {
    let mut rng = SmallRng::seed_from_u64(3);
    let case = case(&mut rng, 8, 4, 8, 0);
    let job = Job {
        x: &case.x[..case.x.len() - 1],
        ..case.job(0..1, 8, Clamp::NONE)
    };
    let kernel = *available().last().unwrap();
    kernel.run(&job, &mut [0f32; 64]);
}
