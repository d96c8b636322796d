//! The control plane (axum, loopback by default): `/healthz`, `/readyz`, `/metrics`, plus the
//! routes of [`crate::sync`] (`POST /webhooks/superoffice`) and [`crate::outbox`]
//! (`POST /publish`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Services;

/// Facts `/readyz` checks.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    auth: Mutex<BTreeMap<String, bool>>,
    failed_runs: Mutex<BTreeMap<String, String>>,
    loops: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// The daemon finished starting.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Whether a tenant's credentials work.
    pub fn set_auth(&self, tenant: &str, ok: bool) {
        self.auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string(), ok);
    }

    /// The outcome of a subscription's last run (`None`: it succeeded).
    pub fn set_run_error(&self, subscription: &str, error: Option<String>) {
        let mut failed = self.failed_runs.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => failed.insert(subscription.to_string(), e),
            None => failed.remove(subscription),
        };
    }

    /// A supervised loop that is down past its first restart (`None`: it is fine again); see
    /// [`crate::supervise`].
    pub fn set_loop_problem(&self, name: &str, problem: Option<String>) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => loops.insert(name.to_string(), p),
            None => loops.remove(name),
        };
    }

    /// Why the daemon is not ready (empty: ready).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.started.load(Ordering::SeqCst) {
            problems.push("starting".to_string());
        }
        for (tenant, ok) in self.auth.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !ok {
                problems.push(format!("tenant {tenant}: credentials rejected"));
            }
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
        problems
    }
}

/// The control-plane router.
pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::sync::routes())
        .merge(crate::outbox::routes())
        .with_state(services)
}

async fn readyz(State(services): State<Arc<Services>>) -> impl IntoResponse {
    let mut problems = services.health.problems();
    let db = services
        .store
        .read(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(crate::store::sql)
        })
        .await;
    if let Err(error) = db {
        problems.push(format!("database: {error}"));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
    }
}

async fn metrics(State(services): State<Arc<Services>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        services.metrics.render(),
    )
}
