//! `kestrel_binary_conv2d`: binary 2-D convolution on packed bits.
//!
//! Input: packed `[N, H, W, ⌈C_in/64⌉]` u64 (from `kestrel_bitpack` or a packed binary layer).
//! Weights: packed `[C_out, KH, KW, ⌈C_in/64⌉]` u64, a set bit meaning −1. Output: f32
//! `[N, C_out, OH, OW]` (NCHW, the float graph's layout) or packed `[N, OH, OW, ⌈C_out/64⌉]`,
//! through the fused output stage ([`super::output_stage`]).
//!
//! `dot = Σ b(x)·b(w)` over the taps. The op copies each image once into the pixel-lane
//! layout ([`layout`]: zero-padded word planes per kernel column and stride phase, lanes =
//! output pixels, none discarded) and hands it with the weights, as they are stored, to the
//! kernel's lane form ([`crate::kernels::binary::LaneJob`]), which walks the taps directly (no im2col).
//! `dot_one = KH·KW·C_in − 2·popcount` is the **one-padding** result (padded taps are +1, zero
//! words). **Zero padding** (padded taps contribute 0, the float model's semantics) is exact
//! by subtracting the weight sums `Σ_ci b(w[c, ky, kx, ci])` of the taps that fell in the
//! padding: each output pixel has a *border class* (which kernel rows and columns are in the
//! padding there; 9 classes for a 3×3 kernel, class 0 the interior) and each channel a table
//! of corrections per class, computed once per input size (`BinaryConv2d::border_tables`,
//! cached in the op).
//!
//! **Fused output stage**: the kernel's tile epilogue turns its accumulators into the output
//! directly ([`crate::kernels::binary::BinaryKernel::xor_popcount_lanes_store`],
//! [`crate::kernels::binary::store`]): per vector of lanes `dot = k − 2·n − table[class]`, then
//! `mul·dot + bias` stored into the channel's NCHW row (lanes are the row-major pixels), or
//! the packed bit `(dot < t) XOR flip` set in `[N, OH, OW, ⌈C_out/64⌉]`. No count is stored
//! and re-read. Layers with more than 16 border classes (kernels above 3×3 with padding on
//! every side) and MST layers store a band's counts and apply the same stage per channel
//! ([`crate::kernels::binary::BinaryKernel::store_counts`], the same vector epilogue on loaded counts). Bands of output pixels are split over the
//! runtime's threads; the layout buffer, the tap offsets and (unfused) each band's counts live
//! in per-thread scratch ([`super::scratch`]) reused across runs, so a steady-state run
//! allocates only its output tensor.
//!
//! **MST** ([`BinaryConv2d::with_mst`], NNEF `mst_parents`): output channels computed in
//! minimum-spanning-tree order, each child from its parent's counts plus a correction over
//! only the (tap, word) positions where its weights differ
//! ([`crate::kernels::binary::mst::MstSchedule::xor_popcount_lanes`]). The counts equal the dense
//! kernel's bit for bit (they include the zero words of the padded layout exactly as the dense
//! ones do), so the zero-padding correction and the output stage stay per channel, each
//! channel with its own correction table; only where a channel's counts sit in the band
//! buffer changes (its slot in tree order). Bands are still split over threads: each band computes
//! its roots, then its children.
//!
//! Its speed beside the float convolution: `docs/binary.md` (`cargo bench --bench
//! binary_layers`).

pub mod layout;

use tract_nnef::internal::*;
use tract_nnef::ser::{array, numeric, string};

use self::layout::LaneLayout;
use super::mst;
use super::output_stage::{
    dump_layer, layer_parameters, load_layer, LayerArgs, OutputKind, OutputStage,
};
use super::packing::{padding_is_clear, words_for};
use super::parallel::{run_indexed, threads, Disjoint};
use super::scratch;
use crate::kernels::binary::mst::MstSchedule;
use crate::kernels::binary::store::{packed_bounds, CLASSES};
use crate::kernels::binary::{self as kernels, LaneJob, LaneStore, StoreKind};
use std::sync::Mutex;

/// NNEF name.
pub const NAME: &str = "kestrel_binary_conv2d";

/// What taps outside the input contribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// 0: the float model's zero padding, corrected exactly.
    Zero,
    /// +1: padding with the binarised value of 0 (Larq's `pad_values=1`).
    One,
}

impl PadMode {
    /// The NNEF spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PadMode::Zero => "zero",
            PadMode::One => "one",
        }
    }

    /// Parses the NNEF spelling.
    pub fn parse(s: &str) -> TractResult<PadMode> {
        match s {
            "zero" => Ok(PadMode::Zero),
            "one" => Ok(PadMode::One),
            _ => bail!("unknown padding mode '{s}' (expected \"zero\" or \"one\")"),
        }
    }
}

/// Geometry of a binary convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Real input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// What padded taps contribute.
    pub pad_mode: PadMode,
}

impl ConvGeometry {
    /// Output height and width for an input of `h × w`, or an error if the kernel does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> TractResult<(usize, usize)> {
        let span = |a: usize| self.dilation[a] * (self.kernel[a] - 1) + 1;
        match super::window::output_hw([h, w], self.padding, [span(0), span(1)], self.stride) {
            Some(size) => Ok(size),
            None => bail!(
                "{NAME}: kernel {:?} (dilation {:?}) does not fit a {h}x{w} input padded by {:?}",
                self.kernel,
                self.dilation,
                self.padding
            ),
        }
    }

    /// Words per packed input pixel.
    pub fn in_words(&self) -> usize {
        words_for(self.c_in)
    }

    /// Words per im2col row.
    pub fn patch_words(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.in_words()
    }

    /// Bits of a full receptive field.
    pub fn taps_bits(&self) -> usize {
        self.kernel[0] * self.kernel[1] * self.c_in
    }
}

/// The binary conv2d operator.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryConv2d {
    /// Geometry.
    pub geometry: ConvGeometry,
    /// Packed weights `[C_out, KH, KW, ⌈C_in/64⌉]` u64.
    pub weights: Arc<Tensor>,
    /// Fused output stage.
    pub output: OutputStage,
    /// `Σ_ci b(w[c, ky, kx, ci])` per channel and tap (`[C_out][KH·KW]`), for zero padding.
    tap_sums: Arc<Vec<i32>>,
    /// MST order (see [`BinaryConv2d::with_mst`]): the parent of each output channel.
    pub mst_parents: Option<Vec<Option<usize>>>,
    mst: Option<Arc<MstSchedule>>,
    tables: TableCache,
}

/// What the fused output stage needs for one input size (see `BinaryConv2d::border_tables`).
#[derive(Debug)]
struct BorderTables {
    /// Input `(h, w)`.
    key: (usize, usize),
    /// Border class of each output pixel (row-major).
    classes: Vec<u8>,
    /// Per channel, the correction of each class (`stride` entries).
    corr: Vec<i32>,
    /// Entries per channel in `corr`: [`CLASSES`], or the class count when larger.
    stride: usize,
    /// Packed output: per channel, bit = `(dot < threshold) XOR flip`.
    threshold: Vec<i32>,
    /// See `threshold`.
    flip: Vec<u32>,
    /// Packed output: `threshold` and `corr` as count bounds per channel and class
    /// ([`packed_bounds`]).
    bounds: Vec<u16>,
}

/// The tables of the last input size the op ran on (a model runs one size; recomputed when
/// it changes). Not part of the op's identity: clones start empty, and every cache is equal.
#[derive(Debug, Default)]
struct TableCache(Mutex<Option<Arc<BorderTables>>>);

impl Clone for TableCache {
    fn clone(&self) -> TableCache {
        TableCache::default()
    }
}

impl PartialEq for TableCache {
    fn eq(&self, _: &TableCache) -> bool {
        true
    }
}

/// Counts per band of output pixels: a band's `C_out × lanes` counts stay in L2.
const BAND_COUNTS: usize = 32 * 1024;

/// Band lengths are a multiple of this (whole register tiles of every lane kernel: 16 lanes
/// on AVX-512, 8 on NEON, 2 on POPCNT).
const BAND_ALIGN: usize = 48;

impl Eq for BinaryConv2d {}

impl BinaryConv2d {
    /// Builds the op, checking every parameter against the others.
    pub fn new(
        geometry: ConvGeometry,
        weights: Arc<Tensor>,
        kind: OutputKind,
        mul: Arc<Tensor>,
        bias: Arc<Tensor>,
    ) -> TractResult<BinaryConv2d> {
        let g = &geometry;
        ensure!(
            g.c_in > 0 && g.c_out > 0,
            "{NAME}: zero channels (c_in {}, c_out {})",
            g.c_in,
            g.c_out
        );
        ensure!(
            g.kernel
                .iter()
                .chain(&g.stride)
                .chain(&g.dilation)
                .all(|&v| v > 0),
            "{NAME}: kernel {:?}, stride {:?} and dilation {:?} must be positive",
            g.kernel,
            g.stride,
            g.dilation
        );
        let [kh, kw] = g.kernel;
        let cw = g.in_words();
        ensure!(
            weights.datum_type() == u64::datum_type() && weights.shape() == [g.c_out, kh, kw, cw],
            "{NAME}: weights must be u64 [{}, {kh}, {kw}, {cw}] for c_in {}, got {:?} {:?}",
            g.c_out,
            g.c_in,
            weights.datum_type(),
            weights.shape()
        );
        let view = weights.try_as_plain_ram()?;
        let w = view.as_slice::<u64>()?;
        let mut tap_sums = Vec::with_capacity(g.c_out * kh * kw);
        for (t, tap) in w.chunks_exact(cw).enumerate() {
            ensure!(
                padding_is_clear(tap, g.c_in),
                "{NAME}: weights of output channel {} have bits set past c_in = {}",
                t / (kh * kw),
                g.c_in
            );
            let negatives: u32 = tap.iter().map(|x| x.count_ones()).sum();
            tap_sums.push(g.c_in as i32 - 2 * negatives as i32);
        }
        let output = OutputStage::new(kind, mul, bias, g.c_out, g.taps_bits())
            .with_context(|| format!("{NAME}: output stage"))?;
        Ok(BinaryConv2d {
            geometry,
            weights,
            output,
            tap_sums: Arc::new(tap_sums),
            tables: TableCache::default(),
            mst_parents: None,
            mst: None,
        })
    }

    /// Computes output channels in minimum-spanning-tree order, each from its parent
    /// (`parents[c]`, `None` for a root): bit-exact with the dense kernel, faster when channels
    /// differ from their parents in few (tap, word) positions.
    pub fn with_mst(mut self, parents: Vec<Option<usize>>) -> TractResult<BinaryConv2d> {
        ensure!(
            parents.len() == self.geometry.c_out,
            "{NAME}: {} MST parents for {} output channels",
            parents.len(),
            self.geometry.c_out
        );
        let view = self.weights.try_as_plain_ram()?;
        let schedule = MstSchedule::new(
            view.as_slice::<u64>()?,
            self.geometry.patch_words(),
            &parents,
        )
        .map_err(|e| format_err!("{NAME}: MST parents: {e}"))?;
        self.mst = Some(Arc::new(schedule));
        self.mst_parents = Some(parents);
        Ok(self)
    }

    /// The MST schedule, if the op has one.
    pub fn mst(&self) -> Option<&MstSchedule> {
        self.mst.as_deref()
    }

    /// True when tap `k` of output position `o` along one axis falls in the padding.
    fn tap_out(
        o: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        size: usize,
    ) -> bool {
        let i = o * stride + k * dilation;
        i < pad || i - pad >= size
    }

    /// The border classes of an `h × w` input's `oh × ow` output pixels and every channel's
    /// zero-padding correction per class ([`crate::kernels::binary::store`]): a class is a pair (set of
    /// kernel rows in the padding, set of kernel columns in the padding), the empty pair first
    /// (class 0, the interior, correcting by 0); its correction is the sum of the weight sums
    /// `Σ_ci b(w[c, ky, kx, ci])` of the taps in either set. One padding has one class.
    fn border_tables(&self, h: usize, w: usize, oh: usize, ow: usize) -> TractResult<BorderTables> {
        let g = &self.geometry;
        let [kh, kw] = g.kernel;
        let zero = g.pad_mode == PadMode::Zero;
        // Per output position along an axis: the index of its set of taps in the padding.
        let sets = |n: usize, axis: usize, size: usize| -> (Vec<usize>, Vec<Vec<bool>>) {
            let k = g.kernel[axis];
            let mut sets = vec![vec![false; k]];
            let index = (0..n)
                .map(|o| {
                    let set: Vec<bool> = (0..k)
                        .map(|t| {
                            let (s, d, p) = (g.stride[axis], g.dilation[axis], g.padding[axis]);
                            zero && Self::tap_out(o, t, s, d, p, size)
                        })
                        .collect();
                    sets.iter().position(|x| *x == set).unwrap_or_else(|| {
                        sets.push(set);
                        sets.len() - 1
                    })
                })
                .collect();
            (index, sets)
        };
        let (rows, row_sets) = sets(oh, 0, h);
        let (cols, col_sets) = sets(ow, 1, w);
        let n = row_sets.len() * col_sets.len();
        ensure!(
            n <= 256,
            "{NAME}: {n} border classes of kernel {:?} (at most 256)",
            g.kernel
        );
        let stride = n.max(CLASSES);
        let mut classes = Vec::with_capacity(oh * ow);
        for &r in &rows {
            classes.extend(cols.iter().map(|&c| (r * col_sets.len() + c) as u8));
        }
        let mut corr = vec![0i32; g.c_out * stride];
        for (c, table) in corr.chunks_exact_mut(stride).enumerate() {
            let sums = &self.tap_sums[c * kh * kw..][..kh * kw];
            for (r, row_set) in row_sets.iter().enumerate() {
                for (cc, col_set) in col_sets.iter().enumerate() {
                    table[r * col_sets.len() + cc] = (0..kh * kw)
                        .filter(|&t| row_set[t / kw] || col_set[t % kw])
                        .map(|t| sums[t])
                        .sum();
                }
            }
        }
        let (threshold, flip): (Vec<i32>, Vec<u32>) =
            self.output.thresholds.iter().map(|t| t.less_than()).unzip();
        let bounds = if threshold.is_empty() {
            Vec::new()
        } else {
            packed_bounds(i32::try_from(g.taps_bits())?, &corr, stride, &threshold)
        };
        Ok(BorderTables {
            key: (h, w),
            classes,
            corr,
            stride,
            threshold,
            flip,
            bounds,
        })
    }

    /// The tables of an `h × w` input, from the cache when the size has not changed.
    fn tables(&self, h: usize, w: usize, oh: usize, ow: usize) -> TractResult<Arc<BorderTables>> {
        let mut cached = self.tables.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cached.as_ref().filter(|t| t.key == (h, w)) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.border_tables(h, w, oh, ow)?);
        *cached = Some(t.clone());
        Ok(t)
    }
}

impl Op for BinaryConv2d {
    fn name(&self) -> StaticName {
        "KestrelBinaryConv2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        let mut info = vec![format!(
            "{}→{} k{:?} s{:?} d{:?} pad{:?} {} → {}",
            g.c_in,
            g.c_out,
            g.kernel,
            g.stride,
            g.dilation,
            g.padding,
            g.pad_mode.as_str(),
            self.output.kind.as_str()
        )];
        info.extend(self.mst.as_ref().map(|m| m.summary()));
        Ok(info)
    }

    op_as_typed_op!();
}

impl EvalOp for BinaryConv2d {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let cw = self.geometry.in_words();
        let shape = input.shape();
        ensure!(
            input.datum_type() == u64::datum_type() && shape.len() == 4 && shape[3] == cw,
            "{NAME}: input must be packed u64 [N, H, W, {cw}], got {:?} {:?}",
            input.datum_type(),
            shape
        );
        let plan = self.plan(shape)?;
        let (n, c_out, (oh, ow)) = (plan.n, self.geometry.c_out, plan.out);
        let mut out = match self.output.kind {
            // SAFETY: f32 has no invalid bit patterns, and every element is written by `run`
            // (every output pixel lies in one band, every channel is written for it).
            OutputKind::Float => unsafe { Tensor::uninitialized::<f32>(&[n, c_out, oh, ow])? },
            OutputKind::Packed => Tensor::zero::<u64>(&[n, oh, ow, words_for(c_out)])?,
        };
        let input_view = input.try_as_plain_ram()?;
        self.run(&plan, input_view.as_slice::<u64>()?, &mut out)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

/// How one evaluation splits its work, from the input's shape: `n` images of `h`×`w` into
/// `out` pixels, laid out as lanes (`layout`) with their border tables, in `bands` of `band`
/// lanes over the threads; `fused` when the kernels' fused store takes the whole output
/// stage.
struct Plan {
    n: usize,
    h: usize,
    w: usize,
    out: (usize, usize),
    layout: LaneLayout,
    tables: Arc<BorderTables>,
    band: usize,
    bands: usize,
    fused: bool,
}

impl BinaryConv2d {
    /// The plan of an evaluation on a packed input of `shape` (`[N, H, W, C/64]`, checked).
    fn plan(&self, shape: &[usize]) -> TractResult<Plan> {
        let g = &self.geometry;
        let (n, h, w) = (shape[0], shape[1], shape[2]);
        let (oh, ow) = g.output_size(h, w)?;
        let layout = LaneLayout::new(g, oh, ow);
        let tables = self.tables(h, w, oh, ow)?;
        // The fused store needs the kernels' table size; MST children need their parents'
        // counts, so MST (and layers with more border classes) store counts, then apply the
        // same output stage per channel.
        let fused = self.mst.is_none() && tables.stride == CLASSES;
        // Bands of output lanes (pixels): counts of a band fit BAND_COUNTS, and every thread
        // gets one.
        let lanes = layout.lanes;
        let bands = (g.c_out * lanes)
            .div_ceil(BAND_COUNTS)
            .max(threads())
            .min(lanes);
        let band = lanes.div_ceil(bands).next_multiple_of(BAND_ALIGN);
        Ok(Plan {
            n,
            h,
            w,
            out: (oh, ow),
            bands: lanes.div_ceil(band),
            band,
            layout,
            tables,
            fused,
        })
    }

    /// Runs `plan` on the packed input `x` into `out` (allocated as the plan's output): per
    /// image, the input is laid out as lanes, then every band of lanes runs on the executor's
    /// threads through the kernel (fused store, or counts then the output stage).
    fn run(&self, plan: &Plan, x: &[u64], out: &mut Tensor) -> TractResult<()> {
        let g = &self.geometry;
        let (c_out, (h, w), (oh, ow)) = (g.c_out, (plan.h, plan.w), plan.out);
        let (layout, tables) = (&plan.layout, &*plan.tables);
        let kernel = kernels::select();
        let weights_view = self.weights.try_as_plain_ram()?;
        let weights = weights_view.as_slice::<u64>()?;
        let out_words = words_for(c_out);
        let pixels = oh * ow;
        let mst = self.mst.as_deref();
        let (lanes, band) = (layout.lanes, plan.band);
        let mut out_view = out.try_as_plain_ram_mut()?;
        let (out_f32, out_bits): (&mut [f32], &mut [u64]) = match self.output.kind {
            OutputKind::Float => (out_view.as_slice_mut::<f32>()?, &mut []),
            OutputKind::Packed => (&mut [], out_view.as_slice_mut::<u64>()?),
        };
        let (out_f32, out_bits) = (Disjoint::new(out_f32), Disjoint::new(out_bits));
        let kind = match self.output.kind {
            OutputKind::Float => StoreKind::Float {
                mul: self.output.mul_slice(),
                bias: self.output.bias_slice(),
            },
            OutputKind::Packed => StoreKind::Packed {
                threshold: &tables.threshold,
                flip: &tables.flip,
                bounds: &tables.bounds,
            },
        };
        let k = i32::try_from(g.taps_bits())?;
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        let diffs = mst.map_or(0, |m| m.diff_words());
        scratch::words(layout.len, |buf| {
            // The taps' offsets, then (MST) the offsets of the children's differing words.
            scratch::offsets(kh * kw + diffs, |offsets| {
                let (taps, diff_offsets) = offsets.split_at_mut(kh * kw);
                layout.taps(g, taps);
                if let Some(m) = mst {
                    m.lane_offsets(taps, layout.cw, layout.plane, diff_offsets);
                }
                let (taps, diff_offsets) = (&*taps, &*diff_offsets);
                for b in 0..plan.n {
                    layout.pack(
                        g,
                        &x[b * h * w * layout.cw..][..h * w * layout.cw],
                        h,
                        w,
                        buf,
                    );
                    let buf = &*buf;
                    run_indexed(plan.bands, |i| {
                        let q0 = i * band;
                        let len = band.min(lanes - q0);
                        let job = LaneJob {
                            input: &buf[q0..],
                            taps,
                            words: layout.cw,
                            plane: layout.plane,
                            lanes: len,
                            weights,
                        };
                        // Pixels q0..q0 + len of image b, every channel: this band's alone.
                        let (ptr, ld) = match self.output.kind {
                            OutputKind::Float => {
                                let start = b * c_out * pixels + q0;
                                let end = start + (c_out - 1) * pixels + len;
                                (out_f32.ptr(start, end).cast::<u8>(), pixels)
                            }
                            OutputKind::Packed => {
                                let start = (b * pixels + q0) * out_words;
                                let end = start + len * out_words;
                                (out_bits.ptr(start, end).cast::<u8>(), out_words)
                            }
                        };
                        // SAFETY: the elements of channels 0..c_out, lanes 0..len at (ptr,
                        // ld) are inside the output (checked by `ptr`) and written by this
                        // band only (bands are disjoint ranges of pixels).
                        let store = unsafe {
                            LaneStore::new(
                                kind,
                                k,
                                &tables.classes[q0..],
                                &tables.corr,
                                tables.stride,
                                ptr,
                                ld,
                                c_out,
                                len,
                            )
                        };
                        if plan.fused {
                            kernel.xor_popcount_lanes_store(&job, &store);
                            return;
                        }
                        scratch::counts(c_out * len, |counts| {
                            match mst {
                                Some(m) => m.xor_popcount_lanes(kernel, &job, diff_offsets, counts),
                                None => kernel.xor_popcount_lanes(&job, counts),
                            }
                            kernel.store_counts(counts, mst.map(|m| m.slots()), &store);
                        })
                    });
                }
            })
        });
        Ok(())
    }
}

impl TypedOp for BinaryConv2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let g = &self.geometry;
        ensure!(
            f.datum_type == u64::datum_type() && f.rank() == 4,
            "{NAME}: input must be packed u64 [N, H, W, C/64], got {:?}",
            f
        );
        ensure!(
            f.shape[3].to_usize()? == g.in_words(),
            "{NAME}: input has {} words per pixel, c_in {} needs {}",
            f.shape[3],
            g.c_in,
            g.in_words()
        );
        let (oh, ow) = g.output_size(f.shape[1].to_usize()?, f.shape[2].to_usize()?)?;
        let n = f.shape[0].clone();
        Ok(tvec!(match self.output.kind {
            OutputKind::Float => f32::fact(tvec![n, g.c_out.into(), oh.into(), ow.into()]),
            OutputKind::Packed => {
                u64::fact(tvec![n, oh.into(), ow.into(), words_for(g.c_out).into()])
            }
        }))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &layer_parameters(&[
            TypeName::Integer.named("c_in"),
            TypeName::Integer.array().named("stride"),
            TypeName::Integer.array().named("dilation"),
            TypeName::Integer.array().named("padding"),
            TypeName::String.named("pad_mode"),
            mst::parents_parameter(),
            mst::weights_parameter(),
        ]),
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let LayerArgs {
        input,
        weights,
        mul,
        bias,
        kind,
    } = load_layer(builder, invocation)?;
    let c_in: usize = invocation.named_arg_as(builder, "c_in")?;
    let pair = |name: &str, v: TVec<usize>| -> TractResult<[usize; 2]> {
        ensure!(v.len() == 2, "{NAME}: {name} needs 2 values, got {v:?}");
        Ok([v[0], v[1]])
    };
    let stride = pair("stride", invocation.named_arg_as(builder, "stride")?)?;
    let dilation = pair("dilation", invocation.named_arg_as(builder, "dilation")?)?;
    let padding: TVec<usize> = invocation.named_arg_as(builder, "padding")?;
    ensure!(
        padding.len() == 4,
        "{NAME}: padding needs 4 values (t, l, b, r), got {padding:?}"
    );
    let pad_mode = PadMode::parse(&invocation.named_arg_as::<String>(builder, "pad_mode")?)?;
    ensure!(
        weights.rank() == 4,
        "{NAME}: weights must be rank 4, got {:?}",
        weights.shape()
    );
    let geometry = ConvGeometry {
        c_in,
        c_out: weights.shape()[0],
        kernel: [weights.shape()[1], weights.shape()[2]],
        stride,
        dilation,
        padding: [padding[0], padding[1], padding[2], padding[3]],
        pad_mode,
    };
    let parents = mst::read_parents(builder, invocation)?;
    let weights = mst::full_weights(
        builder,
        invocation,
        weights,
        geometry.patch_words(),
        parents.as_deref(),
    )
    .with_context(|| format!("{NAME}: weights"))?;
    let mut op = BinaryConv2d::new(geometry, weights, kind, mul, bias)?;
    if let Some(parents) = parents {
        op = op.with_mst(parents)?;
    }
    builder.wire(op, &[input])
}

fn dump(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &BinaryConv2d,
) -> TractResult<Option<Arc<RValue>>> {
    let g = &op.geometry;
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    let extra: Vec<_> = vec![
        ("c_in", numeric(g.c_in)),
        ("stride", ints(&g.stride)),
        ("dilation", ints(&g.dilation)),
        ("padding", ints(&g.padding)),
        ("pad_mode", string(g.pad_mode.as_str())),
    ]
    .into_iter()
    .chain(mst::parents_attribute(&op.mst_parents))
    .chain(mst::weights_attribute(&op.mst_parents))
    .collect();
    let weights = mst::stored_weights(&op.weights, g.patch_words(), &op.mst_parents)?;
    dump_layer(ast, node, NAME, &weights, &op.output, extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::bitpack::Bitpack;
    use crate::ops::packing::{bit, is_minus_one, pack_conv_weights};
    use crate::ops::reference;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    fn sign(rng: &mut SmallRng, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| if rng.random() { 1.0 } else { -1.0 })
            .collect()
    }

    /// Runs the op (dense, or with the MST `parents`) on 1 and 2 threads, float and packed
    /// output, and compares every value / bit with the float reference.
    fn check(
        rng: &mut SmallRng,
        g: ConvGeometry,
        (n, h, w): (usize, usize, usize),
        wts: &[f32],
        parents: Option<&[Option<usize>]>,
    ) {
        let (c_in, c_out, [kh, kw]) = (g.c_in, g.c_out, g.kernel);
        let x = sign(rng, n * c_in * h * w);
        let mul: Vec<f32> = (0..c_out).map(|i| [0.5, -1.25, 0.0, 2.0][i % 4]).collect();
        let bias: Vec<f32> = (0..c_out).map(|i| (i % 7) as f32 - 3.0).collect();
        let (dots, oh, ow) = reference::conv_dots(&x, n, h, w, wts, &g);
        let plane = oh * ow;
        let want = reference::output_stage(&dots, &mul, &bias, |i| (i / plane) % c_out);
        let input = Bitpack
            .eval_out_of_plan(tvec!(Tensor::from_shape(&[n, c_in, h, w], &x)
                .unwrap()
                .into_tvalue()))
            .unwrap()
            .unwrap()
            .remove(0);
        let weights = Tensor::from_shape(
            &[c_out, kh, kw, words_for(c_in)],
            &pack_conv_weights(wts, c_out, c_in, kh, kw),
        )
        .unwrap();
        let op = |kind| {
            let op = BinaryConv2d::new(
                g,
                Arc::new(weights.clone()),
                kind,
                Arc::new(tensor1(&mul)),
                Arc::new(tensor1(&bias)),
            )
            .unwrap();
            match parents {
                Some(p) => op.with_mst(p.to_vec()).unwrap(),
                None => op,
            }
        };
        let mst = parents.is_some();
        for threads in [1, 2] {
            let run = |kind| {
                let executor = if threads == 1 {
                    Executor::SingleThread
                } else {
                    Executor::multithread(threads)
                };
                multithread_tract_scope(executor, || {
                    op(kind)
                        .eval_out_of_plan(tvec!(input.clone()))
                        .unwrap()
                        .unwrap()
                        .remove(0)
                })
            };
            let float = run(OutputKind::Float);
            let float = float.try_as_plain_ram().unwrap();
            let got = float.as_slice::<f32>().unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "#{i} {g:?} {threads} threads mst {mst}"
                );
            }
            let packed = run(OutputKind::Packed);
            let packed = packed.try_as_plain_ram().unwrap();
            let bits = packed.as_slice::<u64>().unwrap();
            let words = words_for(c_out);
            for (i, y) in want.iter().enumerate() {
                let (b, c, p) = (i / (c_out * plane), i / plane % c_out, i % plane);
                let row = &bits[(b * plane + p) * words..][..words];
                assert_eq!(
                    bit(row, c),
                    is_minus_one(*y),
                    "bit {i} {g:?} {threads} threads mst {mst}"
                );
            }
        }
    }

    /// Layers larger than one band of counts, on 1 and 2 threads: every band boundary, border
    /// correction and output kind equals the float reference.
    #[test]
    fn bands_and_threads_equal_the_float_reference() {
        let mut rng = SmallRng::seed_from_u64(0x6b65_7374_7265_6c07);
        let shapes = [
            // (n, c_in, c_out, h, w, k, stride, padding, mode)
            (1, 64, 64, 30, 29, 3, 1, 1, PadMode::Zero),
            (2, 100, 130, 17, 18, 3, 2, 1, PadMode::Zero),
            (1, 256, 200, 9, 9, 3, 1, 1, PadMode::One),
            (1, 512, 300, 7, 7, 1, 1, 0, PadMode::Zero),
        ];
        for (n, c_in, c_out, h, w, k, s, p, pad_mode) in shapes {
            let g = ConvGeometry {
                c_in,
                c_out,
                kernel: [k, k],
                stride: [s, s],
                dilation: [1, 1],
                padding: [p; 4],
                pad_mode,
            };
            let wts = sign(&mut rng, c_out * c_in * k * k);
            check(&mut rng, g, (n, h, w), &wts, None);
        }
    }

    /// Weights `[C_out, C_in, KH, KW]` where most channels copy an earlier one and flip a few
    /// weights (`flips` per child, 0 for exact copies), with those parents.
    fn clustered(
        rng: &mut SmallRng,
        c_out: usize,
        per_channel: usize,
        flips: usize,
    ) -> (Vec<f32>, Vec<Option<usize>>) {
        let mut w = sign(rng, per_channel);
        let mut parents = vec![None];
        for c in 1..c_out {
            if rng.random_range(0..5) == 0 {
                w.extend(sign(rng, per_channel));
                parents.push(None);
                continue;
            }
            let p = rng.random_range(0..c);
            let mut row = w[p * per_channel..(p + 1) * per_channel].to_vec();
            for _ in 0..flips {
                let i = rng.random_range(0..per_channel);
                row[i] = -row[i];
            }
            w.extend(row);
            parents.push(Some(p));
        }
        (w, parents)
    }

    /// The MST op equals the float reference (so the dense op) bit for bit: C_in not a multiple
    /// of 64, 1×1/3×3/5×3 kernels, stride 1/2, dilation, zero (each child's border correction
    /// its own) and one padding, asymmetric padding, batch 2, several bands and threads, trees
    /// of copies, of near-copies and of unrelated channels.
    #[test]
    fn mst_equals_the_float_reference() {
        let mut rng = SmallRng::seed_from_u64(0x6d73_7402);
        let cases = [
            // (n, c_in, c_out, h, w, [kh, kw], stride, dilation, padding, mode, flips)
            (1, 64, 64, 30, 29, [3, 3], 1, 1, [1; 4], PadMode::Zero, 3),
            (2, 100, 70, 17, 18, [3, 3], 2, 1, [1; 4], PadMode::Zero, 1),
            (
                1,
                70,
                33,
                11,
                9,
                [5, 3],
                1,
                2,
                [2, 1, 0, 3],
                PadMode::Zero,
                0,
            ),
            (1, 3, 20, 8, 8, [3, 3], 1, 1, [1; 4], PadMode::Zero, 2),
            (1, 130, 40, 9, 9, [3, 3], 1, 1, [1; 4], PadMode::One, 5),
            (1, 512, 100, 7, 7, [1, 1], 1, 1, [0; 4], PadMode::Zero, 50),
            (
                1,
                200,
                64,
                12,
                10,
                [3, 3],
                2,
                1,
                [0, 1, 1, 0],
                PadMode::Zero,
                1000,
            ),
        ];
        for (n, c_in, c_out, h, w, kernel, s, d, padding, pad_mode, flips) in cases {
            let g = ConvGeometry {
                c_in,
                c_out,
                kernel,
                stride: [s, s],
                dilation: [d, d],
                padding,
                pad_mode,
            };
            let (wts, parents) = clustered(&mut rng, c_out, c_in * kernel[0] * kernel[1], flips);
            check(&mut rng, g, (n, h, w), &wts, Some(&parents));
        }
    }

    #[test]
    fn bad_mst_parents_are_refused() {
        let g = ConvGeometry {
            c_in: 8,
            c_out: 3,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [0; 4],
            pad_mode: PadMode::Zero,
        };
        let op = BinaryConv2d::new(
            g,
            Arc::new(Tensor::zero::<u64>(&[3, 1, 1, 1]).unwrap()),
            OutputKind::Float,
            Arc::new(tensor1(&[1f32; 3])),
            Arc::new(tensor1(&[0f32; 3])),
        )
        .unwrap();
        for parents in [
            vec![None, Some(2), Some(1)],
            vec![None, Some(3), None],
            vec![None],
        ] {
            let e = op.clone().with_mst(parents).unwrap_err().to_string();
            assert!(e.contains(NAME), "{e}");
        }
    }
}
