//! [`Error`]: the one error type of this crate, with a variant per outcome a caller may want
//! to match on.
//!
//! Generated operations return progenitor's error type ([`crate::OperationError`]);
//! `Error::from` classifies it. Status and body survive even when the server sent HTML or
//! nothing at all: the runtime turns such bodies into a `SoError` before the generated code
//! sees them (see `hooks.rs`).

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use crate::types::SoError;

/// Header the runtime sets on responses it synthesises itself, naming the failure.
pub(crate) const SDK_ERROR_HEADER: &str = "x-superoffice-sdk-error";
/// Header carrying the tenant state on a synthesised "tenant not running" response.
pub(crate) const SDK_STATE_HEADER: &str = "x-superoffice-sdk-state";
/// Header carrying the context identifier on synthesised responses.
pub(crate) const SDK_CONTEXT_HEADER: &str = "x-superoffice-sdk-context";
/// Header carrying the operation on a synthesised "redirect" response.
pub(crate) const SDK_OPERATION_HEADER: &str = "x-superoffice-sdk-operation";
/// Header carrying the original status on a synthesised "redirect" response.
pub(crate) const SDK_STATUS_HEADER: &str = "x-superoffice-sdk-status";
/// Header carrying a URL (redirect `Location`, untrusted endpoint, JWKS) on synthesised responses.
pub(crate) const SDK_LOCATION_HEADER: &str = "x-superoffice-sdk-location";
/// Header saying whether the HTTP client followed the redirect itself.
pub(crate) const SDK_FOLLOWED_HEADER: &str = "x-superoffice-sdk-followed";
/// `ErrorType` the runtime puts in a `SoError` made from a non-JSON error body.
pub(crate) const NON_JSON_ERROR_TYPE: &str = "NonJsonErrorBody";

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to SuperOffice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 404: the record does not exist (or is not visible to this user).
    #[error("not found: {0}")]
    NotFound(Box<ApiError>),
    /// 412: the record changed after the `If-Unmodified-Since` time.
    #[error("precondition failed (the record changed since If-Unmodified-Since): {0}")]
    PreconditionFailed(Box<ApiError>),
    /// 409: a JSON Patch `test` operation failed, or another conflict.
    #[error("conflict: {0}")]
    Conflict(Box<ApiError>),
    /// 304: unchanged since `If-Modified-Since`.
    #[error("not modified since If-Modified-Since")]
    NotModified,
    /// 401 after the credential was refreshed once, or no credential could be obtained.
    #[error("unauthorized: {0}")]
    Unauthorized(Box<ApiError>),
    /// 421: the tenant is served from another host, still after re-resolving it once.
    #[error("misdirected request (the tenant moved): {0}")]
    Misdirected(Box<ApiError>),
    /// 429 (or 503 with `Retry-After`) after the retries were used up.
    #[error("rate limited{}: {body}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
        /// The response.
        body: Box<ApiError>,
    },
    /// The State API says the tenant cannot serve requests now.
    #[error("tenant {context} is not running (state: {state})")]
    TenantNotRunning {
        /// The context identifier (`Cust12345`).
        context: String,
        /// The state the State API reported (`Suspended`, `OfflineMaintenance`, …).
        state: String,
    },
    /// Any other non-2xx answer.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request never got an answer (DNS, connect, TLS, reset, per-attempt timeout).
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The whole call (all attempts) took longer than the overall timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A 2xx answer whose body is not what the spec says.
    #[error("could not decode the response: {message}; body starts with {excerpt:?}")]
    Decode {
        /// The deserializer's message.
        message: String,
        /// The first bytes of the body.
        excerpt: String,
    },
    /// A 2xx list or archive answer without its `value` array (absent or null). Never read as
    /// "no rows": a caller that took it for an empty page would miss records, or think them
    /// deleted.
    #[error("the answer of {path} has no `value` array (an OData page must have one)")]
    MissingValue {
        /// The request path and query (`/api/v1/Contact?$select=…`).
        path: String,
        /// The first bytes of the body.
        excerpt: String,
    },
    /// A row of a keyset page without the key column (nor `PrimaryKey`). Never skipped: a
    /// caller would take the record for deleted, and a page of such rows for the end of the data.
    #[error("row {row} of {rows} in the answer of {path} has no `{key}` (primary key)")]
    MissingKey {
        /// The request path and query.
        path: String,
        /// The key column.
        key: String,
        /// The row's index in the page (0-based).
        row: usize,
        /// The rows the page holds.
        rows: usize,
    },
    /// A keyset page whose highest key is not above the key it was asked to start after: the
    /// server ignored the `key gt after` filter (or the column is not a unique key), and paging
    /// on would never end.
    #[error(
        "keyset paging on `{key}` did not advance in the answer of {path}: asked for keys after {after}, the page ends at {last}"
    )]
    KeysetStalled {
        /// The request path and query.
        path: String,
        /// The key column.
        key: String,
        /// The key the page was asked to start after.
        after: i64,
        /// The highest key of the page.
        last: i64,
    },
    /// Obtaining or refreshing a credential failed (token endpoint, system-user login, key).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The OAuth redirect carried a `state` other than the one sent with the authorize request
    /// (a stale or forged sign-in response); it was refused and no code was exchanged.
    #[error(
        "authentication failed: the sign-in redirect carries the wrong state (stale or forged response); sign in again"
    )]
    StateMismatch,
    /// The request could not be built (a parameter failed to convert, an invalid header …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client was configured inconsistently.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server answered with a redirect (3xx other than 304), or a caller-supplied HTTP
    /// client followed one to another origin. The SDK never follows redirects, so credentials
    /// (`Authorization`, `SO-AppToken`, the system-user login body) are never sent to the
    /// redirect target (see [`crate::http`]).
    #[error(
        "{operation}: {} to {}; the SDK does not follow redirects, so no credential was sent there",
        if *followed { format!("the HTTP client followed a redirect (final answer HTTP {status})") } else { format!("the server answered HTTP {status}, a redirect") },
        location.as_deref().unwrap_or("(no Location)")
    )]
    Redirect {
        /// The operation (`ContactGet`, `state api`, `token endpoint`, `jwks`, `system-user login`).
        operation: String,
        /// The status of the answer (the 3xx, or the final status when `followed`).
        status: StatusCode,
        /// The `Location` header (or, when `followed`, the URL the answer came from).
        location: Option<String>,
        /// True when a caller-supplied client followed the redirect itself (the request was
        /// re-sent to the other origin before the SDK could refuse the answer).
        followed: bool,
    },
    /// The State API reported a tenant endpoint this environment does not trust (not https,
    /// not under the environment's domain, or not the custom environment's own origin); it
    /// was not used.
    #[error(
        "the State API gave tenant {context} the endpoint {endpoint:?}, which is not trusted: {reason}; nothing was sent to it"
    )]
    UntrustedEndpoint {
        /// The context identifier (`Cust12345`).
        context: String,
        /// The endpoint as the State API reported it.
        endpoint: String,
        /// Why it is not trusted.
        reason: String,
    },
    /// A JWT (ID token or system-user token) could not be verified because the JWKS could
    /// not be fetched, and the caller did not opt in to unverified tokens
    /// (`allow_unverified_id_token_when_jwks_unreachable`).
    #[error(
        "the token's signature cannot be verified: the JWKS at {jwks} is unreachable ({reason}); the token was refused"
    )]
    JwksUnavailable {
        /// The JWKS URL.
        jwks: String,
        /// Why it could not be fetched.
        reason: String,
    },
    /// Reading or writing a token file failed.
    #[error("token store {path}: {source}")]
    TokenStore {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A non-2xx answer: the status, SuperOffice's error fields when it sent them, and the start
/// of the body as received.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `ErrorType`, e.g. `SoNotFoundException`.
    pub error_type: Option<String>,
    /// `ErrorMessage`.
    pub message: Option<String>,
    /// `ErrorSource`.
    pub source: Option<String>,
    /// Whether the server sent a JSON error body (`false`: HTML, text or empty).
    pub json_body: bool,
    /// The operation id of the request (`contact_get`, …), when the SDK's runtime sent it.
    pub operation: Option<String>,
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status.as_u16())
            .field("error_type", &self.error_type)
            .field("message", &self.message)
            .field("source", &self.source)
            .field("json_body", &self.json_body)
            .field("operation", &self.operation)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(kind) = &self.error_type {
            write!(f, " {kind}")?;
        }
        match &self.message {
            Some(message) if !message.is_empty() => write!(f, ": {message}"),
            _ => Ok(()),
        }
    }
}

impl ApiError {
    fn from_so_error(status: StatusCode, body: SoError) -> Self {
        let json_body = body.error_type.as_deref() != Some(NON_JSON_ERROR_TYPE);
        ApiError {
            status,
            error_type: body.error_type.filter(|t| t != NON_JSON_ERROR_TYPE),
            message: body.error_message,
            source: body.error_source,
            json_body,
            operation: None,
        }
    }

    fn bare(status: StatusCode) -> Self {
        ApiError {
            status,
            error_type: None,
            message: None,
            source: None,
            json_body: false,
            operation: None,
        }
    }

    fn with_operation(mut self, headers: &reqwest::header::HeaderMap) -> Self {
        self.operation = headers
            .get(SDK_OPERATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        self
    }
}

impl Error {
    /// The HTTP status behind this error, if there was a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::NotFound(e)
            | Error::PreconditionFailed(e)
            | Error::Conflict(e)
            | Error::Unauthorized(e)
            | Error::Misdirected(e)
            | Error::Api(e)
            | Error::RateLimited { body: e, .. } => Some(e.status),
            Error::NotModified => Some(StatusCode::NOT_MODIFIED),
            Error::Redirect { status, .. } => Some(*status),
            Error::Transport(e) => e.status(),
            _ => None,
        }
    }

    /// The SuperOffice error body behind this error (`ErrorType`, `ErrorMessage`, status,
    /// operation), for every variant that carries an answer.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::NotFound(e)
            | Error::PreconditionFailed(e)
            | Error::Conflict(e)
            | Error::Unauthorized(e)
            | Error::Misdirected(e)
            | Error::Api(e)
            | Error::RateLimited { body: e, .. } => Some(e),
            _ => None,
        }
    }

    /// SuperOffice's `ErrorType` (e.g. `SoNotFoundException`), when the server sent one.
    pub fn error_type(&self) -> Option<&str> {
        self.api_error()?.error_type.as_deref()
    }

    /// SuperOffice's `ErrorMessage` (or the start of a non-JSON error body).
    pub fn message(&self) -> Option<&str> {
        self.api_error()?.message.as_deref()
    }

    /// The operation id of the failed request (`contact_get`, …; for a refused redirect the
    /// name in [`Error::Redirect`]), when known.
    pub fn operation(&self) -> Option<&str> {
        match self {
            Error::Redirect { operation, .. } => Some(operation.as_str()),
            _ => self.api_error()?.operation.as_deref(),
        }
    }

    /// Whether sending the same request again later may succeed: rate limiting, transport
    /// failures and timeouts, 502/503/504, a tenant that is not running (maintenance) and an
    /// unreachable JWKS. Everything else (4xx, decode errors, configuration, refused
    /// redirects, untrusted endpoints, authentication failures) is not: repeating it gives the
    /// same answer. The SDK has already retried what its retry policy allows.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. }
            | Error::Timeout(_)
            | Error::TenantNotRunning { .. }
            | Error::JwksUnavailable { .. } => true,
            Error::Transport(e) => !e.is_builder() && !e.is_decode() && !e.is_redirect(),
            Error::Api(e) => matches!(e.status.as_u16(), 502..=504),
            _ => false,
        }
    }

    /// Classifies a status and error body.
    pub(crate) fn from_status(
        status: StatusCode,
        api: ApiError,
        retry_after: Option<Duration>,
    ) -> Self {
        let api = Box::new(api);
        match status.as_u16() {
            304 => Error::NotModified,
            401 => Error::Unauthorized(api),
            404 => Error::NotFound(api),
            409 => Error::Conflict(api),
            412 => Error::PreconditionFailed(api),
            421 => Error::Misdirected(api),
            429 => Error::RateLimited {
                retry_after,
                body: api,
            },
            503 if retry_after.is_some() => Error::RateLimited {
                retry_after,
                body: api,
            },
            _ => Error::Api(api),
        }
    }
}

fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

/// Parses `Retry-After` (seconds or an HTTP date) relative to now.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

impl From<progenitor_client::Error<SoError>> for Error {
    fn from(error: progenitor_client::Error<SoError>) -> Self {
        use progenitor_client::Error as E;
        match error {
            E::ErrorResponse(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                if let Some(kind) = headers.get(SDK_ERROR_HEADER).and_then(|v| v.to_str().ok()) {
                    let body = response.into_inner();
                    return synthesized(kind, status, &headers, body);
                }
                let retry = retry_after(&headers);
                let api =
                    ApiError::from_so_error(status, response.into_inner()).with_operation(&headers);
                Error::from_status(status, api, retry)
            }
            E::UnexpectedResponse(response) => {
                let status = response.status();
                let retry = retry_after(response.headers());
                let api = ApiError::bare(status).with_operation(response.headers());
                Error::from_status(status, api, retry)
            }
            E::CommunicationError(e) | E::ResponseBodyError(e) | E::InvalidUpgrade(e) => {
                Error::Transport(e)
            }
            E::InvalidResponsePayload(bytes, e) => Error::Decode {
                message: e.to_string(),
                excerpt: excerpt(&bytes),
            },
            E::InvalidRequest(message) => Error::InvalidRequest(message),
            E::Custom(message) => Error::InvalidRequest(message),
        }
    }
}

/// Rebuilds the typed error the runtime encoded in a response it synthesised.
fn synthesized(
    kind: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: SoError,
) -> Error {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let message = body.error_message.unwrap_or_default();
    match kind {
        "tenant-not-running" => Error::TenantNotRunning {
            context: header(SDK_CONTEXT_HEADER),
            state: header(SDK_STATE_HEADER),
        },
        "auth" => Error::Auth(message),
        "timeout" => Error::Timeout(Duration::from_millis(message.parse().unwrap_or_default())),
        "config" => Error::Config(message),
        "redirect" => Error::Redirect {
            operation: header(SDK_OPERATION_HEADER),
            status: header(SDK_STATUS_HEADER)
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(status),
            location: headers
                .get(SDK_LOCATION_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            followed: header(SDK_FOLLOWED_HEADER) == "true",
        },
        "untrusted-endpoint" => Error::UntrustedEndpoint {
            context: header(SDK_CONTEXT_HEADER),
            endpoint: header(SDK_LOCATION_HEADER),
            reason: message,
        },
        "jwks" => Error::JwksUnavailable {
            jwks: header(SDK_LOCATION_HEADER),
            reason: message,
        },
        "upstream" => Error::Api(Box::new(
            ApiError {
                status,
                error_type: Some("Upstream".into()),
                message: Some(message),
                source: None,
                json_body: false,
                operation: None,
            }
            .with_operation(headers),
        )),
        _ => Error::InvalidRequest(message),
    }
}

/// The `SoError` JSON the runtime substitutes for a non-JSON error body.
pub(crate) fn non_json_error_body(status: StatusCode, body: &[u8]) -> Vec<u8> {
    let text = excerpt(body);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("").to_string()
    } else {
        text
    };
    serde_json::to_vec(&serde_json::json!({
        "Error": true,
        "ErrorType": NON_JSON_ERROR_TYPE,
        "ErrorMessage": message,
        "ErrorSource": null,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn so_error(kind: &str, message: &str) -> SoError {
        serde_json::from_value(
            serde_json::json!({ "Error": true, "ErrorType": kind, "ErrorMessage": message }),
        )
        .unwrap()
    }

    #[test]
    fn statuses_map_to_variants() {
        let api =
            |s: u16| ApiError::from_so_error(StatusCode::from_u16(s).unwrap(), so_error("X", "m"));
        assert!(matches!(
            Error::from_status(StatusCode::NOT_FOUND, api(404), None),
            Error::NotFound(_)
        ));
        assert!(matches!(
            Error::from_status(StatusCode::PRECONDITION_FAILED, api(412), None),
            Error::PreconditionFailed(_)
        ));
        assert!(matches!(
            Error::from_status(StatusCode::CONFLICT, api(409), None),
            Error::Conflict(_)
        ));
        assert!(matches!(
            Error::from_status(StatusCode::UNAUTHORIZED, api(401), None),
            Error::Unauthorized(_)
        ));
        assert!(matches!(
            Error::from_status(StatusCode::MISDIRECTED_REQUEST, api(421), None),
            Error::Misdirected(_)
        ));
        assert!(matches!(
            Error::from_status(
                StatusCode::TOO_MANY_REQUESTS,
                api(429),
                Some(Duration::from_secs(3))
            ),
            Error::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            Error::from_status(StatusCode::INTERNAL_SERVER_ERROR, api(500), None),
            Error::Api(_)
        ));
        assert!(matches!(
            Error::from_status(StatusCode::NOT_MODIFIED, api(304), None),
            Error::NotModified
        ));
    }

    #[test]
    fn accessors_expose_status_type_message_operation_and_retryability() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(SDK_OPERATION_HEADER, "contact_get".parse().unwrap());
        let body = so_error("SoNotFoundException", "Contact 7 not found");
        let response =
            progenitor_client::ResponseValue::new(body, StatusCode::NOT_FOUND, headers.clone());
        let err = Error::from(progenitor_client::Error::ErrorResponse(response));
        assert!(matches!(err, Error::NotFound(_)));
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(err.error_type(), Some("SoNotFoundException"));
        assert_eq!(err.message(), Some("Contact 7 not found"));
        assert_eq!(err.operation(), Some("contact_get"));
        assert!(!err.is_retryable());

        let busy = progenitor_client::ResponseValue::new(
            so_error("X", "busy"),
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
        );
        let err = Error::from(progenitor_client::Error::ErrorResponse(busy));
        assert!(err.is_retryable(), "{err:?}");
        let limited = Error::from_status(
            StatusCode::TOO_MANY_REQUESTS,
            ApiError::bare(StatusCode::TOO_MANY_REQUESTS),
            None,
        );
        assert!(limited.is_retryable());
        assert!(Error::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!Error::Config("x".into()).is_retryable());
        assert!(
            !Error::Decode {
                message: "m".into(),
                excerpt: String::new()
            }
            .is_retryable()
        );
        let conflict = Error::from_status(
            StatusCode::CONFLICT,
            ApiError::bare(StatusCode::CONFLICT),
            None,
        );
        assert!(!conflict.is_retryable());
        assert_eq!(conflict.operation(), None);
    }

    #[test]
    fn non_json_bodies_keep_status_and_text() {
        let html = b"<html><body>Bad gateway</body></html>";
        let body: SoError =
            serde_json::from_slice(&non_json_error_body(StatusCode::BAD_GATEWAY, html)).unwrap();
        let api = ApiError::from_so_error(StatusCode::BAD_GATEWAY, body);
        assert!(!api.json_body);
        assert_eq!(api.error_type, None);
        assert_eq!(
            api.message.as_deref(),
            Some("<html><body>Bad gateway</body></html>")
        );
        let empty: SoError =
            serde_json::from_slice(&non_json_error_body(StatusCode::SERVICE_UNAVAILABLE, b""))
                .unwrap();
        assert_eq!(empty.error_message.as_deref(), Some("Service Unavailable"));
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        headers.insert(
            reqwest::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let parsed = retry_after(&headers).unwrap();
        assert!(
            parsed > Duration::from_secs(110) && parsed <= Duration::from_secs(120),
            "{parsed:?}"
        );
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
