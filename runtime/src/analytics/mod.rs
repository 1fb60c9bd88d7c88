//! Camera analytics on top of detections: a multi-object tracker that gives each object a
//! stable id ([`track`]), and zones and lines ([`zones`]) that turn tracks into counts and
//! events ([`Analytics`]).
//!
//! Per frame, [`Analytics::update`] takes the detector's boxes and
//! 1. drops the classes the run does not watch (`classes`),
//! 2. runs the tracker, which writes a track id into each detection of a confirmed track,
//!    then drops the weak detections (below the detector's own threshold, handed over for
//!    the tracker's low-score stage) that no confirmed track follows,
//! 3. places each tracked object by its box's anchor point and compares with where it was:
//!    an object whose anchor enters or leaves a zone makes an `enter` / `leave` event; one
//!    whose anchor passes through a line makes a `cross` event with its direction,
//! 4. makes `leave` events for the zones of tracks the tracker removed (gone from view for
//!    longer than its `max_misses`),
//! 5. recounts, per zone and class, the tracks inside now (a briefly lost track still
//!    counts, until it is removed), and adds the crossings to the per line, direction and
//!    class totals.
//!
//! Zone and line filters by class apply to events and counts. Everything is sized when the
//! analytics are built (tracks, per-track zone and line state, counts, the event list): a
//! frame allocates nothing.

pub mod assign;
pub mod kalman;
pub mod track;
pub mod zones;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::pipeline::detect::{Detection, MAX_DETECTIONS};
use track::{Tracker, TrackerConfig, MAX_TRACKS};
use zones::{AnchorPoint, LineSpec, ZoneSpec, LINE_MARGIN};

/// Most zones a run watches (a track's zone membership is one 64-bit mask).
pub const MAX_ZONES: usize = 64;

/// Most lines a run watches.
pub const MAX_LINES: usize = 64;

/// Most events one frame reports; more are counted in [`Analytics::events_dropped`].
pub const MAX_EVENTS: usize = 256;

/// What the analytics of a run watch.
#[derive(Debug, Clone, Default)]
pub struct AnalyticsConfig {
    /// Tracker settings.
    pub tracker: TrackerConfig,
    /// Class labels kept (empty: all); other detections are dropped before tracking.
    pub classes: Vec<String>,
    /// Zones.
    pub zones: Vec<ZoneSpec>,
    /// Lines.
    pub lines: Vec<LineSpec>,
}

/// What is wrong with an analytics configuration, and where: `what` is `zone` or `line`
/// with its index, or `classes`; `field` the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}{}: {reason}", field.map(|f| format!(" {f}")).unwrap_or_default())]
pub struct AnalyticsError {
    /// `zone[i] 'name'`, `line[i] 'name'` or `classes`.
    pub what: String,
    /// Which list and index (`("zone", i)`), to find the setting's line in a config file.
    pub item: Option<(&'static str, usize)>,
    /// The key at fault within the item.
    pub field: Option<&'static str>,
    /// Why.
    pub reason: String,
}

/// Kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A track's anchor entered a zone.
    Enter,
    /// A track's anchor left a zone (or the track ended inside it).
    Leave,
    /// A track's anchor passed through a line.
    Cross,
}

impl EventKind {
    /// Every kind, in a fixed order (MQTT topics).
    pub const ALL: [EventKind; 3] = [EventKind::Enter, EventKind::Leave, EventKind::Cross];

    /// `enter`, `leave` or `cross`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Enter => "enter",
            EventKind::Leave => "leave",
            EventKind::Cross => "cross",
        }
    }
}

/// Direction of a line crossing (see [`zones`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Onto the right-hand side of `a`→`b`.
    In,
    /// Onto the left-hand side.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One event of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Index of the zone (enter, leave) or line (cross).
    pub region: usize,
    /// The track.
    pub track: u32,
    /// Its class.
    pub class: u32,
    /// For crossings.
    pub direction: Option<Direction>,
}

/// Per-line memory of one track: the side it was last seen on (beyond the margin) and where.
#[derive(Debug, Clone, Copy, Default)]
struct LineSide {
    /// -1 left, +1 right, 0 not yet known.
    side: i8,
    at: [f32; 2],
}

/// Zone and line memory of one track.
#[derive(Debug, Clone)]
struct Slot {
    /// Track id; 0: free.
    id: u32,
    class: u32,
    /// Zones the track is inside.
    zones: u64,
    /// Matched on the current frame.
    seen: bool,
    lines: Vec<LineSide>,
}

struct Region {
    name: String,
    /// Class mask (empty: every class).
    classes: Vec<bool>,
    anchor: AnchorPoint,
}

impl Region {
    fn watches(&self, class: u32) -> bool {
        self.classes.is_empty() || self.classes.get(class as usize).copied().unwrap_or(false)
    }
}

struct Zone {
    region: Region,
    polygon: Vec<[f32; 2]>,
}

struct Line {
    region: Region,
    a: [f32; 2],
    b: [f32; 2],
}

/// Tracking, zones and lines of one stream.
pub struct Analytics {
    tracker: Tracker,
    labels: Vec<String>,
    /// Class mask of the classes kept (empty: all).
    keep: Vec<bool>,
    zones: Vec<Zone>,
    lines: Vec<Line>,
    slots: Vec<Slot>,
    /// `[zone][class]`: tracks inside now.
    inside: Vec<u32>,
    /// `[line][direction][class]`: crossings since the start.
    crossed: Vec<u64>,
    classes: usize,
    events: heapless::Vec<Event, MAX_EVENTS>,
    events_dropped: u64,
    /// Counts changed on the last frame (an event happened, or a track ended).
    changed: bool,
    /// Detections below this score are reported only when a track follows them.
    report_from: f32,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("zones", &self.zones.len())
            .field("lines", &self.lines.len())
            .finish_non_exhaustive()
    }
}

fn class_mask(
    names: &[String],
    labels: &[String],
    what: &str,
    item: Option<(&'static str, usize)>,
) -> Result<Vec<bool>, AnalyticsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut mask = vec![false; labels.len()];
    for name in names {
        match labels.iter().position(|l| l == name) {
            Some(i) => mask[i] = true,
            None => {
                let known: Vec<&str> = labels
                    .iter()
                    .map(String::as_str)
                    .filter(|l| !l.starts_with("unused") && *l != "background")
                    .take(12)
                    .collect();
                let reason = if labels.is_empty() {
                    format!("class '{name}': the model's sidecar gives no labels to match")
                } else {
                    format!(
                        "class '{name}' is not one of the model's labels ({}{})",
                        known.join(", "),
                        if labels.len() > known.len() {
                            ", …"
                        } else {
                            ""
                        }
                    )
                };
                return Err(AnalyticsError {
                    what: what.into(),
                    item,
                    field: Some("classes"),
                    reason,
                });
            }
        }
    }
    Ok(mask)
}

impl Analytics {
    /// Analytics for a detector whose classes are named `labels` (index = class), scoring
    /// `classes` classes. Zone, line and class names are checked here.
    pub fn new(
        config: &AnalyticsConfig,
        labels: &[String],
        classes: usize,
    ) -> Result<Analytics, AnalyticsError> {
        let classes = classes.max(labels.len()).max(1);
        let err = |what: String, item, field, reason: String| AnalyticsError {
            what,
            item,
            field,
            reason,
        };
        if config.zones.len() > MAX_ZONES {
            return Err(err(
                "zone".into(),
                None,
                None,
                format!("{} zones: at most {MAX_ZONES}", config.zones.len()),
            ));
        }
        if config.lines.len() > MAX_LINES {
            return Err(err(
                "line".into(),
                None,
                None,
                format!("{} lines: at most {MAX_LINES}", config.lines.len()),
            ));
        }
        let keep = class_mask(&config.classes, labels, "classes", None)?;
        let mut zones: Vec<Zone> = Vec::new();
        for (i, z) in config.zones.iter().enumerate() {
            let what = format!("zone[{i}] '{}'", z.name);
            let item = Some(("zone", i));
            z.validate()
                .map_err(|(field, reason)| err(what.clone(), item, Some(field), reason))?;
            if zones.iter().any(|o| o.region.name == z.name) {
                return Err(err(
                    what,
                    item,
                    Some("name"),
                    format!("a zone named '{}' is already defined", z.name),
                ));
            }
            zones.push(Zone {
                region: Region {
                    name: z.name.clone(),
                    classes: class_mask(&z.classes, labels, &what, item)?,
                    anchor: z.anchor,
                },
                polygon: z.polygon.clone(),
            });
        }
        let mut lines: Vec<Line> = Vec::new();
        for (i, l) in config.lines.iter().enumerate() {
            let what = format!("line[{i}] '{}'", l.name);
            let item = Some(("line", i));
            l.validate()
                .map_err(|(field, reason)| err(what.clone(), item, Some(field), reason))?;
            if lines.iter().any(|o| o.region.name == l.name) {
                return Err(err(
                    what,
                    item,
                    Some("name"),
                    format!("a line named '{}' is already defined", l.name),
                ));
            }
            lines.push(Line {
                region: Region {
                    name: l.name.clone(),
                    classes: class_mask(&l.classes, labels, &what, item)?,
                    anchor: l.anchor,
                },
                a: l.a,
                b: l.b,
            });
        }
        let slot = Slot {
            id: 0,
            class: 0,
            zones: 0,
            seen: false,
            lines: vec![LineSide::default(); lines.len()],
        };
        Ok(Analytics {
            tracker: Tracker::new(config.tracker),
            labels: labels.to_vec(),
            keep,
            inside: vec![0; zones.len() * classes],
            crossed: vec![0; lines.len() * 2 * classes],
            zones,
            lines,
            slots: vec![slot; MAX_TRACKS],
            classes,
            events: heapless::Vec::new(),
            events_dropped: 0,
            changed: false,
            report_from: 0.0,
        })
    }

    /// Reports detections below `score` only when a confirmed track follows them (the
    /// detector then hands over weak boxes for the tracker's second stage, ByteTrack's
    /// point, without reporting the ones that match nothing).
    pub fn report_from(&mut self, score: f32) {
        self.report_from = score;
    }

    /// The tracker.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Events of the last frame.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Events that did not fit a frame's list since the start.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Whether the last frame changed a count.
    pub fn counts_changed(&self) -> bool {
        self.changed
    }

    /// Whether the run watches any zone or line.
    pub fn has_regions(&self) -> bool {
        !self.zones.is_empty() || !self.lines.is_empty()
    }

    /// Name of zone `i` (events of kind enter/leave).
    pub fn zone_name(&self, i: usize) -> &str {
        &self.zones[i].region.name
    }

    /// Name of line `i` (cross events).
    pub fn line_name(&self, i: usize) -> &str {
        &self.lines[i].region.name
    }

    /// Classes per row of [`Analytics::zone_counts`] and [`Analytics::line_counts`].
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Zones watched.
    pub fn zones(&self) -> usize {
        self.zones.len()
    }

    /// Lines watched.
    pub fn lines(&self) -> usize {
        self.lines.len()
    }

    /// Objects inside each zone now, by class: `[zone · classes + class]`.
    pub fn zone_counts(&self) -> &[u32] {
        &self.inside
    }

    /// Crossings of each line since the start, by direction (0 `in`, 1 `out`) and class:
    /// `[(line · 2 + direction) · classes + class]`.
    pub fn line_counts(&self) -> &[u64] {
        &self.crossed
    }

    /// Label of `class`, if the model names it.
    pub fn label(&self, class: u32) -> Option<&str> {
        self.labels.get(class as usize).map(String::as_str)
    }

    /// Zone polygons, for drawing.
    pub fn zone_polygons(&self) -> impl Iterator<Item = &[[f32; 2]]> {
        self.zones.iter().map(|z| z.polygon.as_slice())
    }

    /// Lines `(a, b)`, for drawing.
    pub fn line_ends(&self) -> impl Iterator<Item = ([f32; 2], [f32; 2])> + '_ {
        self.lines.iter().map(|l| (l.a, l.b))
    }

    /// Tracks inside zone `zone` now, of `class`.
    pub fn inside(&self, zone: usize, class: u32) -> u32 {
        self.inside
            .get(zone * self.classes + class as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Crossings of line `line` in `direction` by `class` so far.
    pub fn crossed(&self, line: usize, direction: Direction, class: u32) -> u64 {
        let d = usize::from(direction == Direction::Out);
        self.crossed
            .get((line * 2 + d) * self.classes + class as usize)
            .copied()
            .unwrap_or(0)
    }

    fn emit(&mut self, e: Event) {
        self.changed = true;
        if self.events.push(e).is_err() {
            self.events_dropped += 1;
        }
    }

    fn slot_of(&mut self, id: u32, class: u32) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.id == id) {
            return Some(i);
        }
        let i = self.slots.iter().position(|s| s.id == 0)?;
        let s = &mut self.slots[i];
        s.id = id;
        s.class = class;
        s.zones = 0;
        s.lines.iter_mut().for_each(|l| *l = LineSide::default());
        Some(i)
    }

    /// Runs one frame: filters classes, tracks (writing track ids into `detections`), and
    /// computes this frame's events and the counts.
    pub fn update(&mut self, detections: &mut heapless::Vec<Detection, MAX_DETECTIONS>) {
        self.events.clear();
        self.changed = false;
        if !self.keep.is_empty() {
            let keep = &self.keep;
            detections.retain(|d| keep.get(d.class as usize).copied().unwrap_or(false));
        }
        self.tracker.update(detections);
        let bar = self.report_from;
        detections.retain(|d| d.score >= bar || d.track.is_some());
        for s in &mut self.slots {
            s.seen = false;
        }
        for d in detections.iter() {
            let Some(id) = d.track else { continue };
            let Some(si) = self.slot_of(id, d.class) else {
                continue;
            };
            self.slots[si].seen = true;
            self.slots[si].class = d.class;
            for zi in 0..self.zones.len() {
                let z = &self.zones[zi];
                let was = self.slots[si].zones & (1 << zi) != 0;
                let now = z.region.watches(d.class)
                    && zones::inside(&z.polygon, z.region.anchor.of(&d.bbox));
                if was != now {
                    self.slots[si].zones ^= 1 << zi;
                    let kind = if now {
                        EventKind::Enter
                    } else {
                        EventKind::Leave
                    };
                    self.emit(Event {
                        kind,
                        region: zi,
                        track: id,
                        class: d.class,
                        direction: None,
                    });
                }
            }
            for li in 0..self.lines.len() {
                let l = &self.lines[li];
                if !l.region.watches(d.class) {
                    continue;
                }
                let p = l.region.anchor.of(&d.bbox);
                let dist = zones::side(l.a, l.b, p);
                if dist.abs() <= LINE_MARGIN || !dist.is_finite() {
                    continue;
                }
                let side: i8 = if dist > 0.0 { 1 } else { -1 };
                let last = self.slots[si].lines[li];
                let crossed = last.side != 0
                    && last.side != side
                    && zones::passes_through(l.a, l.b, last.at, p);
                self.slots[si].lines[li] = LineSide { side, at: p };
                if crossed {
                    let direction = if side > 0 {
                        Direction::In
                    } else {
                        Direction::Out
                    };
                    let d_index = usize::from(direction == Direction::Out);
                    if let Some(c) = self
                        .crossed
                        .get_mut((li * 2 + d_index) * self.classes + d.class as usize)
                    {
                        *c += 1;
                    }
                    self.emit(Event {
                        kind: EventKind::Cross,
                        region: li,
                        track: id,
                        class: d.class,
                        direction: Some(direction),
                    });
                }
            }
        }
        // Tracks the tracker ended: they leave their zones.
        for k in 0..self.tracker.removed().len() {
            let id = self.tracker.removed()[k];
            let Some(si) = self.slots.iter().position(|s| s.id == id) else {
                continue;
            };
            let (mask, class) = (self.slots[si].zones, self.slots[si].class);
            for zi in 0..self.zones.len() {
                if mask & (1 << zi) != 0 {
                    self.emit(Event {
                        kind: EventKind::Leave,
                        region: zi,
                        track: id,
                        class,
                        direction: None,
                    });
                }
            }
            self.slots[si].id = 0;
        }
        self.inside.iter_mut().for_each(|c| *c = 0);
        for s in self.slots.iter().filter(|s| s.id != 0) {
            for zi in 0..self.zones.len() {
                if s.zones & (1 << zi) != 0 {
                    if let Some(c) = self.inside.get_mut(zi * self.classes + s.class as usize) {
                        *c += 1;
                    }
                }
            }
        }
    }

    /// The counts, serializable as `{"zones": {NAME: {LABEL: n}}, "lines": {NAME: {"in":
    /// {LABEL: n}, "out": {…}}}}` (classes with a zero count left out) without allocating.
    pub fn counts(&self) -> Counts<'_> {
        Counts(self)
    }
}

/// See [`Analytics::counts`].
pub struct Counts<'a>(&'a Analytics);

/// A class key: its label, or its index as text.
struct ClassKey<'a>(&'a Analytics, usize);

impl Serialize for ClassKey<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.labels.get(self.1) {
            Some(l) => s.serialize_str(l),
            None => {
                let mut buf = heapless::String::<20>::new();
                let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{}", self.1));
                s.serialize_str(&buf)
            }
        }
    }
}

/// Non-zero counts of one row, by class.
struct Row<'a, T>(&'a Analytics, &'a [T]);

impl<T: Copy + Serialize + Default + PartialEq> Serialize for Row<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (c, v) in self.1.iter().enumerate() {
            if *v != T::default() {
                m.serialize_entry(&ClassKey(self.0, c), v)?;
            }
        }
        m.end()
    }
}

struct ZoneCounts<'a>(&'a Analytics);
struct LineCounts<'a>(&'a Analytics);
struct LineRow<'a>(&'a Analytics, usize);

impl Serialize for ZoneCounts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut m = s.serialize_map(Some(a.zones.len()))?;
        for (i, z) in a.zones.iter().enumerate() {
            let row = &a.inside[i * a.classes..(i + 1) * a.classes];
            m.serialize_entry(&z.region.name, &Row(a, row))?;
        }
        m.end()
    }
}

impl Serialize for LineRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (a, i) = (self.0, self.1);
        let mut m = s.serialize_map(Some(2))?;
        for d in 0..2 {
            let row = &a.crossed[(i * 2 + d) * a.classes..(i * 2 + d + 1) * a.classes];
            m.serialize_entry(["in", "out"][d], &Row(a, row))?;
        }
        m.end()
    }
}

impl Serialize for LineCounts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut m = s.serialize_map(Some(a.lines.len()))?;
        for (i, l) in a.lines.iter().enumerate() {
            m.serialize_entry(&l.region.name, &LineRow(a, i))?;
        }
        m.end()
    }
}

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("zones", &ZoneCounts(self.0))?;
        m.serialize_entry("lines", &LineCounts(self.0))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["background", "person", "car"].map(String::from).to_vec()
    }

    fn person(x: f32, score: f32) -> Detection {
        // A box 0.1 wide, 0.4 tall, feet at y = 0.8, centred on x.
        Detection {
            class: 1,
            score,
            bbox: [x - 0.05, 0.4, x + 0.05, 0.8],
            track: None,
        }
    }

    fn config() -> AnalyticsConfig {
        AnalyticsConfig {
            tracker: TrackerConfig {
                min_hits: 1,
                max_misses: 5,
                ..TrackerConfig::default()
            },
            classes: vec![],
            zones: vec![ZoneSpec {
                name: "left".into(),
                polygon: vec![[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]],
                classes: vec!["person".into()],
                anchor: AnchorPoint::Bottom,
            }],
            lines: vec![LineSpec {
                name: "middle".into(),
                a: [0.5, 0.0],
                b: [0.5, 1.0],
                classes: vec![],
                anchor: AnchorPoint::Bottom,
            }],
        }
    }

    fn frame(a: &mut Analytics, dets: &[Detection]) -> Vec<Event> {
        let mut v: heapless::Vec<Detection, MAX_DETECTIONS> = heapless::Vec::new();
        v.extend_from_slice(dets).unwrap();
        a.update(&mut v);
        a.events().to_vec()
    }

    #[test]
    fn a_walk_across_enters_leaves_and_crosses_once() {
        let mut a = Analytics::new(&config(), &labels(), 3).unwrap();
        let mut events = Vec::new();
        // Left to right in steps of 0.02, with a jitter of ±0.005 around the line.
        for i in 0..45 {
            let mut x = 0.1 + i as f32 * 0.02;
            if (0.49..0.51).contains(&x) {
                x += if i % 2 == 0 { 0.005 } else { -0.005 };
            }
            events.extend(frame(&mut a, &[person(x, 0.9)]));
        }
        let kinds: Vec<(EventKind, Option<Direction>)> =
            events.iter().map(|e| (e.kind, e.direction)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Enter, None),
                (EventKind::Leave, None),
                // Moving right across a line drawn downwards: onto its left-hand side.
                (EventKind::Cross, Some(Direction::Out)),
            ],
            "{events:?}"
        );
        assert!(events.iter().all(|e| e.track == events[0].track));
        assert_eq!(a.crossed(0, Direction::Out, 1), 1);
        assert_eq!(a.crossed(0, Direction::In, 1), 0);
        let json = serde_json::to_string(&a.counts()).unwrap();
        assert_eq!(
            json,
            r#"{"zones":{"left":{}},"lines":{"middle":{"in":{},"out":{"person":1}}}}"#
        );
    }

    #[test]
    fn a_track_that_ends_inside_a_zone_leaves_it() {
        let mut a = Analytics::new(&config(), &labels(), 3).unwrap();
        let e = frame(&mut a, &[person(0.2, 0.9)]);
        assert_eq!(e[0].kind, EventKind::Enter);
        assert_eq!(a.inside(0, 1), 1);
        // Unseen: still counted while lost, then removed after max_misses.
        let mut leave = None;
        for f in 0..10 {
            let e = frame(&mut a, &[]);
            if let Some(ev) = e.iter().find(|e| e.kind == EventKind::Leave) {
                leave = Some(f);
                assert_eq!(ev.region, 0);
            }
        }
        assert!(leave.is_some_and(|f| f >= 4), "{leave:?}");
        assert_eq!(a.inside(0, 1), 0);
    }

    #[test]
    fn class_filters_apply() {
        let mut c = config();
        c.classes = vec!["person".into()];
        let mut a = Analytics::new(&c, &labels(), 3).unwrap();
        let car = Detection {
            class: 2,
            ..person(0.2, 0.9)
        };
        let mut v: heapless::Vec<Detection, MAX_DETECTIONS> = heapless::Vec::new();
        v.push(car).unwrap();
        a.update(&mut v);
        assert!(v.is_empty(), "cars dropped before tracking");
        // A zone of cars ignores people.
        let mut c = config();
        c.zones[0].classes = vec!["car".into()];
        let mut a = Analytics::new(&c, &labels(), 3).unwrap();
        assert!(frame(&mut a, &[person(0.2, 0.9)]).is_empty());
    }

    #[test]
    fn bad_settings_name_the_item_and_key() {
        let mut c = config();
        c.zones[0].classes = vec!["persn".into()];
        let e = Analytics::new(&c, &labels(), 3).unwrap_err();
        assert_eq!((e.item, e.field), (Some(("zone", 0)), Some("classes")));
        assert!(
            e.to_string().contains("'persn'") && e.to_string().contains("person"),
            "{e}"
        );
        let mut c = config();
        c.zones.push(c.zones[0].clone());
        let e = Analytics::new(&c, &labels(), 3).unwrap_err();
        assert_eq!((e.item, e.field), (Some(("zone", 1)), Some("name")));
        let mut c = config();
        c.lines[0].b = c.lines[0].a;
        let e = Analytics::new(&c, &labels(), 3).unwrap_err();
        assert_eq!(e.item, Some(("line", 0)));
        let mut c = config();
        c.classes = vec!["dog".into()];
        assert!(Analytics::new(&c, &labels(), 3).is_err());
    }
}
