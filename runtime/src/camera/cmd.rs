//! `cmd:COMMAND`: raw frames from the standard output of `sh -c COMMAND` — how CSI cameras
//! come in (`rpicam-vid … -o -` on a Pi, `gst-launch-1.0 -q nvarguscamerasrc ! … ! fdsink` on
//! a Jetson).
//!
//! When the command exits or dies, it is respawned after a backoff (100 ms doubling up to
//! 5 s, reset by the first frame of the new process); that is the reconnect. A partial frame
//! left by a dying process is dropped. Frame numbers keep rising across respawns, and the
//! time without frames is counted as an outage. With `--exit-on-source-error` the first
//! exit ends the run instead. A process that ends without delivering a single whole frame
//! but did write bytes has the wrong `--size`/`--pixel-format`: that is reported, not retried.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::stream::{FrameReader, Step};
use super::{Backoff, CameraError, Frame, FrameSource, Interrupt, SourceCounters, SourceOptions};

/// The running process, as the interrupter sees it from another thread.
#[derive(Debug, Default)]
struct Running {
    /// Its process group (the `sh` it started leads it; 0: none running).
    group: AtomicU32,
    /// Set by the interrupter: no more respawns.
    stopped: AtomicBool,
}

impl Running {
    /// Sends `signal` to the running process group, if any.
    fn signal(&self, signal: libc::c_int) {
        let group = self.group.load(Ordering::Acquire);
        if group != 0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // touched. The group is ours until `reap` clears it before waiting.
            unsafe {
                libc::kill(-(group as libc::pid_t), signal);
            }
        }
    }
}

/// A command whose stdout carries frames.
pub struct CommandSource {
    uri: String,
    command: String,
    child: Option<(Child, ChildStdout)>,
    reader: FrameReader,
    seq: u64,
    frames_this_run: u64,
    backoff: Backoff,
    counters: SourceCounters,
    outage_since: Option<Instant>,
    exit_on_error: bool,
    running: Arc<Running>,
}

impl CommandSource {
    /// Starts `command` (the part of the URI after `cmd:`; surrounding quotes are removed).
    pub fn spawn(
        uri: &str,
        command: &str,
        options: &SourceOptions,
    ) -> Result<CommandSource, CameraError> {
        let command = command.trim();
        let command = command
            .strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .or_else(|| {
                command
                    .strip_prefix('\'')
                    .and_then(|c| c.strip_suffix('\''))
            })
            .unwrap_or(command);
        if command.trim().is_empty() {
            return Err(CameraError::BadUri {
                uri: uri.into(),
                reason: "cmd: needs a command, e.g. cmd:\"rpicam-vid -t 0 -n --codec yuv420 -o -\""
                    .into(),
            });
        }
        let mut source = CommandSource {
            uri: uri.into(),
            command: command.into(),
            child: None,
            reader: FrameReader::from_options(uri, options)?,
            seq: 0,
            frames_this_run: 0,
            backoff: Backoff::new(),
            counters: SourceCounters::default(),
            outage_since: None,
            exit_on_error: options.exit_on_error,
            running: Arc::default(),
        };
        source.start()?;
        Ok(source)
    }

    fn start(&mut self) -> Result<(), CameraError> {
        // Its own process group: every process of a pipeline (`a | b`) is stopped with it.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| CameraError::Capture {
                uri: self.uri.clone(),
                reason: format!("cannot start `sh -c`: {e}"),
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        log::info!("source '{}': started process {}", self.uri, child.id());
        self.running.group.store(child.id(), Ordering::Release);
        self.child = Some((child, stdout));
        self.reader.reset();
        self.frames_this_run = 0;
        Ok(())
    }

    /// Reaps the process; returns how it ended, for the log.
    fn reap(&mut self) -> String {
        match self.child.take() {
            Some((mut child, stdout)) => {
                drop(stdout);
                self.running.signal(libc::SIGKILL);
                self.running.group.store(0, Ordering::Release);
                let _ = child.kill();
                match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown status ({e})"),
                }
            }
            None => "not running".into(),
        }
    }
}

impl FrameSource for CommandSource {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        loop {
            if self.child.is_none() {
                if let Err(e) = self.start() {
                    log::warn!("{e}");
                    std::thread::sleep(self.backoff.next_delay());
                    continue;
                }
            }
            let (_, stdout) = self.child.as_mut().expect("running");
            let step = self.reader.read_frame(stdout);
            let why = match step {
                Ok(Step::Frame) => {
                    if let Some(t) = self.outage_since.take() {
                        self.counters.outage_s += t.elapsed().as_secs_f64();
                    }
                    self.backoff.reset();
                    self.frames_this_run += 1;
                    self.seq += 1;
                    return Ok(Some(self.reader.frame(self.seq - 1)));
                }
                Ok(Step::Partial(n)) if self.frames_this_run == 0 => {
                    self.reap();
                    return Err(self.reader.size_error(&self.uri, n));
                }
                Ok(Step::Partial(n)) => format!(", dropped a partial frame of {n} bytes"),
                Ok(Step::End) => String::new(),
                Err(e) => format!(", read error: {e}"),
            };
            let status = self.reap();
            if self.running.stopped.load(Ordering::Acquire) {
                return Ok(None);
            }
            if self.exit_on_error {
                return Err(CameraError::Capture {
                    uri: self.uri.clone(),
                    reason: format!("command ended ({status}){why}"),
                });
            }
            self.outage_since.get_or_insert_with(Instant::now);
            self.counters.reconnects += 1;
            let delay = self.backoff.next_delay();
            log::warn!(
                "source '{}': command ended ({status}){why}; respawning in {} ms",
                self.uri,
                delay.as_millis()
            );
            std::thread::sleep(delay);
        }
    }

    fn interrupter(&self) -> Option<Interrupt> {
        let running = self.running.clone();
        Some(Box::new(move || {
            running.stopped.store(true, Ordering::Release);
            running.signal(libc::SIGTERM);
        }))
    }

    fn counters(&self) -> SourceCounters {
        let mut c = self.counters;
        if let Some(t) = self.outage_since {
            c.outage_s += t.elapsed().as_secs_f64();
        }
        c
    }
}

impl Drop for CommandSource {
    fn drop(&mut self) {
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::PixelFormat;

    fn opts(exit_on_error: bool) -> SourceOptions {
        SourceOptions {
            width: 2,
            height: 2,
            pixel_format: Some(PixelFormat::Rgb24),
            exit_on_error,
            ..SourceOptions::default()
        }
    }

    #[test]
    fn a_killed_command_is_respawned_and_seq_keeps_rising() {
        // Each run: two whole 12-byte frames and half a frame, then SIGKILL.
        let cmd = "head -c 30 /dev/zero; kill -9 $$";
        let mut s = CommandSource::spawn("cmd:x", cmd, &opts(false)).unwrap();
        for seq in 0..5 {
            let f = s.next_frame().unwrap().unwrap();
            assert_eq!((f.seq, f.data.len()), (seq, 12));
        }
        let c = s.counters();
        assert_eq!(c.reconnects, 2);
        assert!(c.outage_s > 0.0);
    }

    #[test]
    fn exit_on_source_error_stops_at_the_first_exit() {
        let mut s = CommandSource::spawn("cmd:x", "'head -c 12 /dev/zero'", &opts(true)).unwrap();
        assert!(s.next_frame().unwrap().is_some());
        let e = s.next_frame().err().unwrap();
        assert!(!e.is_bad_input(), "{e}");
    }

    #[test]
    fn wrong_size_from_the_first_run_is_reported() {
        let mut s = CommandSource::spawn("cmd:x", "head -c 5 /dev/zero", &opts(false)).unwrap();
        let e = s.next_frame().err().unwrap().to_string();
        assert!(
            e.contains("expected 12 bytes") && e.contains("received 5"),
            "{e}"
        );
        assert!(CommandSource::spawn("cmd:", " ", &opts(false)).is_err());
    }
}
