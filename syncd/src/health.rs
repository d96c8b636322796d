//! The readiness facts `/readyz` reports (the control plane reads them): whether start-up
//! finished, tenants whose credentials fail, subscriptions whose last run failed, supervised
//! loops that are down, sinks behind their `max_lag`. The loops record them; nothing here
//! knows who reads them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Facts `/readyz` checks.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    /// Tenants whose credentials do not work, with the reason.
    tenants_down: Mutex<BTreeMap<String, String>>,
    failed_runs: Mutex<BTreeMap<String, String>>,
    loops: Mutex<BTreeMap<String, String>>,
    sinks: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// The daemon finished starting.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Whether a tenant's credentials work (`Err`: why not).
    pub fn set_tenant(&self, tenant: &str, state: Result<(), String>) {
        let mut down = self.tenants_down.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Ok(()) => down.remove(tenant),
            Err(reason) => down.insert(tenant.to_string(), reason),
        };
    }

    /// The tenants whose credentials do not work.
    pub fn tenants_down(&self) -> Vec<String> {
        let down = self.tenants_down.lock().unwrap_or_else(|e| e.into_inner());
        down.keys().cloned().collect()
    }

    /// The outcome of a subscription's last run (`None`: it succeeded).
    pub fn set_run_error(&self, subscription: &str, error: Option<String>) {
        let mut failed = self.failed_runs.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => failed.insert(subscription.to_string(), e),
            None => failed.remove(subscription),
        };
    }

    /// A supervised loop that is down past its first restart, as the supervisor reports it
    /// (`None`: it is fine again).
    pub fn set_loop_problem(&self, name: &str, problem: Option<String>) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => loops.insert(name.to_string(), p),
            None => loops.remove(name),
        };
    }

    /// A sink further behind than its `max_lag` (`None`: it is within it again).
    pub fn set_sink_problem(&self, sink: &str, problem: Option<String>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => sinks.insert(sink.to_string(), p),
            None => sinks.remove(sink),
        };
    }

    /// Why the daemon is not ready (empty: ready).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.started.load(Ordering::SeqCst) {
            problems.push("starting".to_string());
        }
        for (tenant, reason) in self
            .tenants_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            problems.push(format!("tenant {tenant}: degraded: {reason}"));
        }
        for (subscription, error) in self
            .failed_runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            problems.push(format!(
                "subscription {subscription}: last run failed: {error}"
            ));
        }
        for (name, problem) in self.loops.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            problems.push(format!("loop {name}: {problem}"));
        }
        for (sink, problem) in self.sinks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            problems.push(format!("sink {sink}: {problem}"));
        }
        problems
    }
}
