//! The half-precision kernels: every kernel `available()` returns against the portable one
//! bit for bit (the NEON kernel runs under qemu as a Cortex-A76), the portable one within
//! [`f16_bound`] of the f32 [`reference_fma`], and every fill against the portable fill, over
//! the f32 kernels' cases (kernel sizes 1–7, every stride layout, activation and tail); the
//! same for the int8 codes stage, the portable one within one code plus the bound of the f32
//! stage's codes.

use super::pad::{fill_portable, HalfFill};
use super::{available, f16_bound, generic, to_f32, to_half, HalfCodes, HalfPlane};
use crate::kernels::depthwise::pad::Placement;
use crate::kernels::depthwise::tests::{each_case, Case};
use crate::kernels::depthwise::{reference_fma, Activation, Layout};

/// The case's plane and weights rounded to binary16, and its bias.
fn halves(c: &Case) -> (Vec<u16>, Vec<u16>, f32) {
    (
        c.input.iter().map(|&x| to_half(x)).collect(),
        c.weights.iter().map(|&x| to_half(x)).collect(),
        c.bias,
    )
}

#[test]
fn every_kernel_equals_the_portable_one_bit_for_bit() {
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| k.name() != "generic-f16")
        .collect();
    if kernels.is_empty() {
        eprintln!("no FEAT_FP16 kernel on this CPU: the portable kernel alone (qemu A76 runs it)");
    }
    let mut cases = 0;
    each_case(|c, act| {
        let (input, weights, bias) = halves(c);
        let layout = Layout::of(&c.job(act));
        let plane = HalfPlane {
            input: &input,
            weights: &weights,
            bias,
        };
        let mut want = vec![0f32; c.rows * c.cols];
        generic().run_plane(&layout, plane, &mut want);
        for kernel in &kernels {
            let mut got = vec![f32::NAN; c.rows * c.cols];
            kernel.run_plane(&layout, plane, &mut got);
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

#[test]
fn the_portable_kernel_is_within_the_stated_bound_of_f32() {
    let mut worst = 0f32;
    each_case(|c, act| {
        if act != Activation::NONE {
            return;
        }
        let job = c.job(act);
        let (input, weights, bias) = halves(c);
        let plane = HalfPlane {
            input: &input,
            weights: &weights,
            bias,
        };
        let mut want = vec![0f32; c.rows * c.cols];
        let mut got = vec![f32::NAN; c.rows * c.cols];
        reference_fma(&job, &mut want);
        generic().run_plane(&Layout::of(&job), plane, &mut got);
        for r in 0..c.rows {
            for col in 0..c.cols {
                let i = r * c.cols + col;
                let bound = f16_bound(&job, r, col);
                let diff = (got[i] - want[i]).abs();
                assert!(
                    diff <= bound,
                    "{} taps ({r}, {col}): {} vs {} (bound {bound})",
                    c.taps.len(),
                    got[i],
                    want[i]
                );
                worst = worst.max(diff / bound);
            }
        }
    });
    assert!(
        worst > 0.01,
        "binary16 never rounded: the test sees nothing"
    );
}

#[test]
fn every_fill_equals_the_portable_one() {
    for kernel in available() {
        for stride in 1..=2usize {
            for (h, w) in [
                (1, 1),
                (2, 3),
                (3, 7),
                (4, 8),
                (2, 9),
                (5, 15),
                (3, 16),
                (2, 24),
                (2, 33),
                (1, 45),
            ] {
                for left in 0..3 {
                    for hardswish in [false, true] {
                        let ld = (w + left + 2usize).div_ceil(stride) + 16;
                        let phase_len = (h + 2) * ld;
                        let at = Placement {
                            ld,
                            phase_len,
                            top: 1,
                            left,
                            stride,
                        };
                        let src: Vec<f32> =
                            (0..h * w).map(|i| (i as f32 * 0.37).sin() * 7.0).collect();
                        let fill = HalfFill::new(at, [h, w], stride * phase_len, hardswish);
                        let mut want = vec![0x7e00u16; stride * phase_len];
                        let mut got = want.clone();
                        fill_portable(&fill, &mut want, &src);
                        kernel.fill(&fill, &mut got, &src);
                        assert_eq!(
                            got,
                            want,
                            "{} {h}x{w} stride {stride} left {left} hs {hardswish}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_plane_that_reads_past_its_input_is_refused() {
    let input = vec![to_half(1.0); 30];
    let taps = [0, 1, 2];
    let layout = Layout::new(&taps, 10, 2, 8, Activation::NONE);
    let weights = [to_half(0.5); 3];
    for kernel in available() {
        let plane = HalfPlane {
            input: &input,
            weights: &weights,
            bias: 0.0,
        };
        let run = || kernel.run_plane(&layout, plane, &mut [0.0; 16]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        assert!(r.is_err(), "{} read past its input", kernel.name());
        assert_eq!(to_f32(weights[0]), 0.5);
    }
}

/// A quantizer for the case's outputs: codes over about ±150 (some saturate), zero point 3.
fn quantizer(c: &Case, act: Activation) -> (f32, i32) {
    let mut want = vec![0f32; c.rows * c.cols];
    reference_fma(&c.job(act), &mut want);
    let top = want.iter().fold(0.05f32, |m, v| m.max(v.abs()));
    (150.0 / top, 3)
}

#[test]
fn every_kernel_writes_the_portable_codes_bit_for_bit() {
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| k.name() != "generic-f16")
        .collect();
    let mut cases = 0;
    each_case(|c, act| {
        let (input, weights, bias) = halves(c);
        let layout = Layout::of(&c.job(act));
        let plane = HalfPlane {
            input: &input,
            weights: &weights,
            bias,
        };
        let (inv_scale, zp) = quantizer(c, act);
        let q = HalfCodes::new(act, inv_scale, zp).expect("a binary16 multiplier");
        let mut want = vec![0i8; c.rows * c.cols];
        generic().run_plane_codes(&layout, plane, &q, &mut want);
        for kernel in &kernels {
            let mut got = vec![0x55i8; c.rows * c.cols];
            kernel.run_plane_codes(&layout, plane, &q, &mut got);
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
        cases += 1;
    });
    assert!(cases > 400);
}

#[test]
fn the_portable_codes_are_within_a_code_of_the_f32_stages() {
    let (mut equal, mut total, mut saturated) = (0, 0, 0);
    each_case(|c, act| {
        let job = c.job(act);
        let (input, weights, bias) = halves(c);
        let plane = HalfPlane {
            input: &input,
            weights: &weights,
            bias,
        };
        let (inv_scale, zp) = quantizer(c, act);
        let q = HalfCodes::new(act, inv_scale, zp).unwrap();
        let mut got = vec![0i8; c.rows * c.cols];
        generic().run_plane_codes(&Layout::of(&job), plane, &q, &mut got);
        let mut pre = vec![0f32; c.rows * c.cols];
        reference_fma(&c.job(Activation::NONE), &mut pre);
        for r in 0..c.rows {
            for col in 0..c.cols {
                let i = r * c.cols + col;
                let want = crate::kernels::int8::quantize(act.apply(pre[i]), inv_scale, zp as f32);
                // The sum's error through the activation (slope ≤ 1.5), the stage's own
                // roundings (a few 2⁻¹¹ of the output), in codes, plus the rounding to a code.
                let out = act.apply(pre[i]).abs();
                let err = 1.5 * f16_bound(&job, r, col) + 6.0 * 2f32.powi(-11) * out;
                let bound = 1.0 + err * inv_scale;
                let diff = (i32::from(got[i]) - i32::from(want)).abs() as f32;
                assert!(
                    diff <= bound,
                    "{} taps ({r}, {col}) {act:?}: code {} vs {want} (bound {bound})",
                    c.taps.len(),
                    got[i]
                );
                equal += usize::from(diff == 0.0);
                saturated += usize::from(want == 127 || want == -128);
                total += 1;
            }
        }
    });
    assert!(
        saturated > 0,
        "no code saturated: the test misses the clamp"
    );
    assert!(
        equal * 10 > total * 9,
        "{equal} of {total} codes equal: the stage is not the f32 one's"
    );
}

#[test]
fn a_multiplier_binary16_cannot_hold_is_refused() {
    assert!(HalfCodes::new(Activation::NONE, 1e-6, 0).is_none());
    assert!(HalfCodes::new(Activation::NONE, 1e6, 0).is_none());
    assert!(HalfCodes::new(Activation::NONE, 20.0, 200).is_none());
    let q = HalfCodes::new(Activation::NONE, 20.0, -5).unwrap();
    assert_eq!((to_f32(q.k), q.zp), (20.0, -5));
}
