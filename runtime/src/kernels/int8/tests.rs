//! The int8 kernels: the portable one against a direct float-free reference on unpacked data
//! (packing, correction and output stage included), on every packing format, and every kernel
//! `available()` returns against the same reference bit for bit, over every tail case (rows
//! not a multiple of 4 or 8, k not a multiple of 4 or 16, columns not a multiple of 16 or 32,
//! jobs starting mid-way).

use super::{
    available, digits, generic, pack_f32, pack_f32_codes16, pack_f32_digits, pack_i8, quantize,
    quantize16, Format, HighSums, Int8Kernel, Job, Output, Pack, PackedWeights, Quantizer, Stage,
    Strides, Wide, COLS, MAX_K16, ROWS,
};

/// Every packing format some kernel reads.
const FORMATS: [Format; 3] = [Format::DOT4_U8, Format::DOT4_I8, Format::K16_I8];
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

struct Case {
    m: usize,
    k: usize,
    n: usize,
    w: Vec<i8>,
    x: Vec<f32>,
    bias: Vec<i32>,
    scale: Vec<f32>,
    inv: f32,
    zp: i32,
}

fn case(rng: &mut SmallRng, m: usize, k: usize, n: usize, extreme: bool) -> Case {
    let w = (0..m * k)
        .map(|_| {
            if extreme {
                if rng.random::<bool>() {
                    127
                } else {
                    -127
                }
            } else {
                rng.random_range(-127..=127i8)
            }
        })
        .collect();
    let mut x: Vec<f32> = (0..k * n).map(|_| rng.random_range(-3.0..3.0f32)).collect();
    if extreme {
        x.iter_mut()
            .for_each(|v| *v = if *v < 0.0 { -1e9 } else { 1e9 });
    }
    // A few special values: a NaN, infinities, exact ties.
    if x.len() > 4 {
        x[0] = f32::NAN;
        x[1] = f32::INFINITY;
        x[2] = f32::NEG_INFINITY;
        x[3] = 0.5 * 0.02;
    }
    Case {
        m,
        k,
        n,
        w,
        x,
        bias: (0..m).map(|_| rng.random_range(-5000..5000)).collect(),
        scale: (0..m).map(|_| rng.random_range(1e-5..1e-2f32)).collect(),
        inv: 1.0 / 0.02,
        zp: rng.random_range(-20..20),
    }
}

/// The stage vectors of a case: (corr, corr_u).
fn corrections(c: &Case) -> (Vec<i32>, Vec<i32>) {
    let rowsum: Vec<i32> = (0..c.m)
        .map(|o| c.w[o * c.k..(o + 1) * c.k].iter().map(|&v| v as i32).sum())
        .collect();
    let corr: Vec<i32> = (0..c.m).map(|o| c.bias[o] - c.zp * rowsum[o]).collect();
    let corr_u = corr.iter().zip(&rowsum).map(|(a, s)| a - 128 * s).collect();
    (corr, corr_u)
}

/// Runs `kernel` over the case in jobs of `per_job` blocks, on operands packed in `format`
/// (by the kernel's own packer when it is its format, the portable one otherwise); f32 and i8
/// outputs, as `[m][n]`. `last`: input and output channels last (`[n][k]`, `[n][m]`), as in an
/// NHWC graph.
fn run(
    (kernel, format): (&dyn Int8Kernel, Format),
    c: &Case,
    per_job: usize,
    (lo, hi): (f32, f32),
    last: bool,
) -> (Vec<f32>, Vec<i8>) {
    let w = PackedWeights::new(&c.w, c.m, c.k, format);
    let (corr, corr_u) = corrections(c);
    let blocks = c.n.div_ceil(COLS);
    let mut packed = vec![0u8; format.packed_len(c.k, c.n)];
    let step = packed.len() / blocks.max(1);
    let (x, ld_in, ld_out) = if last {
        let t: Vec<f32> = (0..c.n * c.k)
            .map(|i| c.x[(i % c.k) * c.n + i / c.k])
            .collect();
        (t, Strides { k: 1, c: c.k }, Strides { k: 1, c: c.m })
    } else {
        let ld = Strides { k: c.n, c: 1 };
        (c.x.clone(), ld, ld)
    };
    let q = Quantizer {
        inv_scale: c.inv,
        zp: c.zp,
    };
    let p = Pack {
        x: &x,
        k: c.k,
        n: c.n,
        ld: ld_in,
        blocks: 0..blocks,
    };
    if format == kernel.format() {
        kernel.pack_f32(&p, q, &mut packed);
    } else {
        pack_f32(&p, q, format, &mut packed);
    }
    let mut yf = vec![f32::NAN; c.m * c.n];
    let mut yq = vec![99i8; c.m * c.n];
    for out in [
        Output::F32 {
            ptr: yf.as_mut_ptr(),
            ld: ld_out,
        },
        Output::I8 {
            ptr: yq.as_mut_ptr(),
            ld: ld_out,
            inv_scale: 1.0 / 0.05,
            zp: -3.0,
        },
    ] {
        let mut b = 0;
        let row_blocks = c.m.div_ceil(ROWS);
        while b < blocks {
            let nb = per_job.min(blocks - b);
            // Jobs of `per_job` column blocks; with `per_job` 3 the rows are split in jobs of
            // one row block too (as the op does when columns cannot feed the threads).
            let per_rows = if per_job == 3 { 1 } else { row_blocks.max(1) };
            let mut r = 0;
            while r < row_blocks {
                kernel.run(&Job {
                    w: &w,
                    x: &packed[b * step..(b + nb) * step],
                    first_block: b,
                    blocks: nb,
                    row_blocks: r..(r + per_rows).min(row_blocks),
                    n: c.n,
                    stage: Stage {
                        corr: &corr,
                        corr_u: &corr_u,
                        scale: &c.scale,
                        lo,
                        hi,
                        out,
                        wide: None,
                    },
                });
                r += per_rows;
            }
            b += nb;
        }
    }
    if last {
        let back = |i: usize| (i % c.n) * c.m + i / c.n;
        yf = (0..c.m * c.n).map(|i| yf[back(i)]).collect();
        yq = (0..c.m * c.n).map(|i| yq[back(i)]).collect();
    }
    (yf, yq)
}

/// The definition, on unpacked data.
fn reference(c: &Case, lo: f32, hi: f32) -> (Vec<f32>, Vec<i8>) {
    let q: Vec<i32> =
        c.x.iter()
            .map(|&v| quantize(v, c.inv, c.zp as f32) as i32)
            .collect();
    let mut yf = vec![0f32; c.m * c.n];
    let mut yq = vec![0i8; c.m * c.n];
    for o in 0..c.m {
        for col in 0..c.n {
            let acc: i32 = (0..c.k)
                .map(|kk| c.w[o * c.k + kk] as i32 * (q[kk * c.n + col] - c.zp))
                .sum();
            let y = ((acc + c.bias[o]) as f32 * c.scale[o]).max(lo).min(hi);
            yf[o * c.n + col] = y;
            yq[o * c.n + col] = quantize(y, 1.0 / 0.05, -3.0);
        }
    }
    (yf, yq)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn check(rng: &mut SmallRng, m: usize, k: usize, n: usize, extreme: bool) {
    check_case(&case(rng, m, k, n, extreme));
}

fn check_case(c: &Case) {
    let (m, k, n) = (c.m, c.k, c.n);
    for (lo, hi) in [(-f32::MAX, f32::MAX), (0.0, 6.0)] {
        let (wf, wq) = reference(c, lo, hi);
        for last in [false, true] {
            for format in FORMATS {
                let (gf, gq) = run((generic(), format), c, usize::MAX, (lo, hi), last);
                let what = format!("M={m} K={k} N={n} last {last} {format:?}");
                assert_eq!(bits(&gf), bits(&wf), "generic f32: {what}");
                assert_eq!(gq, wq, "generic i8: {what}");
            }
            for kernel in available() {
                for per_job in [1, 3, usize::MAX] {
                    let (f, q) = run((kernel, kernel.format()), c, per_job, (lo, hi), last);
                    let name = kernel.name();
                    let what = format!("M={m} K={k} N={n} jobs of {per_job}, channels last {last}");
                    assert_eq!(bits(&f), bits(&wf), "{name} f32: {what}");
                    assert_eq!(q, wq, "{name} i8: {what}");
                }
            }
        }
    }
}

#[test]
fn every_kernel_equals_the_definition_on_every_tail() {
    let mut rng = SmallRng::seed_from_u64(8);
    for m in [1, 3, 4, 5, 8, 12, 13] {
        for k in [1, 3, 4, 7, 16, 33, 48] {
            for n in [1, 15, 16, 17, 32, 33, 50] {
                check(&mut rng, m, k, n, false);
            }
        }
    }
}

#[test]
fn every_kernel_equals_the_definition_on_layer_shapes_and_extremes() {
    let mut rng = SmallRng::seed_from_u64(9);
    // MobileNetV3-style pointwise layers (reduced N), an SE dense layer, a classifier.
    // Narrow last blocks (1–8 columns, 4 or 2 row blocks at a time and the rest): 7×7 and
    // 14×14 planes, 3×3 ones, 5 to 8 columns past a block, whole and partial row blocks.
    for (m, k, n) in [
        (72, 24, 196),
        (40, 120, 100),
        (144, 576, 1),
        (4, 1280, 1),
        (36, 40, 49),
        (20, 24, 9),
        (23, 17, 3),
        (22, 64, 20),
        (48, 33, 36),
        (20, 24, 21),
        (23, 17, 7),
        (22, 64, 24),
        (12, 48, 38),
    ] {
        check(&mut rng, m, k, n, false);
    }
    // ±127 weights on saturated inputs: the largest sums a layer can make.
    check(&mut rng, 9, 1280, 40, true);
}

/// Scales whose products overflow f32 (and a NaN) in some row blocks: the portable stage's
/// clamp to `±f32::MAX` turns them into `±f32::MAX`, and so must every kernel that leaves the
/// clamp out where it cannot change a value.
#[test]
fn every_kernel_clamps_overflowing_scales_as_the_definition() {
    let mut rng = SmallRng::seed_from_u64(10);
    let mut c = case(&mut rng, 12, 40, 33, true);
    c.scale[1] = 1e30;
    c.scale[6] = f32::NAN;
    c.scale[7] = -3e38;
    check_case(&c);
}

#[test]
fn the_digits_of_every_16_bit_code_recombine() {
    for q in -32768..=32767i32 {
        let (hi, lo) = digits(q);
        assert_eq!(256 * hi as i32 + lo as i32 + 128, q, "{q}");
    }
    assert_eq!(quantize16(f32::NAN, 1.0, 0.0), -32768);
    assert_eq!(quantize16(1e9, 1.0, 0.0), 32767);
    assert_eq!(quantize16(2.5, 1.0, 0.0), 2, "ties to even");
}

/// The case's input channels first (`[k][n]`) or last (`[n][k]`), and its strides.
fn input(c: &Case, last: bool) -> (Vec<f32>, Strides) {
    let (k, n) = (c.k, c.n);
    if last {
        let t = (0..n * k).map(|i| c.x[(i % k) * n + i / k]).collect();
        (t, Strides { k: 1, c: k })
    } else {
        (c.x.clone(), Strides { k: n, c: 1 })
    }
}

/// Output scale and zero point of the i8 outputs of [`split_jobs`].
const OUT_I8: (f32, f32) = (1.0 / 0.05, -3.0);

/// `m` × `n` outputs written by `run(first block, blocks, row blocks, output)` over split jobs
/// (the first column block, then the rest; one row block, then the rest of the rows), in f32
/// and in i8 (`OUT_I8`), channels first or `last`; returned as `[m][n]`.
fn split_jobs(
    m: usize,
    n: usize,
    last: bool,
    mut run: impl FnMut(usize, usize, std::ops::Range<usize>, Output),
) -> (Vec<f32>, Vec<i8>) {
    let ld = if last {
        Strides { k: 1, c: m }
    } else {
        Strides { k: n, c: 1 }
    };
    let mut yf = vec![f32::NAN; m * n];
    let mut yq = vec![99i8; m * n];
    let outs = [
        Output::F32 {
            ptr: yf.as_mut_ptr(),
            ld,
        },
        Output::I8 {
            ptr: yq.as_mut_ptr(),
            ld,
            inv_scale: OUT_I8.0,
            zp: OUT_I8.1,
        },
    ];
    let (blocks, row_blocks) = (n.div_ceil(COLS), m.div_ceil(ROWS));
    for out in outs {
        for (first, count) in [(0, 1), (1, blocks - 1)] {
            for rows in [0..1, 1..row_blocks] {
                if count > 0 && !rows.is_empty() {
                    run(first, count, rows, out);
                }
            }
        }
    }
    let back = |i: usize| if last { (i % n) * m + i / n } else { i };
    (
        (0..m * n).map(|i| yf[back(i)]).collect(),
        (0..m * n).map(|i| yq[back(i)]).collect(),
    )
}

/// The definition of a 16-bit input's product: `(Σ W·(q − zp) + bias) · scale`, the sum
/// exact (i64) and rounded once to f32, clamped to `[lo, hi]`; `[m][n]`.
fn definition16(c: &Case, q: Quantizer, lo: f32, hi: f32) -> Vec<f32> {
    let (m, k, n) = (c.m, c.k, c.n);
    let codes: Vec<i64> =
        c.x.iter()
            .map(|&v| quantize16(v, q.inv_scale, q.zp as f32) as i64)
            .collect();
    let mut want = vec![0f32; m * n];
    for o in 0..m {
        for col in 0..n {
            let acc: i64 = (0..k)
                .map(|kk| c.w[o * k + kk] as i64 * (codes[kk * n + col] - q.zp as i64))
                .sum();
            let y = (acc + c.bias[o] as i64) as f32 * c.scale[o];
            want[o * n + col] = y.max(lo).min(hi);
        }
    }
    want
}

/// A 16-bit input end to end on every kernel: its digit packer, the high digits' i32 sums
/// (channels last, as the op keeps them) and the combining stage of the low digits' product,
/// against the definition `(Σ W·(q − zp) + bias) · scale` with the sum exact (i64) and rounded
/// once to f32; f32 and i8 outputs, channels first and last, jobs over part of the columns
/// and of the rows.
#[test]
fn every_kernel_combines_the_digit_products_of_a_16_bit_input() {
    let mut rng = SmallRng::seed_from_u64(12);
    let (inv_out, zp_out) = OUT_I8;
    for (m, k, n) in [
        (5usize, 7usize, 33usize),
        (12, 48, 50),
        (9, 1280, 17),
        (40, 24, 100),
        (8, 16, 64),
    ] {
        let c = case(&mut rng, m, k, n, false);
        let q = Quantizer {
            inv_scale: 1.0 / 1e-4,
            zp: 1234,
        };
        let rowsum: Vec<i64> = (0..m)
            .map(|o| c.w[o * k..(o + 1) * k].iter().map(|&v| v as i64).sum())
            .collect();
        let corr16: Vec<i64> = (0..m)
            .map(|o| c.bias[o] as i64 + (128 - q.zp as i64) * rowsum[o])
            .collect();
        let zero = vec![0i32; m];
        let corr_u: Vec<i32> = rowsum.iter().map(|s| (-128 * s) as i32).collect();
        for (lo, hi) in [(-f32::MAX, f32::MAX), (0.0, 6.0)] {
            let want = definition16(&c, q, lo, hi);
            let want_q: Vec<i8> = want.iter().map(|&y| quantize(y, inv_out, zp_out)).collect();
            for kernel in available() {
                let format = kernel.format();
                let w = PackedWeights::new(&c.w, m, k, format);
                let blocks = n.div_ceil(COLS);
                let step = format.block_bytes(k);
                for last in [false, true] {
                    let (x, ld_in) = input(&c, last);
                    let p = Pack {
                        x: &x,
                        k,
                        n,
                        ld: ld_in,
                        blocks: 0..blocks,
                    };
                    let mut hi_plane = vec![0u8; format.packed_len(k, n)];
                    let mut lo_plane = hi_plane.clone();
                    kernel.pack_f32_digits(&p, q, &mut hi_plane, &mut lo_plane);
                    let mut high = vec![0i32; m * n];
                    // The high sums with rows contiguous (NEON's layout) or columns.
                    for high_ld in [Strides { k: 1, c: m }, Strides { k: n, c: 1 }] {
                        let (yf, yq) = split_jobs(m, n, last, |first, count, rows, out| {
                            let span = first * step..(first + count) * step;
                            let job = |x, stage| Job {
                                w: &w,
                                x,
                                first_block: first,
                                blocks: count,
                                row_blocks: rows.clone(),
                                n,
                                stage,
                            };
                            let stage = Stage {
                                corr: &zero,
                                corr_u: &corr_u,
                                scale: &c.scale,
                                lo: -f32::MAX,
                                hi: f32::MAX,
                                out: Output::I32 {
                                    ptr: high.as_mut_ptr(),
                                    ld: high_ld,
                                },
                                wide: None,
                            };
                            kernel.run(&job(&hi_plane[span.clone()], stage));
                            let wide = Wide {
                                high: Some(HighSums {
                                    ptr: high.as_ptr(),
                                    ld: high_ld,
                                }),
                                corr: &corr16,
                            };
                            let stage = Stage {
                                lo,
                                hi,
                                out,
                                wide: Some(wide),
                                ..stage
                            };
                            kernel.run(&job(&lo_plane[span], stage));
                        });
                        let what = format!(
                            "{} M={m} K={k} N={n} last {last} clamp {lo}..{hi}",
                            kernel.name()
                        );
                        assert_eq!(bits(&yf), bits(&want), "f32: {what} {high_ld:?}");
                        assert_eq!(yq, want_q, "i8: {what} {high_ld:?}");
                    }
                }
            }
        }
    }
}

/// Every one-product 16-bit kernel (each available kernel's `codes16` twin: the portable
/// one everywhere, `neon-16x8` on aarch64) against the definition bit for bit, with its own
/// packer: f32 and i8 outputs, channels first and last, jobs over part of the columns and of
/// the rows; the i32 stage where the sums fit, the i64 one for the largest sums the form
/// allows (±127 weights on saturated codes, K = MAX_K16).
#[test]
fn every_16x8_kernel_gives_the_definition_s_bits() {
    let mut rng = SmallRng::seed_from_u64(13);
    let (inv_out, zp_out) = OUT_I8;
    let twins: Vec<&dyn Int8Kernel> = available().iter().filter_map(|k| k.codes16()).collect();
    assert!(twins.iter().any(|k| k.name() == "generic-16x8"));
    #[cfg(target_arch = "aarch64")]
    assert!(twins.iter().any(|k| k.name() == "neon-16x8"), "{twins:?}");
    for (m, k, n, extreme) in [
        (5usize, 7usize, 33usize, false),
        (12, 48, 50, false),
        (40, 24, 100, false),
        (8, 16, 64, false),
        (4, 1, 16, false),
        (9, 3, 5, false),
        (9, MAX_K16, 17, true),
    ] {
        let c = case(&mut rng, m, k, n, extreme);
        let q = Quantizer {
            inv_scale: 1.0 / 1e-4,
            zp: 1234,
        };
        let corr_q: Vec<i64> = (0..m)
            .map(|o| {
                let sum: i64 = c.w[o * k..(o + 1) * k].iter().map(|&v| v as i64).sum();
                c.bias[o] as i64 - q.zp as i64 * sum
            })
            .collect();
        // The i32 stage (as an 8-bit input's) where no sum can leave i32, as the op picks it.
        let fits = (0..m).all(|o| {
            let abs: i64 = c.w[o * k..(o + 1) * k]
                .iter()
                .map(|&v| (v as i64).abs())
                .sum();
            32768 * abs + corr_q[o].abs() <= i32::MAX as i64
        });
        assert_eq!(fits, !extreme, "the cases cover both stages");
        let corr32: Vec<i32> = corr_q.iter().map(|&v| v as i32).collect();
        let unused = vec![0i32; m];
        for (lo, hi) in [(-f32::MAX, f32::MAX), (0.0, 6.0)] {
            let want = definition16(&c, q, lo, hi);
            let want_q: Vec<i8> = want.iter().map(|&y| quantize(y, inv_out, zp_out)).collect();
            for &kernel in &twins {
                let format = kernel.format();
                assert_eq!(format, Format::CODES16, "{}", kernel.name());
                let w = PackedWeights::new(&c.w, m, k, format);
                let blocks = n.div_ceil(COLS);
                let step = format.block_bytes(k);
                for last in [false, true] {
                    let (x, ld_in) = input(&c, last);
                    let p = Pack {
                        x: &x,
                        k,
                        n,
                        ld: ld_in,
                        blocks: 0..blocks,
                    };
                    let mut packed = vec![0u8; format.packed_len(k, n)];
                    kernel.pack_f32(&p, q, &mut packed);
                    let (yf, yq) = split_jobs(m, n, last, |first, count, rows, out| {
                        kernel.run(&Job {
                            w: &w,
                            x: &packed[first * step..(first + count) * step],
                            first_block: first,
                            blocks: count,
                            row_blocks: rows,
                            n,
                            stage: Stage {
                                corr: if fits { &corr32 } else { &unused },
                                corr_u: &unused,
                                scale: &c.scale,
                                lo,
                                hi,
                                out,
                                wide: (!fits).then_some(Wide {
                                    high: None,
                                    corr: &corr_q,
                                }),
                            },
                        })
                    });
                    let what = format!(
                        "{} M={m} K={k} N={n} last {last} clamp {lo}..{hi}",
                        kernel.name()
                    );
                    assert_eq!(bits(&yf), bits(&want), "f32: {what}");
                    assert_eq!(yq, want_q, "i8: {what}");
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "too long for 16-bit codes")]
fn a_16x8_job_refuses_a_reduction_its_sums_cannot_hold() {
    let k = MAX_K16 + 1;
    let w = PackedWeights::new(&vec![1; 4 * k], 4, k, Format::CODES16);
    let x = vec![0u8; Format::CODES16.packed_len(k, 16)];
    let mut y = [0f32; 64];
    let job = Job {
        w: &w,
        x: &x,
        first_block: 0,
        blocks: 1,
        row_blocks: 0..1,
        n: 16,
        stage: Stage {
            corr: &[0; 4],
            corr_u: &[0; 4],
            scale: &[1.0; 4],
            lo: -f32::MAX,
            hi: f32::MAX,
            out: Output::F32 {
                ptr: y.as_mut_ptr(),
                ld: Strides { k: 16, c: 1 },
            },
            wide: None,
        },
    };
    generic().codes16().unwrap().run(&job);
}

#[test]
fn every_packer_writes_the_portable_bytes() {
    let mut rng = SmallRng::seed_from_u64(10);
    for (k, n, ld) in [
        (1usize, 1usize, 1usize),
        // K = 1: strides {k: 1, c: 1} are channels first and last at once.
        (1, 32, 32),
        (3, 17, 20),
        (4, 16, 16),
        (9, 45, 45),
        (24, 200, 210),
        (32, 48, 50),
        (48, 16, 16),
        // A dense layer's single column (channels last: a partial block), and partial groups.
        (1280, 1, 1280),
        (37, 3, 40),
    ] {
        let mut x: Vec<f32> = (0..k * ld)
            .map(|_| rng.random_range(-9.0..9.0f32))
            .collect();
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            1e30,
        ];
        for (v, s) in x.iter_mut().zip(specials) {
            *v = s;
        }
        let blocks = n.div_ceil(COLS);
        for (range, kernel) in [0..blocks, blocks / 2..blocks].into_iter().flat_map(|r| {
            available()
                .into_iter()
                .map(move |kernel| (r.clone(), kernel))
        }) {
            let format = kernel.format();
            let len = range.len() * format.block_bytes(k);
            let mut want = vec![0u8; len];
            // Channels first (rows ld apart) and channels last (columns k apart).
            for strides in [Strides { k: ld, c: 1 }, Strides { k: 1, c: k }] {
                let p = Pack {
                    x: &x,
                    k,
                    n,
                    ld: strides,
                    blocks: range.clone(),
                };
                let q = Quantizer {
                    inv_scale: 1.0,
                    zp: -3,
                };
                pack_f32(&p, q, format, &mut want);
                let mut got = vec![1u8; len];
                kernel.pack_f32(&p, q, &mut got);
                let name = kernel.name();
                assert_eq!(got, want, "{name}: k={k} n={n} {strides:?} {range:?}");
                // The same codes as i8.
                let codes: Vec<i8> = x.iter().map(|&v| quantize(v, 1.0, -3.0)).collect();
                let c = Pack {
                    x: &codes,
                    k,
                    n,
                    ld: strides,
                    blocks: range.clone(),
                };
                let mut got = vec![1u8; len];
                kernel.pack_i8(&c, &mut got);
                assert_eq!(got, want, "{name} i8: k={k} n={n} {strides:?} {range:?}");
                // Both digit planes of 16-bit codes (a scale that reaches both clamps).
                let q16 = Quantizer {
                    inv_scale: 4000.0,
                    zp: 1234,
                };
                let (mut hi, mut lo) = (vec![0u8; len], vec![0u8; len]);
                pack_f32_digits(&p, q16, format, &mut hi, &mut lo);
                let (mut got_hi, mut got_lo) = (vec![1u8; len], vec![1u8; len]);
                kernel.pack_f32_digits(&p, q16, &mut got_hi, &mut got_lo);
                let what = format!("{name} digits: k={k} n={n} {strides:?} {range:?}");
                assert_eq!(got_hi, hi, "high {what}");
                assert_eq!(got_lo, lo, "low {what}");
                // 16-bit codes in one plane, for the kernel's one-product twin.
                if let Some(twin) = kernel.codes16() {
                    let len = range.len() * Format::CODES16.block_bytes(k);
                    let mut codes = vec![0u8; len];
                    pack_f32_codes16(&p, q16, &mut codes);
                    let mut got = vec![1u8; len];
                    twin.pack_f32(&p, q16, &mut got);
                    let what = format!("{}: k={k} n={n} {strides:?} {range:?}", twin.name());
                    assert_eq!(got, codes, "{what}");
                    // The portable packer writes the code `quantize16` gives (the last
                    // column of the last k, in the ranges' last block).
                    let (b, col) = ((n - 1) / COLS - range.start, (n - 1) % COLS);
                    let at = (b * k + (k - 1)) * 2 * COLS + 2 * col;
                    let x_last = x[(k - 1) * strides.k + (n - 1) * strides.c];
                    let code = quantize16(x_last, q16.inv_scale, q16.zp as f32) as i16;
                    assert_eq!(codes[at..at + 2], code.to_ne_bytes(), "{what}");
                }
            }
        }
    }
}

#[test]
fn packing_i8_matches_packing_the_same_values_as_f32() {
    let (k, n) = (7usize, 21usize);
    let q: Vec<i8> = (0..k * n)
        .map(|i| (i as i32 * 37 % 256 - 128) as i8)
        .collect();
    let f: Vec<f32> = q.iter().map(|&v| v as f32).collect();
    let ld = Strides { k: n, c: 1 };
    let blocks = 0..n.div_ceil(COLS);
    let one = Quantizer {
        inv_scale: 1.0,
        zp: 0,
    };
    for format in FORMATS {
        let len = format.packed_len(k, n);
        let (mut a, mut b) = (vec![0; len], vec![1; len]);
        let (blocks_i, blocks_f) = (blocks.clone(), blocks.clone());
        #[rustfmt::skip]
        pack_i8(&Pack { x: &q, k, n, ld, blocks: blocks_i }, format, &mut a);
        #[rustfmt::skip]
        pack_f32(&Pack { x: &f, k, n, ld, blocks: blocks_f }, one, format, &mut b);
        assert_eq!(a, b, "{format:?}");
    }
}

#[test]
fn packed_weights_read_back() {
    let (m, k) = (6, 19);
    let w: Vec<i8> = (0..m * k).map(|i| (i % 250) as i8 - 100).collect();
    for format in FORMATS {
        let p = PackedWeights::new(&w, m, k, format);
        for o in 0..m {
            for kk in 0..k {
                assert_eq!(p.get(o, kk), w[o * k + kk], "{format:?}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "weights packed for another kernel")]
fn a_kernel_refuses_weights_packed_for_another() {
    let w = PackedWeights::new(&[1; 8], 2, 4, Format::DOT4_I8);
    let stage = Stage {
        corr: &[0; 2],
        corr_u: &[0; 2],
        scale: &[1.0; 2],
        lo: -f32::MAX,
        hi: f32::MAX,
        out: Output::F32 {
            ptr: std::ptr::null_mut(),
            ld: Strides { k: 1, c: 2 },
        },
        wide: None,
    };
    let job = Job {
        w: &w,
        x: &[0; 64],
        first_block: 0,
        blocks: 1,
        row_blocks: 0..1,
        n: 1,
        stage,
    };
    job.check(Format::DOT4_U8);
}

#[test]
fn kestrel_kernels_picks_a_kernel_by_name() {
    let choose = |var, kernels: Vec<&'static dyn Int8Kernel>| {
        super::super::pick_by_name(var, kernels, |k| k.name())
    };
    let best = available().last().unwrap().name();
    assert_eq!(choose(None, available()).name(), best);
    assert_eq!(choose(Some("generic"), available()).name(), "generic");
    assert_eq!(choose(Some("no-such-kernel"), available()).name(), best);
    for kernel in available() {
        assert_eq!(
            choose(Some(kernel.name()), available()).name(),
            kernel.name()
        );
    }
}

#[test]
fn the_cpu_s_kernels_are_the_ones_tested() {
    let names: Vec<&str> = available().iter().map(|k| k.name()).collect();
    eprintln!("int8 kernels tested here: {names:?}");
    #[cfg(target_arch = "aarch64")]
    {
        assert!(names.contains(&"neon"), "{names:?}");
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            assert!(names.contains(&"neon-dotprod"), "{names:?}");
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            assert!(names.contains(&"x86-avx2"), "{names:?}");
        }
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
            assert!(names.contains(&"x86-avx512-vnni"), "{names:?}");
        }
    }
}
