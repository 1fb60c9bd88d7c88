//! The x86-64 int8 depthwise kernel (`x86-avx2`), on the i16 layout.
//!
//! Each output row goes in vectors of 16 columns. Taps go by pairs: the pair's two input
//! vectors (16 i16 values each) are interleaved (`vpunpcklwd`/`vpunpckhwd`) and `vpmaddwd`
//! multiplies them by the pair's two weights and adds the two products into each i32 lane,
//! 16 multiply-adds per instruction; an odd last tap pairs with a zero weight. The two i32
//! accumulators hold columns 0–3 and 8–11, and 4–7 and 12–15: `vpackssdw` puts int8 outputs
//! back in order, `vperm2f128` float ones. The output stage is the portable kernel's float
//! arithmetic (multiplies and adds, never fused; `vcvtps2dq` rounds half to even), so every
//! output has the same bits. The last vector of a row is computed whole (its extra columns
//! read the plane's slack) and stored through a buffer. Given a codes layout, the kernel
//! hands the plane to the portable one.

use std::arch::x86_64::*;

use super::{Depthwise8Kernel, Input, Out, PlaneJob};

/// AVX2.
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if the CPU has AVX2.
    pub fn detect() -> Option<&'static dyn Depthwise8Kernel> {
        is_x86_feature_detected!("avx2").then_some(&Avx2(()) as &dyn Depthwise8Kernel)
    }
}

impl Depthwise8Kernel for Avx2 {
    fn name(&self) -> &'static str {
        "x86-avx2"
    }

    fn run(&self, job: &PlaneJob<'_>, out: Out<'_>) {
        job.check(out.len());
        let Input::Offsets(input) = job.input else {
            return super::generic().run(job, out);
        };
        // SAFETY: `Avx2` exists only where `detect` found AVX2; the job passed its check, so
        // every read (16 values from each tap's column, within the slack) is inside `input`,
        // and every store is inside `out` (whole vectors only where they fit).
        unsafe { run_avx2(job, input.as_ptr(), out) }
    }
}

/// The float steps of the output stage on 8 lanes, the portable kernel's operations.
#[derive(Clone, Copy)]
struct Stage {
    scale: __m256,
    low: __m256,
    high: __m256,
    mul: __m256,
    sixth: __m256,
    inv: __m256,
    zp: __m256i,
    lo: __m256i,
    hi: __m256i,
    clamp: bool,
    hardswish: bool,
}

impl Stage {
    /// `min(max(x, low), high)`: `vmaxps`/`vminps` return their second operand unless the
    /// first is greater (smaller), as `Activation::clamp`.
    #[target_feature(enable = "avx2")]
    unsafe fn clamped(&self, x: __m256) -> __m256 {
        _mm256_min_ps(_mm256_max_ps(x, self.low), self.high)
    }

    /// `min(max(t, 0), 1)`.
    #[target_feature(enable = "avx2")]
    unsafe fn unit(t: __m256) -> __m256 {
        _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(1.0))
    }

    /// HardSwish's factor of `x`: `unit(x · ⅙ + ½)`.
    #[target_feature(enable = "avx2")]
    unsafe fn gate(x: __m256) -> __m256 {
        Self::unit(_mm256_add_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(1.0 / 6.0)),
            _mm256_set1_ps(0.5),
        ))
    }

    /// `PlaneJob::value` of 8 sums.
    #[target_feature(enable = "avx2")]
    unsafe fn value(&self, acc: __m256i) -> __m256 {
        let x = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), self.scale);
        let x = if self.clamp { self.clamped(x) } else { x };
        match self.hardswish {
            true => _mm256_mul_ps(x, Self::gate(x)),
            false => x,
        }
    }

    /// `PlaneJob::code` of 8 sums, as i32 in `[lo, hi]`.
    #[target_feature(enable = "avx2")]
    unsafe fn code(&self, acc: __m256i) -> __m256i {
        let a = _mm256_cvtepi32_ps(acc);
        let v = match (self.hardswish, self.clamp) {
            (false, _) => _mm256_mul_ps(a, self.mul),
            (true, false) => {
                let t = _mm256_add_ps(_mm256_mul_ps(a, self.sixth), _mm256_set1_ps(0.5));
                _mm256_mul_ps(_mm256_mul_ps(a, self.mul), Self::unit(t))
            }
            (true, true) => {
                let x = self.clamped(_mm256_mul_ps(a, self.scale));
                _mm256_mul_ps(_mm256_mul_ps(x, self.inv), Self::gate(x))
            }
        };
        // `vcvtps2dq` gives i32::MIN out of range where the portable `as` saturates: values
        // that far out are clamped first (the code saturates to the same end either way).
        const FAR: f32 = 2_147_483_520.0;
        let v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-FAR)), _mm256_set1_ps(FAR));
        let r = _mm256_add_epi32(_mm256_cvtps_epi32(v), self.zp);
        _mm256_min_epi32(_mm256_max_epi32(r, self.lo), self.hi)
    }
}

/// The plane of `job` (i16 input at `input`) into `out`.
///
/// # Safety
/// AVX2; the job passed its check with `input` its plane.
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(job: &PlaneJob<'_>, input: *const i16, out: Out<'_>) {
    let g = job.geometry;
    let (taps, weights) = (g.taps(), job.weights);
    let (inv_scale, zp) = match out {
        Out::I8 { inv_scale, zp, .. } => (inv_scale, zp),
        Out::F32(_) => (1.0, 0),
    };
    let rq = job.requant(inv_scale, zp);
    let act = job.act;
    let stage = Stage {
        scale: _mm256_set1_ps(job.scale),
        low: _mm256_set1_ps(act.low),
        high: _mm256_set1_ps(act.high),
        mul: _mm256_set1_ps(rq.mul),
        sixth: _mm256_set1_ps(rq.sixth),
        inv: _mm256_set1_ps(rq.inv_scale),
        zp: _mm256_set1_epi32(rq.zp),
        lo: _mm256_set1_epi32(rq.lo),
        hi: _mm256_set1_epi32(rq.hi),
        clamp: act.clamps(),
        hardswish: act.hardswish,
    };
    // The taps by pairs: both weights in each i32 lane (low half the first), an odd last tap
    // with a zero weight reading its own column twice.
    let pairs = taps.len().div_ceil(2);
    let mut pair_w = [_mm256_setzero_si256(); 25];
    let mut pair_t = [(0usize, 0usize); 25];
    for p in 0..pairs {
        let (t0, t1) = (2 * p, (2 * p + 1).min(taps.len() - 1));
        let w1 = if 2 * p + 1 < taps.len() {
            weights[t1]
        } else {
            0
        };
        let lane = (i32::from(w1) << 16) | i32::from(weights[t0] as u16);
        pair_w[p] = _mm256_set1_epi32(lane);
        pair_t[p] = (taps[t0], taps[t1]);
    }
    let bias = _mm256_set1_epi32(job.bias);
    let (rows, cols) = (g.rows(), g.cols());
    let (mut f32_out, mut i8_out) = (None, None);
    match out {
        Out::F32(o) => f32_out = Some(o),
        Out::I8 { out, .. } => i8_out = Some(out),
    }
    for r in 0..rows {
        let base = input.add(r * g.row_step());
        let mut c = 0;
        while c < cols {
            // Columns 0–3 and 8–11 in `lo`, 4–7 and 12–15 in `hi`.
            let (mut lo, mut hi) = (bias, bias);
            for (&(a, b), &w) in pair_t[..pairs].iter().zip(&pair_w[..pairs]) {
                let x0 = _mm256_loadu_si256(base.add(a + c).cast());
                let x1 = _mm256_loadu_si256(base.add(b + c).cast());
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w));
            }
            let at = r * cols + c;
            let valid = (cols - c).min(16);
            if let Some(o) = f32_out.as_deref_mut() {
                let (l, h) = (stage.value(lo), stage.value(hi));
                let (first, second) = (
                    _mm256_permute2f128_ps(l, h, 0x20),
                    _mm256_permute2f128_ps(l, h, 0x31),
                );
                let dst = &mut o[at..at + valid];
                if valid == 16 {
                    _mm256_storeu_ps(dst.as_mut_ptr(), first);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(8), second);
                } else {
                    let mut v = [0f32; 16];
                    _mm256_storeu_ps(v.as_mut_ptr(), first);
                    _mm256_storeu_ps(v.as_mut_ptr().add(8), second);
                    dst.copy_from_slice(&v[..valid]);
                }
            }
            if let Some(o) = i8_out.as_deref_mut() {
                let words = _mm256_packs_epi32(stage.code(lo), stage.code(hi));
                let bytes = _mm256_permute4x64_epi64(_mm256_packs_epi16(words, words), 0b1000);
                let bytes = _mm256_castsi256_si128(bytes);
                let dst = &mut o[at..at + valid];
                if valid == 16 {
                    _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes);
                } else {
                    let mut v = [0i8; 16];
                    _mm_storeu_si128(v.as_mut_ptr().cast(), bytes);
                    dst.copy_from_slice(&v[..valid]);
                }
            }
            c += 16;
        }
    }
}
