//! Multi-object tracking: gives each detected object a stable id across frames, by
//! ByteTrack's association (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating
//! Every Detection Box", ECCV 2022) on SORT's motion model (Bewley et al., "Simple Online and
//! Realtime Tracking", ICIP 2016): a constant-velocity Kalman filter per track
//! ([`super::kalman`]) and optimal IoU assignment ([`super::assign`]).
//!
//! # One frame ([`Tracker::update`])
//!
//! 1. Detections are split by score: *high* (`score ≥ high_score`), *low*
//!    (`low_score ≤ score < high_score`); the rest, and any detection with a non-finite score
//!    or a non-finite, empty or absurd box (a coordinate beyond ±[`MAX_COORD`]), take no part
//!    in tracking. Only the first [`MAX_DETECTIONS`] entries of the slice are considered.
//! 2. Every track's filter predicts one frame (a lost track's height velocity is zeroed
//!    first, as ByteTrack, so an unseen box keeps its size); the predicted boxes are computed
//!    once and used by every stage.
//! 3. Stage 1: high detections against confirmed tracks, tracked and lost, maximising total
//!    IoU of the predicted boxes, pairs below `match_iou` never matched. A matched lost track
//!    is tracked again, with its id.
//! 4. Stage 2: low detections against the confirmed tracks still unmatched that were tracked
//!    (not lost) — ByteTrack's "BYTE" step: an occluded or blurred object whose score drops
//!    keeps its track, while a low box alone is never trusted to revive or start one. Gate
//!    `low_match_iou`. Confirmed tracks still unmatched become (or stay) lost.
//! 5. Stage 3: tentative tracks against the high detections left, gate
//!    `unconfirmed_match_iou`.
//! 6. Removal: a tentative track that missed this frame, and a lost track that has missed
//!    more than `max_misses` consecutive frames. A lost track thus survives a gap of exactly
//!    `max_misses` frames and can be matched on the next one (ByteTrack's
//!    `frame_id − end_frame > max_time_lost`).
//! 7. High detections still unmatched with `score ≥ new_track_score` start tentative tracks
//!    (after the removals, so removed tracks free their places).
//!
//! With `class_aware`, a detection only matches tracks of its class; otherwise a track takes
//! the class of its latest detection.
//!
//! # Confirmation and ids
//!
//! A track is *tentative* until it has been matched on `min_hits` consecutive frames
//! (counting the frame that starts it); then it is *confirmed* and gets an id, and the
//! detection of that frame already carries it. There is no first-frame exception (ByteTrack
//! confirms every track born on frame 1): after a restart, a false positive on the first
//! frame needs `min_hits` frames like any other. `min_hits ≤ 1` confirms tracks at birth.
//!
//! Ids are `u32` from 1, increasing, issued only at confirmation, so the ids a caller sees are
//! dense. They are never reused within a [`Tracker`] (the counter would wrap to 1 after
//! `u32::MAX` ids: over a year at 100 new objects per second). [`Tracker::update`] writes
//! `track = Some(id)` on each detection matched to a confirmed track and `None` on every other.
//!
//! # Boxes and units
//!
//! Boxes are `[x0, y0, x1, y1]` relative to the image. IoU is invariant to scaling either axis,
//! and the filter's gains do not depend on units (see [`super::kalman`]), so the frame's
//! aspect ratio does not affect tracking.
//!
//! # Capacity and memory
//!
//! At most [`MAX_TRACKS`] tracks are alive (tentative, tracked and lost); when full, a
//! detection that would start a track does not, and [`Tracker::saturated`] counts it.
//! [`Tracker::new`] allocates everything: the track table at capacity [`MAX_TRACKS`] (never
//! grown: a track is only added below that length), the assigner's matrices for
//! `MAX_TRACKS × MAX_DETECTIONS`; the per-frame index lists are fixed-capacity `heapless`
//! vectors on the stack. `update` does not allocate (a test checks that no buffer moves or
//! grows under full load).
//!
//! Not done: ByteTrack's removal of duplicate tracked/lost pairs (IoU > 0.85) and its fusion of
//! the detection score into the stage-1 cost (`1 − IoU·score`); stage 1 maximises plain IoU.

use heapless::Vec as FixedVec;

use super::assign::{iou, Assigner};
use super::kalman::{self, Cov, Mean};
use crate::pipeline::detect::{Detection, MAX_DETECTIONS};

/// Most tracks alive at once (tentative, tracked and lost).
pub const MAX_TRACKS: usize = 256;

/// Largest absolute box coordinate accepted (relative units: far outside the image). Larger
/// values come from a broken model output and are treated as no detection.
pub const MAX_COORD: f32 = 16.0;

/// Smallest box side accepted (relative units: far below a pixel).
pub const MIN_SIDE: f32 = 1e-5;

/// Tracker settings. The defaults are ByteTrack's, translated to IoU thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score are *high* (stage 1 and 3, may start tracks).
    pub high_score: f32,
    /// Detections below this score are ignored; between this and `high_score` they are *low*
    /// (stage 2 only).
    pub low_score: f32,
    /// An unmatched high detection starts a track only at or above this score.
    pub new_track_score: f32,
    /// Stage-1 gate: least IoU between a confirmed track's predicted box and a high detection
    /// (ByteTrack's `match_thresh` 0.8 on `1 − IoU`).
    pub match_iou: f32,
    /// Stage-2 gate, for low detections (ByteTrack's 0.5).
    pub low_match_iou: f32,
    /// Stage-3 gate, tentative tracks against high detections (ByteTrack's 0.7 on `1 − IoU`).
    pub unconfirmed_match_iou: f32,
    /// Consecutive matched frames, birth included, that confirm a track (gives it an id).
    pub min_hits: u32,
    /// A lost track is removed when it misses more than this many consecutive frames.
    pub max_misses: u32,
    /// A detection only matches tracks of its own class.
    pub class_aware: bool,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            high_score: 0.5,
            low_score: 0.1,
            new_track_score: 0.6,
            match_iou: 0.2,
            low_match_iou: 0.5,
            unconfirmed_match_iou: 0.3,
            min_hits: 3,
            max_misses: 30,
            class_aware: true,
        }
    }
}

/// A track's life stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackState {
    /// Not yet confirmed: no id; removed on its first miss.
    Tentative,
    /// Confirmed and matched on the last frame.
    Tracked,
    /// Confirmed but unmatched on the last frame(s); removed after `max_misses`.
    Lost,
}

/// A read-only view of one track, as of the last [`Tracker::update`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackView {
    /// Its id once confirmed; `None` while tentative.
    pub id: Option<u32>,
    /// Its class (of its latest detection).
    pub class: u32,
    /// The filtered box `[x0, y0, x1, y1]` (relative): after the last frame's update if
    /// matched, else the prediction.
    pub bbox: [f32; 4],
    /// Its life stage.
    pub state: TrackState,
    /// Frames matched since birth.
    pub hits: u32,
    /// Consecutive frames unmatched (0 if matched on the last frame).
    pub misses: u32,
    /// Frames since birth (1 on its first frame).
    pub age: u32,
    /// Score of its latest matched detection.
    pub score: f32,
}

/// One track's filter and bookkeeping.
#[derive(Debug, Clone)]
struct Track {
    id: Option<u32>,
    class: u32,
    mean: Mean,
    cov: Cov,
    /// The predicted box of the current frame (set by the predict step).
    pred: [f32; 4],
    state: TrackState,
    hits: u32,
    misses: u32,
    age: u32,
    score: f32,
    /// Matched on the current frame.
    matched: bool,
}

impl Track {
    fn view(&self) -> TrackView {
        TrackView {
            id: self.id,
            class: self.class,
            bbox: kalman::xyah_to_xyxy(&self.mean),
            state: self.state,
            hits: self.hits,
            misses: self.misses,
            age: self.age,
            score: self.score,
        }
    }

    /// Applies a matched detection: filter update (re-initiated if the update is refused),
    /// counters, class and score.
    fn hit(&mut self, d: &Detection) {
        let z = kalman::xyxy_to_xyah(d.bbox);
        if !kalman::update(&mut self.mean, &mut self.cov, z) {
            (self.mean, self.cov) = kalman::initiate(z);
        }
        self.hits = self.hits.saturating_add(1);
        self.misses = 0;
        self.class = d.class;
        self.score = d.score;
        self.matched = true;
    }
}

/// Whether a detection can take part in tracking: finite score, finite non-empty box within
/// ±[`MAX_COORD`].
fn usable(d: &Detection) -> bool {
    let b = &d.bbox;
    d.score.is_finite()
        && b.iter().all(|c| c.is_finite() && c.abs() <= MAX_COORD)
        && b[2] - b[0] >= MIN_SIDE
        && b[3] - b[1] >= MIN_SIDE
}

/// Issues the next id: 1, 2, …, wrapping past `u32::MAX` to 1.
fn issue(next: &mut u32, confirmed: &mut u64) -> u32 {
    *confirmed += 1;
    let id = *next;
    *next = if id == u32::MAX { 1 } else { id + 1 };
    id
}

type TrackIdx = FixedVec<u16, MAX_TRACKS>;
type DetIdx = FixedVec<u16, MAX_DETECTIONS>;

/// A ByteTrack-style multi-object tracker (see the module docs).
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    /// Alive tracks, in birth order; length ≤ `MAX_TRACKS` = its capacity.
    tracks: Vec<Track>,
    assigner: Assigner,
    removed: FixedVec<u32, MAX_TRACKS>,
    next_id: u32,
    confirmed: u64,
    saturated: u64,
}

impl Tracker {
    /// A tracker with no tracks; allocates all its memory.
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker {
            config,
            tracks: Vec::with_capacity(MAX_TRACKS),
            assigner: Assigner::new(MAX_TRACKS, MAX_DETECTIONS),
            removed: FixedVec::new(),
            next_id: 1,
            confirmed: 0,
            saturated: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Runs one frame (see the module docs): sets each detection's `track` to the id of the
    /// confirmed track it matches, or `None`.
    pub fn update(&mut self, detections: &mut [Detection]) {
        let cfg = self.config;
        self.removed.clear();

        // 1. Split the detections.
        let mut high = DetIdx::new();
        let mut low = DetIdx::new();
        for (k, d) in detections.iter_mut().enumerate() {
            d.track = None;
            if k >= MAX_DETECTIONS || !usable(d) || d.score < cfg.low_score {
                continue;
            }
            // k < MAX_DETECTIONS = the lists' capacity: the pushes cannot fail.
            let list = if d.score >= cfg.high_score {
                &mut high
            } else {
                &mut low
            };
            let _ = list.push(k as u16);
        }
        let mut taken = [false; MAX_DETECTIONS];

        // 2. Predict.
        for t in self.tracks.iter_mut() {
            if t.state == TrackState::Lost {
                t.mean[7] = 0.0;
            }
            kalman::predict(&mut t.mean, &mut t.cov);
            t.pred = kalman::xyah_to_xyxy(&t.mean);
            t.age = t.age.saturating_add(1);
            t.matched = false;
        }

        // The IoU of a track's prediction with a detection; 0 across classes if class-aware.
        let weight = |t: &Track, d: &Detection| -> f32 {
            if cfg.class_aware && t.class != d.class {
                0.0
            } else {
                iou(&t.pred, &d.bbox)
            }
        };

        // 3. Stage 1: high detections, confirmed tracks (tracked and lost).
        let mut pool = TrackIdx::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if t.state != TrackState::Tentative {
                let _ = pool.push(i as u16);
            }
        }
        {
            let tracks = &self.tracks;
            let dets = &*detections;
            self.assigner
                .solve(pool.len(), high.len(), cfg.match_iou, |i, j| {
                    weight(&tracks[pool[i] as usize], &dets[high[j] as usize])
                });
        }
        for (i, j) in self.assigner.pairs() {
            let (t, dk) = (&mut self.tracks[pool[i] as usize], high[j] as usize);
            let d = &mut detections[dk];
            t.hit(d);
            t.state = TrackState::Tracked;
            d.track = t.id;
            taken[dk] = true;
        }

        // 4. Stage 2: low detections, confirmed tracks unmatched that were tracked.
        let mut rest = TrackIdx::new();
        for &i in &pool {
            let t = &self.tracks[i as usize];
            if !t.matched && t.state == TrackState::Tracked {
                let _ = rest.push(i);
            }
        }
        {
            let tracks = &self.tracks;
            let dets = &*detections;
            self.assigner
                .solve(rest.len(), low.len(), cfg.low_match_iou, |i, j| {
                    weight(&tracks[rest[i] as usize], &dets[low[j] as usize])
                });
        }
        for (i, j) in self.assigner.pairs() {
            let (t, dk) = (&mut self.tracks[rest[i] as usize], low[j] as usize);
            let d = &mut detections[dk];
            t.hit(d);
            d.track = t.id;
            taken[dk] = true;
        }
        for &i in &pool {
            let t = &mut self.tracks[i as usize];
            if !t.matched {
                t.state = TrackState::Lost;
                t.misses = t.misses.saturating_add(1);
            }
        }

        // 5. Stage 3: tentative tracks, the high detections left.
        let mut tentative = TrackIdx::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if t.state == TrackState::Tentative {
                let _ = tentative.push(i as u16);
            }
        }
        let mut left = DetIdx::new();
        for &k in &high {
            if !taken[k as usize] {
                let _ = left.push(k);
            }
        }
        {
            let tracks = &self.tracks;
            let dets = &*detections;
            self.assigner.solve(
                tentative.len(),
                left.len(),
                cfg.unconfirmed_match_iou,
                |i, j| weight(&tracks[tentative[i] as usize], &dets[left[j] as usize]),
            );
        }
        for (i, j) in self.assigner.pairs() {
            let (t, dk) = (&mut self.tracks[tentative[i] as usize], left[j] as usize);
            let d = &mut detections[dk];
            t.hit(d);
            if t.hits >= cfg.min_hits {
                t.id = Some(issue(&mut self.next_id, &mut self.confirmed));
                t.state = TrackState::Tracked;
                d.track = t.id;
            }
            taken[dk] = true;
        }

        // 6. Removal: tentative tracks that missed, lost tracks past max_misses.
        let removed = &mut self.removed;
        self.tracks.retain(|t| {
            let dead = match t.state {
                TrackState::Tentative => !t.matched,
                TrackState::Lost => t.misses > cfg.max_misses,
                TrackState::Tracked => false,
            };
            if dead {
                if let Some(id) = t.id {
                    // At most MAX_TRACKS tracks exist: the push cannot fail.
                    let _ = removed.push(id);
                }
            }
            !dead
        });

        // 7. New tracks from the high detections still unmatched.
        for &k in &left {
            let k = k as usize;
            let d = &mut detections[k];
            if taken[k] || d.score < cfg.new_track_score {
                continue;
            }
            if self.tracks.len() >= MAX_TRACKS {
                self.saturated += 1;
                continue;
            }
            let (mean, cov) = kalman::initiate(kalman::xyxy_to_xyah(d.bbox));
            let confirmed = cfg.min_hits <= 1;
            let id = confirmed.then(|| issue(&mut self.next_id, &mut self.confirmed));
            d.track = id;
            debug_assert!(self.tracks.len() < self.tracks.capacity());
            self.tracks.push(Track {
                id,
                class: d.class,
                mean,
                cov,
                pred: d.bbox,
                state: if confirmed {
                    TrackState::Tracked
                } else {
                    TrackState::Tentative
                },
                hits: 1,
                misses: 0,
                age: 1,
                score: d.score,
                matched: true,
            });
        }
    }

    /// The alive tracks (tentative, tracked and lost), in birth order.
    pub fn tracks(&self) -> impl Iterator<Item = TrackView> + '_ {
        self.tracks.iter().map(Track::view)
    }

    /// Ids of the confirmed tracks removed by the last [`Tracker::update`] (lost for more than
    /// `max_misses` frames), in birth order.
    pub fn removed(&self) -> &[u32] {
        &self.removed
    }

    /// Detections that would have started a track but did not because [`MAX_TRACKS`] tracks
    /// were alive, since the tracker was made.
    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// Tracks confirmed (ids issued) since the tracker was made.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::{BTreeSet, HashMap};

    fn det(class: u32, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            class,
            score,
            bbox,
            track: None,
        }
    }

    /// A box of size `w × h` centred at `(cx, cy)`.
    fn centred(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }

    /// Runs a tracker on ground-truth-labelled detections and counts id switches (MOT: a
    /// ground-truth object whose track id differs from the id it had when last tracked).
    struct Sim {
        tracker: Tracker,
        rng: SmallRng,
        last: HashMap<usize, u32>,
        ids: HashMap<usize, BTreeSet<u32>>,
        switches: usize,
        frame: usize,
    }

    impl Sim {
        fn new(config: TrackerConfig) -> Sim {
            Sim {
                tracker: Tracker::new(config),
                rng: SmallRng::seed_from_u64(99),
                last: HashMap::new(),
                ids: HashMap::new(),
                switches: 0,
                frame: 0,
            }
        }

        /// One frame; detections in shuffled order. Returns each object's id this frame.
        fn step(&mut self, objects: &[(usize, Detection)]) -> HashMap<usize, Option<u32>> {
            let mut order: Vec<usize> = (0..objects.len()).collect();
            for k in (1..order.len()).rev() {
                order.swap(k, self.rng.random_range(0..=k));
            }
            let mut dets: Vec<Detection> = order.iter().map(|&k| objects[k].1).collect();
            self.tracker.update(&mut dets);
            let mut out = HashMap::new();
            for (&k, d) in order.iter().zip(&dets) {
                let gt = objects[k].0;
                if let Some(id) = d.track {
                    if let Some(&prev) = self.last.get(&gt) {
                        if prev != id {
                            self.switches += 1;
                        }
                    }
                    self.last.insert(gt, id);
                    self.ids.entry(gt).or_default().insert(id);
                }
                out.insert(gt, d.track);
            }
            self.frame += 1;
            out
        }

        fn ids_of(&self, gt: usize) -> Vec<u32> {
            self.ids
                .get(&gt)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        }

        fn view(&self, id: u32) -> Option<TrackView> {
            self.tracker.tracks().find(|t| t.id == Some(id))
        }
    }

    /// (a) Two objects cross with overlapping boxes: offset lanes (IoU up to 0.6 between
    /// them) and head-on on one line (closest 0.005 apart). No id switch; one id each; each
    /// object has an id on every frame once confirmed.
    #[test]
    fn crossing_objects_keep_their_ids() {
        for (ya, yb, xb0) in [(0.45f32, 0.5f32, 0.9f32), (0.5, 0.5, 0.905)] {
            let mut sim = Sim::new(TrackerConfig::default());
            let mut overlapping = 0;
            for t in 0..80 {
                let a = centred(0.1 + 0.01 * t as f32, ya, 0.1, 0.2);
                let b = centred(xb0 - 0.01 * t as f32, yb, 0.1, 0.2);
                if iou(&a, &b) > 0.0 {
                    overlapping += 1;
                }
                let ids = sim.step(&[(0, det(0, 0.9, a)), (1, det(0, 0.9, b))]);
                if t >= 2 {
                    assert!(ids[&0].is_some() && ids[&1].is_some(), "frame {t}: {ids:?}");
                }
            }
            assert!(overlapping >= 8, "{overlapping}");
            assert_eq!(sim.switches, 0);
            assert_eq!(sim.ids_of(0).len(), 1);
            assert_eq!(sim.ids_of(1).len(), 1);
            assert_ne!(sim.ids_of(0), sim.ids_of(1));
        }
    }

    /// (b) An object unseen for 10 frames, and for exactly `max_misses` frames, reappears on
    /// its path with the same id (lost meanwhile); unseen for `max_misses + 1` frames, its
    /// track is removed (reported by `removed()` on that frame) and it comes back with a new,
    /// larger id.
    #[test]
    fn occlusion_keeps_id_until_max_misses() {
        let cfg = TrackerConfig::default();
        let m = cfg.max_misses as usize;
        for (gap, same) in [(10, true), (m, true), (m + 1, false)] {
            let mut sim = Sim::new(cfg);
            let at = |t: usize| det(0, 0.9, centred(0.1 + 0.004 * t as f32, 0.5, 0.1, 0.2));
            let mut first = None;
            for t in 0..40 {
                first = sim.step(&[(0, at(t))])[&0];
            }
            let first = first.expect("confirmed");
            for t in 40..40 + gap {
                sim.step(&[]);
                let removed = sim.tracker.removed().to_vec();
                if t + 1 - 40 == m + 1 {
                    assert_eq!(removed, vec![first], "frame {t}");
                    assert!(sim.view(first).is_none());
                } else {
                    assert!(removed.is_empty(), "frame {t}");
                    let v = sim.view(first).expect("still alive");
                    assert_eq!((v.state, v.misses as usize), (TrackState::Lost, t + 1 - 40));
                }
            }
            let mut after = Vec::new();
            for t in 40 + gap..40 + gap + 10 {
                after.push(sim.step(&[(0, at(t))])[&0]);
            }
            if same {
                assert!(
                    after.iter().all(|&id| id == Some(first)),
                    "gap {gap}: {after:?}"
                );
                assert_eq!(sim.switches, 0);
                let v = sim.view(first).expect("alive");
                assert_eq!((v.state, v.misses), (TrackState::Tracked, 0));
            } else {
                // Tentative again for min_hits − 1 frames, then a new id.
                let k = cfg.min_hits as usize - 1;
                assert!(after[..k].iter().all(|id| id.is_none()), "{after:?}");
                let new = after[k].expect("confirmed again");
                assert!(new > first);
                assert!(after[k..].iter().all(|&id| id == Some(new)));
            }
        }
    }

    /// (c) Five objects with ±2 % jitter on every coordinate, moving and bouncing off the
    /// image edges, 200 frames: no id switch, and every object has its id from frame
    /// `min_hits − 1` on, on every frame.
    #[test]
    fn noisy_boxes_keep_their_ids() {
        let cfg = TrackerConfig::default();
        let mut sim = Sim::new(cfg);
        let mut rng = SmallRng::seed_from_u64(5);
        let (w, h) = (0.08f32, 0.12f32);
        let mut objs: Vec<(f32, f32, f32, f32)> = (0..5)
            .map(|k| {
                let vx = rng.random_range(0.003f32..0.012) * if k % 2 == 0 { 1.0 } else { -1.0 };
                let vy = rng.random_range(-0.001f32..0.001);
                (rng.random_range(0.1f32..0.9), 0.1 + 0.2 * k as f32, vx, vy)
            })
            .collect();
        for t in 0..200 {
            let mut frame = Vec::new();
            for (k, o) in objs.iter_mut().enumerate() {
                o.0 += o.2;
                o.1 += o.3;
                if !(0.05..=0.95).contains(&o.0) {
                    o.2 = -o.2;
                }
                let lane = 0.1 + 0.2 * k as f32;
                if (o.1 - lane).abs() > 0.02 {
                    o.3 = -o.3;
                }
                let b = centred(o.0, o.1, w, h);
                let mut j = |s: f32| s * rng.random_range(-0.02f32..=0.02);
                let b = [b[0] + j(w), b[1] + j(h), b[2] + j(w), b[3] + j(h)];
                frame.push((k, det(0, 0.8, b)));
            }
            let ids = sim.step(&frame);
            if t + 1 >= cfg.min_hits as usize {
                assert!(ids.values().all(|id| id.is_some()), "frame {t}: {ids:?}");
            }
        }
        assert_eq!(sim.switches, 0);
        for k in 0..5 {
            assert_eq!(sim.ids_of(k).len(), 1, "object {k}");
        }
    }

    /// (d) A tracked object whose score drops to 0.3 keeps its track and id through stage 2
    /// (tracked, no misses); a low detection of a lost track does not revive it; an object only
    /// ever detected at 0.3 never gets a track.
    #[test]
    fn low_scores_extend_tracks_but_never_start_them() {
        let mut sim = Sim::new(TrackerConfig::default());
        let a = |t: usize, s: f32| det(0, s, centred(0.2 + 0.003 * t as f32, 0.3, 0.1, 0.2));
        let b = |t: usize| det(0, 0.3, centred(0.7, 0.7 + 0.001 * t as f32, 0.1, 0.2));
        let mut id = None;
        for t in 0..10 {
            id = sim.step(&[(0, a(t, 0.9)), (1, b(t))])[&0];
        }
        let id = id.expect("confirmed");
        for t in 10..30 {
            let ids = sim.step(&[(0, a(t, 0.3)), (1, b(t))]);
            assert_eq!(ids[&0], Some(id), "frame {t}");
            let v = sim.view(id).expect("alive");
            assert_eq!((v.state, v.misses, v.score), (TrackState::Tracked, 0, 0.3));
        }
        for t in 30..40 {
            assert_eq!(sim.step(&[(0, a(t, 0.9)), (1, b(t))])[&0], Some(id));
        }
        // Three frames unseen: lost. Low detections do not bring it back.
        for _ in 40..43 {
            sim.step(&[(1, b(0))]);
        }
        for t in 43..50 {
            assert_eq!(sim.step(&[(0, a(t, 0.3)), (1, b(t))])[&0], None);
            assert_eq!(sim.view(id).expect("alive").state, TrackState::Lost);
        }
        // A high detection does.
        assert_eq!(sim.step(&[(0, a(50, 0.9))])[&0], Some(id));
        assert!(sim.ids_of(1).is_empty());
        assert_eq!(
            sim.tracker.tracks().count(),
            1,
            "no track for the low-only object"
        );
        assert_eq!(sim.switches, 0);
    }

    /// (e) Class-aware: a detection of another class on a track's box never takes its id (it
    /// starts its own track, confirmed after `min_hits` frames); class-agnostic, it does.
    #[test]
    fn class_aware_matching() {
        for class_aware in [true, false] {
            let cfg = TrackerConfig {
                class_aware,
                ..TrackerConfig::default()
            };
            let mut sim = Sim::new(cfg);
            let at = |t: usize, class: u32| {
                det(class, 0.9, centred(0.3 + 0.002 * t as f32, 0.5, 0.1, 0.2))
            };
            let mut id = None;
            for t in 0..10 {
                id = sim.step(&[(0, at(t, 0))])[&0];
            }
            let id = id.expect("confirmed");
            let mut other = Vec::new();
            for t in 10..20 {
                other.push(sim.step(&[(1, at(t, 1))])[&1]);
            }
            if class_aware {
                let k = cfg.min_hits as usize - 1;
                assert!(other[..k].iter().all(|o| o.is_none()), "{other:?}");
                let new = other[k].expect("own track");
                assert_ne!(new, id);
                assert!(other[k..].iter().all(|&o| o == Some(new)));
                assert_eq!(sim.view(id).expect("alive").state, TrackState::Lost);
            } else {
                assert!(other.iter().all(|&o| o == Some(id)), "{other:?}");
                assert_eq!(sim.view(id).expect("alive").class, 1);
            }
        }
    }

    /// (f) 100 objects on a 10 × 10 grid moving together for 100 frames, in shuffled order:
    /// all have ids from frame `min_hits − 1` on, 100 distinct ids, no switch.
    #[test]
    fn grid_of_100_objects() {
        let cfg = TrackerConfig::default();
        let mut sim = Sim::new(cfg);
        for t in 0..100 {
            let (dx, dy) = (0.0015 * t as f32, 0.001 * t as f32);
            let frame: Vec<(usize, Detection)> = (0..100)
                .map(|k| {
                    let (x, y) = (
                        0.035 + 0.08 * (k % 10) as f32,
                        0.035 + 0.08 * (k / 10) as f32,
                    );
                    (k, det(0, 0.9, centred(x + dx, y + dy, 0.05, 0.05)))
                })
                .collect();
            let ids = sim.step(&frame);
            if t + 1 >= cfg.min_hits as usize {
                assert!(ids.values().all(|id| id.is_some()), "frame {t}");
            }
        }
        assert_eq!(sim.switches, 0);
        let all: BTreeSet<u32> = (0..100).flat_map(|k| sim.ids_of(k)).collect();
        assert_eq!(all.len(), 100);
        assert_eq!(
            all.iter().copied().collect::<Vec<_>>(),
            (1..=100).collect::<Vec<_>>()
        );
    }

    /// Empty frames age every track: confirmed ones go lost, count misses, and are reported by
    /// `removed()` on the frame they exceed `max_misses`, once; tentative ones go at once.
    #[test]
    fn empty_frames_age_and_remove_tracks() {
        let cfg = TrackerConfig::default();
        let mut tr = Tracker::new(cfg);
        let boxes = [
            centred(0.2, 0.2, 0.1, 0.1),
            centred(0.5, 0.5, 0.1, 0.1),
            centred(0.8, 0.8, 0.1, 0.1),
        ];
        for _ in 0..5 {
            let mut d: Vec<Detection> = boxes.iter().map(|&b| det(0, 0.9, b)).collect();
            tr.update(&mut d);
        }
        // A tentative track too.
        tr.update(&mut [det(0, 0.9, centred(0.5, 0.9, 0.1, 0.1))]);
        assert_eq!(tr.tracks().count(), 4);
        let mut ids: Vec<u32> = tr.tracks().filter_map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        let mut reported = Vec::new();
        for frame in 1..=cfg.max_misses + 5 {
            tr.update(&mut []);
            reported.extend_from_slice(tr.removed());
            if frame == 1 {
                assert_eq!(tr.tracks().count(), 3, "the tentative track is gone");
            }
            for v in tr.tracks() {
                assert_eq!(v.state, TrackState::Lost);
                assert_eq!(v.misses, frame + 1, "misses");
            }
            if frame < cfg.max_misses {
                assert!(tr.removed().is_empty());
            } else if frame == cfg.max_misses {
                // These tracks already missed the tentative track's frame.
                assert_eq!(tr.removed(), &[1, 2, 3]);
                assert_eq!(tr.tracks().count(), 0);
            }
        }
        assert_eq!(reported, vec![1, 2, 3]);
    }

    /// Broken detections (NaN/inf scores or boxes, empty or absurd boxes) get no track and
    /// start none; entries past MAX_DETECTIONS are ignored; nothing panics.
    #[test]
    fn bad_detections_are_ignored() {
        let mut tr = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        let good = centred(0.5, 0.5, 0.1, 0.1);
        let bad = [
            det(0, f32::NAN, good),
            det(0, f32::INFINITY, good),
            det(0, 0.9, [f32::NAN, 0.1, 0.2, 0.2]),
            det(0, 0.9, [0.1, 0.1, f32::INFINITY, 0.2]),
            det(0, 0.9, [0.3, 0.3, 0.3, 0.5]),
            det(0, 0.9, [0.3, 0.3, 0.2, 0.5]),
            det(0, 0.9, [0.0, 0.0, 1e30, 1e30]),
        ];
        for _ in 0..5 {
            let mut d = bad.to_vec();
            d.iter_mut().for_each(|x| x.track = Some(7));
            tr.update(&mut d);
            assert!(d.iter().all(|x| x.track.is_none()));
        }
        assert_eq!(tr.tracks().count(), 0);
        // Good detections among bad ones still track.
        let mut d = bad.to_vec();
        d.push(det(0, 0.9, good));
        tr.update(&mut d);
        assert_eq!(d.last().and_then(|x| x.track), Some(1));
        // More than MAX_DETECTIONS: the extra ones are ignored.
        let mut many: Vec<Detection> = (0..MAX_DETECTIONS + 50)
            .map(|k| {
                det(
                    0,
                    0.9,
                    centred(
                        0.004 + 0.0075 * (k % 128) as f32,
                        0.05 + 0.1 * (k / 128) as f32,
                        0.004,
                        0.004,
                    ),
                )
            })
            .collect();
        tr.update(&mut many);
        assert!(many[MAX_DETECTIONS..].iter().all(|x| x.track.is_none()));
        assert!(many[..MAX_DETECTIONS].iter().all(|x| x.track.is_some()));
    }

    /// More than MAX_TRACKS objects: tracks stop at MAX_TRACKS, the rest are counted by
    /// `saturated()`; the table and every buffer keep their address and capacity (no
    /// allocation in `update`).
    #[test]
    fn saturation_and_fixed_buffers() {
        let mut tr = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        let buffers = |tr: &Tracker| (tr.tracks.as_ptr(), tr.tracks.capacity());
        let before = buffers(&tr);
        // Three frames of 128 distinct, non-overlapping objects each (tracks of earlier
        // frames go lost, not removed).
        for f in 0..3 {
            let mut d: Vec<Detection> = (0..MAX_DETECTIONS)
                .map(|k| {
                    let x = 0.02 + 0.06 * (k % 16) as f32 + 0.02 * f as f32;
                    let y = 0.02 + 0.12 * (k / 16) as f32;
                    det(0, 0.9, centred(x, y, 0.01, 0.01))
                })
                .collect();
            tr.update(&mut d);
        }
        assert_eq!(tr.tracks().count(), MAX_TRACKS);
        assert_eq!(tr.saturated(), (3 * MAX_DETECTIONS - MAX_TRACKS) as u64);
        assert_eq!(buffers(&tr), before);
        // Full load for a while: dense overlapping detections on a full table.
        let mut rng = SmallRng::seed_from_u64(8);
        for _ in 0..20 {
            let mut d: Vec<Detection> = (0..MAX_DETECTIONS)
                .map(|_| {
                    let (x, y) = (rng.random_range(0.1f32..0.9), rng.random_range(0.1f32..0.9));
                    det(0, rng.random_range(0.05f32..1.0), centred(x, y, 0.2, 0.2))
                })
                .collect();
            tr.update(&mut d);
            assert!(tr.tracks().count() <= MAX_TRACKS);
        }
        assert_eq!(buffers(&tr), before);
    }
}
