//! The admin API under `/__admin` (no authentication, never faulted, not counted). Each
//! endpoint calls the same [`Shared`] method as the matching library call on
//! [`crate::Emulator`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, json_response};
use crate::error::SoError;
use crate::faults::FaultRule;
use crate::model::EntityType;
use crate::tenant::TenantUpdate;

/// The admin routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__admin/seed", post(seed))
        .route("/__admin/activity", post(activity))
        .route("/__admin/truth/{entity}", get(truth))
        .route(
            "/__admin/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/__admin/tenant", post(tenant).get(get_tenant))
        .route("/__admin/tokens/expire", post(expire_tokens))
        .route("/__admin/tokens/access", post(issue_access))
        .route("/__admin/tokens/ticket", post(issue_ticket))
        .route("/__admin/restore", post(restore))
        .route("/__admin/clock", post(clock).get(get_clock))
        .route("/__admin/stats", get(stats))
        .route("/__admin/stats/reset", post(reset_stats))
        .route("/__admin/bench/create", post(bench_create))
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SoError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| SoError::bad_request(format!("Bad admin request body: {e}")))
}

fn entity(name: &str) -> Result<EntityType, SoError> {
    EntityType::parse(name).ok_or_else(|| {
        SoError::bad_request(format!(
            "Unknown entity '{name}' (contact, person, sale, project, appointment, document, ticket, selection)"
        ))
    })
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

#[derive(Deserialize)]
struct SeedReq {
    entity: String,
    count: u32,
}

async fn seed(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Result<Response, SoError> {
    let r: SeedReq = parse_body(&body)?;
    let ty = entity(&r.entity)?;
    let shared = s.clone();
    let total = tokio::task::spawn_blocking(move || shared.seed(ty, r.count))
        .await
        .map_err(|e| SoError::new(StatusCode::INTERNAL_SERVER_ERROR, "Panic", e.to_string()))?;
    Ok(ok(
        json!({"entity": ty.table(), "seeded": r.count, "total": total}),
    ))
}

#[derive(Deserialize)]
struct ActivityReq {
    #[serde(default)]
    creates: u32,
    #[serde(default)]
    updates: u32,
    #[serde(default)]
    deletes: u32,
    #[serde(default)]
    entity: Option<String>,
}

async fn activity(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, SoError> {
    let r: ActivityReq = parse_body(&body)?;
    let ty = r.entity.as_deref().map(entity).transpose()?;
    let report = s.activity(r.creates, r.updates, r.deletes, ty);
    Ok(ok(serde_json::to_value(report).unwrap_or(Value::Null)))
}

async fn truth(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, SoError> {
    let ty = entity(&name)?;
    let shared = s.clone();
    let rows = tokio::task::spawn_blocking(move || shared.truth(ty))
        .await
        .map_err(|e| SoError::new(StatusCode::INTERNAL_SERVER_ERROR, "Panic", e.to_string()))?;
    Ok(ok(serde_json::to_value(rows).unwrap_or(Value::Null)))
}

async fn add_fault(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, SoError> {
    let rule: FaultRule = parse_body(&body)?;
    s.add_fault(rule)?;
    Ok(list_faults(State(s)).await)
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Response {
    let rules = s
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rules()
        .to_vec();
    ok(json!({"rules": rules}))
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> Response {
    s.clear_faults();
    ok(json!({"rules": []}))
}

async fn tenant(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, SoError> {
    let u: TenantUpdate = parse_body(&body)?;
    Ok(ok(
        serde_json::to_value(s.update_tenant(&u)).unwrap_or(Value::Null)
    ))
}

async fn get_tenant(State(s): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(s.tenant_info()).unwrap_or(Value::Null))
}

async fn expire_tokens(State(s): State<Arc<Shared>>) -> Response {
    ok(json!({"expired": s.expire_tokens()}))
}

async fn issue_access(State(s): State<Arc<Shared>>) -> Response {
    ok(
        json!({"access_token": s.issue_access_token(), "expires_in": s.config.auth.access_token_ttl_secs}),
    )
}

async fn issue_ticket(State(s): State<Arc<Shared>>) -> Response {
    ok(json!({"ticket": s.issue_ticket(), "app_token": s.config.auth.client_secret}))
}

#[derive(Deserialize)]
struct RestoreReq {
    entity: String,
    id: i32,
}

async fn restore(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, SoError> {
    let r: RestoreReq = parse_body(&body)?;
    s.restore(entity(&r.entity)?, r.id)?;
    Ok(ok(json!({"restored": true})))
}

#[derive(Deserialize)]
struct ClockReq {
    #[serde(default)]
    advance_seconds: i64,
}

async fn clock(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Result<Response, SoError> {
    let r: ClockReq = parse_body(&body)?;
    let now = s.advance_clock(r.advance_seconds);
    Ok(ok(
        json!({"now": now.iso(), "offset_seconds": s.clock.offset()}),
    ))
}

async fn get_clock(State(s): State<Arc<Shared>>) -> Response {
    ok(json!({"now": s.clock.now().iso(), "offset_seconds": s.clock.offset()}))
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(s.stats()).unwrap_or(Value::Null))
}

async fn reset_stats(State(s): State<Arc<Shared>>) -> Response {
    s.stats.reset();
    ok(serde_json::to_value(s.stats()).unwrap_or(Value::Null))
}

#[derive(Deserialize)]
struct BenchReq {
    #[serde(default = "default_entity")]
    entity: String,
    count: u32,
}

fn default_entity() -> String {
    "contact".into()
}

async fn bench_create(
    State(s): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Result<Response, SoError> {
    let r: BenchReq = parse_body(&body)?;
    let ty = entity(&r.entity)?;
    let shared = s.clone();
    let rate = tokio::task::spawn_blocking(move || shared.measure_create_rate(ty, r.count))
        .await
        .map_err(|e| SoError::new(StatusCode::INTERNAL_SERVER_ERROR, "Panic", e.to_string()))?;
    Ok(ok(serde_json::to_value(rate).unwrap_or(Value::Null)))
}

impl IntoResponse for crate::Error {
    fn into_response(self) -> Response {
        match self {
            crate::Error::Admin(e) => e.into_response(),
            other => SoError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "EmulatorError",
                other.to_string(),
            )
            .into_response(),
        }
    }
}
