//! Errors: [`Error`] for the library API and [`SoError`], the error body the HTTP API sends.
//!
//! SuperOffice answers failed calls with a non-2xx status and a JSON body shaped like
//! `{"Error":true,"ErrorType":"SoNotFoundException","ErrorMessage":"…","ErrorSource":"…"}`.
//! [`SoError`] is that body plus its status; every handler returns it on failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong when starting or driving the emulator as a library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A key in the configuration could not be parsed.
    #[error("invalid key: {0}")]
    Key(String),
    /// An admin operation was rejected (unknown entity, unknown id, bad arguments).
    #[error("{0}")]
    Admin(SoError),
}

/// Result alias for the library API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error body SuperOffice sends, with the HTTP status it comes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoError {
    /// HTTP status.
    pub status: StatusCode,
    /// `ErrorType`, e.g. `SoNotFoundException`.
    pub error_type: String,
    /// `ErrorMessage`.
    pub message: String,
    /// Extra response headers (e.g. `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// The `ErrorSource` value the emulator reports.
pub const ERROR_SOURCE: &str = "SuperOffice.Services.Implementation";

impl SoError {
    /// An error with an explicit status and type.
    pub fn new(status: StatusCode, error_type: &str, message: impl Into<String>) -> Self {
        SoError {
            status,
            error_type: error_type.to_string(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with `SoValidationException`-style type `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// 404 `SoNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "SoNotFoundException", message)
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "SoAuthenticationException",
            message,
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    /// 409 for a failed JSON-Patch `test`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "JsonPatchTestFailedException",
            message,
        )
    }

    /// 412 for a failed `If-Unmodified-Since`.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            message,
        )
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "Error": true,
            "ErrorType": self.error_type,
            "ErrorMessage": self.message,
            "ErrorSource": ERROR_SOURCE,
        })
    }
}

impl std::fmt::Display for SoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error_type,
            self.message
        )
    }
}

impl IntoResponse for SoError {
    fn into_response(self) -> Response {
        let mut resp = crate::server::json_response(self.status, &self.body());
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl From<SoError> for Error {
    fn from(e: SoError) -> Self {
        Error::Admin(e)
    }
}
