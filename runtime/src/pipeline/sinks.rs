//! Where results go. [`JsonLines`]: one JSON object per frame and a summary object at the
//! end, on any writer (stdout by default). The line is built in a buffer kept across frames,
//! so a steady stream allocates nothing. The same line is what [`super::mqtt`] publishes.

use std::io::{self, Write};

use serde::Serialize;

use super::detect::MAX_DETECTIONS;
use super::stats::{Stages, Summary};
use super::tasks::{Task, TaskResult, MAX_TOP_K};
use crate::analytics::{Analytics, Counts, Event, EventKind};

/// The per-frame facts a sink reports besides the task result.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Source sequence number.
    pub seq: u64,
    /// Capture time since the source opened, ms.
    pub t_capture_ms: f64,
    /// Capture to result, ms.
    pub latency_ms: f64,
    /// Where the time went.
    pub stages: Stages,
}

#[derive(Serialize)]
struct Class<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    score: f32,
}

#[derive(Serialize)]
struct Object<'a> {
    class: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<u32>,
}

#[derive(Serialize)]
struct Raw {
    min: f32,
    max: f32,
    mean: f32,
}

#[derive(Serialize)]
struct FrameLine<'a> {
    seq: u64,
    t_capture_ms: f64,
    latency_ms: f64,
    infer_ms: f64,
    stages: &'a Stages,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<heapless::Vec<Class<'a>, MAX_TOP_K>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<heapless::Vec<Object<'a>, MAX_DETECTIONS>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<Raw>,
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: &'a Summary,
    model: &'a str,
    source: &'a str,
}

#[derive(Serialize)]
struct EventLine<'a> {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    track: u32,
    class: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    seq: u64,
    t_ms: f64,
}

/// The periodic status line's body.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Status {
    /// Sequence number of the last frame.
    pub seq: u64,
    /// Its capture time since the source opened, ms.
    pub t_ms: f64,
    /// Frames processed so far.
    pub frames: u64,
    /// Frames per second since the last status line.
    pub fps: f64,
    /// Tracks alive (tentative, tracked or lost).
    pub tracks: usize,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    status: &'a Status,
    counts: Counts<'a>,
}

#[derive(Serialize)]
struct StatusLine<'a> {
    status: StatusBody<'a>,
}

/// JSON-lines output.
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// `{"camera":NAME,` opening every line of a process with several cameras; empty else.
    camera: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            buf: Vec::with_capacity(1024),
            camera: Vec::new(),
        }
    }

    /// Every line (and every message published from it) starts with `"camera": name`.
    pub fn with_camera(mut self, name: &str) -> Self {
        self.camera = b"{\"camera\":".to_vec();
        // A string always serializes.
        let _ = serde_json::to_writer(&mut self.camera, name);
        self.camera.push(b',');
        self
    }

    /// Writes one frame's line.
    pub fn frame(&mut self, info: &FrameInfo, task: &Task, result: &TaskResult) -> io::Result<()> {
        let mut line = FrameLine {
            seq: info.seq,
            t_capture_ms: info.t_capture_ms,
            latency_ms: info.latency_ms,
            infer_ms: info.stages.infer_ms,
            stages: &info.stages,
            top: None,
            objects: None,
            raw: None,
        };
        match result {
            TaskResult::Classes(classes) => {
                line.top = Some(
                    classes
                        .iter()
                        .map(|c| Class {
                            index: c.index,
                            label: task.label(c.index),
                            score: c.score,
                        })
                        .collect(),
                )
            }
            TaskResult::Detections(found) => {
                line.objects = Some(
                    found
                        .iter()
                        .map(|d| Object {
                            class: d.class,
                            label: task.label(d.class),
                            score: d.score,
                            bbox: d.bbox,
                            track: d.track,
                        })
                        .collect(),
                )
            }
            TaskResult::Raw { min, max, mean } => {
                line.raw = Some(Raw {
                    min: *min,
                    max: *max,
                    mean: *mean,
                })
            }
            TaskResult::None => {}
        }
        self.emit(&line)
    }

    /// Writes one event's line: `{"event": "enter"|"leave"|"cross", "zone"|"line": NAME,
    /// ["direction": "in"|"out",] "track", "class", "label", "seq", "t_ms"}`.
    pub fn event(
        &mut self,
        event: &Event,
        analytics: &Analytics,
        seq: u64,
        t_ms: f64,
    ) -> io::Result<()> {
        let (zone, line) = match event.kind {
            EventKind::Enter | EventKind::Leave => (Some(analytics.zone_name(event.region)), None),
            EventKind::Cross => (None, Some(analytics.line_name(event.region))),
        };
        self.emit(&EventLine {
            event: event.kind.name(),
            zone,
            line,
            direction: event.direction.map(|d| d.name()),
            track: event.track,
            class: event.class,
            label: analytics.label(event.class),
            seq,
            t_ms,
        })
    }

    /// Writes a status line: `{"status": {seq, t_ms, frames, fps, tracks, counts}}`.
    pub fn status(&mut self, status: &Status, analytics: &Analytics) -> io::Result<()> {
        self.emit(&StatusLine {
            status: StatusBody {
                status,
                counts: analytics.counts(),
            },
        })
    }

    /// Writes the current counts alone (the retained MQTT message), into the line buffer
    /// only: nothing is written to the output.
    pub fn render_counts(&mut self, analytics: &Analytics) -> io::Result<&[u8]> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &analytics.counts())?;
        Ok(&self.buf)
    }

    /// Writes the summary line.
    pub fn summary(&mut self, summary: &Summary, model: &str, source: &str) -> io::Result<()> {
        self.emit(&SummaryLine {
            summary,
            model,
            source,
        })
    }

    fn emit<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.buf.clear();
        if self.camera.is_empty() {
            serde_json::to_writer(&mut self.buf, value)?;
        } else {
            // `{"camera":NAME,` then the object without its `{` (every line is an object
            // with fields): shifted in place, no allocation.
            self.buf.extend_from_slice(&self.camera);
            let start = self.buf.len();
            serde_json::to_writer(&mut self.buf, value)?;
            debug_assert_eq!(self.buf[start], b'{');
            self.buf.copy_within(start + 1.., start);
            self.buf.pop();
        }
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }

    /// The last line written, without its newline.
    pub fn last_line(&self) -> &[u8] {
        self.buf.strip_suffix(b"\n").unwrap_or(&self.buf)
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tasks::ClassScore;

    #[test]
    fn a_camera_name_opens_every_line() {
        let mut sink = JsonLines::new(Vec::new()).with_camera("door \"1\"");
        let summary = crate::pipeline::stats::Stats::new().summary(0, Default::default());
        sink.summary(&summary, "m", "s").unwrap();
        let line: serde_json::Value = serde_json::from_slice(sink.last_line()).unwrap();
        assert_eq!(line["camera"], "door \"1\"");
        assert_eq!(line["model"], "m");
        assert!(sink
            .last_line()
            .starts_with(b"{\"camera\":\"door \\\"1\\\"\",\"summary\""));
    }

    #[test]
    fn frame_line_is_json_with_labels() {
        let task = Task::classify(vec!["cat".into()], 2);
        let mut top = heapless::Vec::new();
        top.push(ClassScore {
            index: 0,
            score: 0.75,
        })
        .unwrap();
        top.push(ClassScore {
            index: 4,
            score: 0.25,
        })
        .unwrap();
        let mut sink = JsonLines::new(Vec::new());
        let info = FrameInfo {
            seq: 3,
            t_capture_ms: 1.5,
            latency_ms: 2.0,
            stages: Stages {
                infer_ms: 1.0,
                ..Stages::default()
            },
        };
        sink.frame(&info, &task, &TaskResult::Classes(top)).unwrap();
        assert!(sink.last_line().starts_with(b"{\"seq\":3"));
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["top"][0]["label"], "cat");
        assert_eq!(v["top"][1]["index"], 4);
        assert!(v["top"][1].get("label").is_none());
        assert_eq!(v["infer_ms"], 1.0);
        assert_eq!(v["stages"]["infer_ms"], 1.0);
    }
}
