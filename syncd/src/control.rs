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

use std::sync::Arc;

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
        .merge(
            crate::sync::routes(services.runtime.clone(), services.sync.clone())
                .route_layer(DefaultBodyLimit::max(limits.webhook_body_limit)),
        );
    if services.control_token.is_some() {
        // Routes that read the feed or change state: allowed origin, token, JSON.
        let authenticated = Router::new()
            .merge(
                crate::outbox::routes(services.runtime.clone(), services.outbox.clone())
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
