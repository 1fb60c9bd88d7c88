//! int8 matrix-product kernels of `kestrel_int8_linear` (a quantized 1×1 convolution or dense
//! layer) and `kestrel_int8_conv` (a k×k one, on its columns), behind one trait, chosen once
//! at start-up like the binary kernels.
//!
//! # What they compute
//!
//! `Y[o, c] = stage(Σ_k W[o, k] · (X[k, c] − zp))` for `o < M` output channels, `c < N`
//! columns (pixels of one image, or 1 for a dense layer), `k < K`, with `W` i8 in `[−127, 127]`
//! (symmetric per-channel weights) and `X` the input quantized to i8. The sum is exact in i32.
//! The output stage ([`Stage`]) adds a per-channel integer correction (the i32 bias minus
//! `zp · Σ_k W[o, k]`), converts to f32, multiplies by the per-channel dequantization scale,
//! clamps (a fused ReLU or clip), and stores f32 or requantizes to i8. Every kernel does these
//! steps with the same IEEE operations in the same order (a multiply and an add, never an FMA;
//! round half to even), so all kernels agree bit for bit with [`generic()`].
//!
//! Quantizing a float input is fused into packing ([`pack_f32`]):
//! `q = round_half_even(min(max(x · (1/s) + zp, −128), 127))` (a NaN becomes −128).
//!
//! A 16-bit input (`kestrel_int8_linear`'s `input_bits = 16`) runs on the same kernels: its
//! codes are packed as two i8 digit planes in one pass ([`pack_f32_digits`],
//! `q = 256 · hi + lo + 128`), the first product stores the high digits' i32 sums
//! ([`Output::I32`]) and the second combines them with its own in i64 in its output stage
//! ([`Wide`]), rounded once to f32: bit for bit the same on every kernel.
//!
//! Where two digit products cost more than one product on 16-bit lanes (ARMv8.0 NEON, whose
//! 8-bit products are no denser than its 16-bit ones), a kernel offers a one-product twin
//! ([`Int8Kernel::codes16`]): the codes packed as i16 ([`Format::CODES16`],
//! [`pack_f32_codes16`]), `Σ W·q` exact in i32 for `K ≤` [`MAX_K16`], and a [`Wide`] stage
//! without high sums adding the i64 correction: the same integer, rounded once, so the same
//! bits as the digit products.
//!
//! # Layouts
//!
//! Each kernel names the packing it reads ([`Format`]): k in groups of `G` (K zero-padded to a
//! multiple of `G`), input bytes signed or offset binary.
//!
//! * Input (any layout: [`Strides`]), packed per block of [`COLS`] = 16 columns:
//!   `[block][K/G][16 columns][G k]` bytes. Offset binary (`u = q + 128`) is for x86's
//!   `vpdpbusd`, which multiplies u8 by i8; NEON reads signed bytes. Padded k hold the code of
//!   zero; padded columns are computed and never stored.
//! * Weights, packed once at load per block of [`ROWS`] = 4 rows: `[row block][K/G][4 rows][G k]`
//!   i8, zero-padded (zero weights make padded k contribute nothing).
//! * `G = 4` ([`Format::DOT4_U8`], [`Format::DOT4_I8`]): one 4-byte group is one row's four k,
//!   which `vpdpbusd` broadcasts from memory and `sdot` picks by lane.
//! * `G = 16` ([`Format::K16_I8`]): one 16-byte register holds 16 k of one row or of one column,
//!   so ARMv8.0's widening multiplies (`smull`/`smlal2`) pair whole registers, with no
//!   broadcast.
//!
//! Implementations: [`generic`](mod@generic) (portable i32 arithmetic, reads every format),
//! `x86/vnni512` (`x86-avx512-vnni`, [`Format::DOT4_U8`]: 8 rows × 32 columns per register
//! tile, one `vpdpbusd` = 64 MACs; packing 16 columns × 4 k per step), `x86/avx2` (`x86-avx2`,
//! [`Format::DOT4_I8`]: widened to i16, `vpmaddwd`; for x86 without VNNI; both pack i8
//! codes through `x86/pack`, SSE2 byte interleaves), `neon` (`neon`,
//! [`Format::K16_I8`]: `smull`/`smlal2`/`sadalp`, any aarch64 core; `neon-dotprod`,
//! [`Format::DOT4_I8`]: `sdot`, 16 MACs per instruction, Cortex-A76/A78). [`select`] picks the
//! best one the CPU supports, once per process; the op packs its weights in that kernel's
//! format at load. `KESTREL_KERNELS=generic` forces the portable one, `KESTREL_KERNELS=NAME`
//! (e.g. `x86-avx2`) a given one where the CPU has it. CI runs the
//! bit-exactness tests under qemu as a Cortex-A72 and as a Cortex-A76 (for `sdot`).

pub mod codes;
pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

/// Columns per packed input block.
pub const COLS: usize = 16;
/// The longest reduction a one-product 16-bit kernel takes: `|Σ W·q| ≤ K · 127 · 32768`
/// stays below 2^31 for `K ≤ 516`. Longer ones take the two digit products.
pub const MAX_K16: usize = 516;
/// Rows per packed weight block.
pub const ROWS: usize = 4;
/// How a kernel wants its operands packed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    /// k per group (K is zero-padded to a multiple).
    pub group: usize,
    /// Input bytes are offset binary (`q + 128`) rather than two's complement.
    pub offset_binary: bool,
    /// Bytes per input code: 1 (i8 codes), or 2 (16-bit codes, [`Format::CODES16`]).
    pub code_bytes: usize,
}

impl Format {
    /// Groups of 4 k, offset-binary input: x86's `vpdpbusd` (u8 × i8), and the portable kernel.
    pub const DOT4_U8: Format = Format {
        group: 4,
        offset_binary: true,
        code_bytes: 1,
    };
    /// Groups of 4 k, signed input: NEON's `sdot`, and x86 AVX2's `vpmaddwd` (widened to i16).
    pub const DOT4_I8: Format = Format {
        group: 4,
        offset_binary: false,
        code_bytes: 1,
    };
    /// 16 k per register, signed input: ARMv8.0 NEON's `smull`/`smlal2`.
    pub const K16_I8: Format = Format {
        group: 16,
        offset_binary: false,
        code_bytes: 1,
    };
    /// 16-bit input codes (native-endian i16), one k per group: each k's 16 columns in one
    /// 32-byte row; weights `[row block][K][4 rows]`. The one-product form of a 16-bit input
    /// on ARMv8.0 NEON (`smlal` by element, 16-bit lanes; see [`MAX_K16`]).
    pub const CODES16: Format = Format {
        group: 1,
        offset_binary: false,
        code_bytes: 2,
    };

    /// Groups of k (K rounded up).
    pub const fn groups(self, k: usize) -> usize {
        k.div_ceil(self.group)
    }

    /// Bytes of one packed input block per group.
    pub const fn step(self) -> usize {
        COLS * self.group * self.code_bytes
    }

    /// Bytes of one packed input block.
    pub const fn block_bytes(self, k: usize) -> usize {
        self.groups(k) * self.step()
    }

    /// Bytes of the packed input of `k` × `n`.
    pub const fn packed_len(self, k: usize, n: usize) -> usize {
        n.div_ceil(COLS) * self.block_bytes(k)
    }

    /// The packed byte of the quantized value `q`.
    #[inline(always)]
    pub const fn code(self, q: i8) -> u8 {
        if self.offset_binary {
            (q as u8) ^ 0x80
        } else {
            q as u8
        }
    }
}

/// Weights packed for the kernels (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedWeights {
    data: Vec<i8>,
    rows: usize,
    k: usize,
    format: Format,
}

impl PackedWeights {
    /// Packs `w` (`[rows, k]` row-major, values in `[−127, 127]`) for kernels reading `format`.
    pub fn new(w: &[i8], rows: usize, k: usize, format: Format) -> PackedWeights {
        assert_eq!(w.len(), rows * k, "weights must be rows × k");
        let (g_len, groups, blocks) = (format.group, format.groups(k), rows.div_ceil(ROWS));
        let mut data = vec![0i8; blocks * groups * ROWS * g_len];
        for o in 0..rows {
            for kk in 0..k {
                let (rb, r, g, t) = (o / ROWS, o % ROWS, kk / g_len, kk % g_len);
                data[((rb * groups + g) * ROWS + r) * g_len + t] = w[o * k + kk];
            }
        }
        PackedWeights {
            data,
            rows,
            k,
            format,
        }
    }

    /// Output rows (M).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reduction length (K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The format the weights are packed in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Groups of k (K padded).
    pub fn groups(&self) -> usize {
        self.format.groups(self.k)
    }

    /// The packed bytes.
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// Weight `(o, kk)` read back from the packed layout.
    pub fn get(&self, o: usize, kk: usize) -> i8 {
        let g = self.format.group;
        self.data[(((o / ROWS) * self.groups() + kk / g) * ROWS + o % ROWS) * g + kk % g]
    }
}

/// Quantizes one float (see the module docs).
// `max` then `min`, not `clamp`: a NaN must become −128 as in the SIMD kernels (`clamp`
// keeps the NaN, which `as i8` then turns into 0).
#[allow(clippy::manual_clamp)]
#[inline(always)]
pub fn quantize(x: f32, inv_scale: f32, zp: f32) -> i8 {
    let v = x * inv_scale + zp;
    v.max(-128.0).min(127.0).round_ties_even() as i8
}

/// Where element `(k, c)` of an input lies: `x[k · self.k + c · self.c]`. `[K][N]` row-major
/// (channels first, NCHW) is `{ k: N, c: 1 }`; `[N][K]` (channels last, NHWC) is `{ k: 1, c: K }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strides {
    /// Between two k.
    pub k: usize,
    /// Between two columns.
    pub c: usize,
}

/// What to pack: column blocks `blocks` of an input `x` holding `k` × `n` valid columns laid
/// out as `ld` says.
#[derive(Debug, Clone)]
pub struct Pack<'a, T> {
    /// The input.
    pub x: &'a [T],
    /// Rows to reduce over (K).
    pub k: usize,
    /// Valid columns (N).
    pub n: usize,
    /// Layout of `x`.
    pub ld: Strides,
    /// Column blocks to pack.
    pub blocks: std::ops::Range<usize>,
}

impl<T> Pack<'_, T> {
    /// Checks the sizes against `out` (every packer relies on them): the bytes of the blocks
    /// in `format`.
    pub fn check(&self, format: Format, out: &[u8]) {
        let (k, n, ld) = (self.k, self.n, self.ld);
        assert!(
            k == 0 || n == 0 || (k - 1) * ld.k + (n - 1) * ld.c < self.x.len(),
            "input too short"
        );
        assert_eq!(
            out.len(),
            self.blocks.len() * format.block_bytes(k),
            "packed size"
        );
        assert!(
            self.blocks.start * COLS < n.max(1) || self.blocks.is_empty(),
            "blocks past the columns"
        );
    }
}

/// How a float input is quantized (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    /// 1 / scale.
    pub inv_scale: f32,
    /// Zero point.
    pub zp: i32,
}

/// Packs a float input into `out` in `format`, quantizing it with `q` (to 16 bits for
/// [`Format::CODES16`], see [`pack_f32_codes16`]).
pub fn pack_f32(p: &Pack<'_, f32>, q: Quantizer, format: Format, out: &mut [u8]) {
    if format.code_bytes == 2 {
        return pack_f32_codes16(p, q, out);
    }
    let zpf = q.zp as f32;
    pack_with(p, format, out, |i| {
        format.code(quantize(p.x[i], q.inv_scale, zpf))
    });
}

/// Quantizes one float to 16 bits: `round_half_even(min(max(x · inv + zp, −32768), 32767))`
/// (a NaN becomes −32768).
#[allow(clippy::manual_clamp)]
#[inline(always)]
pub fn quantize16(x: f32, inv_scale: f32, zp: f32) -> i32 {
    let v = x * inv_scale + zp;
    v.max(-32768.0).min(32767.0).round_ties_even() as i32
}

/// The two i8 digits of a 16-bit code `q`: `q = 256 · hi + lo + 128`, both in `[−128, 127]`
/// (`hi` the arithmetic shift, `lo` the low byte offset by −128).
#[inline(always)]
pub fn digits(q: i32) -> (i8, i8) {
    ((q >> 8) as i8, ((q & 0xFF) - 128) as i8)
}

/// Packs a float input quantized to 16 bits ([`quantize16`] with `q`) as its two digit
/// planes ([`digits`]), each in `format` like an i8 input: `hi` and `lo`, each the size
/// [`pack_f32`] writes. An int8 kernel run over each plane gives `Σ W·hi` and `Σ W·lo`, and
/// `Σ W·q = 256 · Σ W·hi + Σ W·lo + 128 · Σ W` exactly.
pub fn pack_f32_digits(
    p: &Pack<'_, f32>,
    q: Quantizer,
    format: Format,
    hi: &mut [u8],
    lo: &mut [u8],
) {
    p.check(format, hi);
    p.check(format, lo);
    match format.group {
        4 => pack_digit_groups::<4>(p, q, format, hi, lo),
        16 => pack_digit_groups::<16>(p, q, format, hi, lo),
        _ => pack_digit_groups::<0>(p, q, format, hi, lo),
    }
}

/// [`pack_f32_digits`] for groups of `G` k (`G` = 0: `format.group`): one pass, each value
/// quantized once and written to both planes (the layout of [`pack_groups`]).
#[inline(always)]
fn pack_digit_groups<const G: usize>(
    p: &Pack<'_, f32>,
    q: Quantizer,
    format: Format,
    hi: &mut [u8],
    lo: &mut [u8],
) {
    let (k, n, ld) = (p.k, p.n, p.ld);
    let g_len = if G == 0 { format.group } else { G };
    let (step, per_block) = (COLS * g_len, format.block_bytes(k));
    // Padding as in `pack_groups` (padded k meet zero weights, padded columns are never
    // stored).
    let (pad_hi, pad_lo) = (format.code(0), format.code(0));
    let zpf = q.zp as f32;
    for (bi, b) in p.blocks.clone().enumerate() {
        let c0 = b * COLS;
        let cols = n.saturating_sub(c0).min(COLS);
        let range = bi * per_block..(bi + 1) * per_block;
        let (bh, bl) = (&mut hi[range.clone()], &mut lo[range]);
        for (g, (gh, gl)) in bh
            .chunks_exact_mut(step)
            .zip(bl.chunks_exact_mut(step))
            .enumerate()
        {
            for t in 0..g_len {
                let kk = g * g_len + t;
                if kk >= k {
                    for j in 0..COLS {
                        gh[j * g_len + t] = pad_hi;
                        gl[j * g_len + t] = pad_lo;
                    }
                    continue;
                }
                let row = kk * ld.k + c0 * ld.c;
                for j in 0..cols {
                    let (dh, dl) = digits(quantize16(p.x[row + j * ld.c], q.inv_scale, zpf));
                    gh[j * g_len + t] = format.code(dh);
                    gl[j * g_len + t] = format.code(dl);
                }
                for j in cols..COLS {
                    gh[j * g_len + t] = pad_hi;
                    gl[j * g_len + t] = pad_lo;
                }
            }
        }
    }
}

/// Packs a float input quantized to 16 bits ([`quantize16`] with `q`) in
/// [`Format::CODES16`]: per block of 16 columns, K rows of 16 native-endian i16 codes;
/// padded columns hold 0.
pub fn pack_f32_codes16(p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
    let format = Format::CODES16;
    p.check(format, out);
    let (k, n, ld) = (p.k, p.n, p.ld);
    let per_block = format.block_bytes(k);
    let zpf = q.zp as f32;
    for (bi, b) in p.blocks.clone().enumerate() {
        let c0 = b * COLS;
        let cols = n.saturating_sub(c0).min(COLS);
        let block = &mut out[bi * per_block..(bi + 1) * per_block];
        for (kk, row) in block.chunks_exact_mut(2 * COLS).enumerate() {
            for (j, code) in row.chunks_exact_mut(2).enumerate() {
                let v = if j < cols {
                    quantize16(p.x[kk * ld.k + (c0 + j) * ld.c], q.inv_scale, zpf) as i16
                } else {
                    0
                };
                code.copy_from_slice(&v.to_ne_bytes());
            }
        }
    }
}

/// [`pack_f32`] for an input already quantized to i8.
pub fn pack_i8(p: &Pack<'_, i8>, format: Format, out: &mut [u8]) {
    assert_eq!(format.code_bytes, 1, "i8 codes packed for 16-bit codes");
    pack_with(p, format, out, |i| format.code(p.x[i]));
}

#[inline(always)]
fn pack_with<T>(p: &Pack<'_, T>, format: Format, out: &mut [u8], value: impl Fn(usize) -> u8) {
    p.check(format, out);
    match format.group {
        4 => pack_groups::<4, T>(p, format, out, value),
        16 => pack_groups::<16, T>(p, format, out, value),
        _ => pack_groups::<0, T>(p, format, out, value),
    }
}

/// [`pack_with`] for groups of `G` k (`G` = 0: `format.group`, known at run time only).
#[inline(always)]
fn pack_groups<const G: usize, T>(
    p: &Pack<'_, T>,
    format: Format,
    out: &mut [u8],
    value: impl Fn(usize) -> u8,
) {
    let (k, n, ld) = (p.k, p.n, p.ld);
    let g_len = if G == 0 { format.group } else { G };
    let (step, per_block) = (COLS * g_len, format.block_bytes(k));
    let pad = format.code(0);
    for (bi, b) in p.blocks.clone().enumerate() {
        let c0 = b * COLS;
        let cols = n.saturating_sub(c0).min(COLS);
        let block = &mut out[bi * per_block..(bi + 1) * per_block];
        for (g, group) in block.chunks_exact_mut(step).enumerate() {
            for t in 0..g_len {
                let kk = g * g_len + t;
                if kk >= k {
                    for j in 0..COLS {
                        group[j * g_len + t] = pad;
                    }
                    continue;
                }
                let row = kk * ld.k + c0 * ld.c;
                for j in 0..cols {
                    group[j * g_len + t] = value(row + j * ld.c);
                }
                for j in cols..COLS {
                    group[j * g_len + t] = pad;
                }
            }
        }
    }
}

/// Where and how a kernel writes its results.
#[derive(Debug, Clone, Copy)]
pub enum Output {
    /// f32 at `ptr[o · ld.k + c · ld.c]` (`ld.k`: between output channels).
    F32 {
        /// Start of the output (row 0, column 0).
        ptr: *mut f32,
        /// Distances between rows (output channels) and columns.
        ld: Strides,
    },
    /// Requantized i8 at `ptr[o · ld.k + c · ld.c]`:
    /// `round_half_even(min(max(y · inv + zp, −128), 127))`.
    I8 {
        /// Start of the output.
        ptr: *mut i8,
        /// Distances between rows and columns.
        ld: Strides,
        /// 1 / output scale.
        inv_scale: f32,
        /// Output zero point.
        zp: f32,
    },
    /// The corrected i32 sum at `ptr[o · ld.k + c · ld.c]`: the high digits' sums of a
    /// 16-bit input, read back by the second product's [`Wide`] stage. No scale, no clamp.
    I32 {
        /// Start of the output.
        ptr: *mut i32,
        /// Distances between rows and columns.
        ld: Strides,
    },
}

/// The i64 stage of a 16-bit input. Two-product form (see [`pack_f32_digits`]): the sums of
/// the high digits, already stored by a first product ([`Output::I32`]), are combined with
/// this product's sums (the low digits) in i64 before the float stage. One-product form
/// ([`Format::CODES16`]): no high sums, this product's sum `Σ W·q` plus the correction.
#[derive(Debug, Clone, Copy)]
pub struct Wide<'a> {
    /// The high digits' corrected sums, or none (the one-product form).
    pub high: Option<HighSums>,
    /// Per row: the i64 correction added to `256 · high + Σ W·lo` (the bias and the zero
    /// point's and digit offset's `Σ W` terms), or to `Σ W·q` (bias − zp · Σ W).
    pub corr: &'a [i64],
}

/// Where a first product stored the high digits' sums (see [`Wide`]).
#[derive(Debug, Clone, Copy)]
pub struct HighSums {
    /// Row `o`, column `c` at `ptr[o · ld.k + c · ld.c]`, over the same columns as the job.
    pub ptr: *const i32,
    /// Distances between rows and columns (the NEON stage reads 4 rows at once where `ld.k`
    /// is 1).
    pub ld: Strides,
}

/// The fused output stage of one product (see the module docs).
///
/// With [`Output::I32`] the stage only adds the correction (`corr`, or `corr_u` over
/// offset-binary codes) and stores the i32 sum: no scale, no clamp. With [`Stage::wide`] the
/// float stage reads `(256 · high[o, c] + s + wide.corr[o])` (or `s + wide.corr[o]` without
/// high sums), exact in i64 and rounded once to f32, instead of `s + corr[o]` (`s` the
/// signed sum; a kernel summing offset-binary codes gets it as its sum
/// `+ corr_u[o] − corr[o]`).
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// Per row: i32 bias − zp · Σ_k W (added to the signed sum).
    pub corr: &'a [i32],
    /// Per row: `corr` − 128 · Σ_k W (added to a sum over offset-binary input codes).
    pub corr_u: &'a [i32],
    /// Per row: dequantization scale.
    pub scale: &'a [f32],
    /// Lower clamp of the float result (`-f32::MAX`: none).
    pub lo: f32,
    /// Upper clamp (`f32::MAX`: none).
    pub hi: f32,
    /// Destination.
    pub out: Output,
    /// The combining stage of a 16-bit input's second product, or none.
    pub wide: Option<Wide<'a>>,
}

impl Stage<'_> {
    /// The stage applied to the signed sum `acc` of row `o`, written at column `c`.
    ///
    /// # Safety
    /// `(o, c)` must lie in the output (and in `wide.high`).
    #[inline(always)]
    pub unsafe fn store(&self, o: usize, c: usize, acc: i32) {
        let y = || {
            let sum = match self.wide {
                // SAFETY: the caller's contract.
                Some(w) => {
                    let h = match w.high {
                        // SAFETY: the caller's contract.
                        Some(h) => unsafe { *h.ptr.add(o * h.ld.k + c * h.ld.c) as i64 },
                        None => 0,
                    };
                    (256 * h + acc as i64 + w.corr[o]) as f32
                }
                None => acc.wrapping_add(self.corr[o]) as f32,
            };
            (sum * self.scale[o]).max(self.lo).min(self.hi)
        };
        // SAFETY: the caller's contract.
        unsafe {
            match self.out {
                Output::F32 { ptr, ld } => *ptr.add(o * ld.k + c * ld.c) = y(),
                Output::I8 {
                    ptr,
                    ld,
                    inv_scale,
                    zp,
                } => *ptr.add(o * ld.k + c * ld.c) = quantize(y(), inv_scale, zp),
                Output::I32 { ptr, ld } => {
                    *ptr.add(o * ld.k + c * ld.c) = acc.wrapping_add(self.corr[o])
                }
            }
        }
    }
}

/// One product: all rows of `w` × column blocks `blocks` of the input.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Packed weights.
    pub w: &'a PackedWeights,
    /// Packed input of the job's blocks only (block `blocks.start` first).
    pub x: &'a [u8],
    /// First column block.
    pub first_block: usize,
    /// Number of column blocks.
    pub blocks: usize,
    /// Blocks of [`ROWS`] output rows to compute (`0..M/4` rounded up: all of them).
    pub row_blocks: std::ops::Range<usize>,
    /// Valid columns of the whole output (the last block may be partial).
    pub n: usize,
    /// Output stage.
    pub stage: Stage<'a>,
}

impl Job<'_> {
    /// Checks the job's sizes and that its weights are packed in `format`, the kernel's
    /// (kernels rely on both).
    pub fn check(&self, format: Format) {
        let m = self.w.rows();
        assert_eq!(self.w.format(), format, "weights packed for another kernel");
        assert_eq!(
            self.x.len(),
            self.blocks * format.block_bytes(self.w.k()),
            "packed input size"
        );
        assert!(
            self.stage.corr.len() >= m
                && self.stage.corr_u.len() >= m
                && self.stage.scale.len() >= m,
            "stage vectors shorter than the rows"
        );
        assert!(
            (self.first_block + self.blocks - 1) * COLS < self.n || self.blocks == 0,
            "blocks past the columns"
        );
        assert!(
            self.row_blocks.start <= self.row_blocks.end && self.row_blocks.end <= m.div_ceil(ROWS),
            "row blocks past the rows"
        );
        assert!(
            format.code_bytes == 1 || self.w.k() <= MAX_K16,
            "K {} too long for 16-bit codes in one product",
            self.w.k()
        );
        if let Some(w) = self.stage.wide {
            assert!(w.corr.len() >= m, "wide correction shorter than the rows");
            assert!(
                !matches!(self.stage.out, Output::I32 { .. }),
                "a wide stage writes f32 or i8"
            );
        }
    }

    /// Valid columns of block `b` (relative to the job).
    pub fn cols(&self, b: usize) -> usize {
        self.n
            .saturating_sub((self.first_block + b) * COLS)
            .min(COLS)
    }
}

/// An int8 product kernel.
pub trait Int8Kernel: Send + Sync + Debug {
    /// Name shown in logs and benchmarks.
    fn name(&self) -> &'static str;

    /// The packing it reads (weights and input). No default: a kernel states its own, since
    /// weights packed for another format give wrong results, not an error.
    fn format(&self) -> Format;

    /// Runs `job` (checked first), whose weights and input are packed in [`Self::format`].
    fn run(&self, job: &Job<'_>);

    /// [`pack_f32`] in [`Self::format`], the same bytes (accelerated kernels quantize a vector
    /// at a time).
    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        pack_f32(p, q, self.format(), out)
    }

    /// Whether the kernel stores and reads i32 sums ([`Output::I32`], [`Wide::high`]) fastest
    /// with each column's rows contiguous (NEON, whose vectors hold 4 rows of a column) rather
    /// than each row's columns (x86, whose vectors hold 16 columns of a row).
    fn sums_rows_contiguous(&self) -> bool {
        false
    }

    /// [`pack_f32_digits`] in [`Self::format`], the same bytes.
    fn pack_f32_digits(&self, p: &Pack<'_, f32>, q: Quantizer, hi: &mut [u8], lo: &mut [u8]) {
        pack_f32_digits(p, q, self.format(), hi, lo)
    }

    /// [`pack_i8`] in [`Self::format`].
    fn pack_i8(&self, p: &Pack<'_, i8>, out: &mut [u8]) {
        pack_i8(p, self.format(), out)
    }

    /// The kernel's one-product twin for 16-bit inputs, where one product on 16-bit lanes
    /// costs less than two digit products: a kernel reading [`Format::CODES16`] (its
    /// `pack_f32` quantizes to 16 bits), for `K ≤` [`MAX_K16`], with a [`Wide`] stage without
    /// high sums. `None` (the default) where the kernel has none: `sdot` and `vpdpbusd`
    /// multiply 8-bit codes at twice their 16-bit rate, so two digit products cost what one
    /// 16-bit product would.
    fn codes16(&self) -> Option<&'static dyn Int8Kernel> {
        None
    }
}

/// The portable kernel.
pub fn generic() -> &'static dyn Int8Kernel {
    &generic::Generic
}

/// Every kernel this CPU can run, slowest first.
pub fn available() -> Vec<&'static dyn Int8Kernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(
        [x86::avx2::Avx2::detect(), x86::vnni512::Vnni512::detect()]
            .into_iter()
            .flatten(),
    );
    #[cfg(target_arch = "aarch64")]
    kernels.extend(
        [neon::Neon::detect(), neon::NeonDot::detect()]
            .into_iter()
            .flatten(),
    );
    kernels
}

/// The kernel ops use, chosen once per process: the best available, the portable one with
/// `KESTREL_KERNELS=generic`, or the one `KESTREL_KERNELS` names (e.g. `x86-avx2`, to measure
/// it on a machine that has a better one; the rule is [`super::pick_by_name`]).
pub fn select() -> &'static dyn Int8Kernel {
    static CHOICE: OnceLock<&'static dyn Int8Kernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("int8", available(), |k| k.name()))
}
