//! `[control]`: the control plane's address, secrets, origins and server limits, with the
//! `SYNCD_CONTROL_LISTEN` override.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use superoffice::auth::Secret;
use toml::Spanned;

use super::raw::RawControl;
use super::secret::SecretRef;
use super::values::Ctx;
use crate::{Error, Result};

/// The default control-plane address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The shortest accepted `control.token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// Control-plane settings.
#[derive(Debug, Clone)]
pub struct Control {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// Shared secret for `X-SuperOffice-Signature`; without it the one in the state directory
    /// is used (generated when needed, see [`crate::webhook_secret`]). Webhooks are always signed.
    pub webhook_secret: Option<SecretRef>,
    /// Public URL SuperOffice should post webhooks to (`syncd webhooks ensure`).
    pub public_url: Option<String>,
    /// Bearer token required on `/publish` and every route that reads the feed or changes
    /// state (see [`crate::control::auth`]); without it those routes are not served.
    pub token: Option<SecretRef>,
    /// Origins (`https://host[:port]`) allowed on the authenticated JSON routes; any other
    /// `Origin` header is refused (403). Default: none.
    pub allowed_origins: Vec<String>,
    /// `/metrics` requires the token too.
    pub metrics_auth: bool,
    /// A second listener on this Unix socket (mode 0660) serving the same routes.
    pub listen_unix: Option<PathBuf>,
    /// Server limits (timeouts, body sizes, connections).
    pub limits: ControlLimits,
}

/// Limits of the control-plane HTTP server (`[control]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// A connection that has not sent a complete request head within this time is closed
    /// (also the idle keep-alive limit).
    pub header_read_timeout: Duration,
    /// A request (body and handler) that takes longer is answered 408.
    pub request_timeout: Duration,
    /// Connections served at once (both listeners together); further ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Largest `/publish` body, in bytes (413 beyond).
    pub publish_body_limit: usize,
    /// Largest webhook body, in bytes (413 beyond).
    pub webhook_body_limit: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            publish_body_limit: 1024 * 1024,
            webhook_body_limit: 64 * 1024,
        }
    }
}

impl Control {
    /// Reads the control token (if one is configured) and checks its form.
    pub fn resolve_token(&self) -> Result<Option<Secret>> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let value = token.resolve()?;
        check_token(value.expose()).map_err(|e| Error::config_key(token.key(), e))?;
        Ok(Some(value))
    }
}

/// `[control]`, `SYNCD_CONTROL_LISTEN` taking the place of `control.listen`.
pub(super) fn control(
    ctx: &Ctx<'_>,
    raw: &RawControl,
    env: &BTreeMap<String, String>,
) -> Result<Control> {
    let control = Control {
        listen: listen(ctx, raw.listen.as_ref(), env.get("SYNCD_CONTROL_LISTEN"))?,
        webhook_secret: ctx.secret(raw.webhook_secret.as_ref(), "control.webhook_secret")?,
        public_url: raw.public_url.clone(),
        token: ctx.secret(raw.token.as_ref(), "control.token")?,
        allowed_origins: raw
            .allowed_origins
            .iter()
            .flatten()
            .map(|o| {
                check_origin(o.get_ref())
                    .map(|()| o.get_ref().clone())
                    .map_err(|e| ctx.at(o, "control.allowed_origins", e))
            })
            .collect::<Result<_>>()?,
        metrics_auth: raw.metrics_auth.as_ref().is_some_and(|m| *m.get_ref()),
        listen_unix: raw.listen_unix.clone(),
        limits: limits(ctx, raw)?,
    };
    // A token written inline is checked now; one from elsewhere when it is read.
    if let Some(span) = &raw.token
        && let Some(value) = &span.get_ref().value
    {
        check_token(value).map_err(|e| ctx.at(span, "control.token", e))?;
    }
    if let Some(span) = &raw.metrics_auth
        && control.metrics_auth
        && control.token.is_none()
    {
        return Err(ctx.at(
            span,
            "control.metrics_auth",
            "needs control.token (the token /metrics then requires)",
        ));
    }
    Ok(control)
}

/// `control.listen`, or the override, or [`DEFAULT_LISTEN`].
fn listen(
    ctx: &Ctx<'_>,
    raw: Option<&Spanned<String>>,
    env: Option<&String>,
) -> Result<SocketAddr> {
    match (env, raw) {
        (Some(text), _) => text
            .parse()
            .map_err(|e| ctx.plain("SYNCD_CONTROL_LISTEN", e)),
        (None, Some(spanned)) => spanned
            .get_ref()
            .parse()
            .map_err(|e| ctx.at(spanned, "control.listen", e)),
        (None, None) => Ok(DEFAULT_LISTEN
            .parse()
            .expect("the default listen address parses")),
    }
}

/// `[control]` limits: durations and counts, each non-zero.
fn limits(ctx: &Ctx<'_>, raw: &RawControl) -> Result<ControlLimits> {
    let defaults = ControlLimits::default();
    let duration = |value: Option<&Spanned<String>>, key: &str, default: Duration| {
        ctx.duration(
            value,
            key,
            default,
            Duration::from_millis(100)..=Duration::from_secs(3600),
        )
    };
    let count = |value: Option<&Spanned<i64>>, key: &str, default: usize, max: i64| {
        ctx.count(value, key, default, 1..=max)
    };
    Ok(ControlLimits {
        header_read_timeout: duration(
            raw.header_read_timeout.as_ref(),
            "control.header_read_timeout",
            defaults.header_read_timeout,
        )?,
        request_timeout: duration(
            raw.request_timeout.as_ref(),
            "control.request_timeout",
            defaults.request_timeout,
        )?,
        max_connections: count(
            raw.max_connections.as_ref(),
            "control.max_connections",
            defaults.max_connections,
            65_536,
        )?,
        publish_body_limit: count(
            raw.publish_body_limit.as_ref(),
            "control.publish_body_limit",
            defaults.publish_body_limit,
            64 << 20,
        )?,
        webhook_body_limit: count(
            raw.webhook_body_limit.as_ref(),
            "control.webhook_body_limit",
            defaults.webhook_body_limit,
            16 << 20,
        )?,
    })
}

/// A control token travels in a header: visible ASCII, at least [`MIN_TOKEN_LEN`] long.
pub(super) fn check_token(token: &str) -> std::result::Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "too short ({} characters); use at least {MIN_TOKEN_LEN}, e.g. `openssl rand -hex 32`",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces (it is sent as a bearer token)".into());
    }
    Ok(())
}

/// An allowed origin is written exactly as browsers send it: `scheme://host[:port]`.
fn check_origin(text: &str) -> std::result::Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    let origin = url.origin().ascii_serialization();
    if origin != text {
        return Err(format!(
            "{text:?} is not an origin as browsers send it; write {origin:?}"
        ));
    }
    Ok(())
}
