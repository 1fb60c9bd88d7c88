//! Pacing for sources that could deliver faster than real time (synthetic, files): frame
//! `n` is released at `start + n / fps`, so a slow frame does not shift the ones after it.

use std::time::{Duration, Instant};

/// Releases frames at a fixed rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Option<Duration>,
    start: Option<Instant>,
    next: u64,
}

impl Pacer {
    /// A pacer for `fps` frames per second; `0` releases every frame at once.
    pub fn new(fps: f64) -> Pacer {
        Pacer {
            period: (fps > 0.0 && fps.is_finite()).then(|| Duration::from_secs_f64(1.0 / fps)),
            start: None,
            next: 0,
        }
    }

    /// Whether frames are released at once (no rate).
    pub fn is_unpaced(&self) -> bool {
        self.period.is_none()
    }

    /// Sleeps until the next frame is due (the first one is due at once).
    pub fn wait(&mut self) {
        let Some(period) = self.period else {
            return;
        };
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + period.mul_f64(self.next as f64);
        self.next += 1;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_holds_the_frame_rate() {
        let mut p = Pacer::new(200.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            p.wait();
        }
        // Frame 4 is due at 20 ms; pacing never releases early.
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let mut free = Pacer::new(0.0);
        let t1 = Instant::now();
        for _ in 0..1000 {
            free.wait();
        }
        assert!(t1.elapsed() < Duration::from_millis(500));
    }
}
