//! The pixel-lane layout of a binary conv's input (see [`crate::kernels::LaneJob`]).
//!
//! The packed image `[H, W, ⌈C_in/64⌉]` is copied, padded, into `sh·sw` phase blocks (row
//! phase `iy % sh`, column phase `ix % sw` of the padded coordinates), each made of one plane
//! per word of the pixel, each plane `hq × wq` words (row `iy / sh`, column `ix / sw`).
//! Padding is zero words (+1 taps; zero padding is corrected by the op).
//!
//! Output pixel `(oy, ox)` is lane `q = oy·wq + ox`. Its tap `(ky, kx)` reads padded row
//! `oy·sh + ky·dh` and column `ox·sw + kx·dw`, i.e. phase `((ky·dh) % sh, (kx·dw) % sw)`,
//! plane row `oy + (ky·dh) / sh`, plane column `ox + (kx·dw) / sw`: at `taps[t] + q` with a
//! per-tap constant `taps[t]`. So every lane of every tap is one fixed offset away, the
//! kernel walks taps without an im2col copy, and consecutive output pixels of a row are
//! consecutive words. Lanes `ox ≥ ow` (the `wq − ow` columns at the end of each row) are
//! computed and discarded: 2 of 58 for a 3×3 conv at 56×56, 2 of 16 at 14×14.

use super::ConvGeometry;
use crate::kernels::LANE_SLACK;

/// Where an image's words go and where the taps read.
#[derive(Debug, Clone, Copy)]
pub(super) struct LaneLayout {
    /// Words per packed pixel.
    pub cw: usize,
    /// Plane columns (the lane distance between output rows).
    pub wq: usize,
    /// Words between consecutive word planes (`hq · wq`).
    pub plane: usize,
    /// Output lanes: `(oh − 1) · wq + ow`.
    pub lanes: usize,
    /// Words of the buffer, slack included.
    pub len: usize,
}

impl LaneLayout {
    /// The layout of an `h × w` input whose output is `oh × ow`.
    pub fn new(g: &ConvGeometry, h: usize, w: usize, oh: usize, ow: usize) -> LaneLayout {
        let [sh, sw] = g.stride;
        let [kh, kw] = g.kernel;
        let [dh, dw] = g.dilation;
        let [pt, pl, ..] = g.padding;
        // Room for every real input pixel and for every tap of every output lane.
        let hq = (oh + (kh - 1) * dh / sh).max((h + pt).div_ceil(sh));
        let wq = (ow + (kw - 1) * dw / sw).max((w + pl).div_ceil(sw));
        let plane = hq * wq;
        let cw = g.in_words();
        LaneLayout {
            cw,
            wq,
            plane,
            lanes: (oh - 1) * wq + ow,
            len: sh * sw * cw * plane + LANE_SLACK,
        }
    }

    /// The offset of each tap `(ky, kx)` (row-major, as the weights) for lane 0.
    pub fn taps(&self, g: &ConvGeometry, taps: &mut [usize]) {
        let [sh, sw] = g.stride;
        let [kh, kw] = g.kernel;
        let [dh, dw] = g.dilation;
        assert_eq!(taps.len(), kh * kw);
        for ky in 0..kh {
            let ry = ky * dh;
            for kx in 0..kw {
                let rx = kx * dw;
                let phase = (ry % sh) * sw + rx % sw;
                taps[ky * kw + kx] = phase * self.cw * self.plane + (ry / sh) * self.wq + rx / sw;
            }
        }
    }

    /// Copies one packed image `[h, w, cw]` into `buf` (`len` words), padding with zeros.
    pub fn pack(&self, g: &ConvGeometry, image: &[u64], h: usize, w: usize, buf: &mut [u64]) {
        let [sh, sw] = g.stride;
        let [pt, pl, ..] = g.padding;
        let cw = self.cw;
        buf.fill(0);
        for y in 0..h {
            let iy = y + pt;
            let (py, i) = (iy % sh, iy / sh);
            let src_row = &image[y * w * cw..(y + 1) * w * cw];
            for (x, src) in src_row.chunks_exact(cw).enumerate() {
                let ix = x + pl;
                let (px, j) = (ix % sw, ix / sw);
                let base = (py * sw + px) * cw * self.plane + i * self.wq + j;
                for (word, &v) in src.iter().enumerate() {
                    buf[base + word * self.plane] = v;
                }
            }
        }
    }
}
