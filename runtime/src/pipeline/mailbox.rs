//! The hand-over between the capture thread and inference: a one-slot mailbox where the
//! latest frame wins. The capture thread never waits for inference (a camera that is not
//! read drops frames in the driver, and latency grows); a frame still in the slot when the
//! next one comes is dropped and counted.
//!
//! Sources that are not live (synthetic or file sources with `--fps 0`, see
//! [`FrameSource::lossless`]) hand over losslessly instead: the capture thread waits for the
//! slot to be free, so an offline clip is processed frame by frame.
//!
//! Three [`Slot`]s circulate (one being filled, one in the box, one being processed): posting
//! and taking swap buffers, never copy them, and once each has grown to the frame size no
//! frame allocates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::camera::{CameraError, Frame, FrameSource, PixelFormat, SourceCounters};

/// A frame owned by the pipeline, with the time it was ready.
#[derive(Debug)]
pub struct Slot {
    data: Vec<u8>,
    width: usize,
    height: usize,
    format: PixelFormat,
    seq: u64,
    captured: Instant,
    /// When its bytes were all in the slot (end of the capture stage).
    pub ready: Instant,
}

impl Default for Slot {
    fn default() -> Self {
        let now = Instant::now();
        Slot {
            data: Vec::new(),
            width: 0,
            height: 0,
            format: PixelFormat::Gray8,
            seq: 0,
            captured: now,
            ready: now,
        }
    }
}

impl Slot {
    /// Copies `frame` in (reusing the buffer).
    pub fn fill(&mut self, frame: &Frame<'_>) {
        self.data.clear();
        self.data.extend_from_slice(frame.data);
        self.width = frame.width;
        self.height = frame.height;
        self.format = frame.format;
        self.seq = frame.seq;
        self.captured = frame.captured;
        self.ready = Instant::now();
    }

    /// The frame held.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            data: &self.data,
            width: self.width,
            height: self.height,
            format: self.format,
            seq: self.seq,
            captured: self.captured,
        }
    }
}

/// How the source ended.
#[derive(Debug)]
pub enum End {
    /// The stream ended (end of a file or pipe) or capture was stopped.
    Finished,
    /// The source failed.
    Failed(CameraError),
}

/// What [`Mailbox::take`] got.
#[derive(Debug)]
pub enum Take {
    /// A new frame is in the caller's slot.
    Frame,
    /// Nothing came within the timeout.
    Timeout,
    /// The source ended and every frame has been taken.
    Closed(End),
}

#[derive(Debug, Default)]
struct Inner {
    slot: Slot,
    full: bool,
    dropped: u64,
    counters: SourceCounters,
    end: Option<End>,
}

/// The one-slot, latest-wins mailbox.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    cv: Condvar,
    taken: Condvar,
}

impl Mailbox {
    /// An empty mailbox.
    pub fn new() -> Mailbox {
        Mailbox::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `back` in the box (swapping: `back` gets the previous slot's buffer). A frame not
    /// yet taken is dropped and counted.
    pub fn post(&self, back: &mut Slot, counters: SourceCounters) {
        let mut inner = self.lock();
        if inner.full {
            inner.dropped += 1;
        }
        std::mem::swap(&mut inner.slot, back);
        inner.full = true;
        inner.counters = counters;
        drop(inner);
        self.cv.notify_one();
    }

    /// Waits until the slot is free, then posts; gives up (the frame is not posted) when
    /// `stop` is set.
    pub fn post_when_free(&self, back: &mut Slot, counters: SourceCounters, stop: &AtomicBool) {
        let mut inner = self.lock();
        while inner.full && !stop.load(Ordering::Relaxed) {
            inner = self
                .taken
                .wait_timeout(inner, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let stopped = inner.full;
        drop(inner);
        if !stopped {
            self.post(back, counters);
        }
    }

    /// Marks the end of the stream; frames already posted are still taken first.
    pub fn close(&self, end: End, counters: SourceCounters) {
        let mut inner = self.lock();
        inner.end.get_or_insert(end);
        inner.counters = counters;
        drop(inner);
        self.cv.notify_one();
    }

    /// Takes the newest frame into `front` (swapping buffers), waiting up to `timeout`.
    pub fn take(&self, front: &mut Slot, timeout: Duration) -> Take {
        let inner = self.lock();
        let (mut inner, _) = self
            .cv
            .wait_timeout_while(inner, timeout, |i| !i.full && i.end.is_none())
            .unwrap_or_else(|p| p.into_inner());
        if inner.full {
            std::mem::swap(&mut inner.slot, front);
            inner.full = false;
            drop(inner);
            self.taken.notify_one();
            Take::Frame
        } else if let Some(end) = inner.end.take() {
            // Leave a marker so later calls see the end too.
            inner.end = Some(End::Finished);
            Take::Closed(end)
        } else {
            Take::Timeout
        }
    }

    /// Frames dropped because a newer one arrived first.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The source's counters as of its last frame.
    pub fn counters(&self) -> SourceCounters {
        self.lock().counters
    }
}

/// Runs `source` on its own thread, posting every frame to `mailbox` until the source ends,
/// fails, or `stop` is set.
pub fn spawn_capture(
    mut source: Box<dyn FrameSource>,
    mailbox: Arc<Mailbox>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kestrel-capture".into())
        .spawn(move || {
            let mut back = Slot::default();
            let lossless = source.lossless();
            let end = loop {
                if stop.load(Ordering::Relaxed) {
                    break End::Finished;
                }
                match source.next_frame() {
                    Ok(Some(frame)) => back.fill(&frame),
                    Ok(None) => break End::Finished,
                    Err(e) => break End::Failed(e),
                }
                if lossless {
                    mailbox.post_when_free(&mut back, source.counters(), &stop);
                } else {
                    mailbox.post(&mut back, source.counters());
                }
            };
            mailbox.close(end, source.counters());
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, data: &[u8]) -> Frame<'_> {
        Frame {
            data,
            width: data.len(),
            height: 1,
            format: PixelFormat::Gray8,
            seq,
            captured: Instant::now(),
        }
    }

    #[test]
    fn latest_wins_and_drops_are_counted() {
        let m = Mailbox::new();
        let mut back = Slot::default();
        for seq in 0..3 {
            back.fill(&frame(seq, &[seq as u8; 4]));
            m.post(&mut back, SourceCounters::default());
        }
        let mut front = Slot::default();
        assert!(matches!(m.take(&mut front, Duration::ZERO), Take::Frame));
        assert_eq!(front.frame().seq, 2);
        assert_eq!(m.dropped(), 2);
        assert!(matches!(
            m.take(&mut front, Duration::from_millis(5)),
            Take::Timeout
        ));
        back.fill(&frame(3, &[3; 4]));
        m.post(&mut back, SourceCounters::default());
        m.close(End::Finished, SourceCounters::default());
        assert!(matches!(m.take(&mut front, Duration::ZERO), Take::Frame));
        assert!(matches!(
            m.take(&mut front, Duration::ZERO),
            Take::Closed(End::Finished)
        ));
        assert!(matches!(
            m.take(&mut front, Duration::ZERO),
            Take::Closed(_)
        ));
    }

    #[test]
    fn the_capture_thread_reports_the_end() {
        let opts = crate::camera::SourceOptions {
            width: 8,
            height: 8,
            fps: 0.0,
            ..Default::default()
        };
        let data = vec![0u8; 8 * 8 * 3 * 2];
        let pixel = crate::camera::SourceOptions {
            pixel_format: Some(PixelFormat::Rgb24),
            ..opts
        };
        let lossy =
            crate::camera::pipe::Pipe::new("pipe:", Box::new(std::io::Cursor::new(data)), &pixel)
                .unwrap();
        let m = Arc::new(Mailbox::new());
        let t =
            spawn_capture(Box::new(lossy), m.clone(), Arc::new(AtomicBool::new(false))).unwrap();
        t.join().unwrap();
        let mut front = Slot::default();
        assert!(matches!(m.take(&mut front, Duration::ZERO), Take::Frame));
        assert_eq!(front.frame().seq, 1);
        assert_eq!(m.dropped(), 1);
        assert!(matches!(
            m.take(&mut front, Duration::ZERO),
            Take::Closed(End::Finished)
        ));
    }

    #[test]
    fn unpaced_files_are_handed_over_losslessly() {
        let source = crate::camera::synthetic::Synthetic::new(
            "synthetic",
            &crate::camera::SourceOptions {
                width: 8,
                height: 8,
                fps: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        let m = Arc::new(Mailbox::new());
        let stop = Arc::new(AtomicBool::new(false));
        let t = spawn_capture(Box::new(source), m.clone(), stop.clone()).unwrap();
        let mut front = Slot::default();
        for seq in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
            assert!(matches!(
                m.take(&mut front, Duration::from_secs(5)),
                Take::Frame
            ));
            assert_eq!(front.frame().seq, seq);
        }
        assert_eq!(m.dropped(), 0);
        stop.store(true, Ordering::Relaxed);
        while !t.is_finished() {
            m.take(&mut front, Duration::from_millis(10));
        }
    }
}
