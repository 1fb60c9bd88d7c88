//! systemd's readiness and watchdog protocol for `kestrel run` under a `Type=notify` unit
//! (`boards/debian/kestrel.service`): `READY=1` once the source is open and the frame loop
//! starts, `WATCHDOG=1` from the frame loop at half the unit's `WatchdogSec`, `STOPPING=1` when
//! the loop ends. A loop that stops turning (a hung inference, a deadlock) stops the pings,
//! and systemd restarts the service.
//!
//! The loop turns at least every 100 ms even while the camera is silent (its mailbox wait
//! times out), so a camera outage — which the capture thread rides out by reconnecting — does
//! not trip the watchdog. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.
//! A ping allocates a short message and opens a socket: at most twice per `WatchdogSec`,
//! never per frame.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The frame loop's link to systemd.
#[derive(Debug)]
pub struct Watchdog {
    /// Ping interval (half of `WATCHDOG_USEC`), `None` when systemd asked for no watchdog.
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` / `WATCHDOG_PID` as `sd_watchdog_enabled(3)` does: the watchdog
    /// is on when the interval is set and the PID, if set, is this process's.
    pub fn from_env() -> Watchdog {
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&u| u > 0);
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let every = usec.filter(|_| ours).map(|u| Duration::from_micros(u / 2));
        if let Some(every) = every {
            log::info!("systemd watchdog: pinging every {every:?}");
        }
        Watchdog {
            every,
            last: Instant::now(),
        }
    }

    /// Tells systemd the service is up (`READY=1`).
    pub fn ready(&mut self) {
        send(&[NotifyState::Ready]);
        self.last = Instant::now();
    }

    /// Called on every turn of the frame loop: pings when half the interval has passed.
    pub fn tick(&mut self) {
        if let Some(every) = self.every {
            if self.last.elapsed() >= every {
                send(&[NotifyState::Watchdog]);
                self.last = Instant::now();
            }
        }
    }

    /// Tells systemd the service is stopping (`STOPPING=1`).
    pub fn stopping(&mut self) {
        send(&[NotifyState::Stopping]);
    }
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!("systemd notification failed: {e}");
    }
}
