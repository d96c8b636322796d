//! `POST /publish` on the control plane.
//!
//! The body is a JSON object with the fields of `syncd publish` (`action`, `entity`, `id`,
//! `external_key`, `path`, `query`, `payload`, `if_unmodified_since`, `key`); the idempotency
//! key comes from the `Idempotency-Key` header or `key` (they must agree when both are given).
//!
//! | Answer | When |
//! |---|---|
//! | 202 `{task_id, key, state}` | queued |
//! | 200 / 202 the stored task | a replay of the same key and request (200 once done) |
//! | 409 `{error, task_id}` | the key is taken by a different request |
//! | 400 `{error, field}` | invalid input (the field is named) |
//! | 200 `{requests}` | `?dry_run=true`: the HTTP requests it would send; nothing is queued |
//!
//! The route sits in the control plane's authenticated sub-router (`control::auth`, which mounts it):
//! before this handler runs, a foreign `Origin` is 403, a missing or wrong bearer token 401 and
//! a body not declared as JSON 415; a body over `control.publish_body_limit` is 413. Without
//! `control.token` the route is not served (404). A request cut off by
//! `control.request_timeout` (408) may still have been queued: replay it with the same key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::OutboxShared;
use super::ledger::Intake;
use super::task::{PublishRequest, Task, TaskState};
use crate::{Error, Runtime};

/// The routes, with their state: mergeable into a router of any state.
pub fn routes<S>(runtime: Arc<Runtime>, shared: Arc<OutboxShared>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/publish", post(publish))
        .with_state((runtime, shared))
}

/// 400 `{error, field}` for invalid input (`error` reads `FIELD: MESSAGE`).
fn bad_request(field: &str, message: &str) -> Response {
    answer_400(format!("{field}: {message}"), field)
}

fn answer_400(error: String, field: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error, "field": field })),
    )
        .into_response()
}

/// 400 for an error of validation: invalid input names its field; any other error (no tenant
/// to publish to) is answered with its text, whose field is what precedes the first `:`.
fn rejected(error: &Error) -> Response {
    if let Error::Invalid { field, message } = error {
        return bad_request(field, message);
    }
    let text = error.to_string();
    let field = text
        .split_once(':')
        .map(|(field, _)| field.trim().to_string())
        .unwrap_or_default();
    answer_400(text, &field)
}

/// The stored task as a replay answers it.
pub fn task_view(task: &Task) -> Value {
    json!({
        "task_id": task.id,
        "key": task.key,
        "state": task.state,
        "attempts": task.attempts,
        "result_id": task.result_id,
        "result": task.result,
        "conflict": task.conflict,
        "last_error": task.last_error,
    })
}

async fn publish(
    State((runtime, shared)): State<(Arc<Runtime>, Arc<OutboxShared>)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return bad_request("body", &format!("not JSON: {e}")),
    };
    let mut request = match PublishRequest::from_json(&value) {
        Ok(request) => request,
        Err(error) => return rejected(&error),
    };
    if let Some(header) = headers.get("idempotency-key") {
        let Ok(header) = header.to_str() else {
            return bad_request("Idempotency-Key", "not valid text");
        };
        match &request.key {
            Some(key) if key != header => {
                return bad_request(
                    "key",
                    &format!("{key:?} differs from the Idempotency-Key header {header:?}"),
                );
            }
            _ => request.key = Some(header.to_string()),
        }
    }
    if params
        .get("dry_run")
        .is_some_and(|v| v == "true" || v == "1")
    {
        return match super::task::validate(&runtime.config, &request) {
            Ok(new) => (
                StatusCode::OK,
                axum::Json(json!({
                    "key": new.key,
                    "requests": super::plan::plan(&runtime.config, &new),
                })),
            )
                .into_response(),
            Err(error) => rejected(&error),
        };
    }
    match super::publish(&runtime.store, &runtime.config, &request, "http").await {
        Ok(Intake::Queued(task)) => {
            shared.wake();
            (StatusCode::ACCEPTED, axum::Json(task.summary())).into_response()
        }
        Ok(Intake::Replay(task)) => {
            let status = if task.state == TaskState::Done {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, axum::Json(task_view(&task))).into_response()
        }
        Ok(Intake::Mismatch(task)) => (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": format!("key {:?} is already used by task {} with a different request", task.key, task.id),
                "task_id": task.id,
            })),
        )
            .into_response(),
        Err(error @ Error::Invalid { .. }) => rejected(&error),
        Err(other) => {
            tracing::error!(error = %other, "publish intake failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": other.to_string() })),
            )
                .into_response()
        }
    }
}
