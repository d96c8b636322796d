//! The control plane (axum, loopback by default): `/healthz`, `/readyz`, `/metrics`, plus the
//! routes of [`crate::sync`] (`POST /webhooks/superoffice`) and [`crate::outbox`]
//! (`POST /publish`).
//!
//! | Route | Who may call it |
//! |---|---|
//! | `GET /healthz` | anyone |
//! | `GET /readyz` | anyone; the list of problems only with the token |
//! | `GET /metrics` | anyone, or with `metrics_auth = true` the token |
//! | `POST /webhooks/superoffice` | SuperOffice: the HMAC signature ([`crate::sync::webhook`]); body ≤ `webhook_body_limit` |
//! | `POST /publish` | the token, JSON, allowed origin ([`auth`]); body ≤ `publish_body_limit`; not served without `control.token` |
//! | `GET /changes`, `GET /changes/stream` | the token, allowed origin ([`auth`]); not served without `control.token` ([`crate::feed::http`]) |
//!
//! New routes that read the feed or change state go into the authenticated sub-router in
//! [`router`], which [`auth::authenticated`] wraps. [`serve`] is the server with its limits.

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

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;

use crate::Services;

pub mod auth;
pub mod serve;

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

    /// A supervised loop that is down past its first restart (`None`: it is fine again); see
    /// [`crate::supervise`].
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

/// The control-plane router.
pub fn router(services: Arc<Services>) -> Router {
    let control = &services.config.control;
    let limits = control.limits;
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if control.metrics_auth {
        metrics_route = auth::token_only(metrics_route, &services);
    }
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(metrics_route)
        .merge(crate::sync::routes().route_layer(DefaultBodyLimit::max(limits.webhook_body_limit)));
    if services.control_token.is_some() {
        // Routes that read the feed or change state: allowed origin, token, JSON.
        let authenticated = Router::new()
            .merge(
                crate::outbox::routes()
                    .route_layer(DefaultBodyLimit::max(limits.publish_body_limit)),
            )
            .merge(crate::feed::http::routes());
        app = app.merge(auth::authenticated(authenticated, &services));
    } else {
        tracing::warn!(
            "control.token is not set: the HTTP intake (POST /publish) is off; set [control] token to enable it"
        );
    }
    app.layer(from_fn_with_state(services.clone(), serve::request_timeout))
        .with_state(services)
}

async fn readyz(State(services): State<Arc<Services>>, headers: HeaderMap) -> impl IntoResponse {
    let mut problems = services.health.problems();
    let db = services.store.read(crate::store::status::ping).await;
    if let Err(error) = db {
        problems.push(format!("database: {error}"));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else if auth::check_token(services.control_token.as_ref(), &headers).is_err() {
        // Error texts name tenants, subscriptions and database paths: only for the token.
        let n = problems.len();
        let noun = if n == 1 { "problem" } else { "problems" };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {n} {noun}\n"),
        )
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
