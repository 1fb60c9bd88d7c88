//! Runs one XOR-popcount shape through one kernel, for instruction counting under qemu:
//!
//! ```text
//! kernel_icount KERNEL M N WORDS ITERS      e.g.  kernel_icount neon 196 256 36 3
//! /work/shared/tools/arm-icount --filter 'kernels::' -- target/.../kernel_icount neon 196 256 36 3
//! ```
//!
//! Run it twice with different ITERS and subtract, so set-up (data generation) cancels out.
//! Prints the kernel's name and a checksum of the output.

use std::hint::black_box;
use std::process::ExitCode;

use kestrel_runtime::kernels;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (Some(name), Some(m), Some(n), Some(words), Some(iters)) =
        (args.first(), parse(1), parse(2), parse(3), parse(4))
    else {
        eprintln!("usage: kernel_icount KERNEL M N WORDS ITERS");
        return ExitCode::from(2);
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
    let a: Vec<u64> = (0..m * words).map(|_| next()).collect();
    let b: Vec<u64> = (0..n * words).map(|_| next()).collect();
    let mut out = vec![0u32; m * n];
    let mut checksum = 0u64;
    for _ in 0..iters {
        kernel.xor_popcount(black_box(&a), black_box(&b), words, black_box(&mut out));
        checksum = checksum.wrapping_add(out.iter().map(|&v| u64::from(v)).sum::<u64>());
    }
    println!(
        "{} M={m} N={n} words={words} iters={iters} checksum={checksum}",
        kernel.name()
    );
    ExitCode::SUCCESS
}
