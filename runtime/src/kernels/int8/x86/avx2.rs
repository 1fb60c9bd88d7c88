//! x86 AVX2 int8 kernel (`x86-avx2`), for x86 cores without AVX-512 VNNI (AMD Zen 2/3, Intel
//! before Ice Lake), which would otherwise run the portable kernel. Its figures beside tract's
//! f32 1×1 convolution are `benches/int8_layers.rs`'s (`benches/README.md`); what was tried and
//! dropped is in `docs/perf-log.md`.
//!
//! AVX2 has no exact int8 product: `vpmaddubsw` (u8 × i8) saturates its i16 pair sums. So the
//! input and weights, packed signed in groups of 4 k ([`Format::DOT4_I8`]), are widened to i16
//! (`vpmovsxbw`, straight from memory), and `vpmaddwd` multiplies 16 i16 pairs into 8 exact i32
//! sums of two products: 16 MACs per instruction, as many as an f32 `vfmadd` on 8 lanes.
//!
//! Tile 4 rows × 8 columns (8 accumulators of the 16 ymm registers). Per group of 4 k: 2 input
//! loads (4 columns × 4 k each), 1 weight load (4 rows × 4 k), 4 `vpermq` that broadcast one
//! row's 4 k to every column, 8 `vpmaddwd` and 8 `vpaddd`: 128 MACs in 23 instructions. Each
//! accumulator holds 2 partial sums per column, added by `vphaddd` at the end of the tile.
//! The output stage runs on 8 lanes with the portable stage's operations (channels-first f32,
//! the x86 graph's layout) or element by element through the portable stage.
//!
//! Packing (channels-first input, whole blocks): each k row's 16 floats are quantized on 8
//! lanes with the portable quantizer's operations (`vmulps`, `vaddps`, `vmaxps` (a NaN gives
//! −128), `vminps`, `vcvtps2dq` rounding half to even), narrowed by `vpackssdw`/`vpacksswb`
//! (exact: the codes are in [−128, 127]), and 4 rows are interleaved into `[column][4 k]` by
//! `punpck{l,h}bw`/`punpck{l,h}wd`. The portable packer quantizes one float at a time, with a
//! libm call for the rounding where the build does not assume SSE4.1: it cost about as much as
//! the product.

use std::arch::x86_64::*;

use super::super::{Format, Int8Kernel, Job, Output, Pack, Quantizer, COLS, ROWS};

/// The packing this kernel reads: groups of 4 k, signed input.
const FORMAT: Format = Format::DOT4_I8;
/// Bytes of one packed input block per group of 4 k.
const STEP: usize = FORMAT.step();

/// AVX2 kernel; a value exists only through [`Avx2::detect`].
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if the CPU has AVX2.
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        is_x86_feature_detected!("avx2").then_some(&Avx2(()) as &dyn Int8Kernel)
    }
}

impl Int8Kernel for Avx2 {
    fn name(&self) -> &'static str {
        "x86-avx2"
    }

    fn format(&self) -> Format {
        FORMAT
    }

    fn run(&self, job: &Job<'_>) {
        job.check(FORMAT);
        // SAFETY: `detect` checked AVX2; `check` the sizes the tiles rely on.
        unsafe { run(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        p.check(FORMAT, out);
        let per_block = FORMAT.block_bytes(p.k);
        for (bi, b) in p.blocks.clone().enumerate() {
            let dst = &mut out[bi * per_block..(bi + 1) * per_block];
            if p.ld.c != 1 || (b + 1) * COLS > p.n {
                let one = Pack {
                    blocks: b..b + 1,
                    ..p.clone()
                };
                super::super::pack_f32(&one, q, FORMAT, dst);
                continue;
            }
            // SAFETY: `detect` checked AVX2; the block's 16 columns of every k row lie in
            // p.x (Pack::check, whole block, contiguous columns); dst holds the block.
            unsafe { pack_block(p, b * COLS, q, dst) }
        }
    }

    fn pack_i8(&self, p: &Pack<'_, i8>, out: &mut [u8]) {
        super::pack::pack_i8(p, FORMAT, out)
    }
}

/// Packs one whole block of channels-first input (columns `c0..c0 + 16`).
///
/// # Safety
/// AVX2; the block's columns lie in `p.x` for every k; `dst` holds the block's bytes.
#[target_feature(enable = "avx2")]
unsafe fn pack_block(p: &Pack<'_, f32>, c0: usize, q: Quantizer, dst: &mut [u8]) {
    let (inv, zp) = (_mm256_set1_ps(q.inv_scale), _mm256_set1_ps(q.zp as f32));
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let quantize = |v: __m256| {
        let v = _mm256_add_ps(_mm256_mul_ps(v, inv), zp);
        _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi))
    };
    // The codes of row kk, columns c0..c0 + 16, in column order (0 past the last k).
    let row = |kk: usize| -> __m128i {
        if kk >= p.k {
            return _mm_setzero_si128();
        }
        // SAFETY: row kk < k, 16 columns from c0 (the caller's contract).
        unsafe {
            let at = p.x.as_ptr().add(kk * p.ld.k + c0);
            let (a, b) = (
                quantize(_mm256_loadu_ps(at)),
                quantize(_mm256_loadu_ps(at.add(8))),
            );
            // i16 by 128-bit halves: [c0-3 c8-11 | c4-7 c12-15] -> column order.
            let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
        }
    };
    let d = dst.as_mut_ptr() as *mut __m128i;
    for g in 0..FORMAT.groups(p.k) {
        let r = [row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3)];
        for (i, v) in super::pack::interleave4(r).into_iter().enumerate() {
            // SAFETY: the group's 64 bytes lie in dst (the caller's contract).
            unsafe { _mm_storeu_si128(d.add(4 * g + i), v) };
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn run(job: &Job<'_>) {
    let (m, groups) = (job.w.rows(), job.w.groups());
    let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
    for b in 0..job.blocks {
        let c0 = (job.first_block + b) * COLS;
        let cols = job.cols(b);
        for rb in job.row_blocks.clone() {
            for half in 0..2 {
                if half * 8 >= cols {
                    break;
                }
                // SAFETY: row block rb's and block b's groups lie in the packed buffers
                // (job.check); the tile's valid rows and columns lie in the output.
                unsafe {
                    let sums = tile(
                        w.add(rb * groups * ROWS * 4),
                        x.add(b * groups * STEP + half * 32),
                        groups,
                    );
                    let c = half * 8;
                    store(job, rb * ROWS, m, c0 + c, (cols - c).min(8), sums);
                }
            }
        }
    }
}

/// The sums of 4 rows × 8 columns over `groups` groups of 4 k: one vector of 8 columns per
/// row.
///
/// # Safety
/// AVX2; `w` must hold `groups · 16` bytes and `x` `(groups − 1) · 64 + 32`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile(w: *const i8, x: *const i8, groups: usize) -> [__m256i; ROWS] {
    let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
    let (mut w, mut x) = (w, x);
    for _ in 0..groups {
        // SAFETY: the caller's bounds (16 weight bytes, 2 × 16 input bytes of the group).
        unsafe {
            // Rows r0..r3 × k0..k3 as i16: row r is 64-bit unit r.
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
            let rows = [
                _mm256_permute4x64_epi64::<0x00>(wv),
                _mm256_permute4x64_epi64::<0x55>(wv),
                _mm256_permute4x64_epi64::<0xAA>(wv),
                _mm256_permute4x64_epi64::<0xFF>(wv),
            ];
            // Columns 4q..4q + 4 × k0..k3 as i16.
            let xs = [
                _mm256_cvtepi8_epi16(_mm_loadu_si128(x as *const __m128i)),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(16) as *const __m128i)),
            ];
            for r in 0..ROWS {
                for q in 0..2 {
                    acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(xs[q], rows[r]));
                }
            }
            (w, x) = (w.add(ROWS * 4), x.add(STEP));
        }
    }
    // acc[r][q] lanes: (column 4q + j, k pair p) at 2j + p. `vphaddd` adds the pairs within
    // 128-bit halves: [c0 c1 c4 c5 | c2 c3 c6 c7]; `vpermq` puts the columns in order.
    std::array::from_fn(|r| {
        let h = _mm256_hadd_epi32(acc[r][0], acc[r][1]);
        _mm256_permute4x64_epi64::<0b11_01_10_00>(h)
    })
}

/// Stores rows `o0..o0 + 4` (those `< m`) × columns `c..c + valid` of `sums`.
///
/// # Safety
/// AVX2; those rows and columns lie in the job's output.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store(job: &Job<'_>, o0: usize, m: usize, c: usize, valid: usize, sums: [__m256i; 4]) {
    let stage = &job.stage;
    // SAFETY (whole body): the caller's contract.
    unsafe {
        if let (Output::F32 { ptr, ld }, None) = (stage.out, stage.wide) {
            if ld.c == 1 && valid == 8 && o0 + ROWS <= m {
                // The portable stage's operations on 8 lanes: add (wrapping), convert, multiply,
                // max then min (`vmaxps`/`vminps` with the clamp second: a NaN cannot occur).
                let (lo, hi) = (_mm256_set1_ps(stage.lo), _mm256_set1_ps(stage.hi));
                for (r, &s) in sums.iter().enumerate() {
                    let o = o0 + r;
                    let y =
                        _mm256_cvtepi32_ps(_mm256_add_epi32(s, _mm256_set1_epi32(stage.corr[o])));
                    let y = _mm256_mul_ps(y, _mm256_set1_ps(stage.scale[o]));
                    let y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
                    _mm256_storeu_ps(ptr.add(o * ld.k + c), y);
                }
                return;
            }
        }
        for (r, &s) in sums.iter().enumerate().take(m.saturating_sub(o0).min(ROWS)) {
            let mut a = [0i32; 8];
            _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, s);
            for (j, &v) in a.iter().enumerate().take(valid) {
                stage.store(o0 + r, c + j, v);
            }
        }
    }
}
