//! Counters the emulator keeps about itself (requests by status and route class, injected
//! faults, webhook deliveries), exposed at `GET /__admin/stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::faults::RouteClass;

/// Live counters.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    by_class: Mutex<BTreeMap<RouteClass, u64>>,
    faults: AtomicU64,
    dropped_connections: AtomicU64,
    archive_rows: AtomicU64,
    events_queued: AtomicU64,
    deliveries_ok: AtomicU64,
    deliveries_failed: AtomicU64,
    events_dropped: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests answered (admin calls excluded).
    pub requests: u64,
    /// Requests by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests by route class (a request counts in every class it belongs to).
    pub by_class: BTreeMap<RouteClass, u64>,
    /// Faults injected (status, latency or drop).
    pub faults_injected: u64,
    /// Connections closed on purpose.
    pub connections_dropped: u64,
    /// Archive rows served.
    pub archive_rows: u64,
    /// Webhook deliveries queued.
    pub events_queued: u64,
    /// Delivery attempts answered with 200.
    pub deliveries_ok: u64,
    /// Delivery attempts that failed.
    pub deliveries_failed: u64,
    /// Events dropped after their last attempt.
    pub events_dropped: u64,
}

impl Stats {
    /// Counts an answered request.
    pub fn request(&self, status: u16, classes: &[RouteClass]) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        let mut by_class = self.by_class.lock().unwrap_or_else(|e| e.into_inner());
        for c in classes {
            *by_class.entry(*c).or_default() += 1;
        }
    }

    /// Counts an injected fault.
    pub fn fault(&self, dropped: bool) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        if dropped {
            self.dropped_connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts archive rows served.
    pub fn archive_rows(&self, n: u64) {
        self.archive_rows.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts queued webhook deliveries.
    pub fn queued(&self, n: u64) {
        self.events_queued.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a delivery attempt.
    pub fn attempt(&self, ok: bool) {
        if ok {
            self.deliveries_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.deliveries_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a dropped event.
    pub fn dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            by_status: self
                .by_status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            by_class: self
                .by_class
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            faults_injected: self.faults.load(Ordering::Relaxed),
            connections_dropped: self.dropped_connections.load(Ordering::Relaxed),
            archive_rows: self.archive_rows.load(Ordering::Relaxed),
            events_queued: self.events_queued.load(Ordering::Relaxed),
            deliveries_ok: self.deliveries_ok.load(Ordering::Relaxed),
            deliveries_failed: self.deliveries_failed.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        for a in [
            &self.requests,
            &self.faults,
            &self.dropped_connections,
            &self.archive_rows,
            &self.events_queued,
            &self.deliveries_ok,
            &self.deliveries_failed,
            &self.events_dropped,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
