//! The HTTP change feed on the control plane (authenticated sub-router: token, Origin):
//!
//! - `GET /changes?since=SEQ&limit=N&subscription=NAME`: the [`ChangeEvent`]s after `since`
//!   (default 0) as JSON lines (`application/x-ndjson`), oldest first, at most `limit`
//!   (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]). Page on with `since` = the last seq
//!   received; fewer than `limit` lines means the reader is caught up.
//! - `GET /changes/stream?since=SEQ&subscription=NAME`: Server-Sent Events, one
//!   `event: change` per change with `id:` = seq and `data:` = the JSON; new changes are pushed
//!   as their page transaction commits ([`super::FeedNotifier`], no polling). A reconnecting
//!   client's `Last-Event-ID` header takes precedence over `since` (EventSource reconnects with
//!   the original URL and the last id it saw). The store is read a bounded batch at a time
//!   and only when the client has taken the previous one (the body stream is polled only as
//!   the connection drains): a slow reader slows its own stream, nothing else. A comment
//!   every [`KEEP_ALIVE`] keeps idle connections open.
//!
//! Retention never makes a reader skip silently: when `since` is older than the oldest kept
//! change, `/changes` answers 410 Gone and the stream sends one `event: reset` (data
//! `{"since":…,"oldest":…}`) and ends. Invalid parameters are 400 naming the parameter. A store
//! error is a 500 (`/changes`) or an `event: error` that ends the stream (reconnect with
//! `Last-Event-ID`), logged and counted in `syncd_feed_errors_total`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::json;
use tokio::sync::watch;

use super::{ChangeEvent, Tenants};
use crate::Services;
use crate::store::feed::{FeedPage, page_after};

/// `limit` of `GET /changes` when not given.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;
/// Changes read from the store per step of a stream.
pub const STREAM_BATCH: usize = 200;
/// Interval of the keep-alive comment on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The feed routes (mounted in the authenticated sub-router by [`crate::control::router`]).
pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/changes", get(changes))
        .route("/changes/stream", get(stream))
}

/// The parsed query of a feed request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Params {
    since: i64,
    limit: usize,
    subscription: Option<String>,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// Parses the query: `since` (≥ 0), `limit` (1..=[`MAX_LIMIT`], only when `allow_limit`),
/// `subscription` (a configured one); anything else, or a repeated parameter, is an error
/// naming it.
fn parse_params(
    query: Option<&str>,
    allow_limit: bool,
    services: &Services,
) -> Result<Params, String> {
    let mut params = Params {
        since: 0,
        limit: DEFAULT_LIMIT,
        subscription: None,
    };
    let mut seen = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.contains(&key) {
            return Err(format!("parameter `{key}` is given more than once"));
        }
        match key.as_ref() {
            "since" => {
                params.since = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        format!("parameter `since` must be a sequence number ≥ 0, got {value:?}")
                    })?;
            }
            "limit" if allow_limit => {
                params.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("parameter `limit` must be 1..={MAX_LIMIT}, got {value:?}")
                    })?;
            }
            "subscription" => {
                if !services
                    .config
                    .subscriptions
                    .iter()
                    .any(|s| s.name == value)
                {
                    return Err(format!(
                        "parameter `subscription`: no subscription named {value:?} is configured"
                    ));
                }
                params.subscription = Some(value.to_string());
            }
            other => return Err(format!("unknown parameter `{other}`")),
        }
        seen.push(key);
    }
    Ok(params)
}

fn store_failed(services: &Services, route: &'static str, error: &crate::Error) {
    tracing::error!(route, %error, "change feed: reading the store failed");
    services
        .metrics
        .inc("syncd_feed_errors_total", &[("route", route)], 1);
}

async fn changes(State(services): State<Arc<Services>>, RawQuery(query): RawQuery) -> Response {
    let params = match parse_params(query.as_deref(), true, &services) {
        Ok(params) => params,
        Err(message) => return bad_request(message),
    };
    let tenants = Tenants::from_config(&services.config);
    let Params {
        since,
        limit,
        subscription,
    } = params;
    let page = services
        .store
        .read(move |conn| page_after(conn, since, subscription.as_deref(), limit, &tenants))
        .await;
    match page {
        Ok(FeedPage::Changes(events)) => {
            let mut body = String::new();
            for event in &events {
                match serde_json::to_string(event) {
                    Ok(line) => {
                        body.push_str(&line);
                        body.push('\n');
                    }
                    Err(e) => {
                        let error = crate::Error::Encode {
                            what: format!("change seq {}", event.seq),
                            source: e,
                        };
                        store_failed(&services, "/changes", &error);
                        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
                            .into_response();
                    }
                }
            }
            ([(CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
        Ok(FeedPage::Gone { since, oldest }) => gone(since, oldest).into_response(),
        Err(error) => {
            store_failed(&services, "/changes", &error);
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
        }
    }
}

fn gone(
    since: i64,
    oldest: i64,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    (
        StatusCode::GONE,
        [(CONTENT_TYPE, "application/json")],
        json!({
            "error": format!(
                "changes after {since} were deleted by retention; the oldest kept is {oldest}: \
                 start over from a full copy, then read from since={}", oldest - 1
            ),
            "since": since,
            "oldest": oldest,
        })
        .to_string(),
    )
}

async fn stream(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut params = match parse_params(query.as_deref(), false, &services) {
        Ok(params) => params,
        Err(message) => return bad_request(message),
    };
    if let Some(value) = headers.get("last-event-id") {
        match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
        {
            Some(seq) => params.since = seq,
            None => {
                return bad_request(format!(
                    "header `Last-Event-ID` must be a sequence number ≥ 0, got {value:?}"
                ));
            }
        }
    }
    let state = StreamState {
        rx: services.feed.subscribe(),
        tenants: Arc::new(Tenants::from_config(&services.config)),
        services,
        subscription: params.subscription,
        cursor: params.since,
        pending: VecDeque::new(),
        done: false,
    };
    Sse::new(events(state))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

struct StreamState {
    services: Arc<Services>,
    tenants: Arc<Tenants>,
    subscription: Option<String>,
    /// The last seq sent.
    cursor: i64,
    pending: VecDeque<ChangeEvent>,
    rx: watch::Receiver<i64>,
    done: bool,
}

fn change_event(event: &ChangeEvent) -> Result<Event, serde_json::Error> {
    Ok(Event::default()
        .id(event.seq.to_string())
        .event("change")
        .data(serde_json::to_string(event)?))
}

fn error_event(error: &crate::Error) -> Event {
    Event::default()
        .event("error")
        .data(json!({ "error": error.to_string() }).to_string())
}

/// The SSE events of one client: a batch is read only when the previous one was sent.
fn events(state: StreamState) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(event) = st.pending.pop_front() {
                st.cursor = event.seq;
                let item = change_event(&event).unwrap_or_else(|e| {
                    let error = crate::Error::Encode {
                        what: format!("change seq {}", event.seq),
                        source: e,
                    };
                    store_failed(&st.services, "/changes/stream", &error);
                    st.done = true;
                    error_event(&error)
                });
                return Some((Ok(item), st));
            }
            // Mark what we have seen before reading, so a commit after the read wakes us.
            st.rx.borrow_and_update();
            let (since, subscription, tenants) =
                (st.cursor, st.subscription.clone(), st.tenants.clone());
            let page = st
                .services
                .store
                .read(move |conn| {
                    page_after(conn, since, subscription.as_deref(), STREAM_BATCH, &tenants)
                })
                .await;
            match page {
                Ok(FeedPage::Changes(events)) if !events.is_empty() => {
                    st.pending = events.into();
                }
                Ok(FeedPage::Changes(_)) => {
                    let shutdown = st.services.feed.shutdown().clone();
                    tokio::select! {
                        changed = st.rx.changed() => if changed.is_err() { return None },
                        _ = shutdown.cancelled() => return None,
                    }
                }
                Ok(FeedPage::Gone { since, oldest }) => {
                    tracing::warn!(
                        since,
                        oldest,
                        "change feed: a stream asked for changes retention deleted; sending reset"
                    );
                    st.done = true;
                    let reset = Event::default()
                        .event("reset")
                        .data(json!({ "since": since, "oldest": oldest }).to_string());
                    return Some((Ok(reset), st));
                }
                Err(error) => {
                    store_failed(&st.services, "/changes/stream", &error);
                    st.done = true;
                    return Some((Ok(error_event(&error)), st));
                }
            }
        }
    })
}
