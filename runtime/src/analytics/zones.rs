//! Zones and lines: regions of the image that turn object positions into counts and events.
//!
//! Coordinates are relative to the image (`0..1`, x to the right, y down), so a zone drawn
//! once holds at every camera resolution. An object is placed by one point of its box, its
//! *anchor*: the bottom centre by default (where a person stands or a car touches the
//! ground, which is what a floor zone means seen from an angle), or the box centre.
//!
//! - A **zone** is a simple polygon (at least 3 points). A point is inside by the even-odd
//!   rule (a ray crossing count), so concave zones work.
//! - A **line** is a segment from `a` to `b`. An object *crosses* it when its anchor moves
//!   from one side to the other through the segment itself (not its extension). Seen on the
//!   image with the line drawn from `a` to `b`, **`in`** is a crossing onto its right-hand
//!   side and **`out`** onto its left: for a horizontal line drawn left to right, `in` is
//!   moving down; for a vertical line drawn top to bottom, `in` is moving right to left.
//!   Swap `a` and `b` to swap the directions. A side only counts once the anchor is more than
//!   a margin (`LINE_MARGIN`, relative) away from the line, so a box jittering on the line
//!   does not count again and again.

use serde::Deserialize;

/// Distance from a line (relative to the image) within which an anchor keeps its last side.
pub const LINE_MARGIN: f32 = 0.01;

/// The point of a box that places the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorPoint {
    /// Bottom centre: feet, wheels.
    #[default]
    Bottom,
    /// Centre of the box.
    Center,
}

impl AnchorPoint {
    /// The anchor of box `[x0, y0, x1, y1]`, kept a hair inside the image: a box cut by
    /// the frame's edge (a person's feet below the bottom row) is inside a zone drawn to that
    /// edge, not on its boundary.
    #[inline]
    pub fn of(self, b: &[f32; 4]) -> [f32; 2] {
        const IN: f32 = 1e-4;
        let x = (b[0] + b[2]) * 0.5;
        let y = match self {
            AnchorPoint::Bottom => b[3],
            AnchorPoint::Center => (b[1] + b[3]) * 0.5,
        };
        [x.clamp(IN, 1.0 - IN), y.clamp(IN, 1.0 - IN)]
    }

    /// Parses `bottom` or `center`.
    pub fn parse(s: &str) -> Option<AnchorPoint> {
        match s {
            "bottom" => Some(AnchorPoint::Bottom),
            "center" | "centre" => Some(AnchorPoint::Center),
            _ => None,
        }
    }
}

/// A zone as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    /// Unique among zones; used in events, counts and MQTT topics.
    pub name: String,
    /// Corners, relative, in order.
    pub polygon: Vec<[f32; 2]>,
    /// Class labels counted (empty: every class).
    pub classes: Vec<String>,
    /// Which point of a box places the object.
    pub anchor: AnchorPoint,
}

/// A counting line as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// Unique among lines.
    pub name: String,
    /// Start, relative.
    pub a: [f32; 2],
    /// End, relative.
    pub b: [f32; 2],
    /// Class labels counted (empty: every class).
    pub classes: Vec<String>,
    /// Which point of a box places the object.
    pub anchor: AnchorPoint,
}

/// Where a spec is wrong: the field (`name`, `polygon`, `a`, `b`, `classes`) and why.
pub type SpecError = (&'static str, String);

fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err((
            "name",
            format!(
                "'{name}': a name is 1 to 64 letters, digits, '_', '-' or '.' (it becomes part of MQTT topics)"
            ),
        ))
    }
}

fn check_point(field: &'static str, p: [f32; 2]) -> Result<(), SpecError> {
    if p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
        Ok(())
    } else {
        Err((
            field,
            format!(
                "[{}, {}] is outside the image: coordinates are relative, within 0..1",
                p[0], p[1]
            ),
        ))
    }
}

impl ZoneSpec {
    /// Checks the zone: a valid name, at least 3 points, all within `0..1`, a non-zero area.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name(&self.name)?;
        if self.polygon.len() < 3 {
            return Err((
                "polygon",
                format!("{} point(s): a zone needs at least 3", self.polygon.len()),
            ));
        }
        for &p in &self.polygon {
            check_point("polygon", p)?;
        }
        if area(&self.polygon).abs() < 1e-6 {
            return Err(("polygon", "the polygon has no area".into()));
        }
        Ok(())
    }
}

impl LineSpec {
    /// Checks the line: a valid name, both ends within `0..1`, a non-zero length.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name(&self.name)?;
        check_point("a", self.a)?;
        check_point("b", self.b)?;
        let (dx, dy) = (self.b[0] - self.a[0], self.b[1] - self.a[1]);
        if (dx * dx + dy * dy).sqrt() < 1e-4 {
            return Err(("b", "the line has zero length (a = b)".into()));
        }
        Ok(())
    }
}

/// Signed area of a polygon (shoelace).
fn area(poly: &[[f32; 2]]) -> f32 {
    let mut s = 0.0;
    for (i, p) in poly.iter().enumerate() {
        let q = poly[(i + 1) % poly.len()];
        s += p[0] * q[1] - q[0] * p[1];
    }
    s * 0.5
}

/// Whether `p` lies inside `poly` (even-odd rule).
pub fn inside(poly: &[[f32; 2]], p: [f32; 2]) -> bool {
    let mut inside = false;
    let n = poly.len();
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Signed distance of `p` from the line through `a`→`b`, relative units: positive on its
/// right-hand side as seen on the image (y down).
#[inline]
pub fn side(a: [f32; 2], b: [f32; 2], p: [f32; 2]) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = (dx * dx + dy * dy).sqrt();
    (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / len
}

/// Whether the segment `p`→`q` meets the segment `a`→`b`, given that `p` and `q` lie on
/// opposite sides of the line through `a` and `b`.
pub fn passes_through(a: [f32; 2], b: [f32; 2], p: [f32; 2], q: [f32; 2]) -> bool {
    // p and q straddle line ab; the crossing lies within ab when a and b straddle line pq
    // (or touch it).
    let (ex, ey) = (q[0] - p[0], q[1] - p[1]);
    let da = ex * (a[1] - p[1]) - ey * (a[0] - p[0]);
    let db = ex * (b[1] - p[1]) - ey * (b[0] - p[0]);
    da * db <= 0.0
}

/// Parses a point list `x,y;x,y;…` (flags).
fn parse_points(s: &str) -> Result<Vec<[f32; 2]>, String> {
    s.split(';')
        .map(|pt| {
            let (x, y) = pt
                .split_once(',')
                .ok_or_else(|| format!("'{pt}': expected x,y"))?;
            let num = |v: &str| {
                v.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("'{v}' is not a number"))
            };
            Ok([num(x)?, num(y)?])
        })
        .collect()
}

/// Splits `NAME=POINTS[@CLASS,CLASS]` (flags).
fn split_flag(s: &str) -> Result<(&str, &str, Vec<String>), String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or("expected NAME=x,y;x,y;…[@class,class]")?;
    let (points, classes) = match rest.split_once('@') {
        Some((p, c)) => (
            p,
            c.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
        ),
        None => (rest, Vec::new()),
    };
    Ok((name.trim(), points, classes))
}

/// Parses `--zone NAME=x,y;x,y;x,y[@class,class]`.
pub fn parse_zone_flag(s: &str) -> Result<ZoneSpec, String> {
    let (name, points, classes) = split_flag(s)?;
    let z = ZoneSpec {
        name: name.into(),
        polygon: parse_points(points)?,
        classes,
        anchor: AnchorPoint::Bottom,
    };
    z.validate().map_err(|(k, e)| format!("{k}: {e}"))?;
    Ok(z)
}

/// Parses `--line NAME=x,y;x,y[@class,class]`.
pub fn parse_line_flag(s: &str) -> Result<LineSpec, String> {
    let (name, points, classes) = split_flag(s)?;
    let p = parse_points(points)?;
    let [a, b] = p[..] else {
        return Err(format!("{} point(s): a line has 2 (a;b)", p.len()));
    };
    let l = LineSpec {
        name: name.into(),
        a,
        b,
        classes,
        anchor: AnchorPoint::Bottom,
    };
    l.validate().map_err(|(k, e)| format!("{k}: {e}"))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_in_concave_polygon() {
        // An L shape.
        let l = [
            [0.1, 0.1],
            [0.5, 0.1],
            [0.5, 0.5],
            [0.9, 0.5],
            [0.9, 0.9],
            [0.1, 0.9],
        ];
        assert!(inside(&l, [0.2, 0.2]));
        assert!(inside(&l, [0.8, 0.8]));
        assert!(!inside(&l, [0.8, 0.2]), "the notch");
        assert!(!inside(&l, [0.95, 0.95]));
    }

    #[test]
    fn boxes_at_the_frame_edge_are_inside_zones_drawn_to_it() {
        let right = [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]];
        let feet_cut = [0.7, 0.3, 0.9, 1.0];
        assert!(inside(&right, AnchorPoint::Bottom.of(&feet_cut)));
        let at_corner = [0.9, 0.0, 1.0, 1.0];
        assert!(inside(&right, AnchorPoint::Bottom.of(&at_corner)));
    }

    #[test]
    fn sides_and_crossings() {
        // Vertical line, top to bottom: right-hand side is the image's left.
        let (a, b) = ([0.5, 0.0], [0.5, 1.0]);
        assert!(side(a, b, [0.2, 0.5]) > 0.0);
        assert!(side(a, b, [0.8, 0.5]) < 0.0);
        assert!((side(a, b, [0.8, 0.5]) + 0.3).abs() < 1e-6, "distance");
        // Horizontal line, left to right: right-hand side is below.
        assert!(side([0.0, 0.5], [1.0, 0.5], [0.5, 0.9]) > 0.0);
        // Through the segment, or past its end.
        let (a, b) = ([0.5, 0.2], [0.5, 0.6]);
        assert!(passes_through(a, b, [0.4, 0.4], [0.6, 0.4]));
        assert!(!passes_through(a, b, [0.4, 0.8], [0.6, 0.8]));
    }

    #[test]
    fn specs_refuse_what_cannot_be_counted() {
        let z = |polygon: Vec<[f32; 2]>| ZoneSpec {
            name: "door".into(),
            polygon,
            classes: vec![],
            anchor: AnchorPoint::Bottom,
        };
        assert_eq!(
            z(vec![[0.0, 0.0], [1.0, 0.0]]).validate().unwrap_err().0,
            "polygon"
        );
        let e = z(vec![[0.0, 0.0], [1.5, 0.0], [0.0, 1.0]])
            .validate()
            .unwrap_err();
        assert!(e.1.contains("1.5") && e.1.contains("0..1"), "{e:?}");
        assert!(z(vec![[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
            .validate()
            .is_err());
        assert!(z(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
            .validate()
            .is_ok());
        let l = LineSpec {
            name: "gate".into(),
            a: [0.5, 0.5],
            b: [0.5, 0.5],
            classes: vec![],
            anchor: AnchorPoint::Bottom,
        };
        assert!(l.validate().unwrap_err().1.contains("zero length"));
        let bad_name = LineSpec {
            name: "a/b".into(),
            b: [0.6, 0.5],
            ..l
        };
        assert_eq!(bad_name.validate().unwrap_err().0, "name");
    }

    #[test]
    fn flags_parse() {
        let z = parse_zone_flag("door=0.1,0.1;0.5,0.1;0.5,0.9@person,car").unwrap();
        assert_eq!(z.name, "door");
        assert_eq!(z.polygon.len(), 3);
        assert_eq!(z.classes, ["person", "car"]);
        let l = parse_line_flag("gate=0.5,0;0.5,1").unwrap();
        assert_eq!((l.a, l.b), ([0.5, 0.0], [0.5, 1.0]));
        assert!(parse_line_flag("gate=0.5,0").is_err());
        assert!(parse_zone_flag("door=0.1,0.1;0.5,x;0.5,0.9").is_err());
        assert!(parse_zone_flag("0.1,0.1;0.5,0.1").is_err());
    }
}
