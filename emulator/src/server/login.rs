//! The login host: OAuth 2.0 / OpenID Connect endpoints, the State API and the system-user
//! ticket exchange (FACTS §1).
//!
//! - `GET /login/common/oauth/authorize` consents at once and redirects to the (loopback or
//!   registered) `redirect_uri` with `code` and `state` (`response_mode` query, fragment or
//!   form_post).
//! - `POST /login/common/oauth/tokens` handles `authorization_code` (PKCE `S256`/`plain`) and
//!   `refresh_token`; refresh answers carry no new refresh token.
//! - `POST /login/common/oauth/revoke`, `GET /login/common/oauth/logout`.
//! - `GET /login/.well-known/openid-configuration`, `GET /login/.well-known/jwks`.
//! - `GET /api/state/{ctx}`.
//! - `POST /Login/api/PartnerSystemUser/Authenticate`: a wrong signature, app token, context
//!   or system token answers 200 with `IsSuccessful:false` and an `ErrorMessage`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Shared, json_response};
use crate::auth::{CLAIM, CodeGrant, Principal, pkce_ok, secret_eq};
use crate::clock::Ts;
use crate::error::SoError;
use crate::model::lists;

/// The login routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/login/common/oauth/authorize", get(authorize))
        .route("/login/common/oauth/tokens", post(tokens))
        .route("/login/common/oauth/revoke", post(revoke))
        .route("/login/common/oauth/logout", get(logout))
        .route("/login/.well-known/openid-configuration", get(discovery))
        .route("/login/.well-known/jwks", get(jwks))
        .route("/api/state/{ctx}", get(state))
        .route(
            "/Login/api/PartnerSystemUser/Authenticate",
            post(system_user),
        )
        .route(
            "/login/api/PartnerSystemUser/Authenticate",
            post(system_user),
        )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Whether a redirect URI counts as registered: any loopback URI, or one of the configured.
pub fn redirect_allowed(uri: &str, registered: &[String]) -> bool {
    if registered.iter().any(|r| r == uri) {
        return true;
    }
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if u.scheme() != "http" && u.scheme() != "https" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    let redirect_uri = get("redirect_uri");
    if client_id != s.config.auth.client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "Unknown client_id",
        );
    }
    if !redirect_allowed(redirect_uri, &s.config.auth.redirect_uris) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not registered for this client",
        );
    }
    let state = get("state").to_string();
    let mode = get("response_mode").to_ascii_lowercase();
    let mut params: Vec<(&str, String)> = Vec::new();
    if get("response_type") != "code" {
        params.push(("error", "unsupported_response_type".into()));
        params.push((
            "error_description",
            "Only response_type=code is supported".into(),
        ));
    } else {
        let challenge = q.get("code_challenge").filter(|c| !c.is_empty()).map(|c| {
            let method = q
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".into());
            (c.clone(), method)
        });
        if let Some((_, m)) = &challenge
            && !m.eq_ignore_ascii_case("S256")
            && !m.eq_ignore_ascii_case("plain")
        {
            params.push(("error", "invalid_request".into()));
            params.push((
                "error_description",
                "code_challenge_method must be S256 or plain".into(),
            ));
        } else {
            let now = s.clock.now();
            let code = s
                .creds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .new_code(CodeGrant {
                    client_id: client_id.to_string(),
                    redirect_uri: redirect_uri.to_string(),
                    challenge,
                    nonce: q.get("nonce").cloned(),
                    expires: now.plus(s.config.auth.code_ttl_secs),
                });
            params.push(("code", code));
        }
    }
    if !state.is_empty() {
        params.push(("state", state));
    }
    if mode == "form_post" {
        let inputs: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\"/>",
                    html_escape(v)
                )
            })
            .collect();
        return Html(format!(
            "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{inputs}</form></body></html>",
            html_escape(redirect_uri)
        ))
        .into_response();
    }
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let location = if mode == "fragment" {
        format!("{redirect_uri}#{encoded}")
    } else if redirect_uri.contains('?') {
        format!("{redirect_uri}&{encoded}")
    } else {
        format!("{redirect_uri}?{encoded}")
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Client credentials from the form or an HTTP Basic header.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(raw) = STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(raw)
        && let Some((id, secret)) = text.split_once(':')
    {
        return (Some(id.to_string()), Some(secret.to_string()));
    }
    (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    )
}

async fn tokens(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut form: HashMap<String, String> = query;
    form.extend(url::form_urlencoded::parse(&body).into_owned());
    let (client_id, secret) = client_credentials(&headers, &form);
    let cfg = &s.config.auth;
    if client_id.as_deref() != Some(cfg.client_id.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client_id",
        );
    }
    if let Some(sec) = &secret
        && !secret_eq(sec, &cfg.client_secret)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Wrong client_secret",
        );
    }
    let now = s.clock.now();
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").map(String::as_str).unwrap_or("");
            let grant = s
                .creds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take_code(code);
            let Some(grant) = grant else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Unknown or used authorization code",
                );
            };
            if grant.expires <= now {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code has expired",
                );
            }
            if grant.client_id != cfg.client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Code was issued to another client",
                );
            }
            if form.get("redirect_uri").map(String::as_str) != Some(grant.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri does not match the authorize request",
                );
            }
            match (&grant.challenge, form.get("code_verifier")) {
                (Some((challenge, method)), Some(verifier)) => {
                    if !pkce_ok(verifier, challenge, method) {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "PKCE verification failed",
                        );
                    }
                }
                (Some(_), None) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "code_verifier is required",
                    );
                }
                (None, _) if secret.is_none() => {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "client_secret is required without PKCE",
                    );
                }
                (None, _) => {}
            }
            let (access, refresh) = {
                let mut creds = s.creds.lock().unwrap_or_else(|e| e.into_inner());
                let access = creds.new_access(
                    &s.config.tenant.context_identifier,
                    Principal::User(cfg.user_associate_id),
                    now.plus(cfg.access_token_ttl_secs),
                );
                (access, creds.new_refresh(&cfg.client_id))
            };
            let id_token = id_token(&s, now, grant.nonce.as_deref());
            json_response(
                StatusCode::OK,
                &json!({
                    "token_type": "Bearer",
                    "access_token": access,
                    "expires_in": cfg.access_token_ttl_secs,
                    "refresh_token": refresh,
                    "id_token": id_token,
                }),
            )
        }
        Some("refresh_token") => {
            let token = form.get("refresh_token").map(String::as_str).unwrap_or("");
            let access = {
                let mut creds = s.creds.lock().unwrap_or_else(|e| e.into_inner());
                if creds.refresh_client(token) != Some(cfg.client_id.as_str()) {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Unknown or revoked refresh token",
                    );
                }
                creds.new_access(
                    &s.config.tenant.context_identifier,
                    Principal::User(cfg.user_associate_id),
                    now.plus(cfg.access_token_ttl_secs),
                )
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "token_type": "Bearer",
                    "access_token": access,
                    "expires_in": cfg.access_token_ttl_secs,
                    "id_token": id_token(&s, now, None),
                }),
            )
        }
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

/// The claims shared by id_tokens and system-user JWTs.
fn identity_claims(s: &Shared, associate: i32, webapi: bool) -> serde_json::Map<String, Value> {
    let ctx = &s.config.tenant.context_identifier;
    let a = lists::associate(associate);
    let email = a
        .map(|a| format!("{}.{}@example.com", a.first, a.last).to_lowercase())
        .unwrap_or_default();
    let host = if s.config.auth.webapi_url_uses_current_host {
        s.tenant_url()
    } else {
        format!("{}/{ctx}", s.base_url)
    };
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(format!("{CLAIM}{k}"), v);
    };
    put("ctx", json!(ctx));
    if webapi {
        put("webapi_url", json!(format!("{host}/api/")));
    }
    put("netserver_url", json!(format!("{host}/Remote/Services88/")));
    put("system_token", json!(s.config.auth.system_token));
    put("associateid", json!(associate.to_string()));
    put("serial", json!(s.config.tenant.serial));
    put("is_administrator", json!("True"));
    put("email", json!(email));
    put("upn", json!(email));
    put("company_name", json!(s.config.tenant.company_name));
    put("initials", json!(a.map(|a| a.name).unwrap_or("")));
    put("so_primary_email_address", json!(email));
    put("identityprovider", json!("SuperOffice AS"));
    m
}

fn id_token(s: &Shared, now: Ts, nonce: Option<&str>) -> String {
    let cfg = &s.config.auth;
    let mut claims = identity_claims(s, cfg.user_associate_id, true);
    let email = claims
        .get(&format!("{CLAIM}email"))
        .cloned()
        .unwrap_or(Value::Null);
    claims.insert("sub".into(), email);
    claims.insert("iss".into(), json!(s.base_url));
    claims.insert("aud".into(), json!(cfg.client_id));
    claims.insert("iat".into(), json!(now.0));
    claims.insert("nbf".into(), json!(now.0));
    claims.insert("exp".into(), json!(now.0 + cfg.id_token_ttl_secs));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    s.keys.jwt(&Value::Object(claims))
}

async fn revoke(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut form = query;
    form.extend(url::form_urlencoded::parse(&body).into_owned());
    let (client_id, _) = client_credentials(&headers, &form);
    if client_id.as_deref() != Some(s.config.auth.client_id.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client_id",
        );
    }
    if let Some(t) = form.get("token") {
        s.creds.lock().unwrap_or_else(|e| e.into_inner()).revoke(t);
    }
    StatusCode::OK.into_response()
}

async fn logout(Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("post_logout_redirect_uri") {
        Some(uri) if redirect_allowed(uri, &[]) => {
            (StatusCode::FOUND, [(header::LOCATION, uri.clone())]).into_response()
        }
        _ => Html("<html><body>Signed out.</body></html>").into_response(),
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    let b = &s.base_url;
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/login/common/oauth/authorize"),
            "token_endpoint": format!("{b}/login/common/oauth/tokens"),
            "jwks_uri": format!("{b}/login/.well-known/jwks"),
            "end_session_endpoint": format!("{b}/login/common/oauth/logout"),
            "revocation_endpoint": format!("{b}/login/common/oauth/revoke"),
            "scopes_supported": ["openid"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "response_modes_supported": ["form_post", "fragment", "query"],
            "grant_types_supported": ["implicit", "authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
        }),
    )
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &s.keys.jwks())
}

async fn state(State(s): State<Arc<Shared>>, Path(ctx): Path<String>) -> Response {
    let cfg = &s.config.tenant;
    if !ctx.eq_ignore_ascii_case(&cfg.context_identifier) {
        return SoError::not_found(format!("Unknown tenant '{ctx}'")).into_response();
    }
    let info = s.tenant_info();
    let valid = s.clock.now().plus(cfg.state_valid_for_secs);
    let mut valid_until = valid.iso();
    valid_until.push('Z');
    json_response(
        StatusCode::OK,
        &json!({
            "ContextIdentifier": cfg.context_identifier,
            "Endpoint": info.tenant_url,
            "State": info.state,
            "IsRunning": info.state.is_running(),
            "ValidUntil": valid_until,
            "Api": format!("{}/api", info.tenant_url),
            "Version": cfg.version,
        }),
    )
}

async fn system_user(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return SoError::bad_request("Body must be a JSON object").into_response();
    };
    let field = |k: &str| {
        req.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let fail = |msg: &str| {
        json_response(
            StatusCode::OK,
            &json!({"IsSuccessful": false, "Token": null, "ErrorMessage": msg}),
        )
    };
    let cfg = &s.config;
    if !secret_eq(field("ApplicationToken"), &cfg.auth.client_secret) {
        return fail("Unknown ApplicationToken");
    }
    if !field("ContextIdentifier").eq_ignore_ascii_case(&cfg.tenant.context_identifier) {
        return fail("Unknown ContextIdentifier");
    }
    let (token, signed_at) = match s.keys.verify_system_token(field("SignedSystemToken")) {
        Ok(v) => v,
        Err(e) => return fail(&format!("Invalid SignedSystemToken: {e}")),
    };
    if token != cfg.auth.system_token {
        return fail("The system token is not valid for this tenant and application");
    }
    let now = s.clock.now();
    if (now.0 - signed_at.0).abs() > cfg.auth.system_user_max_skew_secs {
        return fail("The SignedSystemToken timestamp is too far from the current time");
    }
    let ticket = s.issue_ticket();
    let associate = cfg.auth.system_user_associate_id;
    let token = if field("ReturnTokenType").eq_ignore_ascii_case("JWT") {
        let mut claims = identity_claims(&s, associate, cfg.auth.system_user_jwt_has_webapi_url);
        claims.insert(format!("{CLAIM}ticket"), json!(ticket));
        claims.insert("iss".into(), json!("SuperOffice AS"));
        claims.insert("aud".into(), json!(format!("spn:{}", cfg.tenant.serial)));
        claims.insert("iat".into(), json!(now.0));
        claims.insert("nbf".into(), json!(now.0));
        claims.insert("exp".into(), json!(now.0 + cfg.auth.ticket_ttl_secs));
        s.keys.jwt(&Value::Object(claims))
    } else {
        ticket
    };
    json_response(
        StatusCode::OK,
        &json!({"IsSuccessful": true, "Token": token, "ErrorMessage": ""}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_count_as_registered() {
        assert!(redirect_allowed("http://127.0.0.1:8765/cb", &[]));
        assert!(redirect_allowed("http://[::1]:8765/cb", &[]));
        assert!(redirect_allowed("http://localhost:1/", &[]));
        assert!(!redirect_allowed("https://evil.example/cb", &[]));
        assert!(redirect_allowed(
            "https://app.example/cb",
            &["https://app.example/cb".to_string()]
        ));
        assert!(!redirect_allowed("javascript:alert(1)", &[]));
    }
}
