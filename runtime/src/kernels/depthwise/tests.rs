//! The depthwise kernels: every vector kernel `available()` returns against
//! [`reference_fma`] bit for bit (their int8 codes too), and the portable one within
//! [`fma_bound`] of it, over kernel
//! sizes 1–7, the strides' layouts (1 or 2 along each axis), every activation and every tail (1 to 6 rows and 1 to 70
//! columns: whole and partial row tiles, whole and partial vectors of 4, 8 and 16 lanes).

use super::{available, fma_bound, generic, reference_fma, Activation, Layout, PlaneJob, SLACK};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// A channel laid out as the op lays it out: `k×k` taps at stride `s` over phase planes of
/// row length `ld`, with random contents (padding included: the kernels never look at values).
pub(super) struct Case {
    pub(super) input: Vec<f32>,
    pub(super) taps: Vec<usize>,
    pub(super) weights: Vec<f32>,
    pub(super) bias: f32,
    pub(super) row_step: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
}

fn case(rng: &mut SmallRng, k: usize, [sy, s]: [usize; 2], rows: usize, cols: usize) -> Case {
    let ld = cols + (k - 1) / s + SLACK;
    let phase_rows = (rows - 1) * sy + k;
    let phase_len = phase_rows * ld;
    let input = (0..s * phase_len)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    let taps = (0..k * k)
        .map(|t| {
            let (ky, kx) = (t / k, t % k);
            (kx % s) * phase_len + ky * ld + kx / s
        })
        .collect();
    let weights = (0..k * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Case {
        input,
        taps,
        weights,
        bias: rng.random_range(-2.0f32..2.0),
        row_step: sy * ld,
        rows,
        cols,
    }
}

impl Case {
    pub(super) fn job(&self, act: Activation) -> PlaneJob<'_> {
        PlaneJob {
            input: &self.input,
            taps: &self.taps,
            weights: &self.weights,
            bias: self.bias,
            row_step: self.row_step,
            rows: self.rows,
            cols: self.cols,
            act,
        }
    }
}

pub(super) const ACTIVATIONS: [Activation; 5] = [
    Activation::NONE,
    Activation {
        low: 0.0,
        high: f32::INFINITY,
        hardswish: false,
    },
    Activation {
        low: 0.0,
        high: 6.0,
        hardswish: false,
    },
    Activation {
        low: f32::NEG_INFINITY,
        high: f32::INFINITY,
        hardswish: true,
    },
    Activation {
        low: 0.0,
        high: 6.0,
        hardswish: true,
    },
];

pub(super) fn each_case(mut f: impl FnMut(&Case, Activation)) {
    let mut rng = SmallRng::seed_from_u64(0xdead_0d17);
    for k in [1, 2, 3, 5, 7] {
        // Strides along rows and columns; (2, 1) is a text model's tall-to-wide layer.
        for s in [[1, 1], [2, 2], [2, 1], [1, 2]] {
            for cols in (1..=40).chain([47, 48, 63, 64, 65, 70]) {
                let rows = 1 + cols % 6;
                let c = case(&mut rng, k, s, rows, cols);
                for act in ACTIVATIONS {
                    f(&c, act);
                }
            }
        }
    }
}

#[test]
fn every_vector_kernel_equals_the_fma_reference_bit_for_bit() {
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| k.name() != "generic")
        .collect();
    let mut cases = 0;
    each_case(|c, act| {
        let job = c.job(act);
        let mut want = vec![0f32; c.rows * c.cols];
        reference_fma(&job, &mut want);
        for kernel in &kernels {
            let mut got = vec![f32::NAN; c.rows * c.cols];
            kernel.run(&job, &mut got);
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{}: {} taps, {}x{}, {act:?}\n got {got:?}\nwant {want:?}",
                kernel.name(),
                c.taps.len(),
                c.rows,
                c.cols
            );
        }
        cases += 1;
    });
    assert!(cases > 400);
}

/// Every vector kernel's codes are the next int8 layer's quantization of the FMA reference,
/// bit for bit (codes over about ±150, so some saturate; zero points on both sides).
#[test]
fn every_vector_kernel_writes_the_quantized_fma_reference() {
    use crate::kernels::int8::{codes::quantize_portable, Quantizer};
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| k.name() != "generic")
        .collect();
    let mut saturated = 0;
    each_case(|c, act| {
        let job = c.job(act);
        let mut ref_out = vec![0f32; c.rows * c.cols];
        reference_fma(&job, &mut ref_out);
        let top = ref_out.iter().fold(0.05f32, |m, v| m.max(v.abs()));
        let q = Quantizer {
            inv_scale: 150.0 / top,
            zp: if c.cols % 2 == 0 { 5 } else { -9 },
        };
        let mut want = vec![0i8; ref_out.len()];
        quantize_portable(&ref_out, q, &mut want);
        saturated += want.iter().filter(|&&v| v == 127 || v == -128).count();
        for kernel in &kernels {
            let mut got = vec![0x55i8; want.len()];
            let mut tmp = vec![0f32; want.len()];
            kernel.run_plane_codes(&Layout::of(&job), job.plane(), q, &mut got, &mut tmp);
            assert_eq!(
                got,
                want,
                "{}: {} taps, {}x{}, {act:?}",
                kernel.name(),
                c.taps.len(),
                c.rows,
                c.cols
            );
        }
    });
    assert!(
        saturated > 0,
        "no code saturated: the test misses the clamp"
    );
}

#[test]
fn the_portable_kernel_is_within_the_stated_bound_of_the_fma_reference() {
    let mut worst = 0f32;
    each_case(|c, act| {
        let job = c.job(act);
        let mut want = vec![0f32; c.rows * c.cols];
        let mut got = vec![f32::NAN; c.rows * c.cols];
        reference_fma(&job, &mut want);
        generic().run(&job, &mut got);
        for r in 0..c.rows {
            for col in 0..c.cols {
                let i = r * c.cols + col;
                let bound = fma_bound(&job, r, col);
                // HardSwish: slope ≤ 1.5, plus its own four roundings.
                let bound = if act.hardswish {
                    1.5 * bound + 4.0 * f32::EPSILON * want[i].abs().max(f32::MIN_POSITIVE)
                } else {
                    bound
                };
                let diff = (got[i] - want[i]).abs();
                assert!(
                    diff <= bound,
                    "{} taps, {act:?}, ({r}, {col}): {} vs {} (bound {bound})",
                    c.taps.len(),
                    got[i],
                    want[i]
                );
                worst = worst.max(diff / bound.max(f32::MIN_POSITIVE));
            }
        }
    });
    assert!(
        worst > 0.0,
        "the two roundings never differed: the test sees nothing"
    );
}

#[test]
fn a_job_that_reads_past_its_input_is_refused() {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut c = case(&mut rng, 3, [1, 1], 2, 8);
    c.input.truncate(c.input.len() - 1);
    for kernel in available() {
        let job = c.job(Activation::NONE);
        let run = || kernel.run(&job, &mut [0.0; 16]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        assert!(
            r.is_err(),
            "{} ran a job reading past its input",
            kernel.name()
        );
    }
}
