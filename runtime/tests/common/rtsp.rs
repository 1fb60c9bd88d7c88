//! A real RTSP server for the tests: `rtsp_server.py` (GStreamer's rtsp-server), stopped when
//! dropped.

use std::process::{Child, Command, Stdio};

/// Debian's python3 with GStreamer's RTSP server bindings and the H.264 encoder; missing on
/// CI is a failure.
pub fn have_rtsp_server() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); \
             from gi.repository import GstRtspServer, Gst; Gst.init(None); \
             assert Gst.ElementFactory.find('openh264enc')",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let package = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-bad";
        assert!(
            std::env::var_os("CI").is_none(),
            "the RTSP server bindings or openh264enc are missing on CI (.ci/run installs {package})"
        );
        eprintln!("RTSP server bindings not installed: test skipped (apt install {package})");
    }
    ok
}

/// A running `rtsp_server.py`.
pub struct RtspServer(Child);

impl RtspServer {
    /// Starts the server on `port` (with `user` = `Some("USER:PASSWORD")`, every mount asks
    /// for it) and waits until it listens.
    pub fn start(port: u16, user: Option<&str>) -> RtspServer {
        let script = super::repo().join("runtime/tests/common/rtsp_server.py");
        let mut server = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .args(user)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "the RTSP server did not start");
        RtspServer(server)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
