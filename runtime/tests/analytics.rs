//! Camera analytics end to end, with the shipped person detector
//! (`models/ssdlite-mobilenet-v2`): a clip made from a real photograph — a man walking across
//! the frame (`common::clip`) — through `kestrel run` with a zone and a line, its events
//! published to a real `mosquitto` broker. And the mistakes a user makes in zones, lines,
//! class names and sidecars, refused with exit code 2 and a message that names the file, the
//! line and the key.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::broker::{free_port, start_broker, subscribe_topics};
use common::{have, json_lines, kestrel, repo};
use serde_json::Value;

/// Frames of the clip: the sprite moves 13 pixels (2% of the width) per frame.
const FRAMES: usize = 30;

fn detector() -> PathBuf {
    repo().join("models/ssdlite-mobilenet-v2/ssdlite-mobilenet-v2.nnef.tgz")
}

fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("walk.y4m");
    common::clip::write_y4m(&path, FRAMES, 10);
    path
}

#[test]
fn a_person_walking_across_is_tracked_counted_and_published() {
    if !have("mosquitto", "mosquitto") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = clip(dir.path());
    let port = free_port();
    let _broker = start_broker(port);
    let rx = subscribe_topics(port, "kestrel/door/#");
    let out = kestrel()
        .args(["run", "--no-config", "--fps", "0", "--threads", "2"])
        .arg("--model")
        .arg(detector())
        .arg("--source")
        .arg(format!("file:{}", clip.display()))
        .args([
            "--line",
            "gate=0.5,0;0.5,1",
            "--zone",
            "right=0.6,0;1,0;1,1;0.6,1",
        ])
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}/kestrel/door")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&out.stdout);
    let frames: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("objects").is_some())
        .collect();
    assert_eq!(frames.len(), FRAMES);
    // The person is found in at least 90% of the frames…
    let people = |f: &Value| {
        f["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["label"] == "person")
            .count()
    };
    let found = frames.iter().filter(|f| people(f) > 0).count();
    assert!(
        found * 10 >= FRAMES * 9,
        "person in {found} of {FRAMES} frames"
    );
    assert!(frames.iter().all(|f| people(f) <= 1), "one person at most");
    // …and keeps one track id (confirmed after the tracker's min_hits frames).
    let ids: std::collections::BTreeSet<u64> = frames
        .iter()
        .flat_map(|f| f["objects"].as_array().unwrap().iter())
        .filter_map(|o| o["track"].as_u64())
        .collect();
    assert_eq!(ids.len(), 1, "track ids {ids:?}");
    let id = *ids.first().unwrap();
    let tracked = frames
        .iter()
        .filter(|f| {
            f["objects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["track"] == id)
        })
        .count();
    assert!(
        tracked + 3 >= found,
        "tracked in {tracked} of {found} frames"
    );
    // The line across the path is crossed exactly once, left to right: onto the left-hand
    // side of a line drawn downwards, i.e. `out`.
    let events: Vec<&Value> = lines.iter().filter(|l| l.get("event").is_some()).collect();
    let crossings: Vec<&&Value> = events.iter().filter(|e| e["event"] == "cross").collect();
    assert_eq!(crossings.len(), 1, "{events:?}");
    let cross = crossings[0];
    assert_eq!(cross["line"], "gate");
    assert_eq!(cross["direction"], "out");
    assert_eq!(
        (&cross["track"], &cross["label"]),
        (&Value::from(id), &Value::from("person"))
    );
    assert!(cross["seq"].as_u64().is_some() && cross["t_ms"].as_f64().is_some());
    // The zone on the right is entered once and not left (the clip ends there).
    let zone: Vec<&str> = events
        .iter()
        .filter(|e| e["zone"] == "right")
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(zone, ["enter"], "{events:?}");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        summary["counts"]["lines"]["gate"]["out"]["person"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["counts"]["zones"]["right"]["person"], 1,
        "{summary}"
    );
    assert_eq!(summary["tracks"], 1);
    assert_eq!(summary["mqtt_dropped"], 0);

    // The broker got the events on their topics, and holds the final counts (retained).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got: Vec<(String, bool, Value)> = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((topic, retain, payload)) => {
                got.push((topic, retain, serde_json::from_slice(&payload).unwrap()))
            }
            Err(_) if got.iter().any(|g| g.0 == "kestrel/door/events/cross") => break,
            Err(_) => {}
        }
    }
    let on = |t: &str| got.iter().filter(|g| g.0 == t).collect::<Vec<_>>();
    let crossed = on("kestrel/door/events/cross");
    assert_eq!(
        crossed.len(),
        1,
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    assert_eq!(&crossed[0].2, *cross, "the same event as on stdout");
    assert_eq!(on("kestrel/door/events/enter").len(), 1);
    assert_eq!(on("kestrel/door").len(), FRAMES, "every frame line");
    // A subscriber that connects now gets the current counts at once, retained.
    let late = subscribe_topics(port, "kestrel/door/counts");
    let (topic, retain, payload) = late.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((topic.as_str(), retain), ("kestrel/door/counts", true));
    let counts: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(counts, summary["counts"]);
}

fn refused(args: &[&str], config: Option<(&Path, &str)>) -> String {
    if let Some((path, text)) = config {
        std::fs::write(path, text).unwrap();
    }
    let out = kestrel().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn zones_lines_and_classes_that_cannot_be_counted_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kestrel.toml");
    let model = detector();
    let base = format!(
        "model = \"{}\"\nsource = \"synthetic\"\nframes = 1\n",
        model.display()
    );
    let conf_arg = conf.to_str().unwrap();
    for (text, line, key, needle) in [
        (
            "[[zone]]\nname = \"door\"\npolygon = [[0.1, 0.1], [0.5, 0.5]]\n",
            6,
            "zone[0].polygon",
            "at least 3",
        ),
        (
            "[[zone]]\nname = \"door\"\npolygon = [[0.1, 0.1], [0.5, 1.5], [0.9, 0.1]]\n",
            6,
            "zone[0].polygon",
            "0..1",
        ),
        (
            "[[line]]\nname = \"gate\"\na = [0.5, 0.5]\nb = [0.5, 0.5]\n",
            7,
            "line[0].b",
            "zero length",
        ),
        (
            "[[zone]]\nname = \"door\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n\
             [[zone]]\nname = \"door\"\npolygon = [[0, 0], [1, 0], [0, 1]]\n",
            8,
            "zone[1].name",
            "already defined",
        ),
        // Found only once the model's labels are known.
        (
            "[[zone]]\nname = \"door\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nclasses = [\"car\"]\n",
            5,
            "zone[0].classes",
            "'car' is not one of the model's labels",
        ),
    ] {
        let stderr = refused(
            &["run", "--config", conf_arg],
            Some((&conf, &format!("{base}{text}"))),
        );
        let want = format!("{}, line {line}, key `{key}`", conf.display());
        assert!(
            stderr.contains(&want) && stderr.contains(needle),
            "{text}\n{stderr}"
        );
    }
    // The same mistakes as flags.
    let m = model.to_str().unwrap();
    let stderr = refused(
        &[
            "run",
            "--no-config",
            "--model",
            m,
            "--zone",
            "door=0.1,0.1;0.5,0.5",
        ],
        None,
    );
    assert!(
        stderr.contains("--zone") && stderr.contains("at least 3"),
        "{stderr}"
    );
    let stderr = refused(
        &[
            "run",
            "--no-config",
            "--model",
            m,
            "--line",
            "gate=0.5,0.5;0.5,0.5",
        ],
        None,
    );
    assert!(stderr.contains("zero length"), "{stderr}");
    let stderr = refused(
        &[
            "run",
            "--no-config",
            "--model",
            m,
            "--classes",
            "person,dog",
        ],
        None,
    );
    assert!(stderr.contains("'dog'"), "{stderr}");
    // Zones need a detector.
    let stderr = refused(
        &[
            "run",
            "--no-config",
            "--frames",
            "1",
            "--line",
            "gate=0.5,0;0.5,1",
        ],
        None,
    );
    assert!(stderr.contains("detection model"), "{stderr}");
}

#[test]
fn a_sidecar_that_does_not_fit_the_model_names_the_key_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ssd.nnef.tgz");
    std::fs::copy(detector(), &model).unwrap();
    let sidecar = dir.path().join("ssd.kestrel.toml");
    let shipped = std::fs::read_to_string(
        repo().join("models/ssdlite-mobilenet-v2/ssdlite-mobilenet-v2.kestrel.toml"),
    )
    .unwrap();
    let m = model.to_str().unwrap();
    // Five layers of anchors instead of six.
    let five = shipped.replace("num_layers = 6", "num_layers = 5").replace(
        "strides = [16, 32, 64, 128, 256, 512]",
        "strides = [16, 32, 64, 128, 256]",
    );
    std::fs::write(&sidecar, five).unwrap();
    let stderr = refused(&["run", "--no-config", "--model", m, "--frames", "1"], None);
    assert!(
        stderr.contains("ssd.kestrel.toml")
            && stderr.contains("detect.anchors make 1911 anchors")
            && stderr.contains("`box_encodings` [1, 1917, 4]"),
        "{stderr}"
    );
    // Labels for 80 classes on a 2-class head.
    let coco = shipped.replace(
        "labels = [\"background\", \"person\"]",
        &format!("labels = [{}]", vec!["\"x\""; 80].join(", ")),
    );
    std::fs::write(&sidecar, coco).unwrap();
    let stderr = refused(&["run", "--no-config", "--model", m, "--frames", "1"], None);
    assert!(
        stderr.contains("labels: 80 names") && stderr.contains("2 classes"),
        "{stderr}"
    );
    // The wrong output for the scores.
    let swapped = shipped.replace("scores_output = 1 ", "scores_output = 2 ");
    std::fs::write(&sidecar, swapped).unwrap();
    let stderr = refused(&["run", "--no-config", "--model", m, "--frames", "1"], None);
    assert!(stderr.contains("detect.scores_output = 2"), "{stderr}");
}
