//! One binary 3×3 convolution under an instruction-count window, for the daBNN comparison:
//!
//! ```text
//! bconv_icount SIZE CHANNELS RUNS MODE
//! ```
//!
//! N = 1, SIZE×SIZE input, CHANNELS → CHANNELS, 3×3, stride 1, padding 1. Random packed input
//! `[1, SIZE, SIZE, CHANNELS/64]` u64 and weights `[C_out, 3, 3, C_in/64]` u64 (bit 1 = −1).
//! One warm-up, then RUNS calls between `prctl(0x4B49434E, 1)` and `prctl(0x4B49434E, 2)`;
//! afterwards the output is checked against a naive reference (outside the window).
//!
//! MODE (what lies inside the window):
//! * `op-zero`, `op-one`: the whole `kestrel_binary_conv2d` op, float output (mul 1, bias 0),
//!   through a planned one-thread tract graph (`Session::run`, as `kestrel bench` times it):
//!   lane-layout copy of the packed input + NEON lane kernel + fused output stage. `zero` is
//!   the float model's zero padding (exact, border correction tables), `one` pads with +1
//!   (zero words, like daBNN's zero-bit padding).
//! * `kernel-float-zero`, `kernel-float-one`: the kernel with its fused float store only
//!   (`xor_popcount_lanes_store`), on an input already in the op's lane layout.
//! * `kernel-counts`: the lane kernel storing raw u32 popcounts (`xor_popcount_lanes`), no
//!   output stage (daBNN's `bconv_3x3` likewise stores float popcounts).
//! * `layout`: the op's lane-layout copy (`ops::bconv::layout::LaneLayout::pack`), packed
//!   NHWC → three zero-padded column blocks.
//! * `none`: an empty window.
//!
//! Uses the `kestrel` binary's pool allocator, as `benches/binary_layers.rs` does.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use kestrel_runtime::kernels::binary::store::{LaneStore, StoreKind, CLASSES};
use kestrel_runtime::kernels::binary::{self as kernels, LaneJob};
use kestrel_runtime::ops::bconv::layout::LaneLayout;
use kestrel_runtime::ops::bconv::{BinaryConv2d, ConvGeometry, PadMode};
use kestrel_runtime::ops::output_stage::OutputKind;
use kestrel_runtime::pool_alloc::{self, PoolAlloc};
use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{LoadOptions, Model};

#[global_allocator]
static ALLOCATOR: PoolAlloc = PoolAlloc;

fn mark(what: libc::c_ulong) {
    // SAFETY: prctl with an option no kernel knows only returns EINVAL.
    unsafe {
        libc::prctl(
            0x4B49_434E,
            what,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

/// splitmix64.
fn words(len: usize, seed: &mut u64) -> Vec<u64> {
    (0..len)
        .map(|_| {
            *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// Reference dot products `[c][y][x]` (f32 of i32): zero or one padding.
fn reference(x: &[u64], w: &[u64], s: usize, c: usize, zero: bool) -> Vec<f32> {
    let cw = c / 64;
    let mut out = vec![0f32; c * s * s];
    for co in 0..c {
        for y in 0..s {
            for xx in 0..s {
                let mut dot = 0i32;
                for t in 0..9 {
                    let (iy, ix) = ((y + t / 3) as isize - 1, (xx + t % 3) as isize - 1);
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < s && (ix as usize) < s;
                    if !inside && zero {
                        continue;
                    }
                    for k in 0..cw {
                        let xv = if inside {
                            x[((iy as usize) * s + ix as usize) * cw + k]
                        } else {
                            0
                        };
                        let wv = w[(co * 9 + t) * cw + k];
                        dot += 64 - 2 * (xv ^ wv).count_ones() as i32;
                    }
                }
                out[(co * s + y) * s + xx] = dot as f32;
            }
        }
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (Some(s), Some(c), Some(runs), Some(mode)) = (parse(0), parse(1), parse(2), args.get(3))
    else {
        eprintln!("usage: bconv_icount SIZE CHANNELS RUNS MODE");
        return ExitCode::from(2);
    };
    if c == 0 || c % 64 != 0 || s == 0 || runs == 0 {
        eprintln!("CHANNELS must be a multiple of 64; SIZE, RUNS positive");
        return ExitCode::from(2);
    }
    let _pool = pool_alloc::enable(pool_alloc::cache_bytes_from_env());
    let cw = c / 64;
    let mut seed = 0x5eed_0000u64 + (s * 1000 + c) as u64;
    let x = words(s * s * cw, &mut seed);
    let w = words(c * 9 * cw, &mut seed);
    let kernel = kernels::select();
    let geometry = |zero: bool| ConvGeometry {
        c_in: c,
        c_out: c,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [1; 4],
        pad_mode: if zero { PadMode::Zero } else { PadMode::One },
    };

    // (output to check, zero padding?) or None for modes without a checkable output.
    let checked: Option<(Vec<f32>, bool)> = match mode.as_str() {
        "op-zero" | "op-one" => {
            let zero = mode == "op-zero";
            let g = geometry(zero);
            let mut m = TypedModel::default();
            let src = m.add_source("x", u64::fact([1, s, s, cw])).unwrap();
            let wt = Tensor::from_shape(&[c, 3, 3, cw], &w).unwrap();
            let ones = Arc::new(tensor1(&vec![1f32; c]));
            let zeros = Arc::new(tensor1(&vec![0f32; c]));
            let op = BinaryConv2d::new(g, Arc::new(wt), OutputKind::Float, ones, zeros).unwrap();
            let y = m.wire_node("conv", op, &[src]).unwrap();
            m.select_output_outlets(&y).unwrap();
            let model = Model::from_typed(
                "bconv",
                m,
                &LoadOptions { threads: Some(1) },
                Instant::now(),
            )
            .unwrap();
            let input = Tensor::from_shape(&[1, s, s, cw], &x).unwrap();
            let inputs = tvec!(input.into_tvalue());
            let mut session = model.session().unwrap();
            session.run(inputs.clone()).unwrap();
            mark(1);
            for _ in 0..runs {
                black_box(session.run(black_box(inputs.clone())).unwrap());
            }
            mark(2);
            let out = session.run(inputs.clone()).unwrap();
            let view = out[0].try_as_plain_ram().unwrap();
            Some((view.as_slice::<f32>().unwrap().to_vec(), zero))
        }
        "kernel-float-zero" | "kernel-float-one" | "kernel-counts" | "layout" | "none" => {
            // The layout does not depend on the padding mode (zero words either way).
            let g = geometry(false);
            let layout = LaneLayout::new(&g, s, s);
            let mut buf = vec![0u64; layout.len];
            layout.pack(&g, &x, s, s, &mut buf);
            let mut taps = [0usize; 9];
            layout.taps(&g, &mut taps);
            let lanes = s * s;
            let job = LaneJob {
                input: &buf,
                taps: &taps,
                words: cw,
                plane: layout.plane,
                lanes,
                weights: &w,
            };
            match mode.as_str() {
                "none" => {
                    mark(1);
                    mark(2);
                    None
                }
                "layout" => {
                    let mut out = vec![0u64; layout.len];
                    layout.pack(&g, &x, s, s, &mut out);
                    mark(1);
                    for _ in 0..runs {
                        layout.pack(&g, black_box(&x), s, s, black_box(&mut out));
                    }
                    mark(2);
                    assert_eq!(out, buf);
                    None
                }
                "kernel-counts" => {
                    let mut out = vec![0u32; c * lanes];
                    kernel.xor_popcount_lanes(&job, &mut out);
                    mark(1);
                    for _ in 0..runs {
                        kernel.xor_popcount_lanes(black_box(&job), black_box(&mut out));
                    }
                    mark(2);
                    // counts → one-padding dots
                    let k = (9 * c) as i32;
                    Some((
                        out.iter().map(|&n| (k - 2 * n as i32) as f32).collect(),
                        false,
                    ))
                }
                _ => {
                    let zero = mode == "kernel-float-zero";
                    // Border classes as the op builds them: (row set, column set), interior 0.
                    let axis = |o: usize| -> usize {
                        if !zero {
                            0
                        } else if o == 0 {
                            1
                        } else if o == s - 1 {
                            2
                        } else {
                            0
                        }
                    };
                    let (nr, nc) = if zero { (3, 3) } else { (1, 1) };
                    let classes: Vec<u8> = (0..lanes)
                        .map(|q| (axis(q / s) * nc + axis(q % s)) as u8)
                        .collect();
                    let mut corr = vec![0i32; c * CLASSES];
                    if zero {
                        let sums: Vec<i32> = w
                            .chunks_exact(cw)
                            .map(|t| {
                                c as i32 - 2 * t.iter().map(|v| v.count_ones() as i32).sum::<i32>()
                            })
                            .collect();
                        // Taps of kernel row/column set: row set 1 = ky 0 out, 2 = ky 2 out.
                        let out_k =
                            |set: usize, k: usize| (set == 1 && k == 0) || (set == 2 && k == 2);
                        for co in 0..c {
                            for r in 0..nr {
                                for cc in 0..nc {
                                    corr[co * CLASSES + r * nc + cc] = (0..9)
                                        .filter(|&t| out_k(r, t / 3) || out_k(cc, t % 3))
                                        .map(|t| sums[co * 9 + t])
                                        .sum();
                                }
                            }
                        }
                    }
                    let mul = vec![1f32; c];
                    let bias = vec![0f32; c];
                    let kind = StoreKind::Float {
                        mul: &mul,
                        bias: &bias,
                    };
                    let mut out = vec![0f32; c * lanes];
                    let k = (9 * c) as i32;
                    let run = |out: &mut [f32]| {
                        // SAFETY: `out` holds c·lanes floats, used only through this store.
                        let store = unsafe {
                            LaneStore::new(
                                kind,
                                k,
                                &classes,
                                &corr,
                                CLASSES,
                                out.as_mut_ptr().cast(),
                                lanes,
                                c,
                                lanes,
                            )
                        };
                        kernel.xor_popcount_lanes_store(black_box(&job), black_box(&store));
                    };
                    run(&mut out);
                    mark(1);
                    for _ in 0..runs {
                        run(&mut out);
                    }
                    mark(2);
                    Some((out, zero))
                }
            }
        }
        _ => {
            eprintln!("unknown mode {mode}");
            return ExitCode::from(2);
        }
    };
    let (status, code) = match &checked {
        Some((out, zero)) => {
            let want = reference(&x, &w, s, c, *zero);
            let bad = out.iter().zip(&want).filter(|(a, b)| a != b).count();
            let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
            (
                format!(
                    "checksum={sum} mismatches={bad} {}",
                    if bad == 0 { "OK" } else { "MISMATCH" }
                ),
                if bad == 0 { 0 } else { 1 },
            )
        }
        None => ("(not checked)".to_string(), 0),
    };
    println!(
        "kestrel kernel={} mode={mode} size={s} channels={c} runs={runs} {status}",
        kernel.name()
    );
    ExitCode::from(code)
}
