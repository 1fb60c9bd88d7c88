//! Runs one XOR-popcount shape through one kernel, for instruction counting under qemu:
//!
//! ```text
//! kernel_icount KERNEL M N WORDS ITERS                     rows:  e.g. kernel_icount neon 1 4096 64 3
//! kernel_icount KERNEL lanes K WORDS WQ OH OW C ITERS [OUT] lanes: a K×K stride-1 conv job,
//!                                                          e.g. kernel_icount neon lanes 3 4 16 14 14 256 3;
//!                                                          OUT = counts (default), float or
//!                                                          packed: the fused output stage
//! ../shared/tools/arm-icount --filter 'kernels::' -- target/.../kernel_icount neon ...
//! ```
//!
//! Run it twice with different ITERS and subtract, so set-up (data generation) cancels out.
//! Prints the kernel's name and a checksum of the output.

use std::hint::black_box;
use std::process::ExitCode;

use kestrel_runtime::kernels::binary::store::{packed_bounds, LaneStore, StoreKind, CLASSES};
use kestrel_runtime::kernels::binary::{self as kernels, LaneJob, LANE_SLACK};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let usage = || {
        eprintln!("usage: kernel_icount KERNEL M N WORDS ITERS");
        eprintln!(
            "       kernel_icount KERNEL lanes K WORDS WQ OH OW C ITERS [counts|float|packed]"
        );
        ExitCode::from(2)
    };
    let Some(name) = args.first() else {
        return usage();
    };
    let available = kernels::available();
    let Some(kernel) = available.iter().find(|k| k.name() == name) else {
        let names: Vec<_> = available.iter().map(|k| k.name()).collect();
        eprintln!("unknown kernel {name}; available: {}", names.join(", "));
        return ExitCode::from(2);
    };
    // xorshift64: cheap, deterministic inputs.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut checksum = 0u64;
    let mut sum = |out: &[u32]| {
        checksum = checksum.wrapping_add(out.iter().map(|&v| u64::from(v)).sum::<u64>())
    };
    if args.get(1).map(String::as_str) == Some("lanes") {
        let (Some(k), Some(words), Some(wq), Some(oh), Some(ow), Some(c), Some(iters)) = (
            parse(2),
            parse(3),
            parse(4),
            parse(5),
            parse(6),
            parse(7),
            parse(8),
        ) else {
            return usage();
        };
        let plane = (oh + k - 1) * wq;
        let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * wq + t % k).collect();
        let input: Vec<u64> = (0..words * plane + LANE_SLACK).map(|_| next()).collect();
        let weights: Vec<u64> = (0..c * k * k * words).map(|_| next()).collect();
        let lanes = (oh - 1) * wq + ow;
        let job = LaneJob {
            input: &input,
            taps: &taps,
            words,
            plane,
            lanes,
            weights: &weights,
        };
        let mode = args.get(9).map_or("counts", String::as_str);
        match mode {
            "counts" => {
                let mut out = vec![0u32; c * lanes];
                for _ in 0..iters {
                    kernel.xor_popcount_lanes(black_box(&job), black_box(&mut out));
                    sum(&out);
                }
            }
            "float" | "packed" => {
                // Interior lanes (class 0, no correction), parameters that vary per channel.
                let classes = vec![0u8; lanes];
                let corr = vec![0i32; c * CLASSES];
                let dot_max = (k * k * words * 64) as i32;
                let mul: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 8.0).collect();
                let bias: Vec<f32> = (0..c).map(|i| i as f32 - 3.0).collect();
                let threshold: Vec<i32> = (0..c)
                    .map(|_| (next() % (2 * dot_max as u64 + 1)) as i32 - dot_max)
                    .collect();
                let flip: Vec<u32> = (0..c).map(|_| (next() & 1) as u32).collect();
                let bounds = packed_bounds(dot_max, &corr[..c * CLASSES], CLASSES, &threshold);
                let (kind, ld) = if mode == "float" {
                    (
                        StoreKind::Float {
                            mul: &mul,
                            bias: &bias,
                        },
                        lanes,
                    )
                } else {
                    let threshold = &threshold;
                    let flip = &flip;
                    let bounds = &bounds;
                    (
                        StoreKind::Packed {
                            threshold,
                            flip,
                            bounds,
                        },
                        c.div_ceil(64),
                    )
                };
                let mut out = vec![0u64; c.max(lanes) * lanes.max(ld)];
                for _ in 0..iters {
                    out.fill(0);
                    // SAFETY: `out` holds c·lanes floats or lanes·ld words, used only
                    // through this store while it lives.
                    let store = unsafe {
                        LaneStore::new(
                            kind,
                            dot_max,
                            &classes,
                            &corr,
                            CLASSES,
                            out.as_mut_ptr().cast(),
                            ld,
                            c,
                            lanes,
                        )
                    };
                    kernel.xor_popcount_lanes_store(black_box(&job), black_box(&store));
                    let h = out.iter().fold(0u64, |a, &w| a.rotate_left(5) ^ w);
                    sum(&[h as u32, (h >> 32) as u32]);
                }
            }
            _ => return usage(),
        }
        println!(
            "{} lanes K={k} words={words} wq={wq} {oh}x{ow} C={c} lanes={lanes} out={mode} iters={iters} checksum={checksum}",
            kernel.name()
        );
        return ExitCode::SUCCESS;
    }
    let (Some(m), Some(n), Some(words), Some(iters)) = (parse(1), parse(2), parse(3), parse(4))
    else {
        return usage();
    };
    let a: Vec<u64> = (0..m * words).map(|_| next()).collect();
    let b: Vec<u64> = (0..n * words).map(|_| next()).collect();
    let mut out = vec![0u32; m * n];
    for _ in 0..iters {
        kernel.xor_popcount(black_box(&a), black_box(&b), words, black_box(&mut out));
        sum(&out);
    }
    println!(
        "{} M={m} N={n} words={words} iters={iters} checksum={checksum}",
        kernel.name()
    );
    ExitCode::SUCCESS
}
