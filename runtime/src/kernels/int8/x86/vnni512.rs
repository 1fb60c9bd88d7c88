//! x86-64 int8 kernel: AVX-512 VNNI (`x86-avx512-vnni`).
//!
//! `vpdpbusd` multiplies 64 unsigned bytes (the packed input, offset binary) by 64 signed bytes
//! (a broadcast 4-byte group of one weight row) and adds each group of four products into a
//! 32-bit lane: 64 MACs per instruction, against 16 for an f32 `vfmadd231ps` of the same width.
//! The sum over the offset-binary input is `Σ W·q + 128·Σ W`; the stage's `corr_u` takes the
//! second term off.
//!
//! Register tile: 8 rows × 2 column blocks (32 columns) = 16 zmm accumulators. Per group of 4 k:
//! 2 loads of the input, 8 broadcasts of weight groups (folded into `vpdpbusd`'s memory
//! operand, `{1to16}`), 16 `vpdpbusd`. Row tails use a 4-row tile (rows are packed in blocks of
//! 4), column tails a 1-block tile, a partial last block masked stores. The output stage runs
//! at full width: add the correction, `vcvtdq2ps`, multiply by the scale, clamp, then a masked
//! `vmovups` (f32) or `vcvtps2dq` + masked `vpmovdb` (i8). A 16-bit input's combining stage
//! ([`super::super::Wide`], high sums with contiguous columns) works in f64 (`vcvtdq2pd`, exact
//! integers below 2^53) and rounds once (`vcvtpd2ps`), as the portable `i64 as f32`.
//!
//! Selected when the CPU has `avx512f`, `avx512bw` and `avx512vnni` (Ice Lake, Zen 4 and
//! later). AVX2-only CPUs use the `x86-avx2` kernel (`avx2.rs`). The packers quantize 16
//! floats per vector, 8-bit codes or both digit planes of a 16-bit input in one pass.

use std::arch::x86_64::*;

use super::super::{Format, Int8Kernel, Job, Output, Pack, Quantizer, Wide, COLS, ROWS};

/// The packing `vpdpbusd` reads: groups of 4 k, offset-binary input.
const FORMAT: Format = Format::DOT4_U8;
/// Bytes of one packed input block per group of 4 k.
const BLOCK_STEP: usize = FORMAT.step();

/// AVX-512 VNNI kernel; a value exists only through [`Vnni512::detect`].
#[derive(Debug)]
pub struct Vnni512(());

impl Vnni512 {
    /// The kernel, if the CPU has AVX-512 VNNI.
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni"))
        .then_some(&Vnni512(()) as &dyn Int8Kernel)
    }
}

impl Int8Kernel for Vnni512 {
    fn name(&self) -> &'static str {
        "x86-avx512-vnni"
    }

    fn format(&self) -> Format {
        FORMAT
    }

    fn run(&self, job: &Job<'_>) {
        job.check(FORMAT);
        // SAFETY: `detect` checked the features; `check` the sizes the tiles rely on.
        unsafe { run_vnni(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        p.check(FORMAT, out);
        // SAFETY: `detect` checked the features; `check` the sizes.
        unsafe {
            if p.ld.c == 1 {
                pack_channels_first(p, Codes(q), [out.as_mut_ptr()])
            } else if p.ld.k == 1 {
                pack_channels_last(p, Codes(q), [out.as_mut_ptr()])
            } else {
                super::super::pack_f32(p, q, FORMAT, out)
            }
        }
    }

    fn pack_i8(&self, p: &Pack<'_, i8>, out: &mut [u8]) {
        super::pack::pack_i8(p, FORMAT, out)
    }

    fn pack_f32_digits(&self, p: &Pack<'_, f32>, q: Quantizer, hi: &mut [u8], lo: &mut [u8]) {
        p.check(FORMAT, hi);
        p.check(FORMAT, lo);
        let planes = [hi.as_mut_ptr(), lo.as_mut_ptr()];
        // SAFETY: `detect` checked the features; `check` the sizes of both planes.
        unsafe {
            if p.ld.c == 1 {
                pack_channels_first(p, Digits(q), planes)
            } else if p.ld.k == 1 {
                pack_channels_last(p, Digits(q), planes)
            } else {
                super::super::pack_f32_digits(p, q, FORMAT, hi, lo)
            }
        }
    }
}

/// Quantizes 16 floats to signed codes with the portable quantizer's operations (`vmulps`,
/// `vaddps`, `vmaxps` (a NaN gives the lowest code), `vminps`, `vcvtps2dq` rounding half to
/// even), clamped to `[lowest, highest]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn quantize_range(f: __m512, (inv, zp): (f32, f32), (lowest, highest): (f32, f32)) -> __m512i {
    let f = _mm512_add_ps(_mm512_mul_ps(f, _mm512_set1_ps(inv)), _mm512_set1_ps(zp));
    let f = _mm512_min_ps(
        _mm512_max_ps(f, _mm512_set1_ps(lowest)),
        _mm512_set1_ps(highest),
    );
    _mm512_cvtps_epi32(f)
}

/// Quantizes 16 floats to i8 codes ([`quantize_range`] over `[−128, 127]`).
#[target_feature(enable = "avx512f")]
#[inline]
fn quantize_ps(f: __m512, inv_scale: f32, zp: f32) -> __m512i {
    quantize_range(f, (inv_scale, zp), (-128.0, 127.0))
}

/// How 16 floats become packed bytes (offset binary, one per 32-bit lane) in `P` planes.
trait Encode<const P: usize>: Copy {
    /// The codes of the 16 floats `f` in each plane, each in `[0, 255]`.
    ///
    /// # Safety
    /// AVX-512 F (inlined into the packers, which enable it).
    unsafe fn encode(self, f: __m512) -> [__m512i; P];
}

/// 8-bit codes: `q + 128`.
#[derive(Clone, Copy)]
struct Codes(Quantizer);

impl Encode<1> for Codes {
    #[inline(always)]
    unsafe fn encode(self, f: __m512) -> [__m512i; 1] {
        // SAFETY: the caller's contract.
        let q = unsafe { quantize_ps(f, self.0.inv_scale, self.0.zp as f32) };
        // SAFETY: as above.
        [unsafe { _mm512_add_epi32(q, _mm512_set1_epi32(128)) }]
    }
}

/// The two digits of 16-bit codes (see [`super::super::digits`]), offset binary: the high digit's
/// code is `(q + 32768) >> 8`, the low digit's `q & 0xFF`.
#[derive(Clone, Copy)]
struct Digits(Quantizer);

impl Encode<2> for Digits {
    #[inline(always)]
    unsafe fn encode(self, f: __m512) -> [__m512i; 2] {
        // SAFETY: the caller's contract.
        unsafe {
            let q = quantize_range(f, (self.0.inv_scale, self.0.zp as f32), (-32768.0, 32767.0));
            let hi = _mm512_srli_epi32::<8>(_mm512_add_epi32(q, _mm512_set1_epi32(32768)));
            [hi, _mm512_and_si512(q, _mm512_set1_epi32(0xFF))]
        }
    }
}

/// Packs channels-last input (`x[c · ldc + k]`) into the `P` planes `out` by `enc`: per group
/// of 4 k, four columns' 4 consecutive floats fill one vector (masked 128-bit loads where k
/// ends), encoded, padded lanes set to 128, narrowed with `vpmovdb`: 16 bytes in the packed
/// order at once per plane.
///
/// # Safety
/// AVX-512 F and BW; each plane holds the blocks' bytes (`Pack::check`).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_channels_last<const P: usize, E: Encode<P>>(
    p: &Pack<'_, f32>,
    enc: E,
    out: [*mut u8; P],
) {
    let (k, n, ldc) = (p.k, p.n, p.ld.c);
    let k4 = k.div_ceil(4);
    let offset = _mm512_set1_epi32(128);
    let xp = p.x.as_ptr();
    for (bi, b) in p.blocks.clone().enumerate() {
        for g in 0..k4 {
            let kvalid = (k - g * 4).min(4);
            let kmask: __mmask8 = (1u8 << kvalid) - 1;
            for quarter in 0..4 {
                let mut f = _mm512_setzero_ps();
                let mut valid: u16 = 0;
                for i in 0..4 {
                    let c = b * COLS + quarter * 4 + i;
                    if c < n {
                        // SAFETY: column c < n, k from 4g, masked to k: inside x (Pack::check).
                        let v = unsafe { _mm_maskz_loadu_ps(kmask, xp.add(c * ldc + g * 4)) };
                        f = match i {
                            0 => _mm512_insertf32x4::<0>(f, v),
                            1 => _mm512_insertf32x4::<1>(f, v),
                            2 => _mm512_insertf32x4::<2>(f, v),
                            _ => _mm512_insertf32x4::<3>(f, v),
                        };
                        valid |= (kmask as u16) << (4 * i);
                    }
                }
                // SAFETY: AVX-512 F is enabled here.
                let codes = unsafe { enc.encode(f) };
                for (plane, u) in out.iter().zip(codes) {
                    let bytes = _mm512_cvtepi32_epi8(_mm512_mask_blend_epi32(valid, offset, u));
                    // SAFETY: 16 bytes of block bi, group g: inside the plane (Pack::check).
                    unsafe {
                        _mm_storeu_si128(
                            plane.add((bi * k4 + g) * BLOCK_STEP + quarter * 16).cast(),
                            bytes,
                        )
                    };
                }
            }
        }
    }
}

/// Packs channels-first input into the `P` planes `out` by `enc`, 16 columns × 4 k at a time:
/// four (masked) loads of 16 floats, encoded, interleaved by shifts into one 64-byte store per
/// plane. Padded columns and k get 0x80, like the portable packer.
///
/// # Safety
/// AVX-512 F and BW; each plane holds the blocks' bytes (`Pack::check`).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_channels_first<const P: usize, E: Encode<P>>(
    p: &Pack<'_, f32>,
    enc: E,
    out: [*mut u8; P],
) {
    let (k, n, ld) = (p.k, p.n, p.ld.k);
    let k4 = k.div_ceil(4);
    let (offset, pad) = (
        _mm512_set1_epi32(128),
        _mm512_set1_epi32(0x8080_8080u32 as i32),
    );
    let xp = p.x.as_ptr();
    for (bi, b) in p.blocks.clone().enumerate() {
        let c0 = b * COLS;
        let cols = n.saturating_sub(c0).min(COLS);
        let mask: __mmask16 = if cols >= COLS { !0 } else { (1u16 << cols) - 1 };
        for g in 0..k4 {
            let mut v = [_mm512_setzero_si512(); P];
            for t in 0..4 {
                let kk = g * 4 + t;
                let codes = if kk < k {
                    // SAFETY: row kk < k, columns c0 .. c0 + cols ≤ n ≤ ld (Pack::check); masked.
                    let f = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(kk * ld + c0)) };
                    // SAFETY: AVX-512 F is enabled here.
                    unsafe { enc.encode(f) }
                } else {
                    [offset; P]
                };
                let shift = _mm_cvtsi32_si128(8 * t as i32);
                for (v, u) in v.iter_mut().zip(codes) {
                    *v = _mm512_or_si512(*v, _mm512_sll_epi32(u, shift));
                }
            }
            for (plane, v) in out.iter().zip(v) {
                let v = _mm512_mask_blend_epi32(mask, pad, v);
                // SAFETY: 64 bytes of block bi, group g: inside the plane (Pack::check).
                unsafe { _mm512_storeu_si512(plane.add((bi * k4 + g) * BLOCK_STEP).cast(), v) };
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_vnni(job: &Job<'_>) {
    let k4 = job.w.groups();
    let row_blocks = job.row_blocks.end;
    let mut b = 0;
    while b < job.blocks {
        let nb = if b + 2 <= job.blocks { 2 } else { 1 };
        let mut rb = job.row_blocks.start;
        while rb < row_blocks {
            let two = rb + 2 <= row_blocks;
            // SAFETY: rb (+1) < row_blocks and b (+1) < blocks: inside the packed buffers.
            unsafe {
                match (two, nb) {
                    (true, 2) => tile::<8, 2>(job, rb, b, k4),
                    (true, _) => tile::<8, 1>(job, rb, b, k4),
                    (false, 2) => tile::<4, 2>(job, rb, b, k4),
                    (false, _) => tile::<4, 1>(job, rb, b, k4),
                }
            }
            rb += if two { 2 } else { 1 };
        }
        b += nb;
    }
}

/// Rows `rb·4 .. rb·4 + R` × blocks `b .. b + NB`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize, const NB: usize>(job: &Job<'_>, rb: usize, b: usize, k4: usize) {
    let w = job.w.data().as_ptr();
    let x = job.x.as_ptr();
    let mut acc = [[_mm512_setzero_si512(); NB]; R];
    // SAFETY (whole body): offsets stay inside the packed weights (row blocks rb .. rb + R/4,
    // k4 groups) and the job's packed input (blocks b .. b + NB), by the caller.
    unsafe {
        let wrow = |r: usize| w.add(((rb + r / ROWS) * k4 * ROWS + r % ROWS) * 4);
        for g in 0..k4 {
            let mut xv = [_mm512_setzero_si512(); NB];
            for (j, v) in xv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(x.add(((b + j) * k4 + g) * BLOCK_STEP).cast());
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let wg = (wrow(r).add(g * ROWS * 4) as *const i32).read_unaligned();
                let wv = _mm512_set1_epi32(wg);
                for (a, xv) in row.iter_mut().zip(&xv) {
                    *a = _mm512_dpbusd_epi32(*a, *xv, wv);
                }
            }
        }
        let stage = &job.stage;
        let (lo, hi) = (_mm512_set1_ps(stage.lo), _mm512_set1_ps(stage.hi));
        for (r, row) in acc.iter().enumerate() {
            let o = rb * ROWS + r;
            if o >= job.w.rows() {
                break;
            }
            let corr = _mm512_set1_epi32(stage.corr_u[o]);
            let scale = _mm512_set1_ps(stage.scale[o]);
            for (j, a) in row.iter().enumerate() {
                let cols = job.cols(b + j);
                let mask: __mmask16 = if cols >= COLS { !0 } else { (1u16 << cols) - 1 };
                let c = (job.first_block + b + j) * COLS;
                if let Output::I32 { ptr, ld } = stage.out {
                    // The corrected sum (offset-binary codes: `corr_u`), as the portable stage.
                    let v = _mm512_add_epi32(*a, corr);
                    if ld.c == 1 {
                        _mm512_mask_storeu_epi32(ptr.add(o * ld.k + c).cast(), mask, v);
                    } else {
                        let mut sums = [0i32; COLS];
                        _mm512_storeu_si512(sums.as_mut_ptr().cast(), v);
                        for (j, &v) in sums.iter().enumerate().take(cols.min(COLS)) {
                            *ptr.add(o * ld.k + (c + j) * ld.c) = v;
                        }
                    }
                    continue;
                }
                let sum = match stage.wide {
                    None => _mm512_cvtepi32_ps(_mm512_add_epi32(*a, corr)),
                    Some(Wide {
                        high: Some(h),
                        corr,
                    }) if h.ld.c == 1 => {
                        // 256·high + signed sum + corr, exact in f64 (integers below 2^53),
                        // then one rounding to f32: the portable `i64 as f32`.
                        let signed = stage.corr_u[o].wrapping_sub(stage.corr[o]);
                        let s = _mm512_add_epi32(*a, _mm512_set1_epi32(signed));
                        let h = _mm512_maskz_loadu_epi32(mask, h.ptr.add(o * h.ld.k + c).cast());
                        let add = _mm512_set1_pd(corr[o] as f64);
                        let half = |h: __m256i, s: __m256i| {
                            let h = _mm512_mul_pd(_mm512_cvtepi32_pd(h), _mm512_set1_pd(256.0));
                            let v = _mm512_add_pd(_mm512_add_pd(h, _mm512_cvtepi32_pd(s)), add);
                            _mm256_castps_pd(_mm512_cvtpd_ps(v))
                        };
                        let lo8 = half(_mm512_castsi512_si256(h), _mm512_castsi512_si256(s));
                        let hi8 = half(
                            _mm512_extracti64x4_epi64::<1>(h),
                            _mm512_extracti64x4_epi64::<1>(s),
                        );
                        _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(lo8), hi8))
                    }
                    Some(_) => {
                        // Other layouts of the high sums (x86 kernels have no one-product
                        // form): the portable stage, on the signed sums.
                        let mut sums = [0i32; COLS];
                        _mm512_storeu_si512(sums.as_mut_ptr().cast(), *a);
                        let signed = stage.corr_u[o].wrapping_sub(stage.corr[o]);
                        for (j, &v) in sums.iter().enumerate().take(cols.min(COLS)) {
                            stage.store(o, c + j, v.wrapping_add(signed));
                        }
                        continue;
                    }
                };
                let y = _mm512_mul_ps(sum, scale);
                let y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                match stage.out {
                    Output::F32 { ptr, ld } if ld.c == 1 => {
                        _mm512_mask_storeu_ps(ptr.add(o * ld.k + c), mask, y)
                    }
                    Output::F32 { ptr, ld } => {
                        // Channels last: 16 columns ld.c apart.
                        let index = _mm512_mullo_epi32(
                            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(ld.c as i32),
                        );
                        _mm512_mask_i32scatter_ps::<4>(
                            ptr.add(o * ld.k + c * ld.c).cast(),
                            mask,
                            index,
                            y,
                        )
                    }
                    Output::I8 {
                        ptr,
                        ld,
                        inv_scale,
                        zp,
                    } => {
                        let q = quantize_ps(y, inv_scale, zp);
                        if ld.c == 1 {
                            _mm512_mask_cvtepi32_storeu_epi8(ptr.add(o * ld.k + c).cast(), mask, q);
                        } else {
                            let mut bytes = [0i8; 16];
                            _mm_storeu_si128(bytes.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q));
                            for (j, &v) in bytes.iter().enumerate().take(cols.min(COLS)) {
                                *ptr.add(o * ld.k + (c + j) * ld.c) = v;
                            }
                        }
                    }
                    Output::I32 { .. } => {}
                }
            }
        }
    }
}
