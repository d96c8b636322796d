//! The webhook receiver, `POST /webhooks/superoffice` on the control plane (FACTS §4).
//!
//! Webhooks fail closed: every delivery must be signed, whatever is configured.
//!
//! 1. A body over [`MAX_BODY`] (64 KiB) is refused with **413** (the control plane's body limit
//!    normally answers first; the handler checks again).
//! 2. The secret in force ([`super::secret`]: `control.webhook_secret`, else the generated
//!    `webhook_secret` file in the state directory) is resolved once at start-up. When there is
//!    none, every delivery is refused with **401** (logged once, `no_secret` in
//!    `syncd_webhook_events_total`, `syncd_webhook_secret_present` is 0).
//! 3. `X-SuperOffice-Signature` must be the Base64 HMAC-SHA256 of the raw body under that
//!    secret (FACTS §4.5: SuperOffice sends it whenever the webhook has a `Secret`, and
//!    `syncd webhooks ensure` always registers one), compared in constant time; a missing or
//!    wrong signature is **401** and nothing is stored.
//! 4. The body must be a JSON object (**400** with the parser's message otherwise). `test`
//!    events (`"Event":"test"` or `X-Hook-Test: true`, sent when a webhook is saved) answer 200
//!    and are not stored.
//! 5. The targets are the subscriptions of the event's tenant (`ContextIdentifier`) whose
//!    entity's webhook name matches `Entity` (`activity` for appointments) and that have
//!    `webhooks = true`. An event no subscription follows answers 200 and is **not stored**
//!    (`unfollowed`); one without a `PrimaryKey` likewise (`ignored`, logged; polling finds
//!    the change).
//! 6. Otherwise the raw body is stored in `webhook_events` under its `EventId`; a redelivered
//!    id is a duplicate (200, nothing else happens). In the same transaction a targeted
//!    refetch is queued (`refetch_queue`) for every target; events for the same record
//!    coalesce.
//! 7. The answer is 200 as soon as that commits; the subscription loops are woken and do the
//!    refetch (and delete confirmation) themselves. If the database cannot store the event the
//!    answer is 503, so SuperOffice retries.
//!
//! Stored events are deleted after `[retention] webhook_events` (default 7 days), once their
//! refetch is done ([`crate::store::retention`]).

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::SyncShared;
use crate::Runtime;
use crate::store::types::UtcTime;
use crate::store::webhooks::{self, NewEvent, Recorded};

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-superoffice-signature";

/// The largest webhook body accepted (SuperOffice's payloads are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Base64 (standard alphabet) of HMAC-SHA256(`secret`, `body`), as SuperOffice signs.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    STANDARD.encode(mac(secret, body))
}

fn mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `header` is a valid signature of `body` under `secret` (constant-time compare of
/// the decoded MAC).
pub fn verify(secret: &[u8], body: &[u8], header: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    let Ok(given) = STANDARD.decode(text.trim()) else {
        return false;
    };
    let expected = mac(secret, body);
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

/// What became of a delivery: the `outcome` label of `syncd_webhook_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Over [`MAX_BODY`] (413).
    TooLarge,
    /// No secret in force (401).
    NoSecret,
    /// A missing or wrong signature, or a body that is no event (401, 400).
    Rejected,
    /// A test event (200, not stored).
    Test,
    /// No subscription follows the event (200, not stored).
    Unfollowed,
    /// The event has no `PrimaryKey` (200, not stored).
    Ignored,
    /// A redelivered `EventId` (200).
    Duplicate,
    /// Stored and its refetches queued (200).
    Queued,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::TooLarge => "too_large",
            Outcome::NoSecret => "no_secret",
            Outcome::Rejected => "rejected",
            Outcome::Test => "test",
            Outcome::Unfollowed => "unfollowed",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Queued => "queued",
        }
    }
}

/// The answer to a delivery: its status and text, and the outcome it is counted as (`None`:
/// the store failed, which is logged as an error and answered 503 so SuperOffice retries).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    outcome: Option<Outcome>,
    message: String,
}

impl Answer {
    fn new(status: StatusCode, outcome: Outcome, message: impl Into<String>) -> Answer {
        Answer {
            status,
            outcome: Some(outcome),
            message: message.into(),
        }
    }
}

/// A step of [`receive`]: go on with `T`, or stop with the answer.
type Step<T> = ControlFlow<Answer, T>;

fn field<'a>(payload: &'a Value, name: &str) -> Option<&'a Value> {
    payload
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `POST /webhooks/superoffice`: [`authenticate`], [`parse`], [`route`], [`store`] (see
/// the module docs for each answer).
pub async fn receive(
    State((runtime, shared)): State<(Arc<Runtime>, Arc<SyncShared>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = match accept(&runtime, &shared, &headers, &body) {
        ControlFlow::Break(answer) => answer,
        ControlFlow::Continue(event) => store(&runtime, &shared, event).await,
    };
    if let Some(outcome) = answer.outcome {
        runtime.metrics.inc(
            "syncd_webhook_events_total",
            &[("outcome", outcome.label())],
            1,
        );
    }
    (answer.status, format!("{}\n", answer.message)).into_response()
}

/// Everything before the store: the event to store, or the answer without storing.
fn accept(
    runtime: &Runtime,
    shared: &SyncShared,
    headers: &HeaderMap,
    body: &[u8],
) -> Step<NewEvent> {
    authenticate(shared, headers, body)?;
    let delivery = parse(headers, body)?;
    route(runtime, shared, delivery, body)
}

/// Steps 1 to 3: the size, a secret in force, and the body's signature under it.
fn authenticate(shared: &SyncShared, headers: &HeaderMap, body: &[u8]) -> Step<()> {
    if body.len() > MAX_BODY {
        tracing::warn!(
            bytes = body.len(),
            limit = MAX_BODY,
            "webhook rejected: body too large"
        );
        return ControlFlow::Break(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::TooLarge,
            format!("webhook body is larger than {MAX_BODY} bytes"),
        ));
    }
    let Some(secret) = shared.webhook_secret() else {
        shared.log_no_secret_once();
        return ControlFlow::Break(Answer::new(
            StatusCode::UNAUTHORIZED,
            Outcome::NoSecret,
            "webhooks are refused: syncd has no webhook secret",
        ));
    };
    let valid = headers
        .get(SIGNATURE_HEADER)
        .is_some_and(|sig| verify(secret.secret.expose().as_bytes(), body, sig.as_bytes()));
    if !valid {
        tracing::warn!(
            signed = headers.contains_key(SIGNATURE_HEADER),
            "webhook rejected: missing or wrong X-SuperOffice-Signature"
        );
        return ControlFlow::Break(Answer::new(
            StatusCode::UNAUTHORIZED,
            Outcome::Rejected,
            "missing or invalid X-SuperOffice-Signature",
        ));
    }
    ControlFlow::Continue(())
}

/// What a signed delivery announces.
#[derive(Debug)]
struct Delivery {
    /// `Event` (else the `X-SuperOffice-Event` header; `contact.changed`).
    event: String,
    /// `EventId`.
    event_id: String,
    /// `Entity` (else the part of `event` before the dot).
    entity: String,
    /// `PrimaryKey`, when it is an integer.
    primary_key: Option<i64>,
    /// `ContextIdentifier` (the tenant).
    context: Option<String>,
}

/// Step 4: the body as an event; a test event, or a body that is no JSON object or has no
/// `EventId`, stops here.
fn parse(headers: &HeaderMap, body: &[u8]) -> Step<Delivery> {
    let rejected = |message: String| {
        ControlFlow::Break(Answer::new(
            StatusCode::BAD_REQUEST,
            Outcome::Rejected,
            message,
        ))
    };
    let payload: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return rejected("webhook body must be a JSON object".into()),
        Err(error) => return rejected(format!("webhook body is not JSON: {error}")),
    };
    let event = field(&payload, "Event")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("x-superoffice-event")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let test_header = headers
        .get("x-hook-test")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if test_header || event.eq_ignore_ascii_case("test") {
        return ControlFlow::Break(Answer::new(
            StatusCode::OK,
            Outcome::Test,
            "test event received",
        ));
    }
    let Some(event_id) = field(&payload, "EventId")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
    else {
        return rejected("webhook body has no EventId".into());
    };
    let entity = field(&payload, "Entity")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| event.split_once('.').map(|(e, _)| e.to_string()))
        .unwrap_or_default();
    let primary_key = field(&payload, "PrimaryKey").and_then(|v| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let context = field(&payload, "ContextIdentifier")
        .and_then(Value::as_str)
        .map(str::to_string);
    ControlFlow::Continue(Delivery {
        event,
        event_id,
        entity,
        primary_key,
        context,
    })
}

/// Step 5: the subscriptions the event is for; an event none follows, or one without a
/// `PrimaryKey`, stops here (not stored).
fn route(
    runtime: &Runtime,
    shared: &SyncShared,
    delivery: Delivery,
    body: &[u8],
) -> Step<NewEvent> {
    let Delivery {
        event,
        event_id,
        entity,
        primary_key,
        context,
    } = delivery;
    if event.to_ascii_lowercase().starts_with("webhook") {
        tracing::warn!(%event, "webhook state event (delivery problems?); `syncd webhooks ensure` re-activates it");
    }
    let targets = shared.targets(&runtime.config, context.as_deref(), &entity);
    if targets.is_empty() {
        tracing::debug!(%event, %entity, event_id = %event_id, "webhook event no subscription follows; not stored");
        return ControlFlow::Break(Answer::new(
            StatusCode::OK,
            Outcome::Unfollowed,
            "no subscription follows this event",
        ));
    }
    let Some(id) = primary_key else {
        tracing::warn!(%event, event_id = %event_id, "webhook event without a PrimaryKey; not stored (polling finds the change)");
        return ControlFlow::Break(Answer::new(
            StatusCode::OK,
            Outcome::Ignored,
            "event has no PrimaryKey; ignored",
        ));
    };
    ControlFlow::Continue(NewEvent {
        event_id,
        event,
        entity,
        primary_key: id,
        body: String::from_utf8_lossy(body).into_owned(),
        targets,
    })
}

/// Steps 6 and 7: stores the event and queues its refetches in one transaction, then wakes
/// the targets; 503 when the store fails.
async fn store(runtime: &Runtime, shared: &SyncShared, event: NewEvent) -> Answer {
    let (targets, stored_id) = (event.targets.clone(), event.event_id.clone());
    let stored = runtime
        .store
        .write(move |tx| webhooks::record_event(tx, &event, UtcTime::now()))
        .await;
    match stored {
        Ok(Recorded::Duplicate) => Answer::new(
            StatusCode::OK,
            Outcome::Duplicate,
            "duplicate event ignored",
        ),
        Ok(Recorded::Queued) => {
            for subscription in &targets {
                shared.wake(subscription);
            }
            Answer::new(StatusCode::OK, Outcome::Queued, "queued")
        }
        Err(error) => {
            tracing::error!(%error, event_id = %stored_id, "could not store a webhook event");
            Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                outcome: None,
                message: "could not store the event; retry".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_constant_time_and_match_the_emulator() {
        let body = br#"{"EventId":"1"}"#;
        let sig = sign(b"s3cret", body);
        assert_eq!(sig, emulator::webhook::signature("s3cret", body));
        assert!(verify(b"s3cret", body, sig.as_bytes()));
        assert!(!verify(b"other", body, sig.as_bytes()));
        assert!(!verify(b"s3cret", b"{}", sig.as_bytes()));
        assert!(!verify(b"s3cret", body, b"not base64!"));
        assert!(!verify(b"s3cret", body, b""));
    }
}
