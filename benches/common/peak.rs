//! Register-only XOR + popcount loops: the peak rate of one core for each instruction set,
//! shared by the kernel and layer benchmarks. Values never leave registers (checked in the
//! disassembly: no stack traffic in the loops); the XOR operand changes every iteration so
//! nothing can be hoisted.
//!
//! The scalar loops use four streams: four inputs, four accumulators, the changing operand
//! and the counter fit the 15 usable general registers (an earlier eight-stream version needed
//! 17 and spilled two accumulators every iteration, which understated the peak). Four
//! independent `popcnt` per iteration still saturate the one port that executes it.

#![allow(dead_code)]

use std::hint::black_box;

/// Bits per iteration of the scalar loops.
pub const SCALAR_BITS: u64 = 4 * 64;

macro_rules! scalar_body {
    ($iters:expr) => {{
        let x: [u64; 4] = black_box([1, 2, 3, 4].map(|i| i * 0x0123_4567_89ab_cdef));
        let mut k = black_box(0x9e37_79b9_7f4a_7c15u64);
        let (mut a0, mut a1, mut a2, mut a3) = (0u64, 0u64, 0u64, 0u64);
        for _ in 0..$iters {
            a0 += u64::from((x[0] ^ k).count_ones());
            a1 += u64::from((x[1] ^ k).count_ones());
            a2 += u64::from((x[2] ^ k).count_ones());
            a3 += u64::from((x[3] ^ k).count_ones());
            k = k.wrapping_add(1);
        }
        a0 + a1 + a2 + a3
    }};
}

/// Portable `count_ones` (what the `generic` kernel compiles to on this target).
pub fn scalar_portable(iters: u64) -> u64 {
    scalar_body!(iters)
}

/// Scalar `POPCNT`, four independent streams.
///
/// # Safety
/// The CPU must have POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
pub unsafe fn scalar(iters: u64) -> u64 {
    scalar_body!(iters)
}

/// Bits per iteration of [`avx2`].
#[cfg(target_arch = "x86_64")]
pub const AVX2_BITS: u64 = 4 * 256;

/// AVX2: the kernel's per-256-bit sequence (xor, and, shift, and, 2 × vpshufb, add, add
/// into byte accumulators) on four independent streams, `vpsadbw` every 31 iterations.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)]
pub unsafe fn avx2(iters: u64) -> u64 {
    use std::arch::x86_64::*;
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let one = _mm256_set1_epi64x(1);
    let x = black_box([1i64, 2, 3, 4].map(|i| _mm256_set1_epi64x(i * 0x0123_4567_89ab_cdef)));
    let mut k = black_box(_mm256_set1_epi64x(0x1e37_79b9_7f4a_7c15));
    let mut total = zero;
    let mut done = 0;
    while done < iters {
        let block = (iters - done).min(31);
        let mut acc = [zero; 4];
        for _ in 0..block {
            for i in 0..4 {
                let v = _mm256_xor_si256(x[i], k);
                let lo = _mm256_and_si256(v, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                let c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
                acc[i] = _mm256_add_epi8(acc[i], c);
            }
            k = _mm256_add_epi64(k, one);
        }
        for a in acc {
            total = _mm256_add_epi64(total, _mm256_sad_epu8(a, zero));
        }
        done += block;
    }
    let mut lanes = [0u64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), total);
    lanes.iter().sum()
}

/// Bits per iteration of [`avx512`].
#[cfg(target_arch = "x86_64")]
pub const AVX512_BITS: u64 = 8 * 512;

/// AVX-512 VPOPCNTDQ: the lane kernel's per-512-bit sequence (`vpxorq`, `vpopcntq`,
/// `vpaddq`) on eight independent streams.
///
/// # Safety
/// The CPU must have AVX-512 F and VPOPCNTDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[allow(clippy::needless_range_loop)]
pub unsafe fn avx512(iters: u64) -> u64 {
    use std::arch::x86_64::*;
    let one = _mm512_set1_epi64(1);
    let x = black_box(
        [1i64, 2, 3, 4, 5, 6, 7, 8].map(|i| _mm512_set1_epi64(i * 0x0123_4567_89ab_cdef)),
    );
    let mut k = black_box(_mm512_set1_epi64(0x1e37_79b9_7f4a_7c15));
    let mut acc = [_mm512_setzero_si512(); 8];
    for _ in 0..iters {
        for i in 0..8 {
            acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(x[i], k)));
        }
        k = _mm512_add_epi64(k, one);
    }
    acc.iter().map(|&a| _mm512_reduce_add_epi64(a) as u64).sum()
}

/// Bits per iteration of [`neon`].
#[cfg(target_arch = "aarch64")]
pub const NEON_BITS: u64 = 8 * 128;

/// NEON: eor + cnt + uadalp on eight independent 128-bit streams, widened every 1024
/// iterations.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::needless_range_loop)]
pub fn neon(iters: u64) -> u64 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is baseline on aarch64 (the target enables it).
    unsafe {
        let x = black_box([1u64, 2, 3, 4, 5, 6, 7, 8].map(|i| vdupq_n_u8(i as u8 * 37)));
        let mut k = black_box(vdupq_n_u8(0x5a));
        let one = vdupq_n_u8(1);
        let mut total = vdupq_n_u32(0);
        let mut done = 0;
        while done < iters {
            let block = (iters - done).min(1024);
            let mut acc = [vdupq_n_u16(0); 8];
            for _ in 0..block {
                for i in 0..8 {
                    acc[i] = vpadalq_u8(acc[i], vcntq_u8(veorq_u8(x[i], k)));
                }
                k = vaddq_u8(k, one);
            }
            for a in acc {
                total = vpadalq_u16(total, a);
            }
            done += block;
        }
        u64::from(vaddvq_u32(total))
    }
}

/// The peak that matches a kernel: its name and bit-MAC/s measured by `rate` (a function
/// that times a peak loop given its bits per iteration).
pub fn peak_name(kernel: &str) -> &'static str {
    match kernel {
        "generic" => "scalar-portable",
        "x86-popcnt" => "popcnt",
        "x86-avx2" => "avx2",
        "x86-avx512" => "avx512",
        "neon" => "neon",
        _ => "scalar-portable",
    }
}

/// Runs the peak loop named `name` for `iters` iterations; returns (result, bits per
/// iteration), or None when this CPU lacks it.
pub fn run(name: &str, iters: u64) -> Option<(u64, u64)> {
    match name {
        "scalar-portable" => Some((scalar_portable(iters), SCALAR_BITS)),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: POPCNT is present (checked).
        "popcnt" if is_x86_feature_detected!("popcnt") => {
            Some((unsafe { scalar(iters) }, SCALAR_BITS))
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present (checked).
        "avx2" if is_x86_feature_detected!("avx2") => Some((unsafe { avx2(iters) }, AVX2_BITS)),
        #[cfg(target_arch = "x86_64")]
        "avx512"
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vpopcntdq") =>
        {
            // SAFETY: AVX-512 F and VPOPCNTDQ are present (checked).
            Some((unsafe { avx512(iters) }, AVX512_BITS))
        }
        #[cfg(target_arch = "aarch64")]
        "neon" => Some((neon(iters), NEON_BITS)),
        _ => None,
    }
}

/// Every peak loop this CPU can run.
pub const NAMES: [&str; 5] = ["scalar-portable", "popcnt", "avx2", "avx512", "neon"];
