//! The system user (FACTS §1.9): server-to-server access without an interactive user.
//!
//! The app signs `"{system_token}.{UTC yyyyMMddHHmm}"` with its RSA private key (PKCS#1 v1.5,
//! SHA-256), posts the signed token to `PartnerSystemUser/Authenticate`, and gets a JWT whose
//! `ticket` claim is the credential: `Authorization: SOTicket <ticket>` plus
//! `SO-AppToken: <client secret>`.
//!
//! Tickets are valid 6 h with sliding expiry. [`SystemUser`] caches the ticket, renews it
//! before [`SystemUserConfig::max_ticket_age`] and after a 401, and lets concurrent callers share
//! one renewal.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use super::jwt::{Expected, JwksCache, VerifiedJwt};
use super::{Auth, BoxFuture, Credential, Secret};
use crate::{Environment, Error, Result};

/// Default [`SystemUserConfig::max_ticket_age`]: well inside the 6-hour window.
pub const DEFAULT_MAX_TICKET_AGE: Duration = Duration::from_secs(5 * 3600 + 30 * 60);
/// The `iss` of system-user JWTs.
pub const SYSTEM_USER_ISSUER: &str = "SuperOffice AS";
/// Timeout of one system-user login request.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The app's RSA private key for signing system tokens (ring: constant-time RSA). `Debug`
/// shows nothing of it.
#[derive(Clone)]
pub struct SystemUserKey(Arc<RsaKeyPair>);

impl fmt::Debug for SystemUserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemUserKey(<redacted>)")
    }
}

impl SystemUserKey {
    /// Parses a key in any supported form: PEM (`BEGIN RSA PRIVATE KEY` / PKCS#1 or
    /// `BEGIN PRIVATE KEY` / PKCS#8) or RSA-XML (`<RSAKeyValue>…`, as the Developer Portal
    /// hands it out).
    pub fn parse(text: &str) -> Result<SystemUserKey> {
        let trimmed = text.trim_start_matches('\u{feff}').trim();
        if trimmed.starts_with('<') {
            Self::from_rsa_xml(trimmed)
        } else {
            Self::from_pem(trimmed)
        }
    }

    /// Reads and parses a key file (see [`parse`](Self::parse)).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<SystemUserKey> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the system-user key {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// A PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<SystemUserKey> {
        let bad = |m: &str| Error::Config(format!("the system-user key {m}"));
        let (label, der) = super::der::pem_to_der(pem)
            .ok_or_else(|| bad("is not an RSA private key in PKCS#1 or PKCS#8 PEM"))?;
        let key = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            other => {
                return Err(bad(&format!(
                    "is a PEM {other:?}, not a PKCS#1 (RSA PRIVATE KEY) or PKCS#8 (PRIVATE KEY) RSA private key"
                )));
            }
        };
        key.map(|k| SystemUserKey(Arc::new(k)))
            .map_err(|e| bad(&format!("is not a usable RSA private key ({e})")))
    }

    /// The .NET RSA-XML form: `<RSAKeyValue><Modulus>…</Modulus><Exponent>…</Exponent>
    /// <P>…</P><Q>…</Q><DP>…</DP><DQ>…</DQ><InverseQ>…</InverseQ><D>…</D></RSAKeyValue>`,
    /// base64 big-endian integers, as the Developer Portal hands it out (.NET's
    /// `ToXmlString(true)` always writes all eight). Every element is required: the components
    /// are written into a PKCS#1 key and validated by ring.
    pub fn from_rsa_xml(xml: &str) -> Result<SystemUserKey> {
        let bad = |m: String| Error::Config(format!("the RSA-XML system-user key {m}"));
        if !xml.contains("<RSAKeyValue") {
            return Err(bad("has no <RSAKeyValue> element".into()));
        }
        let element = |name: &str| -> Result<Vec<u8>> {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            let start = xml
                .find(&open)
                .ok_or_else(|| bad(format!("lacks <{name}>")))?;
            let rest = &xml[start + open.len()..];
            let end = rest
                .find(&close)
                .ok_or_else(|| bad(format!("has an unterminated <{name}>")))?;
            let b64: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(b64)
                .map_err(|_| bad(format!("has a <{name}> that is not base64")))
        };
        // PKCS#1 order: n, e, d, p, q, dp, dq, qinv.
        let mut parts = Vec::with_capacity(8);
        for name in ["Modulus", "Exponent", "D", "P", "Q", "DP", "DQ", "InverseQ"] {
            parts.push(element(name)?);
        }
        let der = super::der::pkcs1_private_key(&parts);
        RsaKeyPair::from_der(&der)
            .map(|k| SystemUserKey(Arc::new(k)))
            .map_err(|err| bad(format!("is not a valid RSA key ({err})")))
    }

    /// Signs `data` with RSA PKCS#1 v1.5 / SHA-256; returns the base64 signature.
    fn sign(&self, data: &str) -> String {
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                data.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing with a valid key and a correctly sized buffer");
        STANDARD.encode(signature)
    }
}

/// `yyyyMMddHHmm` of `at` in UTC, the timestamp format of signed system tokens.
pub fn system_token_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M").to_string()
}

/// `"{system_token}.{yyyyMMddHHmm}.{base64 signature}"`, the `SignedSystemToken`.
pub fn sign_system_token(key: &SystemUserKey, system_token: &str, at: DateTime<Utc>) -> String {
    let data = format!("{system_token}.{}", system_token_timestamp(at));
    let signature = key.sign(&data);
    format!("{data}.{signature}")
}

/// Settings of a [`SystemUser`] provider.
#[derive(Clone, Debug)]
pub struct SystemUserConfig {
    /// The login host.
    pub environment: Environment,
    /// The tenant, e.g. `Cust12345`.
    pub context_identifier: String,
    /// The tenant+app system token (`system_token` claim of an administrator's ID token).
    pub system_token: Secret,
    /// The client secret: the `ApplicationToken` of the login and the `SO-AppToken` header.
    pub app_token: Secret,
    /// The private key of the app's certificate.
    pub key: SystemUserKey,
    /// Renew the ticket once it is this old (tickets live 6 h, sliding); default 5½ h.
    pub max_ticket_age: Duration,
    /// The HTTP client for the login host; default: one from [`crate::http::client_builder`]
    /// (which does not follow redirects; a supplied client should not either, see
    /// [`crate::http`]).
    pub http: Option<reqwest::Client>,
    /// Accept a system-user JWT whose signature cannot be checked because the JWKS is
    /// unreachable. Default false: the login fails with [`Error::JwksUnavailable`]. Set with
    /// [`allow_unverified_jwt_when_jwks_unreachable`](Self::allow_unverified_jwt_when_jwks_unreachable()).
    pub allow_unverified_jwt_when_jwks_unreachable: bool,
}

impl SystemUserConfig {
    /// Settings with the default ticket age.
    pub fn new(
        environment: Environment,
        context_identifier: impl Into<String>,
        system_token: impl Into<Secret>,
        app_token: impl Into<Secret>,
        key: SystemUserKey,
    ) -> Self {
        SystemUserConfig {
            environment,
            context_identifier: context_identifier.into(),
            system_token: system_token.into(),
            app_token: app_token.into(),
            key,
            max_ticket_age: DEFAULT_MAX_TICKET_AGE,
            http: None,
            allow_unverified_jwt_when_jwks_unreachable: false,
        }
    }

    /// Sets the age at which the ticket is renewed proactively.
    pub fn with_max_ticket_age(mut self, age: Duration) -> Self {
        self.max_ticket_age = age;
        self
    }

    /// Uses this HTTP client for the login host. Build it from
    /// [`crate::http::client_builder`]: a client that follows redirects would re-send the
    /// login (signed system token, application token) to the redirect target before the SDK
    /// could refuse the answer.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Opt-out of fail-closed JWT verification: when `allow` is true and the JWKS cannot be
    /// fetched, the ticket is taken from the login's JWT with its claims checked but its
    /// signature not ([`VerifiedJwt::verified`] false, a warning logged). Default false: the
    /// login fails with [`Error::JwksUnavailable`].
    pub fn allow_unverified_jwt_when_jwks_unreachable(mut self, allow: bool) -> Self {
        self.allow_unverified_jwt_when_jwks_unreachable = allow;
        self
    }
}

#[derive(Deserialize)]
struct LoginAnswer {
    #[serde(rename = "IsSuccessful", alias = "isSuccessful", default)]
    is_successful: bool,
    #[serde(rename = "Token", alias = "token", default)]
    token: Option<String>,
    #[serde(rename = "ErrorMessage", alias = "errorMessage", default)]
    error_message: Option<String>,
}

struct Ticket {
    ticket: Secret,
    obtained: Instant,
    jwt: Option<VerifiedJwt>,
}

/// System-user provider. See the [module docs](self).
pub struct SystemUser {
    config: SystemUserConfig,
    http: reqwest::Client,
    jwks: JwksCache,
    ticket: RwLock<Option<Arc<Ticket>>>,
    lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for SystemUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemUser")
            .field("environment", &self.config.environment)
            .field("context_identifier", &self.config.context_identifier)
            .field("system_token", &self.config.system_token)
            .field("app_token", &self.config.app_token)
            .field("key", &self.config.key)
            .field("max_ticket_age", &self.config.max_ticket_age)
            .field("has_ticket", &self.current().is_some())
            .finish()
    }
}

impl SystemUser {
    /// A provider; no request is made until the first credential is needed.
    pub fn new(config: SystemUserConfig) -> Result<SystemUser> {
        let http = match &config.http {
            Some(http) => http.clone(),
            None => crate::http::client_builder()
                .build()
                .map_err(Error::Transport)?,
        };
        Ok(SystemUser {
            jwks: JwksCache::new(
                config.environment.jwks_url(),
                http.clone(),
                config.allow_unverified_jwt_when_jwks_unreachable,
            ),
            http,
            ticket: RwLock::new(None),
            lock: tokio::sync::Mutex::new(()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SystemUserConfig {
        &self.config
    }

    /// The claims of the JWT that carried the current ticket.
    pub fn claims(&self) -> Option<VerifiedJwt> {
        self.current().and_then(|t| t.jwt.clone())
    }

    fn current(&self) -> Option<Arc<Ticket>> {
        self.ticket
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn credential_of(&self, ticket: &Ticket) -> Credential {
        Credential::Ticket {
            ticket: ticket.ticket.clone(),
            app_token: self.config.app_token.clone(),
        }
    }

    fn fresh(&self, ticket: &Ticket) -> bool {
        ticket.obtained.elapsed() < self.config.max_ticket_age
    }

    /// Logs in now and caches the new ticket, whatever the age of the current one.
    pub async fn authenticate(&self) -> Result<Credential> {
        let _guard = self.lock.lock().await;
        self.login_locked().await
    }

    async fn login_locked(&self) -> Result<Credential> {
        let signed = sign_system_token(
            &self.config.key,
            self.config.system_token.expose(),
            Utc::now(),
        );
        let body = serde_json::json!({
            "SignedSystemToken": signed,
            "ApplicationToken": self.config.app_token.expose(),
            "ContextIdentifier": self.config.context_identifier,
            "ReturnTokenType": "JWT",
        });
        tracing::debug!(context = %self.config.context_identifier, "system-user login");
        let url = self.config.environment.system_user_url();
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .timeout(LOGIN_TIMEOUT)
            .send()
            .await
            .map_err(Error::Transport)?;
        // The body carries the application token and the signed system token.
        crate::http::refuse_redirect("system-user login", &url, &response)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(Error::Auth(format!(
                "the system-user login answered HTTP {status}: {text}"
            )));
        }
        let answer: LoginAnswer = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Auth(format!("the system-user login answer is unreadable ({e})"))
        })?;
        if !answer.is_successful {
            return Err(Error::Auth(format!(
                "the system-user login was refused: {}",
                answer
                    .error_message
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "no reason given".into())
            )));
        }
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth("the system-user login returned no token".into()))?;
        let (ticket, jwt) = if token.starts_with("7T:") {
            // A bare ticket (ReturnTokenType ignored).
            (Secret::new(token), None)
        } else {
            let expected = Expected {
                issuer: SYSTEM_USER_ISSUER.into(),
                audience: "spn:".into(),
                audience_is_prefix: true,
                nonce: None,
            };
            let jwt = self.jwks.verify(&token, &expected).await?;
            let ticket =
                jwt.claims.ticket.clone().ok_or_else(|| {
                    Error::Auth("the system-user JWT carries no ticket claim".into())
                })?;
            (ticket, Some(jwt))
        };
        let ticket = Arc::new(Ticket {
            ticket,
            obtained: Instant::now(),
            jwt,
        });
        *self.ticket.write().unwrap_or_else(|e| e.into_inner()) = Some(ticket.clone());
        tracing::info!(context = %self.config.context_identifier, "obtained a system-user ticket");
        Ok(self.credential_of(&ticket))
    }

    async fn credential_impl(&self) -> Result<Credential> {
        let seen = self.current();
        if let Some(t) = &seen
            && self.fresh(t)
        {
            return Ok(self.credential_of(t));
        }
        let _guard = self.lock.lock().await;
        if let Some(t) = &self.current()
            && self.fresh(t)
        {
            // Another caller renewed while this one waited.
            return Ok(self.credential_of(t));
        }
        self.login_locked().await
    }

    async fn refresh_impl(&self, rejected: &Credential) -> Result<Credential> {
        let _guard = self.lock.lock().await;
        if let Some(t) = self.current() {
            let credential = self.credential_of(&t);
            if credential != *rejected {
                return Ok(credential);
            }
        }
        self.login_locked().await
    }
}

impl Auth for SystemUser {
    fn credential(&self) -> BoxFuture<'_, Result<Credential>> {
        Box::pin(self.credential_impl())
    }

    fn refresh(&self, rejected: &Credential) -> BoxFuture<'_, Result<Credential>> {
        let rejected = rejected.clone();
        Box::pin(async move { self.refresh_impl(&rejected).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SystemUserKey {
        SystemUserKey::parse(emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM).unwrap()
    }

    #[test]
    fn timestamps_are_utc_minutes() {
        let at = DateTime::parse_from_rfc3339("2026-03-05T15:22:59+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(system_token_timestamp(at), "202603051422");
        let signed = sign_system_token(&key(), "App-1", at);
        let parts: Vec<&str> = signed.splitn(3, '.').collect();
        assert_eq!(parts[..2], ["App-1", "202603051422"]);
        assert!(STANDARD.decode(parts[2]).is_ok());
    }

    #[test]
    fn malformed_keys_are_config_errors() {
        assert!(matches!(
            SystemUserKey::parse("nonsense"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            SystemUserKey::parse("<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            SystemUserKey::parse(
                "<RSAKeyValue><Modulus>AQAB</Modulus><Exponent>AQAB</Exponent><D>AQAB</D></RSAKeyValue>"
            ),
            Err(Error::Config(_))
        ));
        assert!(!format!("{:?}", key()).contains("BEGIN"));
    }
}
