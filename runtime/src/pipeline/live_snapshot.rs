//! `GET /snapshot.jpg` (`--http`): the frame being processed, annotated as `--snapshot`
//! annotates it, encoded when someone asks. The HTTP thread raises a flag and waits; the run
//! loop sees the flag at its next frame, encodes that frame into a reused buffer and hands
//! it over. Frames nobody asked for cost one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::snapshot::Annotator;
use super::tasks::{Task, TaskResult};
use crate::analytics::Analytics;
use crate::camera::Frame;

/// The latest JPEG asked for, shared by the run loop and the HTTP thread.
#[derive(Debug, Default)]
pub struct LiveSnapshot {
    wanted: AtomicBool,
    /// The latest JPEG and how many have been encoded (0: none yet).
    latest: Mutex<(u64, Vec<u8>)>,
    encoded: Condvar,
}

/// The run loop's side: the annotator and the buffer the next JPEG is encoded into.
#[derive(Debug, Default)]
pub struct Encoder {
    annotator: Annotator,
    spare: Vec<u8>,
}

impl LiveSnapshot {
    /// Nobody has asked yet.
    pub fn new() -> LiveSnapshot {
        LiveSnapshot::default()
    }

    /// Called by the run loop on each processed frame: when a JPEG was asked for, encodes
    /// `frame` with its results and wakes the askers.
    pub fn offer(
        &self,
        encoder: &mut Encoder,
        frame: &Frame<'_>,
        task: &Task,
        result: &TaskResult,
        analytics: Option<&Analytics>,
    ) {
        if !self.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        encoder.spare.clear();
        let spare = &mut encoder.spare;
        if let Err(e) = encoder
            .annotator
            .jpeg(frame, task, result, analytics, spare)
        {
            log::warn!("/snapshot.jpg: {e:#}");
            return;
        }
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.0 += 1;
        std::mem::swap(&mut latest.1, &mut encoder.spare);
        self.encoded.notify_all();
    }

    /// Called by the HTTP thread: asks for a JPEG of the next frame and waits up to
    /// `patience` for it; the last one encoded if none comes in time, `None` if there never
    /// was one.
    pub fn request(&self, patience: Duration) -> Option<Vec<u8>> {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let before = latest.0;
        self.wanted.store(true, Ordering::Release);
        let deadline = Instant::now() + patience;
        while latest.0 == before {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            latest = self
                .encoded
                .wait_timeout(latest, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        (latest.0 > 0).then(|| latest.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::PixelFormat;
    use std::sync::Arc;

    #[test]
    fn a_request_gets_the_next_frame_or_the_last_one() {
        let live = Arc::new(LiveSnapshot::new());
        assert_eq!(live.request(Duration::from_millis(10)), None);
        let data = vec![128u8; 32 * 24 * 3];
        let frame = Frame {
            data: &data,
            width: 32,
            height: 24,
            format: PixelFormat::Rgb24,
            seq: 7,
            captured: Instant::now(),
        };
        let asker = {
            let live = live.clone();
            std::thread::spawn(move || live.request(Duration::from_secs(30)))
        };
        let mut encoder = Encoder::default();
        // The run loop keeps offering frames until the request has been served.
        while !asker.is_finished() {
            live.offer(&mut encoder, &frame, &Task::Raw, &TaskResult::None, None);
            std::thread::sleep(Duration::from_millis(1));
        }
        let jpeg = asker.join().unwrap().expect("a JPEG");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
        // Nobody asks: nothing is encoded; a late asker gets the last one.
        live.offer(&mut encoder, &frame, &Task::Raw, &TaskResult::None, None);
        assert_eq!(live.request(Duration::from_millis(10)), Some(jpeg));
    }
}
