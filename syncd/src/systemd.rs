//! systemd integration (`Type=notify`): `READY=1` once the database is migrated and auth
//! verified, `STATUS=` with progress, `STOPPING=1` on shutdown, and `WATCHDOG=1` sent only when
//! every registered loop has reported in within the watchdog interval, so one hung sync loop
//! gets the service restarted. Everything is a no-op without `NOTIFY_SOCKET`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Talks to systemd.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    state: Mutex<WatchdogState>,
}

#[derive(Debug, Default)]
struct WatchdogState {
    loops: BTreeMap<String, Instant>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let mut usec = 0u64;
        let watchdog = (enabled && sd_notify::watchdog_enabled(false, &mut usec))
            .then(|| Duration::from_micros(usec));
        Notifier {
            enabled,
            watchdog,
            state: Mutex::new(WatchdogState::default()),
        }
    }

    /// A notifier that does nothing (tests, CLI commands).
    pub fn disabled() -> Notifier {
        Notifier {
            enabled: false,
            watchdog: None,
            state: Mutex::new(WatchdogState::default()),
        }
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(error) = sd_notify::notify(false, state)
        {
            tracing::warn!(%error, "could not notify systemd");
        }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// How often loops should report in (half the watchdog interval), if systemd watches us.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Registers a loop that must keep reporting in.
    pub fn register(&self, name: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.loops.insert(name.to_string(), Instant::now());
    }

    /// Removes a loop (it finished on purpose).
    pub fn unregister(&self, name: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .loops
            .remove(name);
    }

    /// The loops the watchdog waits for (registered, not unregistered).
    pub fn watched(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.loops.keys().cloned().collect()
    }

    /// A loop reports that it is alive; pings the watchdog when every loop has reported within
    /// the interval. Returns whether a ping was sent.
    pub fn alive(&self, name: &str) -> bool {
        let Some(interval) = self.watchdog else {
            return false;
        };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.loops.insert(name.to_string(), now);
        let all_fresh = state
            .loops
            .values()
            .all(|seen| now.duration_since(*seen) < interval);
        let due = state
            .last_ping
            .is_none_or(|last| now.duration_since(last) >= interval / 4);
        if all_fresh && due {
            state.last_ping = Some(now);
            drop(state);
            self.send(&[NotifyState::Watchdog]);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_loop_withholds_the_watchdog_ping() {
        let notifier = Notifier {
            enabled: false,
            watchdog: Some(Duration::from_millis(200)),
            state: Mutex::new(WatchdogState::default()),
        };
        notifier.register("a");
        notifier.register("b");
        assert!(notifier.alive("a"), "both fresh");
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            !notifier.alive("a"),
            "b has not reported within the interval"
        );
        assert!(notifier.alive("b"));
        notifier.unregister("b");
        std::thread::sleep(Duration::from_millis(60));
        assert!(notifier.alive("a"));
    }
}
