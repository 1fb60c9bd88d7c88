//! Anchor boxes for SSD-style heads, generated from a handful of parameters the way
//! TensorFlow's `ssd_anchor_generator` and MediaPipe's `SsdAnchorsCalculator` do, or listed
//! per feature map.
//!
//! An anchor is `(cy, cx, h, w)` relative to the image. Anchors are ordered layer by layer,
//! then by feature-map row, column, and anchor within the cell — the order in which SSD heads
//! concatenate their per-layer predictions (`[H, W, anchors, 4]` reshaped to `[-1, 4]`).
//!
//! **Generated anchors** ([`SsdAnchorOptions`]). Layer `i` of `L` has the scale
//! `s_i = min_scale + (max_scale − min_scale)·i/(L − 1)` (the midpoint when `L = 1`), and
//! `s_L = 1`. Each layer has one anchor per aspect ratio `r` with height `s_i/√r` and width
//! `s_i·√r`, plus, when `interpolated_scale_aspect_ratio > 0`, one of scale `√(s_i·s_{i+1})`
//! and that ratio. With `reduce_boxes_in_lowest_layer` the first layer has three anchors
//! instead: `(0.1, 1)`, `(s_0, 2)`, `(s_0, 0.5)` (scale, ratio). Consecutive layers with the
//! same feature map are merged into one grid whose cells hold the anchors of all of them in
//! order (MediaPipe's rule for equal strides; BlazeFace relies on it). A layer's feature map
//! is given, or is `⌈input / stride⌉`. Cell `(y, x)` of an `h × w` map has its anchors
//! centred at `((y + offset_y)/h, (x + offset_x)/w)`. With `fixed_anchor_size` every anchor
//! is `1 × 1` (heads that regress sizes directly, e.g. BlazeFace).

/// One anchor: `[cy, cx, h, w]`, relative to the image.
pub type Anchor = [f32; 4];

/// Most anchors a head may have (a sidecar is untrusted input: 16 MiB of anchors at most).
pub const MAX_ANCHORS: usize = 1 << 20;

/// The parameters of an SSD anchor generator (TensorFlow's `ssd_anchor_generator`, MediaPipe's
/// `SsdAnchorsCalculatorOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct SsdAnchorOptions {
    /// Model input `(height, width)`, pixels: turns strides into feature-map sizes.
    pub input_size: (usize, usize),
    /// Number of layers (scales).
    pub num_layers: usize,
    /// Scale of the first layer, relative to the image.
    pub min_scale: f32,
    /// Scale of the last layer.
    pub max_scale: f32,
    /// Feature-map `(rows, columns)` per layer; empty: computed from `strides`.
    pub feature_maps: Vec<(usize, usize)>,
    /// Stride per layer, pixels (used when `feature_maps` is empty).
    pub strides: Vec<usize>,
    /// Aspect ratios (width / height) of every layer's anchors.
    pub aspect_ratios: Vec<f32>,
    /// The first layer has the three anchors `(0.1, 1), (s0, 2), (s0, 0.5)`.
    pub reduce_boxes_in_lowest_layer: bool,
    /// Aspect ratio of the extra anchor between a layer's scale and the next's; ≤ 0: none.
    pub interpolated_scale_aspect_ratio: f32,
    /// Anchor centre within its cell, `(x, y)`, in cells.
    pub anchor_offset: (f32, f32),
    /// Every anchor is `1 × 1`.
    pub fixed_anchor_size: bool,
}

impl Default for SsdAnchorOptions {
    /// TensorFlow's SSD-MobileNet (300×300, six layers) defaults.
    fn default() -> Self {
        SsdAnchorOptions {
            input_size: (300, 300),
            num_layers: 6,
            min_scale: 0.2,
            max_scale: 0.95,
            feature_maps: Vec::new(),
            strides: vec![16, 32, 64, 128, 256, 512],
            aspect_ratios: vec![1.0, 2.0, 0.5, 3.0, 1.0 / 3.0],
            reduce_boxes_in_lowest_layer: true,
            interpolated_scale_aspect_ratio: 1.0,
            anchor_offset: (0.5, 0.5),
            fixed_anchor_size: false,
        }
    }
}

/// One explicitly listed grid of anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGrid {
    /// Feature map `(rows, columns)`.
    pub feature_map: (usize, usize),
    /// Anchor `[height, width]`s at every cell, relative to the image.
    pub sizes: Vec<[f32; 2]>,
}

fn scale(options: &SsdAnchorOptions, layer: usize) -> f32 {
    let n = options.num_layers;
    if layer >= n {
        1.0
    } else if n == 1 {
        (options.min_scale + options.max_scale) / 2.0
    } else {
        options.min_scale + (options.max_scale - options.min_scale) * layer as f32 / (n - 1) as f32
    }
}

impl SsdAnchorOptions {
    /// Checks the parameters; the message names the offending parameter.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.num_layers;
        if n == 0 || n > 32 {
            return Err(format!("num_layers = {n}: expected 1 to 32"));
        }
        if self.feature_maps.is_empty() {
            if self.strides.len() != n {
                return Err(format!(
                    "strides has {} entries but num_layers = {n} (or give feature_maps)",
                    self.strides.len()
                ));
            }
            if self.strides.contains(&0) {
                return Err("strides must be positive".into());
            }
            let (h, w) = self.input_size;
            if h == 0 || w == 0 {
                return Err("input_size must be positive".into());
            }
        } else if self.feature_maps.len() != n {
            return Err(format!(
                "feature_maps has {} entries but num_layers = {n}",
                self.feature_maps.len()
            ));
        }
        for &(h, w) in &self.feature_maps {
            if h == 0 || w == 0 || h > 4096 || w > 4096 {
                return Err(format!("feature map {h}x{w} is out of range (1 to 4096)"));
            }
        }
        let finite = |x: f32| x.is_finite() && x > 0.0;
        if !finite(self.min_scale) || !finite(self.max_scale) {
            return Err("min_scale and max_scale must be positive".into());
        }
        if self.aspect_ratios.is_empty() || !self.aspect_ratios.iter().all(|&r| finite(r)) {
            return Err("aspect_ratios must be a non-empty list of positive numbers".into());
        }
        if !self.interpolated_scale_aspect_ratio.is_finite() {
            return Err("interpolated_scale_aspect_ratio must be a number".into());
        }
        if self.aspect_ratios.len() > 64 {
            return Err("aspect_ratios: at most 64".into());
        }
        let mut count = 0usize;
        for layer in 0..n {
            let (h, w) = self.feature_map(layer);
            let per_cell = self.aspect_ratios.len() + 1;
            count = count.saturating_add(h.saturating_mul(w).saturating_mul(per_cell));
        }
        if count > MAX_ANCHORS {
            return Err(format!(
                "these parameters make more than {MAX_ANCHORS} anchors (input_size or feature maps too large?)"
            ));
        }
        Ok(())
    }

    /// Feature map of layer `i`.
    fn feature_map(&self, i: usize) -> (usize, usize) {
        match self.feature_maps.get(i) {
            Some(&fm) => fm,
            None => {
                let s = self.strides[i];
                (self.input_size.0.div_ceil(s), self.input_size.1.div_ceil(s))
            }
        }
    }

    /// The anchors, in the head's order. Call [`SsdAnchorOptions::validate`] first.
    pub fn generate(&self) -> Vec<Anchor> {
        let mut anchors = Vec::new();
        let mut layer = 0;
        while layer < self.num_layers {
            let map = self.feature_map(layer);
            // (scale, aspect ratio) of every anchor of a cell, merged over the layers that
            // share this feature map.
            let mut specs: Vec<(f32, f32)> = Vec::new();
            let mut last = layer;
            while last < self.num_layers && self.feature_map(last) == map {
                let s = scale(self, last);
                if last == 0 && self.reduce_boxes_in_lowest_layer {
                    specs.extend([(0.1, 1.0), (s, 2.0), (s, 0.5)]);
                } else {
                    specs.extend(self.aspect_ratios.iter().map(|&r| (s, r)));
                    if self.interpolated_scale_aspect_ratio > 0.0 {
                        let next = scale(self, last + 1);
                        specs.push(((s * next).sqrt(), self.interpolated_scale_aspect_ratio));
                    }
                }
                last += 1;
            }
            let (fh, fw) = map;
            let (ox, oy) = self.anchor_offset;
            for y in 0..fh {
                for x in 0..fw {
                    let cy = (y as f32 + oy) / fh as f32;
                    let cx = (x as f32 + ox) / fw as f32;
                    for &(s, r) in &specs {
                        let (h, w) = if self.fixed_anchor_size {
                            (1.0, 1.0)
                        } else {
                            (s / r.sqrt(), s * r.sqrt())
                        };
                        anchors.push([cy, cx, h, w]);
                    }
                }
            }
            layer = last;
        }
        anchors
    }
}

/// Checks explicitly listed grids: at most [`MAX_ANCHORS`] anchors in all.
pub fn check_grids(layers: &[AnchorGrid]) -> Result<(), String> {
    let mut count = 0usize;
    for l in layers {
        let (h, w) = l.feature_map;
        if h == 0 || w == 0 || l.sizes.is_empty() {
            return Err(format!(
                "feature map {h}x{w} with {} sizes: every layer needs cells and sizes",
                l.sizes.len()
            ));
        }
        count = count.saturating_add(h.saturating_mul(w).saturating_mul(l.sizes.len()));
    }
    if count > MAX_ANCHORS {
        return Err(format!("more than {MAX_ANCHORS} anchors"));
    }
    Ok(())
}

/// The anchors of explicitly listed grids, grid by grid, row-major, sizes innermost; anchor
/// centres at the cell centres.
pub fn grid_anchors(layers: &[AnchorGrid]) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    for AnchorGrid {
        feature_map: (fh, fw),
        sizes,
    } in layers
    {
        for i in 0..*fh {
            for j in 0..*fw {
                let cy = (i as f32 + 0.5) / *fh as f32;
                let cx = (j as f32 + 0.5) / *fw as f32;
                for [h, w] in sizes {
                    anchors.push([cy, cx, *h, *w]);
                }
            }
        }
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssd_mobilenet_defaults_make_1917_anchors() {
        let o = SsdAnchorOptions::default();
        o.validate().unwrap();
        let a = o.generate();
        // 19·19·3 + (10·10 + 5·5 + 3·3 + 2·2 + 1)·6
        assert_eq!(a.len(), 1917);
        // First cell of the first layer: (0.1, 1), (0.2, 2), (0.2, 0.5).
        let c = 0.5 / 19.0;
        let r2 = 2f32.sqrt();
        let want = [
            [c, c, 0.1, 0.1],
            [c, c, 0.2 / r2, 0.2 * r2],
            [c, c, 0.2 * r2, 0.2 / r2],
        ];
        for (g, w) in a[..3].iter().zip(want) {
            for k in 0..4 {
                assert!((g[k] - w[k]).abs() < 1e-6, "{g:?} vs {w:?}");
            }
        }
        // The last anchor: the 1×1 map, the interpolated scale √(0.95·1) at ratio 1.
        let last = a[1916];
        let s = 0.95f32.sqrt();
        assert_eq!(&last[..2], &[0.5, 0.5]);
        assert!((last[2] - s).abs() < 1e-6 && (last[3] - s).abs() < 1e-6);
        // Explicit feature maps give the same anchors.
        let explicit = SsdAnchorOptions {
            feature_maps: vec![(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)],
            strides: vec![],
            ..o
        };
        explicit.validate().unwrap();
        assert_eq!(explicit.generate(), a);
    }

    #[test]
    fn equal_strides_merge_like_blazeface() {
        // MediaPipe's BlazeFace front model: 128×128, strides 8, 16, 16, 16, fixed size.
        let o = SsdAnchorOptions {
            input_size: (128, 128),
            num_layers: 4,
            min_scale: 0.1484375,
            max_scale: 0.75,
            strides: vec![8, 16, 16, 16],
            aspect_ratios: vec![1.0],
            reduce_boxes_in_lowest_layer: false,
            interpolated_scale_aspect_ratio: 1.0,
            fixed_anchor_size: true,
            ..SsdAnchorOptions::default()
        };
        o.validate().unwrap();
        let a = o.generate();
        assert_eq!(a.len(), 16 * 16 * 2 + 8 * 8 * 6);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0, 1.0, 1.0]);
        assert_eq!(a[1], a[0], "two anchors per cell of the 16×16 map");
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0, 1.0, 1.0]);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let base = SsdAnchorOptions::default();
        for (o, needle) in [
            (
                SsdAnchorOptions {
                    num_layers: 0,
                    ..base.clone()
                },
                "num_layers",
            ),
            (
                SsdAnchorOptions {
                    strides: vec![16],
                    ..base.clone()
                },
                "strides",
            ),
            (
                SsdAnchorOptions {
                    feature_maps: vec![(1, 1)],
                    ..base.clone()
                },
                "feature_maps",
            ),
            (
                SsdAnchorOptions {
                    aspect_ratios: vec![],
                    ..base.clone()
                },
                "aspect_ratios",
            ),
            (
                SsdAnchorOptions {
                    min_scale: f32::NAN,
                    ..base.clone()
                },
                "min_scale",
            ),
        ] {
            let e = o.validate().unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn grids_are_row_major_with_sizes_innermost() {
        let a = grid_anchors(&[AnchorGrid {
            feature_map: (2, 2),
            sizes: vec![[0.5, 0.5]],
        }]);
        assert_eq!(a.len(), 4);
        assert_eq!(a[1], [0.25, 0.75, 0.5, 0.5]);
        assert_eq!(a[3], [0.75, 0.75, 0.5, 0.5]);
    }
}
