//! Runs one conv lane job dense or through its MST schedule, for instruction counting under
//! qemu (`../shared/tools/arm-icount`, the workspace's shared tools):
//!
//! ```text
//! mst_icount KERNEL dense|mst K WORDS SIZE C PERMILLE ITERS
//!   a K×K stride-1 conv (padding (K−1)/2) with WORDS input words per pixel, SIZE×SIZE output,
//!   C channels; a 4-ary tree (one root) whose children differ from their parents in
//!   PERMILLE/1000 of their (tap, word) positions, e.g. mst_icount neon mst 3 4 14 256 100 3
//! ```
//!
//! The weights, input and tree are the same for `dense` and `mst`, so the two runs differ only
//! in the kernel work. Run each twice with different ITERS and subtract (set-up cancels out).
//! Prints the kernel's name, word-ops and a checksum of the counts (equal for dense and mst
//! once each channel is read at its slot).

use std::hint::black_box;
use std::process::ExitCode;

use kestrel_runtime::kernels::binary::mst::MstSchedule;
use kestrel_runtime::kernels::binary::{self as kernels, LaneJob, LANE_SLACK};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (
        Some(name),
        Some(mode),
        Some(k),
        Some(words),
        Some(size),
        Some(c),
        Some(permille),
        Some(iters),
    ) = (
        args.first(),
        args.get(1),
        parse(2),
        parse(3),
        parse(4),
        parse(5),
        parse(6),
        parse(7),
    )
    else {
        eprintln!("usage: mst_icount KERNEL dense|mst K WORDS SIZE C PERMILLE ITERS");
        return ExitCode::from(2);
    };
    let available = kernels::available();
    let Some(kernel) = available.iter().find(|k| k.name() == name) else {
        eprintln!("unknown kernel {name}");
        return ExitCode::from(2);
    };
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let wq = size + k - 1;
    let plane = wq * wq;
    let lanes = (size - 1) * wq + size;
    let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * wq + t % k).collect();
    let row = k * k * words;
    let input: Vec<u64> = (0..words * plane + LANE_SLACK).map(|_| next()).collect();
    let differing = (row * permille).div_ceil(1000).min(row);
    let mut weights: Vec<u64> = (0..row).map(|_| next()).collect();
    let mut parents = vec![None];
    for ch in 1..c {
        let p = (ch - 1) / 4;
        let mut w = weights[p * row..(p + 1) * row].to_vec();
        let mut idx: Vec<usize> = (0..row).collect();
        for i in 0..differing {
            let j = i + (next() % (row - i) as u64) as usize;
            idx.swap(i, j);
            w[idx[i]] ^= 1 << (next() % 64);
        }
        weights.extend(w);
        parents.push(Some(p));
    }
    let schedule = MstSchedule::new(&weights, row, &parents).expect("a tree");
    let mut offsets = vec![0; schedule.diff_words()];
    schedule.lane_offsets(&taps, words, plane, &mut offsets);
    let job = LaneJob {
        input: &input,
        taps: &taps,
        words,
        plane,
        lanes,
        weights: &weights,
    };
    let mst = mode == "mst";
    let mut out = vec![0u32; c * lanes];
    for _ in 0..iters {
        if mst {
            schedule.xor_popcount_lanes(*kernel, black_box(&job), &offsets, black_box(&mut out));
        } else {
            kernel.xor_popcount_lanes(black_box(&job), black_box(&mut out));
        }
    }
    let slot = |ch: usize| if mst { schedule.slot(ch) } else { ch };
    let checksum: u64 = (0..c)
        .map(|ch| {
            out[slot(ch) * lanes..][..lanes]
                .iter()
                .enumerate()
                .map(|(p, &v)| (p as u64 + 1) * (ch as u64 + 1) * u64::from(v))
                .sum::<u64>()
        })
        .sum();
    println!(
        "{} {mode} K={k} words={words} {size}x{size} C={c} differing={differing}/{row} word-ops {}/{} iters={iters} checksum={checksum}",
        kernel.name(),
        if mst { schedule.word_ops() } else { schedule.dense_word_ops() },
        schedule.dense_word_ops()
    );
    ExitCode::SUCCESS
}
