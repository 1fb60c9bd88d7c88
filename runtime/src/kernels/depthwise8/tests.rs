//! The int8 depthwise kernels: every kernel `available()` returns against [`reference`] bit for
//! bit, float and int8 outputs, on both input layouts, over kernel sizes 1–7, both strides'
//! layouts, every activation and every tail (1 to 6 rows and 1 to 70 columns: whole and
//! partial vectors of 8 and 16 lanes), with inputs and weights at the ends of their ranges;
//! and the padded layouts of [`pad::fill`] and [`pad::fill_codes`] against their definition.

use super::pad::{fill, fill_codes, fill_codes_portable, fill_portable, Placement, Source};
use super::{
    available, reference, Activation, Geometry, Input, InputFormat, Out, PlaneJob, CODES_SLACK,
    MAX_INPUT, SLACK,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

struct Case {
    /// The plane as offsets `q − zp`, and as codes with `CODES_SLACK` more values.
    input: Vec<i16>,
    codes: Vec<i8>,
    zp: i32,
    taps: Vec<usize>,
    weights: Vec<i16>,
    bias: i32,
    scale: f32,
    row_step: usize,
    rows: usize,
    cols: usize,
}

/// A channel laid out as the op lays it out, with random contents; `extreme` puts every input
/// and weight at the end of its range (the largest sums).
fn case(rng: &mut SmallRng, k: usize, s: usize, rows: usize, cols: usize, extreme: bool) -> Case {
    let ld = cols + (k - 1) / s + SLACK;
    let phase_len = ((rows - 1) * s + k) * ld;
    // Extreme: every offset ±255 (one sign per plane, as one zero point allows).
    let (zp, codes): (i32, Vec<i8>) = match extreme {
        true => {
            let (zp, q) = if rng.random_bool(0.5) {
                (-128, 127)
            } else {
                (127, -128)
            };
            (zp, vec![q; s * phase_len + CODES_SLACK])
        }
        false => (
            rng.random_range(-128..=127),
            (0..s * phase_len + CODES_SLACK)
                .map(|_| rng.random())
                .collect(),
        ),
    };
    let input = codes[..s * phase_len]
        .iter()
        .map(|&q| i16::from(q) - zp as i16)
        .collect::<Vec<_>>();
    debug_assert!(input.iter().all(|v| v.abs() <= MAX_INPUT));
    let taps = (0..k * k)
        .map(|t| (t % k % s) * phase_len + t / k * ld + t % k / s)
        .collect();
    let weights = (0..k * k)
        .map(|_| match extreme {
            true => 127,
            false => rng.random_range(-127..=127),
        })
        .collect();
    Case {
        input,
        codes,
        zp,
        taps,
        weights,
        bias: rng.random_range(-5000..5000),
        scale: rng.random_range(1e-4f32..2e-3),
        row_step: s * ld,
        rows,
        cols,
    }
}

impl Case {
    fn job(&self, act: Activation, format: InputFormat) -> PlaneJob<'_> {
        PlaneJob {
            input: match format {
                InputFormat::Offsets => Input::Offsets(&self.input),
                InputFormat::Codes => Input::Codes(&self.codes, self.zp),
            },
            geometry: Geometry::new(&self.taps, self.row_step, [self.rows, self.cols]),
            weights: &self.weights,
            bias: self.bias,
            scale: self.scale,
            act,
        }
    }
}

const ACTIVATIONS: [Activation; 5] = [
    Activation::NONE,
    Activation {
        low: f32::NEG_INFINITY,
        high: 3.0,
        hardswish: true,
    },
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
];

fn each_case(mut f: impl FnMut(&Case, Activation)) {
    let mut rng = SmallRng::seed_from_u64(0x1d_e8);
    for k in [1, 2, 3, 5, 7] {
        for s in [1, 2] {
            for cols in (1..=40).chain([47, 48, 63, 64, 65, 70]) {
                let rows = 1 + cols % 6;
                let c = case(&mut rng, k, s, rows, cols, cols % 7 == 0);
                for act in ACTIVATIONS {
                    f(&c, act);
                }
            }
        }
    }
}

#[test]
fn every_kernel_equals_the_definition_bit_for_bit() {
    let mut cases = 0;
    each_case(|c, act| {
        let job = c.job(act, InputFormat::Offsets);
        let n = c.rows * c.cols;
        let mut want = vec![0f32; n];
        reference(&job, Out::F32(&mut want));
        // The same sums over codes.
        let mut over_codes = vec![0f32; n];
        reference(&c.job(act, InputFormat::Codes), Out::F32(&mut over_codes));
        assert!(want
            .iter()
            .zip(&over_codes)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // An output scale that uses the whole code range (and clips some values).
        let top = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let (inv, zp) = (100.0 / top, -3);
        let mut want8 = vec![0i8; n];
        reference(
            &job,
            Out::I8 {
                out: &mut want8,
                inv_scale: inv,
                zp,
            },
        );
        // The requantization is the float output quantized, up to a rounding tie.
        for (&q, &y) in want8.iter().zip(&want) {
            let exact = crate::kernels::int8::quantize(y, inv, zp as f32);
            assert!(
                (i32::from(q) - i32::from(exact)).abs() <= 1,
                "{act:?}: code {q} for {y}, quantized {exact}"
            );
        }
        for (kernel, format) in available()
            .into_iter()
            .flat_map(|k| [(k, InputFormat::Offsets), (k, InputFormat::Codes)])
        {
            let job = c.job(act, format);
            let mut got = vec![f32::NAN; n];
            kernel.run(&job, Out::F32(&mut got));
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{} on {format:?}: {} taps, {}x{}, {act:?}\n got {got:?}\nwant {want:?}",
                kernel.name(),
                c.taps.len(),
                c.rows,
                c.cols
            );
            let mut got8 = vec![0x55i8; n];
            kernel.run(
                &job,
                Out::I8 {
                    out: &mut got8,
                    inv_scale: inv,
                    zp,
                },
            );
            assert_eq!(
                got8,
                want8,
                "{} on {format:?}: {} taps, {}x{}, {act:?}, int8 output",
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
fn a_job_that_reads_past_its_input_is_refused() {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut c = case(&mut rng, 3, 1, 2, 8, false);
    c.input.truncate(c.input.len() - 1);
    c.codes.truncate(c.codes.len() - 1);
    for kernel in available() {
        for format in [InputFormat::Offsets, InputFormat::Codes] {
            let job = c.job(Activation::NONE, format);
            let run = || kernel.run(&job, Out::F32(&mut [0.0; 16]));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            assert!(
                r.is_err(),
                "{} ran a job reading past its {format:?} input",
                kernel.name()
            );
        }
    }
}

#[test]
fn fill_writes_codes_minus_the_zero_point_where_the_placement_says() {
    let mut rng = SmallRng::seed_from_u64(7);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        0.01,
        -0.01,
    ];
    for stride in [1, 2] {
        for (h, w) in [
            (1usize, 1usize),
            (3, 5),
            (4, 8),
            (7, 7),
            (6, 13),
            (3, 16),
            (2, 37),
            (2, 32),
            (2, 64),
            (2, 71),
        ] {
            // Rows with slack (room for a whole vector past short rows) and without.
            for (top, left, slack) in [(0, 0, SLACK), (1, 1, SLACK), (2, 3, SLACK), (1, 2, 0)] {
                let ld = (w + left + 3).div_ceil(stride) + slack;
                let at = Placement {
                    ld,
                    phase_len: (h + top + 3) * ld,
                    top,
                    left,
                    stride,
                };
                let codes: Vec<i8> = (0..h * w).map(|_| rng.random()).collect();
                let zp = rng.random_range(-128..=127);
                let mut floats: Vec<f32> =
                    (0..h * w).map(|_| rng.random_range(-5.0..5.0)).collect();
                for (f, s) in floats.iter_mut().skip(w / 2).zip(specials) {
                    *f = s;
                }
                let (scale, fzp) = (0.02f32, rng.random_range(-20..=20));
                let inv = 1.0 / scale;
                let sources = [
                    Source::I8(&codes, zp),
                    Source::F32(&floats, inv, fzp),
                    Source::HardSwishF32(&floats, inv, fzp),
                ];
                for src in sources {
                    let mut buf = vec![i16::MIN; stride * at.phase_len];
                    fill_portable(&mut buf, src, [h, w], &at);
                    let mut vector = vec![i16::MIN; stride * at.phase_len];
                    fill(&mut vector, src, [h, w], &at);
                    // `fill` writes what the portable one writes, and may write zeros right
                    // of a row, in its own padded row (its padding, zero anyway).
                    for (i, (&v, &p)) in vector.iter().zip(&buf).enumerate() {
                        let (phase, row, col) = (i / at.phase_len, i % at.phase_len / ld, i % ld);
                        let end = (w + left - phase).div_ceil(stride);
                        let padding = (top..top + h).contains(&row) && col >= end;
                        assert!(
                            v == p || (v == 0 && p == i16::MIN && padding),
                            "stride {stride} {h}x{w} {src:?}: {v} at {i}, portable {p}"
                        );
                    }
                    // The codes layout: what the offsets layout holds plus the zero point,
                    // at the same places, nothing else but (NEON) the zero point, the
                    // padding, right of a row.
                    let zpc = src.zero_point();
                    let init: Vec<i8> = (0..buf.len()).map(|_| rng.random()).collect();
                    let (mut portable, mut vector) = (init.clone(), init.clone());
                    fill_codes_portable(&mut portable, src, [h, w], &at);
                    fill_codes(&mut vector, src, [h, w], &at);
                    for (i, &off) in buf.iter().enumerate() {
                        let (phase, row, col) = (i / at.phase_len, i % at.phase_len / ld, i % ld);
                        let end = (w + left - phase).div_ceil(stride);
                        let padding = (top..top + h).contains(&row) && col >= end;
                        let want = match off {
                            i16::MIN => init[i],
                            off => (off + zpc as i16) as i8,
                        };
                        assert_eq!(portable[i], want, "stride {stride} {h}x{w} {src:?} at {i}");
                        assert!(
                            vector[i] == want
                                || (off == i16::MIN && padding && i32::from(vector[i]) == zpc),
                            "stride {stride} {h}x{w} {src:?}: code {} at {i}, want {want}",
                            vector[i]
                        );
                    }
                    let quantized = |x: f32| super::pad::offset_code(x, inv, fzp);
                    for y in 0..h {
                        for x in 0..w {
                            let i = y * w + x;
                            let want = match src {
                                Source::I8(..) => i16::from(codes[i]) - zp as i16,
                                Source::F32(..) => quantized(floats[i]),
                                Source::HardSwishF32(..) => super::pad::hardswish_offset_code(
                                    floats[i],
                                    super::pad::hardswish_inv(inv),
                                    fzp,
                                ),
                            };
                            let px = x + left;
                            let i = (px % stride) * at.phase_len + (y + top) * ld + px / stride;
                            assert_eq!(buf[i], want, "stride {stride} {h}x{w} at ({y}, {x})");
                            buf[i] = i16::MIN;
                        }
                    }
                    assert!(
                        buf.iter().all(|&v| v == i16::MIN),
                        "the portable fill wrote outside the plane's interior"
                    );
                }
            }
        }
    }
}

#[test]
fn rounding_is_half_to_even_saturated_with_nan_at_zero() {
    let mut rng = SmallRng::seed_from_u64(3);
    let specials = [
        0.5f32,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        0.49999997,
        8388607.5,
        -8388608.5,
        2_147_483_520.0,
        2_147_483_648.0,
        -2_147_483_648.0,
        -2_147_483_904.0,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -0.0,
    ];
    let mut values = specials.to_vec();
    values.extend((0..10_000).map(|_| rng.random_range(-300.0f32..300.0)));
    values.extend((0..10_000).map(|_| f32::from_bits(rng.random())));
    for v in values {
        assert_eq!(super::round_i32(v), v.round_ties_even() as i32, "{v:e}");
    }
}
