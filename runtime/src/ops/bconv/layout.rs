//! The pixel-lane layout of a binary conv's input (see [`crate::kernels::binary::LaneJob`]).
//!
//! Output pixel `(oy, ox)` is lane `q = oy·ow + ox`: lanes are exactly the output pixels in
//! NCHW order, none computed and discarded, so a kernel's per-channel run of lanes is a run
//! of the output row-major plane and can be stored straight into it.
//!
//! For that, the packed image `[H, W, ⌈C_in/64⌉]` is copied, zero-padded, into `kw·sh`
//! blocks, one per kernel column `kx` and row phase `py < sh`. Each block is `⌈C_in/64⌉` word
//! planes of `hq × ow` words: word `(r, ox)` of block `(kx, py)` holds the padded input at row
//! `r·sh + py`, column `ox·sw + kx·dw` — the column tap `kx` of output column `ox`, already
//! strided and dilated. Tap `(ky, kx)` of lane `q` then reads block `(kx, (ky·dh) % sh)` at
//! row `oy + (ky·dh) / sh`, column `ox`, i.e. at `taps[t] + q` with the per-tap constant
//! `taps[t] = block·cw·plane + ((ky·dh) / sh)·ow`. Every tap of every lane is one fixed
//! offset away, the kernel walks taps without an im2col copy, and consecutive lanes read
//! consecutive words (across output rows too).
//!
//! The copy holds each input word up to `kw` times (3× for 3×3 kernels: 10 k words for 64
//! channels at 56×56, 2.7 k for 256 at 14×14), a few µs; the earlier layout (one plane with
//! `ow + kw − 1` columns per row) shared the words but computed and discarded `kw − 1` lanes
//! per output row (12.5% of the lanes at 14×14). Padding is zero words (+1 taps; zero padding
//! is corrected by the op).

use super::ConvGeometry;
use crate::kernels::binary::LANE_SLACK;

/// Where an image's words go and where the taps read.
#[derive(Debug, Clone, Copy)]
pub struct LaneLayout {
    /// Words per packed pixel.
    pub cw: usize,
    /// Words between consecutive word planes (`hq · ow`).
    pub plane: usize,
    /// Output lanes: `oh · ow`.
    pub lanes: usize,
    /// Words of the buffer, slack included.
    pub len: usize,
    /// Output width (words per plane row).
    ow: usize,
    /// Plane rows.
    hq: usize,
}

impl LaneLayout {
    /// The layout of an input whose output is `oh × ow`.
    pub fn new(g: &ConvGeometry, oh: usize, ow: usize) -> LaneLayout {
        let sh = g.stride[0];
        let [kh, kw] = g.kernel;
        let dh = g.dilation[0];
        // Rows for every tap of every output row.
        let hq = oh + (kh - 1) * dh / sh;
        let plane = hq * ow;
        let cw = g.in_words();
        LaneLayout {
            cw,
            plane,
            lanes: oh * ow,
            len: kw * sh * cw * plane + LANE_SLACK,
            ow,
            hq,
        }
    }

    /// The offset of each tap `(ky, kx)` (row-major, as the weights) for lane 0.
    pub fn taps(&self, g: &ConvGeometry, taps: &mut [usize]) {
        let sh = g.stride[0];
        let [kh, kw] = g.kernel;
        let dh = g.dilation[0];
        assert_eq!(taps.len(), kh * kw);
        for ky in 0..kh {
            let ry = ky * dh;
            for kx in 0..kw {
                let block = kx * sh + ry % sh;
                taps[ky * kw + kx] = block * self.cw * self.plane + (ry / sh) * self.ow;
            }
        }
    }

    /// Copies one packed image `[h, w, cw]` into `buf` (`len` words), padding with zeros.
    pub fn pack(&self, g: &ConvGeometry, image: &[u64], h: usize, w: usize, buf: &mut [u64]) {
        let [sh, sw] = g.stride;
        let kw = g.kernel[1];
        let dw = g.dilation[1];
        let [pt, pl, ..] = g.padding;
        let (cw, ow, plane) = (self.cw, self.ow, self.plane);
        buf.fill(0);
        for kx in 0..kw {
            // Output columns whose tap kx reads a real input column: ix = ox·sw + kx·dw − pl.
            let first = (pl.saturating_sub(kx * dw)).div_ceil(sw);
            let end = (w + pl)
                .checked_sub(kx * dw)
                .map_or(0, |e| e.div_ceil(sw))
                .min(ow);
            if first >= end {
                continue;
            }
            for py in 0..sh {
                let block = (kx * sh + py) * cw * plane;
                for r in 0..self.hq {
                    let Some(y) = (r * sh + py).checked_sub(pt).filter(|&y| y < h) else {
                        continue;
                    };
                    let row = block + r * ow;
                    if sw == 1 {
                        // Consecutive output columns read consecutive input pixels: each word
                        // plane's run is one strided gather (a copy for one word per pixel).
                        let n = end - first;
                        let x0 = first + kx * dw - pl;
                        let src = &image[(y * w + x0) * cw..][..n * cw];
                        for word in 0..cw {
                            let dst = &mut buf[row + word * plane + first..][..n];
                            if cw == 1 {
                                dst.copy_from_slice(src);
                            } else {
                                for (d, &v) in dst.iter_mut().zip(src[word..].iter().step_by(cw)) {
                                    *d = v;
                                }
                            }
                        }
                        continue;
                    }
                    for ox in first..end {
                        let x = ox * sw + kx * dw - pl;
                        let src = &image[(y * w + x) * cw..][..cw];
                        for (word, &v) in src.iter().enumerate() {
                            buf[row + ox + word * plane] = v;
                        }
                    }
                }
            }
        }
    }
}
