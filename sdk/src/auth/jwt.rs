//! ID tokens and system-user JWTs: the typed [`Claims`], and RS256 verification against the
//! login host's JWKS (FACTS §1.6, §1.9).
//!
//! Verification needs the JWKS. When it cannot be fetched (network down, no such endpoint,
//! an error status, not JSON), the token is refused with [`Error::JwksUnavailable`], unless
//! the caller opted out explicitly
//! ([`OAuthConfig::allow_unverified_id_token_when_jwks_unreachable`](super::OAuthConfig::allow_unverified_id_token_when_jwks_unreachable()),
//! [`SystemUserConfig::allow_unverified_jwt_when_jwks_unreachable`](super::SystemUserConfig::allow_unverified_jwt_when_jwks_unreachable())):
//! then the claims are still checked (issuer, audience, expiry, nonce) but the signature is
//! not, [`VerifiedJwt::verified`] is false and a warning is logged. When the JWKS can be
//! fetched, any failure (unknown key, bad signature, wrong issuer or audience, expired) is an
//! [`Error::Auth`]. A JWKS that answers with a redirect, or is not a usable key set, is an
//! error in every mode.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::rsa::PublicKeyComponents;
use ring::signature::RSA_PKCS1_2048_8192_SHA256;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

use super::Secret;
use crate::{Error, Result};

/// Prefix of SuperOffice's identity claims.
pub const CLAIM_PREFIX: &str = "http://schemes.superoffice.net/identity/";

/// Clock skew tolerated when checking `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;

/// The claims of a SuperOffice ID token or system-user JWT.
///
/// `Debug` shows no secret values (`system_token` and `ticket` are [`Secret`]s).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// `iss`: `https://{env}.superoffice.com` for ID tokens, `SuperOffice AS` for system-user
    /// JWTs.
    #[serde(default)]
    pub iss: String,
    /// `aud`: the client id for ID tokens, `spn:{serial}` for system-user JWTs (the first
    /// entry if the token lists several).
    #[serde(default, deserialize_with = "audience")]
    pub aud: Vec<String>,
    /// `sub`.
    #[serde(default)]
    pub sub: Option<String>,
    /// `exp`, seconds since the epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub exp: Option<i64>,
    /// `iat`.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub iat: Option<i64>,
    /// `nbf`.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub nbf: Option<i64>,
    /// `nonce` (echoed from the authorize request).
    #[serde(default)]
    pub nonce: Option<String>,
    /// The tenant, e.g. `Cust12345`.
    #[serde(default, rename = "http://schemes.superoffice.net/identity/ctx")]
    pub context_identifier: Option<String>,
    /// The REST base, e.g. `https://sod.superoffice.com/Cust12345/api/`.
    #[serde(default, rename = "http://schemes.superoffice.net/identity/webapi_url")]
    pub webapi_url: Option<String>,
    /// The SOAP base.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/netserver_url"
    )]
    pub netserver_url: Option<String>,
    /// The tenant+app system token (only for apps with the SystemToken claim).
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/system_token"
    )]
    pub system_token: Option<Secret>,
    /// The user's associate id.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/associateid",
        deserialize_with = "lenient_i64"
    )]
    pub associate_id: Option<i64>,
    /// The database serial.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/serial",
        deserialize_with = "lenient_string"
    )]
    pub serial: Option<String>,
    /// Whether the user is an administrator.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/is_administrator",
        deserialize_with = "lenient_bool"
    )]
    pub is_administrator: Option<bool>,
    /// E-mail address.
    #[serde(default, rename = "http://schemes.superoffice.net/identity/email")]
    pub email: Option<String>,
    /// User principal name.
    #[serde(default, rename = "http://schemes.superoffice.net/identity/upn")]
    pub upn: Option<String>,
    /// The tenant's company name.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/company_name"
    )]
    pub company_name: Option<String>,
    /// The user's initials.
    #[serde(default, rename = "http://schemes.superoffice.net/identity/initials")]
    pub initials: Option<String>,
    /// The primary e-mail address in SuperOffice.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/so_primary_email_address"
    )]
    pub so_primary_email_address: Option<String>,
    /// The identity provider.
    #[serde(
        default,
        rename = "http://schemes.superoffice.net/identity/identityprovider"
    )]
    pub identity_provider: Option<String>,
    /// The system-user ticket (`7T:…`; system-user JWTs only).
    #[serde(default, rename = "http://schemes.superoffice.net/identity/ticket")]
    pub ticket: Option<Secret>,
}

impl Claims {
    /// `exp` as a time.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.exp.and_then(|s| DateTime::from_timestamp(s, 0))
    }
}

fn audience<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

/// A decoded JWT and whether its signature and claims were verified.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// The claims.
    pub claims: Claims,
    /// True when the RS256 signature was checked against the JWKS and `iss`, `aud`, `exp`
    /// matched; false only when the caller opted in to unverified tokens and the JWKS could
    /// not be fetched (the claims were checked, the signature was not; a warning was logged).
    pub verified: bool,
}

impl fmt::Debug for VerifiedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedJwt")
            .field("verified", &self.verified)
            .field("claims", &self.claims)
            .finish()
    }
}

/// What a token must say about who issued it and for whom.
#[derive(Clone, Debug)]
pub(crate) struct Expected {
    /// Exact `iss`.
    pub issuer: String,
    /// Exact `aud` (any entry), or a prefix when `audience_is_prefix`.
    pub audience: String,
    /// Whether `audience` is a prefix (`spn:` for system-user JWTs).
    pub audience_is_prefix: bool,
    /// The `nonce` sent in the authorize request, if any.
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

struct Parts<'a> {
    header: Header,
    claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>> {
    let bad = |what: &str| Error::Auth(format!("malformed JWT: {what}"));
    let mut pieces = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(bad("expected three dot-separated parts"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Header = decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("the header is not base64url JSON"))?;
    let payload = decode(p).map_err(|_| bad("the payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|e| bad(&format!("the payload is not a JSON object of claims ({e})")))?;
    let signature = decode(s).map_err(|_| bad("the signature is not base64url"))?;
    Ok(Parts {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// Decodes a JWT's claims without checking anything.
pub(crate) fn decode_unverified(token: &str) -> Result<Claims> {
    Ok(split(token)?.claims)
}

/// One RSA key of a JWKS.
#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    /// Modulus and exponent, big-endian; verified with ring (constant-time RSA).
    key: PublicKeyComponents<Vec<u8>>,
}

/// The keys of the login host's JWKS document.
#[derive(Clone, Default)]
pub(crate) struct Jwks {
    keys: Vec<Jwk>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("-")))
            .finish()
    }
}

impl Jwks {
    /// Parses a JWKS document, keeping the RSA signing keys.
    pub(crate) fn parse(doc: &Value) -> Result<Jwks> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Auth("the JWKS has no \"keys\" array".into()))?;
        let mut out = Vec::new();
        for key in keys {
            let field = |k: &str| key.get(k).and_then(Value::as_str);
            if field("kty") != Some("RSA") || field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(n), Some(e)) = (field("n"), field("e")) else {
                continue;
            };
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
                continue;
            };
            // ring checks the modulus size (2048–8192 bits) and the exponent at verification.
            if n.is_empty() || e.is_empty() {
                continue;
            }
            out.push(Jwk {
                kid: field("kid").map(str::to_string),
                key: PublicKeyComponents { n, e },
            });
        }
        if out.is_empty() {
            return Err(Error::Auth("the JWKS holds no usable RSA key".into()));
        }
        Ok(Jwks { keys: out })
    }

    fn has(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    /// Checks the signature and the claims of `token`.
    pub(crate) fn verify(&self, token: &str, expected: &Expected) -> Result<Claims> {
        let parts = split(token)?;
        verify_parts(self, parts, expected, Utc::now().timestamp())
    }
}

fn verify_parts(jwks: &Jwks, parts: Parts<'_>, expected: &Expected, now: i64) -> Result<Claims> {
    if parts.header.alg != "RS256" {
        return Err(Error::Auth(format!(
            "the JWT is signed with {:?}; only RS256 is accepted",
            parts.header.alg
        )));
    }
    if parts.signature.is_empty() {
        return Err(Error::Auth("the JWT signature is malformed".into()));
    }
    let candidates: Vec<&Jwk> = match parts.header.kid.as_deref() {
        Some(kid) => jwks
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect(),
        None => jwks.keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(Error::Auth(format!(
            "the JWT names key {:?}, which the JWKS does not hold",
            parts.header.kid.unwrap_or_default()
        )));
    }
    if !candidates.iter().any(|k| {
        k.key
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                parts.signing_input.as_bytes(),
                &parts.signature,
            )
            .is_ok()
    }) {
        return Err(Error::Auth(
            "the JWT signature does not verify with the JWKS".into(),
        ));
    }
    check_claims(&parts.claims, expected, now)?;
    Ok(parts.claims)
}

fn check_claims(claims: &Claims, expected: &Expected, now: i64) -> Result<()> {
    if claims.iss != expected.issuer {
        return Err(Error::Auth(format!(
            "the JWT was issued by {:?}, expected {:?}",
            claims.iss, expected.issuer
        )));
    }
    let audience_ok = claims.aud.iter().any(|a| {
        if expected.audience_is_prefix {
            a.starts_with(&expected.audience)
        } else {
            *a == expected.audience
        }
    });
    if !audience_ok {
        return Err(Error::Auth(format!(
            "the JWT is for audience {:?}, expected {:?}",
            claims.aud, expected.audience
        )));
    }
    match claims.exp {
        None => return Err(Error::Auth("the JWT has no exp claim".into())),
        Some(exp) if exp + LEEWAY_SECS < now => {
            return Err(Error::Auth(format!("the JWT expired {} s ago", now - exp)));
        }
        Some(_) => {}
    }
    if let Some(nbf) = claims.nbf
        && nbf - LEEWAY_SECS > now
    {
        return Err(Error::Auth("the JWT is not valid yet (nbf)".into()));
    }
    if let Some(nonce) = &expected.nonce
        && claims.nonce.as_deref() != Some(nonce.as_str())
    {
        return Err(Error::Auth(
            "the ID token's nonce does not match the authorize request".into(),
        ));
    }
    Ok(())
}

/// Fetches the JWKS and caches it; refetches when a token names an unknown key (rotation).
#[derive(Debug)]
pub(crate) struct JwksCache {
    url: Url,
    http: reqwest::Client,
    /// Whether an unreachable JWKS lets claims through unverified (explicit opt-out).
    allow_unverified: bool,
    cached: tokio::sync::Mutex<Option<Jwks>>,
}

/// Why the JWKS could not be used.
enum FetchError {
    /// Not reachable: transport error, non-2xx, not JSON.
    Unreachable(String),
    /// Reachable but not a usable key set.
    Invalid(Error),
}

impl JwksCache {
    /// A cache for the JWKS at `url`. `allow_unverified`: see [`JwksCache::verify`].
    pub(crate) fn new(url: Url, http: reqwest::Client, allow_unverified: bool) -> Self {
        JwksCache {
            url,
            http,
            allow_unverified,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn fetch(&self) -> std::result::Result<Jwks, FetchError> {
        let response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        // A redirect could swap in someone else's keys: an error, not "unreachable".
        crate::http::refuse_redirect("jwks", &self.url, &response).map_err(FetchError::Invalid)?;
        if !response.status().is_success() {
            return Err(FetchError::Unreachable(format!(
                "HTTP {}",
                response.status()
            )));
        }
        let doc: Value = response
            .json()
            .await
            .map_err(|e| FetchError::Unreachable(format!("not JSON: {e}")))?;
        Jwks::parse(&doc).map_err(FetchError::Invalid)
    }

    /// Verifies `token`. Unreachable JWKS (and no cached set): [`Error::JwksUnavailable`], or,
    /// with `allow_unverified`, the claims checked without the signature and a warning.
    pub(crate) async fn verify(&self, token: &str, expected: &Expected) -> Result<VerifiedJwt> {
        let kid = split(token)?.header.kid;
        let mut cached = self.cached.lock().await;
        let stale = cached.as_ref().is_none_or(|j| !j.has(kid.as_deref()));
        if stale {
            match self.fetch().await {
                Ok(jwks) => *cached = Some(jwks),
                Err(FetchError::Invalid(e)) => return Err(e),
                Err(FetchError::Unreachable(why)) if cached.is_none() => {
                    if !self.allow_unverified {
                        tracing::error!(
                            jwks = %self.url,
                            reason = %why,
                            "the JWKS is unreachable; refusing the token (its signature cannot be verified)"
                        );
                        return Err(Error::JwksUnavailable {
                            jwks: self.url.to_string(),
                            reason: why,
                        });
                    }
                    let claims = decode_unverified(token)?;
                    check_claims(&claims, expected, Utc::now().timestamp())?;
                    tracing::warn!(
                        jwks = %self.url,
                        reason = %why,
                        "the JWKS is unreachable; using the token's claims UNVERIFIED (allowed by configuration)"
                    );
                    return Ok(VerifiedJwt {
                        claims,
                        verified: false,
                    });
                }
                // A cached set without the key: verifying with it reports the unknown key.
                Err(FetchError::Unreachable(_)) => {}
            }
        }
        let jwks = cached.as_ref().cloned().unwrap_or_default();
        drop(cached);
        let claims = jwks.verify(token, expected)?;
        tracing::debug!(
            kid = kid.as_deref().unwrap_or("-"),
            "verified JWT signature"
        );
        Ok(VerifiedJwt {
            claims,
            verified: true,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use serde_json::json;

    /// The emulator's committed test signing key (public knowledge, tests only).
    pub(crate) fn test_key() -> RsaKeyPair {
        let (_, der) =
            super::super::der::pem_to_der(emulator::test_keys::SIGNING_PRIVATE_KEY_PEM).unwrap();
        RsaKeyPair::from_pkcs8(&der).unwrap()
    }

    pub(crate) fn sign(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            out.as_bytes(),
            &mut sig,
        )
        .unwrap();
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    pub(crate) fn jwks_doc(key: &RsaKeyPair, kid: &str) -> Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public());
        json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e)}]})
    }

    fn expected() -> Expected {
        Expected {
            issuer: "https://sod.superoffice.com".into(),
            audience: "client".into(),
            audience_is_prefix: false,
            nonce: None,
        }
    }

    fn claims(now: i64) -> Value {
        json!({
            "iss": "https://sod.superoffice.com", "aud": "client", "exp": now + 300, "iat": now,
            "http://schemes.superoffice.net/identity/ctx": "Cust26759",
            "http://schemes.superoffice.net/identity/associateid": "5",
            "http://schemes.superoffice.net/identity/is_administrator": "True",
            "http://schemes.superoffice.net/identity/system_token": "App-sekrit",
        })
    }

    #[test]
    fn verifies_signature_and_claims() {
        let key = test_key();
        let jwks = Jwks::parse(&jwks_doc(&key, "k1")).unwrap();
        let now = Utc::now().timestamp();
        let token = sign(&key, "k1", &claims(now));
        let c = jwks.verify(&token, &expected()).unwrap();
        assert_eq!(c.context_identifier.as_deref(), Some("Cust26759"));
        assert_eq!(c.associate_id, Some(5));
        assert_eq!(c.is_administrator, Some(true));
        assert_eq!(
            c.system_token.as_ref().map(Secret::expose),
            Some("App-sekrit")
        );
        assert!(!format!("{c:?}").contains("App-sekrit"));

        // Tampered payload.
        let mut forged = claims(now);
        forged["http://schemes.superoffice.net/identity/ctx"] = json!("Cust1");
        let forged_payload = URL_SAFE_NO_PAD.encode(forged.to_string());
        let mut pieces: Vec<&str> = token.split('.').collect();
        pieces[1] = &forged_payload;
        let err = jwks.verify(&pieces.join("."), &expected()).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");

        // Wrong audience, issuer, expired, unknown kid, alg none.
        let mut wrong_aud = claims(now);
        wrong_aud["aud"] = json!("other");
        assert!(
            jwks.verify(&sign(&key, "k1", &wrong_aud), &expected())
                .unwrap_err()
                .to_string()
                .contains("audience")
        );
        let mut wrong_iss = claims(now);
        wrong_iss["iss"] = json!("https://evil.example");
        assert!(
            jwks.verify(&sign(&key, "k1", &wrong_iss), &expected())
                .unwrap_err()
                .to_string()
                .contains("issued by")
        );
        let mut expired = claims(now);
        expired["exp"] = json!(now - 3600);
        assert!(
            jwks.verify(&sign(&key, "k1", &expired), &expected())
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        assert!(
            jwks.verify(&sign(&key, "k2", &claims(now)), &expected())
                .unwrap_err()
                .to_string()
                .contains("does not hold")
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        assert!(jwks.verify(&none, &expected()).is_err());
    }

    #[test]
    fn audience_prefix_and_nonce() {
        let key = test_key();
        let jwks = Jwks::parse(&jwks_doc(&key, "k1")).unwrap();
        let now = Utc::now().timestamp();
        let mut c = claims(now);
        c["iss"] = json!("SuperOffice AS");
        c["aud"] = json!(["spn:123"]);
        c["nonce"] = json!("n1");
        let token = sign(&key, "k1", &c);
        let mut e = Expected {
            issuer: "SuperOffice AS".into(),
            audience: "spn:".into(),
            audience_is_prefix: true,
            nonce: Some("n1".into()),
        };
        assert_eq!(jwks.verify(&token, &e).unwrap().aud, ["spn:123"]);
        e.nonce = Some("n2".into());
        assert!(
            jwks.verify(&token, &e)
                .unwrap_err()
                .to_string()
                .contains("nonce")
        );
    }
}
