//! Hot model reload for `kestrel run --model FILE`: on SIGHUP, or when FILE changes on disk,
//! the model (and its sidecar) is loaded again on a thread of its own, while frames go on
//! through the old one; the new pipeline is swapped in between two frames, keeping the
//! tracks and counts when the classes match. A model that fails to load leaves the old one
//! running: the failure is logged and counted (`kestrel_model_reloads_total{result="failed"}`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::Pipeline;

/// Builds a replacement pipeline: the same model file, loaded and checked as at start.
pub type Loader = dyn Fn() -> anyhow::Result<Pipeline> + Send + Sync;

/// What asks for a reload, and how to do one. Cheap to clone.
#[derive(Clone)]
pub struct Trigger {
    /// Set by SIGHUP or the file watcher; the run loop clears it when it starts a load.
    pub requested: Arc<AtomicBool>,
    /// The load itself.
    pub loader: Arc<Loader>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

/// The run loop's side: at most one load in flight.
#[derive(Debug, Default)]
pub(super) struct Reloading {
    pending: Option<JoinHandle<anyhow::Result<Pipeline>>>,
}

impl Reloading {
    /// Between two frames: starts a load when one was asked for and none is running; returns
    /// the outcome of a load that has finished.
    pub(super) fn poll(&mut self, trigger: &Trigger) -> Option<anyhow::Result<Pipeline>> {
        if self.pending.is_none() && trigger.requested.swap(false, Ordering::AcqRel) {
            let loader = trigger.loader.clone();
            log::info!("reloading the model");
            match std::thread::Builder::new()
                .name("kestrel-reload".into())
                .spawn(move || loader())
            {
                Ok(h) => self.pending = Some(h),
                Err(e) => return Some(Err(anyhow::anyhow!("cannot start the reload: {e}"))),
            }
        }
        if !self.pending.as_ref()?.is_finished() {
            return None;
        }
        let handle = self.pending.take()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the model load panicked"))),
        )
    }
}

/// Watches `path` on a thread of its own: when its modification time or size changes (and
/// then holds still for one period, so a file being copied is not read half-written), sets
/// `requested`. Polls every `every`.
pub fn watch(path: PathBuf, requested: Arc<AtomicBool>, every: Duration) -> std::io::Result<()> {
    let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut seen = stamp(&path);
    std::thread::Builder::new()
        .name("kestrel-watch".into())
        .spawn(move || {
            let mut changed: Option<Option<(SystemTime, u64)>> = None;
            loop {
                std::thread::sleep(every);
                let now = stamp(&path);
                match changed {
                    // Still for a period after a change: load it.
                    Some(last) if last == now => {
                        changed = None;
                        seen = now;
                        if now.is_some() {
                            log::info!("{} changed", path.display());
                            requested.store(true, Ordering::Release);
                        }
                    }
                    _ if now != seen => changed = Some(now),
                    _ => changed = None,
                }
            }
        })
        .map(|_| ())
}

impl Pipeline {
    /// Takes over `old`'s tracks, zones, lines and counts when both watch the same classes,
    /// so a reload does not reset the counts.
    pub fn carry_over(&mut self, old: &mut Pipeline) {
        let same = match (&self.analytics, &old.analytics) {
            (Some(new), Some(prev)) => new.classes() == prev.classes(),
            _ => false,
        };
        if same {
            self.analytics = old.analytics.take();
        }
    }
}
