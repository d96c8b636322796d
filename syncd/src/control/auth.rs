//! Who may call the control plane, as axum middleware (fail closed).
//!
//! Routes that read the feed or change state go into the *authenticated* sub-router
//! (built in [`crate::control::router`], wrapped by [`authenticated`]); every route placed
//! there gets, outermost first:
//!
//! 1. [`refuse_foreign_origin`]: a request carrying an `Origin` header that is not in
//!    `[control] allowed_origins` is **403** (browsers always send `Origin` on cross-site
//!    requests, so a web page can never drive these routes);
//! 2. [`require_token`]: `Authorization: Bearer <control.token>` or **401** (with
//!    `WWW-Authenticate: Bearer`); the comparison is constant-time over SHA-256 digests, so
//!    neither content nor length leaks;
//! 3. [`require_json`]: a request with a body (any method but GET, HEAD, OPTIONS) must say
//!    `Content-Type: application/json` (optionally `; charset=utf-8`), else **415**: such a
//!    request cannot be sent cross-site without a CORS preflight, which syncd never answers.
//!
//! Without `control.token` the authenticated routes are not served at all (404).
//! Refusals are logged (path and reason, never the presented token) and counted in
//! `syncd_control_refused_total{reason}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Services;
use crate::config::Control;
use superoffice::auth::Secret;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `control.token` is configured, so nothing can authenticate (401).
    NoTokenConfigured,
    /// No `Authorization: Bearer …` header (401).
    MissingToken,
    /// A bearer token that is not the configured one (401).
    WrongToken,
    /// An `Origin` header that is not allowed (403).
    ForeignOrigin,
    /// A body that is not declared as JSON (415).
    NotJson,
}

impl Refusal {
    /// The metric label and log reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoTokenConfigured => "no_token_configured",
            Refusal::MissingToken => "missing_token",
            Refusal::WrongToken => "wrong_token",
            Refusal::ForeignOrigin => "foreign_origin",
            Refusal::NotJson => "not_json",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NoTokenConfigured | Refusal::MissingToken | Refusal::WrongToken => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::ForeignOrigin => StatusCode::FORBIDDEN,
            Refusal::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::NoTokenConfigured | Refusal::MissingToken | Refusal::WrongToken => {
                "authentication required: Authorization: Bearer <control token>"
            }
            Refusal::ForeignOrigin => "this origin is not allowed (control.allowed_origins)",
            Refusal::NotJson => "the body must be JSON: Content-Type: application/json",
        }
    }

    /// Logs and counts the refusal and builds the answer (a JSON error).
    fn respond(self, services: &Services, method: &Method, path: &str) -> Response {
        tracing::warn!(%method, path, reason = self.reason(), status = self.status().as_u16(), "control plane: request refused");
        services.metrics.inc(
            "syncd_control_refused_total",
            &[("reason", self.reason())],
            1,
        );
        let mut response = (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.message() })),
        )
            .into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header"));
        }
        response
    }
}

/// Whether `headers` carry the configured bearer token.
pub fn check_token(expected: Option<&Secret>, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(expected) = expected else {
        return Err(Refusal::NoTokenConfigured);
    };
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|value| bearer(value.as_bytes()))
    else {
        return Err(Refusal::MissingToken);
    };
    let expected = Sha256::digest(expected.expose().as_bytes());
    let given = Sha256::digest(given);
    if bool::from(expected.as_slice().ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// The credentials of `Bearer <token>` (scheme case-insensitive), if that is the scheme.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether the request's `Origin` (if any) is allowed.
pub fn check_origin(control: &Control, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| control.allowed_origins.iter().any(|a| a == o));
    if allowed {
        Ok(())
    } else {
        Err(Refusal::ForeignOrigin)
    }
}

/// Whether a request of `method` with `headers` declares a JSON body where it may carry one.
pub fn check_json(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type);
    if ok { Ok(()) } else { Err(Refusal::NotJson) }
}

/// `application/json`, optionally with `charset=utf-8` (case-insensitive, quoted or not);
/// any other parameter is refused.
fn is_json_media_type(text: &str) -> bool {
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| {
        let param = param.trim();
        match param.split_once('=') {
            Some((name, value)) => {
                name.trim().eq_ignore_ascii_case("charset")
                    && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            // A trailing `;` is harmless.
            None => param.is_empty(),
        }
    })
}

/// Middleware: 401 unless the request carries the control token.
pub async fn require_token(
    State(services): State<Arc<Services>>,
    request: Request,
    next: Next,
) -> Response {
    match check_token(services.control_token.as_ref(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.respond(&services, request.method(), request.uri().path()),
    }
}

/// Middleware: 403 for an `Origin` that is not in `control.allowed_origins`.
pub async fn refuse_foreign_origin(
    State(services): State<Arc<Services>>,
    request: Request,
    next: Next,
) -> Response {
    match check_origin(&services.config.control, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.respond(&services, request.method(), request.uri().path()),
    }
}

/// Middleware: 415 for a body not declared as JSON.
pub async fn require_json(
    State(services): State<Arc<Services>>,
    request: Request,
    next: Next,
) -> Response {
    match check_json(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.respond(&services, request.method(), request.uri().path()),
    }
}

/// Puts `routes` behind the origin check, the token and the JSON check (in that order).
/// Routes that read the feed or change state belong here. The checks apply to matched routes
/// only (`route_layer`), so an unknown path stays 404; `routes` must not be empty.
pub fn authenticated(
    routes: Router<Arc<Services>>,
    services: &Arc<Services>,
) -> Router<Arc<Services>> {
    routes
        .route_layer(from_fn_with_state(services.clone(), require_json))
        .route_layer(from_fn_with_state(services.clone(), require_token))
        .route_layer(from_fn_with_state(services.clone(), refuse_foreign_origin))
}

/// Puts `routes` behind the origin check and the token, for reads that are not JSON
/// (`/metrics` with `metrics_auth = true`); `routes` must not be empty.
pub fn token_only(
    routes: Router<Arc<Services>>,
    services: &Arc<Services>,
) -> Router<Arc<Services>> {
    routes
        .route_layer(from_fn_with_state(services.clone(), require_token))
        .route_layer(from_fn_with_state(services.clone(), refuse_foreign_origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn control(token: Option<&str>, origins: &[&str]) -> Control {
        let mut text = format!("[control]\nallowed_origins = {origins:?}\n");
        if let Some(token) = token {
            text.push_str(&format!("token = {{ value = {token:?} }}\n"));
        }
        crate::Config::parse(&text, "test.toml", &Default::default())
            .expect("valid [control]")
            .control
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn the_token_must_be_the_configured_bearer_token() {
        let token = control(Some(TOKEN), &[]).resolve_token().unwrap();
        let c = token.as_ref();
        let ok = headers(&[("authorization", &format!("Bearer {TOKEN}"))]);
        assert_eq!(check_token(c, &ok), Ok(()));
        let lower = headers(&[("authorization", &format!("bearer  {TOKEN} "))]);
        assert_eq!(check_token(c, &lower), Ok(()));
        assert_eq!(
            check_token(c, &HeaderMap::new()),
            Err(Refusal::MissingToken)
        );
        let basic = headers(&[("authorization", &format!("Basic {TOKEN}"))]);
        assert_eq!(check_token(c, &basic), Err(Refusal::MissingToken));
        let glued = headers(&[("authorization", &format!("Bearer{TOKEN}"))]);
        assert_eq!(check_token(c, &glued), Err(Refusal::MissingToken));
        let wrong = headers(&[("authorization", &format!("Bearer {TOKEN}x"))]);
        assert_eq!(check_token(c, &wrong), Err(Refusal::WrongToken));
        let prefix = headers(&[("authorization", "Bearer 0123")]);
        assert_eq!(check_token(c, &prefix), Err(Refusal::WrongToken));
        // Without a configured token nothing authenticates.
        assert_eq!(check_token(None, &ok), Err(Refusal::NoTokenConfigured));
    }

    #[test]
    fn only_configured_origins_pass() {
        let c = control(None, &["https://app.example.com"]);
        assert_eq!(check_origin(&c, &HeaderMap::new()), Ok(()));
        let allowed = headers(&[("origin", "https://app.example.com")]);
        assert_eq!(check_origin(&c, &allowed), Ok(()));
        for foreign in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "null",
        ] {
            let h = headers(&[("origin", foreign)]);
            assert_eq!(
                check_origin(&c, &h),
                Err(Refusal::ForeignOrigin),
                "{foreign}"
            );
        }
        let h = headers(&[("origin", "https://app.example.com")]);
        assert_eq!(
            check_origin(&control(None, &[]), &h),
            Err(Refusal::ForeignOrigin)
        );
    }

    #[test]
    fn bodies_must_be_declared_json() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            let h = headers(&[("content-type", ok)]);
            assert_eq!(check_json(&Method::POST, &h), Ok(()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "application/json; boundary=x",
            "application/jsonp",
        ] {
            let h = headers(&[("content-type", bad)]);
            assert_eq!(
                check_json(&Method::POST, &h),
                Err(Refusal::NotJson),
                "{bad}"
            );
        }
        assert_eq!(
            check_json(&Method::POST, &HeaderMap::new()),
            Err(Refusal::NotJson)
        );
        assert_eq!(
            check_json(&Method::DELETE, &HeaderMap::new()),
            Err(Refusal::NotJson)
        );
        assert_eq!(check_json(&Method::GET, &HeaderMap::new()), Ok(()));
    }
}
