//! [`Runtime`]: the state the generated `Client` carries, and the request pipeline every
//! operation goes through (see `hooks.rs`).
//!
//! Per attempt: wait for a slot of the per-tenant concurrency limit, point the request at the
//! tenant's current endpoint, add the default headers and the credential, send with the
//! per-attempt timeout. Then: 401 → refresh the credential once and replay; 421 → re-resolve
//! the endpoint once and replay; a retryable failure → back off ([`RetryPolicy`]) and retry if
//! the method allows it; a redirect (3xx other than 304, or an answer from another origin
//! than the request went to) → [`Error::Redirect`], never followed and never replayed, so
//! credentials never leave the tenant endpoint (see [`crate::http`]). Error bodies that are
//! not JSON become a `SoError` so the status survives decoding. Each call is one `tracing`
//! span.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::auth::{Auth, Credential};
use crate::error::{
    self, SDK_CONTEXT_HEADER, SDK_ERROR_HEADER, SDK_FOLLOWED_HEADER, SDK_LOCATION_HEADER,
    SDK_OPERATION_HEADER, SDK_STATE_HEADER, SDK_STATUS_HEADER,
};
use crate::retry::{self, RetryPolicy};
use crate::tenant::TenantResolver;
use crate::{Error, Result};

/// Receives one call per attempt and per retry decision; `syncd` turns these into metrics.
pub trait Observer: Send + Sync + fmt::Debug {
    /// An attempt finished: its operation, HTTP status (`None`: no answer), attempt number
    /// (1-based) and latency.
    fn attempt(&self, operation: &str, status: Option<StatusCode>, attempt: u32, latency: Duration);
    /// The runtime will retry `operation` after `delay` (`reason`: `status 503`, `transport`,
    /// `refresh`, `re-resolve`).
    fn retry(&self, operation: &str, reason: &str, delay: Duration) {
        let _ = (operation, reason, delay);
    }
}

/// Shared per-client state; cloning is cheap (an `Arc`).
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) auth: Option<Arc<dyn Auth>>,
    pub(crate) tenant: Option<Arc<TenantResolver>>,
    pub(crate) default_headers: HeaderMap,
    pub(crate) retry: RetryPolicy,
    pub(crate) limiter: Arc<Semaphore>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) overall_timeout: Option<Duration>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
}

impl Runtime {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Runtime {
            inner: Arc::new(inner),
        }
    }

    /// The same runtime with another retry policy (shares auth, tenant and the concurrency limit).
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        self.map(|inner| Inner { retry, ..inner })
    }

    /// The same runtime with another overall timeout.
    pub fn with_overall_timeout(&self, timeout: Option<Duration>) -> Self {
        self.map(|inner| Inner {
            overall_timeout: timeout,
            ..inner
        })
    }

    fn map(&self, f: impl FnOnce(Inner) -> Inner) -> Self {
        let i = &self.inner;
        let copy = Inner {
            auth: i.auth.clone(),
            tenant: i.tenant.clone(),
            default_headers: i.default_headers.clone(),
            retry: i.retry.clone(),
            limiter: i.limiter.clone(),
            attempt_timeout: i.attempt_timeout,
            overall_timeout: i.overall_timeout,
            observer: i.observer.clone(),
        };
        Runtime {
            inner: Arc::new(f(copy)),
        }
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The tenant resolver, when the client resolves its endpoint through the State API.
    pub fn tenant(&self) -> Option<&Arc<TenantResolver>> {
        self.inner.tenant.as_ref()
    }

    /// The credential provider.
    pub fn auth(&self) -> Option<&Arc<dyn Auth>> {
        self.inner.auth.as_ref()
    }

    /// Runs one operation through the pipeline. Failures the runtime detects itself (tenant not
    /// running, no credential, overall timeout) come back as synthesised responses that
    /// [`Error::from`] turns into the matching variant.
    pub(crate) async fn execute(
        &self,
        http: &reqwest::Client,
        baseurl: &str,
        request: reqwest::Request,
        operation: &'static str,
    ) -> reqwest::Result<Response> {
        let span = tracing::info_span!(
            "superoffice.request",
            operation,
            method = %request.method(),
            path = %request.url().path(),
            status = tracing::field::Empty,
            attempt = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let run = self.attempts(http, baseurl, request, operation);
        let result = match self.inner.overall_timeout {
            Some(limit) => match tokio::time::timeout(limit, run)
                .instrument(span.clone())
                .await
            {
                Ok(result) => result,
                Err(_) => Ok(synthesize(
                    "timeout",
                    StatusCode::GATEWAY_TIMEOUT,
                    &limit.as_millis().to_string(),
                    &[],
                )),
            },
            None => run.instrument(span.clone()).await,
        };
        span.record("latency_ms", started.elapsed().as_millis() as u64);
        let mut result = result;
        if let Ok(response) = &mut result {
            span.record("status", response.status().as_u16());
            // Errors name the operation they came from (`Error::operation`).
            if !response.status().is_success() {
                response
                    .headers_mut()
                    .entry(SDK_OPERATION_HEADER)
                    .or_insert(HeaderValue::from_static(operation));
            }
        }
        result
    }

    async fn attempts(
        &self,
        http: &reqwest::Client,
        baseurl: &str,
        template: reqwest::Request,
        operation: &'static str,
    ) -> reqwest::Result<Response> {
        let inner = &self.inner;
        let _permit = inner
            .limiter
            .acquire()
            .await
            .expect("the concurrency limiter is never closed");
        let may_retry = inner.retry.may_retry(template.method(), operation);
        let mut template = Some(template);
        let mut attempt = 0u32;
        let mut retries = 0u32;
        let mut refreshed = false;
        let mut re_resolved = false;
        let mut rejected: Option<Credential> = None;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            // Keep the template for further attempts when the body allows it.
            let Some(current) = template.as_ref() else {
                unreachable!("the template is only taken for the last attempt")
            };
            let mut request = match current.try_clone() {
                Some(clone) => clone,
                None => template.take().expect("checked above"),
            };
            let can_replay = template.is_some();

            let endpoint = match &inner.tenant {
                Some(tenant) => match tenant.endpoint().await {
                    Ok(endpoint) => {
                        point_at(&mut request, baseurl, &endpoint);
                        Some(endpoint)
                    }
                    // The request has not been sent: retrying is safe whatever the method.
                    Err(e) if is_transient(&e) && retries + 1 < inner.retry.max_attempts => {
                        retries += 1;
                        let delay = inner.retry.backoff(retries);
                        self.note_retry(operation, "state api", delay);
                        tracing::debug!(error = %e, ?delay, "State API unavailable, retrying");
                        tokio::time::sleep(delay).await;
                        template.get_or_insert(request);
                        continue;
                    }
                    Err(e) => return Ok(synthesize_error(&e)),
                },
                None => None,
            };
            prepare_headers(request.headers_mut(), &inner.default_headers, operation);
            let credential = match &inner.auth {
                Some(auth) => {
                    let result = match &rejected {
                        Some(old) => auth.refresh(old).await,
                        None => auth.credential().await,
                    };
                    match result.and_then(|c| c.apply(request.headers_mut()).map(|()| c)) {
                        Ok(c) => {
                            rejected = None;
                            Some(c)
                        }
                        // The token endpoint or login host is down: the request has not been sent.
                        Err(e) if is_transient(&e) && retries + 1 < inner.retry.max_attempts => {
                            retries += 1;
                            let delay = inner.retry.backoff(retries);
                            self.note_retry(operation, "credential", delay);
                            tracing::debug!(error = %e, ?delay, "obtaining a credential failed, retrying");
                            tokio::time::sleep(delay).await;
                            template.get_or_insert(request);
                            continue;
                        }
                        Err(e) => return Ok(synthesize_error(&e)),
                    }
                }
                None => None,
            };
            if let Some(limit) = inner.attempt_timeout {
                *request.timeout_mut() = Some(limit);
            }

            let sent_to = request.url().clone();
            let sent = Instant::now();
            let result = http.execute(request).await;
            let latency = sent.elapsed();
            if let Some(observer) = &inner.observer {
                observer.attempt(
                    operation,
                    result.as_ref().ok().map(Response::status),
                    attempt,
                    latency,
                );
            }

            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    let retryable = retry::is_retryable_transport(&error);
                    if retryable
                        && may_retry
                        && can_replay
                        && retries + 1 < inner.retry.max_attempts
                    {
                        retries += 1;
                        let delay = inner.retry.backoff(retries);
                        self.note_retry(operation, "transport", delay);
                        tracing::debug!(%error, ?delay, "transport error, retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(error);
                }
            };

            // Never follow a redirect, never replay one: credentials stay with the endpoint.
            if let Err(e) = crate::http::refuse_redirect(operation, &sent_to, &response) {
                return Ok(synthesize_error(&e));
            }
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED
                && !refreshed
                && can_replay
                && credential.is_some()
            {
                refreshed = true;
                rejected = credential;
                self.note_retry(operation, "refresh", Duration::ZERO);
                tracing::debug!("401: refreshing the credential once");
                continue;
            }
            if status == StatusCode::MISDIRECTED_REQUEST
                && !re_resolved
                && can_replay
                && let (Some(tenant), Some(stale)) = (&inner.tenant, &endpoint)
            {
                re_resolved = true;
                self.note_retry(operation, "re-resolve", Duration::ZERO);
                tracing::info!(stale, "421: the tenant moved, re-resolving its endpoint");
                if let Err(e) = tenant.re_resolve(stale).await {
                    return Ok(synthesize_error(&e));
                }
                continue;
            }
            if inner.retry.is_retryable_status(status)
                && may_retry
                && can_replay
                && retries + 1 < inner.retry.max_attempts
            {
                let asked = error::retry_after(response.headers());
                if let Some(delay) = inner.retry.delay(retries + 1, asked) {
                    retries += 1;
                    self.note_retry(operation, &format!("status {}", status.as_u16()), delay);
                    tracing::debug!(status = status.as_u16(), ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            if status.is_client_error() || status.is_server_error() {
                return Ok(normalize_error_body(response).await);
            }
            return Ok(response);
        }
    }

    fn note_retry(&self, operation: &str, reason: &str, delay: Duration) {
        if let Some(observer) = &self.inner.observer {
            observer.retry(operation, reason, delay);
        }
    }
}

/// Swaps the client's configured base for the tenant's current endpoint.
fn point_at(request: &mut reqwest::Request, baseurl: &str, endpoint: &str) {
    let base = baseurl.trim_end_matches('/');
    if base == endpoint {
        return;
    }
    let Some(rest) = request
        .url()
        .as_str()
        .strip_prefix(base)
        .map(str::to_string)
    else {
        return;
    };
    match reqwest::Url::parse(&format!("{endpoint}{rest}")) {
        Ok(url) => *request.url_mut() = url,
        Err(error) => {
            tracing::warn!(%error, endpoint, "the State API endpoint does not form a URL; keeping the configured one")
        }
    }
}

fn prepare_headers(headers: &mut HeaderMap, defaults: &HeaderMap, operation: &str) {
    // progenitor stamps `api-version: v1-REST` on every request; SuperOffice has no use for it.
    headers.remove("api-version");
    // progenitor sets `Accept` only for JSON answers; a binary download asks for the types its
    // operation declares (`produces`), never for the client-wide `application/json` default.
    if !headers.contains_key(reqwest::header::ACCEPT)
        && let Some(accept) = crate::generated::accept_for(operation)
    {
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
    }
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Replaces an error body that is not JSON (HTML, text, empty) by a `SoError` carrying its
/// text, so the generated code decodes it and the status survives.
async fn normalize_error_body(response: Response) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(_) => Bytes::new(),
    };
    let is_json_object =
        serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_object());
    let body = if is_json_object {
        bytes
    } else {
        Bytes::from(error::non_json_error_body(status, &bytes))
    };
    rebuild(status, headers, body)
}

fn rebuild(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response {
    headers.remove(reqwest::header::CONTENT_LENGTH);
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Response::from(response)
}

/// A response standing for a failure the runtime detected itself.
fn synthesize(kind: &str, status: StatusCode, message: &str, extra: &[(&str, String)]) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(SDK_ERROR_HEADER),
        HeaderValue::from_str(kind).unwrap_or(HeaderValue::from_static("other")),
    );
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(*name), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    let body = serde_json::json!({ "Error": true, "ErrorType": "SuperOfficeSdk", "ErrorMessage": message, "ErrorSource": "superoffice-rs" });
    rebuild(status, headers, Bytes::from(body.to_string()))
}

fn synthesize_error(error: &Error) -> Response {
    match error {
        Error::TenantNotRunning { context, state } => synthesize(
            "tenant-not-running",
            StatusCode::SERVICE_UNAVAILABLE,
            &error.to_string(),
            &[
                (SDK_CONTEXT_HEADER, context.clone()),
                (SDK_STATE_HEADER, state.clone()),
            ],
        ),
        Error::Auth(_) | Error::StateMismatch | Error::TokenStore { .. } => {
            synthesize("auth", StatusCode::UNAUTHORIZED, &error.to_string(), &[])
        }
        Error::Config(message) => synthesize("config", StatusCode::BAD_REQUEST, message, &[]),
        Error::Redirect {
            operation,
            status,
            location,
            followed,
        } => {
            let mut extra = vec![
                (SDK_OPERATION_HEADER, operation.clone()),
                (SDK_STATUS_HEADER, status.as_u16().to_string()),
                (SDK_FOLLOWED_HEADER, followed.to_string()),
            ];
            if let Some(location) = location {
                extra.push((SDK_LOCATION_HEADER, location.clone()));
            }
            synthesize(
                "redirect",
                StatusCode::BAD_GATEWAY,
                &error.to_string(),
                &extra,
            )
        }
        Error::UntrustedEndpoint {
            context,
            endpoint,
            reason,
        } => synthesize(
            "untrusted-endpoint",
            StatusCode::BAD_GATEWAY,
            reason,
            &[
                (SDK_CONTEXT_HEADER, context.clone()),
                (SDK_LOCATION_HEADER, endpoint.clone()),
            ],
        ),
        Error::JwksUnavailable { jwks, reason } => synthesize(
            "jwks",
            StatusCode::UNAUTHORIZED,
            reason,
            &[(SDK_LOCATION_HEADER, jwks.clone())],
        ),
        other => {
            let status = other
                .status()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            synthesize("upstream", status, &other.to_string(), &[])
        }
    }
}

/// Failures of the login host or State API worth another attempt.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Transport(_)
        | Error::Timeout(_)
        | Error::RateLimited { .. }
        | Error::JwksUnavailable { .. } => true,
        Error::Api(api) => api.status.is_server_error(),
        _ => false,
    }
}

/// Reads a non-2xx response into an [`Error`] (for hand-written requests; generated
/// operations go through `Error::from`).
pub(crate) async fn error_from_response(response: Response) -> Error {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: crate::types::SoError = serde_json::from_slice(&bytes)
        .or_else(|_| serde_json::from_slice(&error::non_json_error_body(status, &bytes)))
        .unwrap_or_else(|_| serde_json::from_str("{}").expect("an empty SoError"));
    let value = progenitor_client::ResponseValue::new(body, status, headers);
    Error::from(progenitor_client::Error::ErrorResponse(value))
}

/// `Result` of a 2xx check on a response from the pipeline.
pub(crate) async fn check(response: Response) -> Result<Response> {
    if response.status().is_success() {
        Ok(response)
    } else if response.status() == StatusCode::NOT_MODIFIED {
        Err(Error::NotModified)
    } else {
        Err(error_from_response(response).await)
    }
}
