//! Greedy non-maximum suppression and the bounded candidate list that feeds it.
//!
//! Candidates are sorted by score (in place: no allocation; equal scores in the order they were
//! pushed, i.e. anchor order, as TensorFlow's and MediaPipe's NMS keep them, which matters for
//! quantized scores that tie) and taken best first; a candidate
//! is dropped when it overlaps an already kept box of the same class (or of any class, when
//! class-agnostic) by an IoU above the threshold. At most `max` boxes are kept.
//!
//! The candidate list has a fixed capacity. When a frame produces more candidates than it
//! holds (a very low score threshold on a dense head), the list is sorted and cut to its best
//! half, and the half's lowest score becomes the admission bar for the rest of the frame: the
//! best candidates always survive, and the cost stays `O(n log n)` for `n` pushes.

use super::Detection;

/// Intersection over union of two `[x0, y0, x1, y1]` boxes; 0 when either is empty.
#[inline]
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Best score first, push order among equal scores (in place, no allocation).
fn sort(list: &mut [(u32, Detection)]) {
    list.sort_unstable_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
}

/// Boxes above the score threshold, best kept when there are too many.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// Candidates with their push order (the tie-break).
    list: Vec<(u32, Detection)>,
    capacity: usize,
    /// Lowest score still admitted this frame (raised when the list overflows).
    bar: f32,
    overflows: u64,
    /// Candidates pushed this frame.
    pushed: u32,
}

impl Candidates {
    /// A list holding up to `capacity` candidates (at least 2), allocated now.
    pub fn with_capacity(capacity: usize) -> Candidates {
        let capacity = capacity.max(2);
        Candidates {
            list: Vec::with_capacity(capacity),
            capacity,
            bar: f32::NEG_INFINITY,
            overflows: 0,
            pushed: 0,
        }
    }

    /// Empties the list for a new frame.
    pub fn clear(&mut self) {
        self.list.clear();
        self.pushed = 0;
        self.bar = f32::NEG_INFINITY;
    }

    /// The lowest score worth decoding a box for (raised after an overflow).
    #[inline]
    pub fn bar(&self) -> f32 {
        self.bar
    }

    /// Adds a candidate (ignored when below [`Candidates::bar`]).
    #[inline]
    pub fn push(&mut self, d: Detection) {
        if d.score < self.bar {
            return;
        }
        if self.list.len() == self.capacity {
            self.overflows += 1;
            sort(&mut self.list);
            self.list.truncate(self.capacity / 2);
            self.bar = self.list.last().map_or(self.bar, |w| w.1.score);
            if d.score < self.bar {
                return;
            }
        }
        self.list.push((self.pushed, d));
        self.pushed = self.pushed.wrapping_add(1);
    }

    /// Times the list overflowed since it was made.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Candidates collected this frame.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No candidate this frame.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Suppresses overlaps and writes the survivors into `out`, best first (at most `max`,
    /// and at most `out`'s capacity), their boxes clipped to the image.
    pub fn suppress<const N: usize>(
        &mut self,
        iou_threshold: f32,
        class_agnostic: bool,
        max: usize,
        out: &mut heapless::Vec<Detection, N>,
    ) {
        sort(&mut self.list);
        out.clear();
        let max = max.min(N);
        for (_, cand) in &self.list {
            if out.len() == max {
                break;
            }
            let suppressed = out.iter().any(|d| {
                (class_agnostic || d.class == cand.class)
                    && iou(&d.bbox, &cand.bbox) > iou_threshold
            });
            if !suppressed {
                let _ = out.push(*cand);
            }
        }
        for d in out.iter_mut() {
            d.bbox = d.bbox.map(|v| v.clamp(0.0, 1.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u32, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            class,
            score,
            bbox,
            track: None,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.0, 1.0, 1.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[1.0, 1.0, 2.0, 2.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 2.0, 1.0], &[1.0, 0.0, 3.0, 1.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0, "empty boxes");
    }

    #[test]
    fn same_class_overlaps_go_other_classes_stay() {
        let mut c = Candidates::with_capacity(16);
        c.push(det(1, 0.8, [0.0, 0.0, 0.5, 0.55]));
        c.push(det(1, 0.9, [0.0, 0.0, 0.5, 0.5]));
        c.push(det(2, 0.7, [0.0, 0.0, 0.5, 0.5]));
        c.push(det(1, 0.6, [0.6, 0.6, 1.0, 1.0]));
        let mut out: heapless::Vec<Detection, 8> = heapless::Vec::new();
        c.suppress(0.5, false, 10, &mut out);
        let got: Vec<(u32, f32)> = out.iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, [(1, 0.9), (2, 0.7), (1, 0.6)]);
        c.suppress(0.5, true, 10, &mut out);
        assert_eq!(out.len(), 2, "class-agnostic: the class-2 box goes too");
        c.suppress(0.5, false, 1, &mut out);
        assert_eq!(out.len(), 1, "max");
    }

    #[test]
    fn equal_scores_keep_push_order() {
        let mut c = Candidates::with_capacity(64);
        for i in 0..40 {
            let x = i as f32 / 40.0;
            c.push(det(i, 0.5, [x, 0.0, x + 0.02, 0.02]));
        }
        let mut out: heapless::Vec<Detection, 8> = heapless::Vec::new();
        c.suppress(0.5, false, 8, &mut out);
        let classes: Vec<u32> = out.iter().map(|d| d.class).collect();
        assert_eq!(classes, (0..8).collect::<Vec<u32>>());
    }

    #[test]
    fn overflow_keeps_the_best() {
        let mut c = Candidates::with_capacity(8);
        for i in 0..100 {
            let x = (i % 10) as f32 / 10.0;
            let y = (i / 10) as f32 / 10.0;
            c.push(det(0, i as f32 / 100.0, [x, y, x + 0.05, y + 0.05]));
        }
        assert!(c.overflows() > 0);
        let mut out: heapless::Vec<Detection, 8> = heapless::Vec::new();
        c.suppress(0.5, false, 8, &mut out);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        let want: Vec<f32> = (92..100).rev().map(|i| i as f32 / 100.0).collect();
        assert_eq!(scores, want);
    }
}
