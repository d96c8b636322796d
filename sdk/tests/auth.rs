//! Authentication providers against the in-process emulator (OAuth code flow with PKCE, ID-token
//! verification, refresh, system user) and against small counting servers (single-flight
//! refresh). Everything listens on 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use emulator::{Config, Emulator, SeedCounts};
use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use superoffice::auth::{
    Auth, Credential, FileTokenStore, LoopbackListener, MemoryTokenStore, OAuth, OAuthConfig,
    Secret, StoredTokens, SystemUser, SystemUserConfig, SystemUserKey, TokenStore, pkce_challenge,
    sign_system_token, system_token_timestamp,
};
use superoffice::{Environment, Error};
use url::Url;

const CLIENT_ID: &str = "emulator-client";
const CLIENT_SECRET: &str = "emulator-secret";
const SYSTEM_TOKEN: &str = "EmulatorApp-7f3c2a9e41d84b6c";

async fn emulator() -> Emulator {
    Emulator::start(Config {
        counts: SeedCounts::NONE,
        ..Config::default()
    })
    .await
    .expect("emulator starts")
}

fn env(base: &str) -> Environment {
    Environment::custom(base).unwrap()
}

fn oauth_config(emu: &Emulator, redirect: &Url) -> OAuthConfig {
    OAuthConfig::new(env(&emu.base_url()), CLIENT_ID, redirect.clone())
        .with_client_secret(CLIENT_SECRET)
        .with_tenant(emu.context_identifier())
}

fn browser() -> reqwest::Client {
    superoffice::http::client_builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Acts as the browser: opens the authorize URL, expects the emulator's redirect, and returns
/// it (without following it).
async fn authorize(url: &Url) -> String {
    let response = browser().get(url.clone()).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "authorize answers a redirect"
    );
    response.headers()[LOCATION].to_str().unwrap().to_string()
}

/// Delivers a redirect to the loopback listener like the browser would; returns the status.
async fn deliver(location: &str) -> StatusCode {
    browser().get(location).send().await.unwrap().status()
}

/// A data call to the emulator with `credential`; returns the status.
async fn whoami(emu: &Emulator, credential: &Credential) -> StatusCode {
    let mut headers = reqwest::header::HeaderMap::new();
    credential.apply(&mut headers).unwrap();
    browser()
        .get(format!("{}/api/v1/User/currentPrincipal", emu.tenant_url()))
        .headers(headers)
        .send()
        .await
        .unwrap()
        .status()
}

fn redirect_uri() -> Url {
    Url::parse("http://127.0.0.1:0/callback").unwrap()
}

/// Signs in against the emulator through the loopback listener; returns the provider.
async fn signed_in(emu: &Emulator, store: Option<Arc<dyn TokenStore>>) -> OAuth {
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let mut config = oauth_config(emu, listener.redirect_uri());
    if let Some(store) = store {
        config = config.with_store(store);
    }
    let oauth = OAuth::new(config).unwrap();
    let request = oauth.authorize_request();
    let waiting = tokio::spawn(listener.wait(request.state.clone(), Duration::from_secs(10)));
    let location = authorize(&request.url).await;
    assert_eq!(deliver(&location).await, StatusCode::OK);
    let response = waiting.await.unwrap().unwrap();
    oauth.exchange_code(&request, &response.code).await.unwrap();
    oauth
}

#[tokio::test]
async fn code_flow_with_pkce_against_the_emulator_verifies_the_id_token() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/tokens.json");
    let store: Arc<dyn TokenStore> = Arc::new(FileTokenStore::new(&path));

    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let config = oauth_config(&emu, listener.redirect_uri()).with_store(store.clone());
    let oauth = OAuth::new(config.clone()).unwrap();
    assert!(!oauth.is_signed_in());
    assert!(matches!(oauth.credential().await, Err(Error::Auth(_))));

    let request = oauth.authorize_request();
    let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
    assert_eq!(
        query["acr_values"],
        format!("tenant:{}", emu.context_identifier())
    );
    assert_eq!(query["code_challenge_method"], "S256");
    let waiting = tokio::spawn(listener.wait(request.state.clone(), Duration::from_secs(10)));
    let location = authorize(&request.url).await;
    assert!(
        location.starts_with(request.redirect_uri.as_str()),
        "{location}"
    );
    assert_eq!(deliver(&location).await, StatusCode::OK);
    let response = waiting.await.unwrap().unwrap();

    let id_token = oauth
        .exchange_code(&request, &response.code)
        .await
        .unwrap()
        .expect("an id_token");
    assert!(id_token.verified, "verified against the emulator's JWKS");
    let claims = &id_token.claims;
    assert_eq!(claims.iss, emu.base_url());
    assert_eq!(claims.aud, [CLIENT_ID]);
    assert_eq!(claims.nonce.as_deref(), Some(request.nonce.as_str()));
    assert_eq!(
        claims.context_identifier.as_deref(),
        Some(emu.context_identifier())
    );
    assert_eq!(claims.associate_id, Some(1));
    assert_eq!(
        claims.system_token.as_ref().map(Secret::expose),
        Some(SYSTEM_TOKEN)
    );
    assert!(
        claims
            .webapi_url
            .as_deref()
            .unwrap()
            .ends_with(&format!("{}/api/", emu.context_identifier()))
    );
    assert!(claims.expires_at().unwrap() > Utc::now());
    assert!(claims.email.as_deref().unwrap().contains('@'));

    // The token works for data calls.
    let credential = oauth.credential().await.unwrap();
    assert!(matches!(credential, Credential::Bearer(_)));
    assert_eq!(whoami(&emu, &credential).await, StatusCode::OK);

    // Saved with mode 0600, and a new process continues from the file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let saved = store.load().unwrap().unwrap();
    assert_eq!(
        saved.context_identifier.as_deref(),
        Some(emu.context_identifier())
    );
    assert_eq!(
        saved.system_token.as_ref().map(Secret::expose),
        Some(SYSTEM_TOKEN)
    );
    assert!(saved.refresh_token.is_some());
    let resumed = OAuth::from_store(config).unwrap();
    assert_eq!(resumed.credential().await.unwrap(), credential);

    // Nothing secret in Debug output.
    let Credential::Bearer(access) = &credential else {
        unreachable!()
    };
    let debug = format!("{oauth:?} {resumed:?} {saved:?} {id_token:?} {request:?} {response:?}");
    for secret in [
        access.expose(),
        saved.refresh_token.as_ref().unwrap().expose(),
        CLIENT_SECRET,
        SYSTEM_TOKEN,
        response.code.expose(),
        request.pkce_verifier.expose(),
    ] {
        assert!(
            !debug.contains(secret),
            "Debug output leaks a secret: {debug}"
        );
    }
}

#[tokio::test]
async fn login_with_loopback_prints_the_url_and_completes() {
    let emu = emulator().await;
    let oauth = OAuth::new(oauth_config(&emu, &redirect_uri())).unwrap();
    let browsing = Arc::new(Mutex::new(None));
    let slot = browsing.clone();
    let id_token = oauth
        .login_with_loopback(Duration::from_secs(10), |url| {
            let url = url.clone();
            *slot.lock().unwrap() = Some(tokio::spawn(async move {
                let location = authorize(&url).await;
                deliver(&location).await
            }));
        })
        .await
        .unwrap()
        .unwrap();
    let handle = browsing.lock().unwrap().take().expect("on_url was called");
    assert_eq!(handle.await.unwrap(), StatusCode::OK);
    assert!(id_token.verified);
    let credential = oauth.credential().await.unwrap();
    assert_eq!(whoami(&emu, &credential).await, StatusCode::OK);
}

#[tokio::test]
async fn a_redirect_with_the_wrong_state_is_rejected() {
    let emu = emulator().await;
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let oauth = OAuth::new(oauth_config(&emu, listener.redirect_uri())).unwrap();
    let request = oauth.authorize_request();
    // The listener expects the state of another sign-in attempt.
    let other = oauth.authorize_request();
    let waiting = tokio::spawn(listener.wait(other.state.clone(), Duration::from_secs(10)));
    let location = authorize(&request.url).await;
    assert_eq!(deliver(&location).await, StatusCode::BAD_REQUEST);
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::StateMismatch), "{err:?}");

    // A redirect without any state is refused the same way.
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let uri = listener.redirect_uri().clone();
    let waiting = tokio::spawn(listener.wait("expected", Duration::from_secs(10)));
    assert_eq!(
        deliver(&format!("{uri}?code=abc")).await,
        StatusCode::BAD_REQUEST
    );
    assert!(matches!(waiting.await.unwrap(), Err(Error::StateMismatch)));
}

#[tokio::test]
async fn the_loopback_listener_times_out_cleanly() {
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let uri = listener.redirect_uri().clone();
    let started = Instant::now();
    let err = listener
        .wait("state", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let Error::Auth(message) = &err else {
        panic!("expected Error::Auth, got {err:?}")
    };
    assert!(message.contains("no sign-in redirect arrived"), "{message}");
    assert!(message.contains(uri.as_str()), "{message}");

    // A client that connects but never sends a request does not hold the timeout hostage.
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let addr = listener.local_addr();
    let started = Instant::now();
    let waiting = tokio::spawn(listener.wait("state", Duration::from_millis(300)));
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(matches!(waiting.await.unwrap(), Err(Error::Auth(_))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn pkce_follows_rfc_7636_appendix_b() {
    // RFC 7636 Appendix B: the 32 random octets, the verifier and the S256 challenge.
    let octets: [u8; 32] = [
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];
    let verifier = URL_SAFE_NO_PAD.encode(octets);
    assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    assert_eq!(
        pkce_challenge(&verifier),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[tokio::test]
async fn the_emulator_rejects_a_wrong_pkce_verifier() {
    let emu = emulator().await;
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let oauth = OAuth::new(oauth_config(&emu, listener.redirect_uri())).unwrap();
    let request = oauth.authorize_request();
    let waiting = tokio::spawn(listener.wait(request.state.clone(), Duration::from_secs(10)));
    deliver(&authorize(&request.url).await).await;
    let response = waiting.await.unwrap().unwrap();
    let mut tampered = request.clone();
    tampered.pkce_verifier = Secret::new(oauth.authorize_request().pkce_verifier.expose());
    let err = oauth
        .exchange_code(&tampered, &response.code)
        .await
        .unwrap_err();
    let Error::Auth(message) = &err else {
        panic!("expected Error::Auth, got {err:?}")
    };
    assert!(
        message.contains("invalid_grant") && message.contains("PKCE"),
        "{message}"
    );
    assert!(!oauth.is_signed_in());
}

#[tokio::test]
async fn a_native_app_signs_in_with_pkce_alone() {
    let emu = emulator().await;
    let listener = LoopbackListener::bind(&redirect_uri()).await.unwrap();
    let config = OAuthConfig::new(
        env(&emu.base_url()),
        CLIENT_ID,
        listener.redirect_uri().clone(),
    );
    let oauth = OAuth::new(config).unwrap();
    let request = oauth.authorize_request();
    let waiting = tokio::spawn(listener.wait(request.state.clone(), Duration::from_secs(10)));
    deliver(&authorize(&request.url).await).await;
    let response = waiting.await.unwrap().unwrap();
    oauth.exchange_code(&request, &response.code).await.unwrap();
    assert_eq!(
        whoami(&emu, &oauth.credential().await.unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn after_a_401_the_token_is_refreshed_once_and_the_refresh_token_is_kept() {
    let emu = emulator().await;
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = Arc::new(signed_in(&emu, Some(store.clone())).await);
    let original_refresh = oauth.tokens().unwrap().refresh_token.unwrap();
    let old = oauth.credential().await.unwrap();
    assert_eq!(whoami(&emu, &old).await, StatusCode::OK);

    emu.expire_tokens();
    assert_eq!(whoami(&emu, &old).await, StatusCode::UNAUTHORIZED);
    // Two requests got the 401 and both ask for a refresh with the rejected credential.
    let (a, b) = tokio::join!(oauth.refresh(&old), oauth.refresh(&old));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a, old);
    assert_eq!(a, b, "one refresh shared by both callers");
    assert_eq!(whoami(&emu, &a).await, StatusCode::OK);
    // A late caller with the stale credential gets the new one without another refresh.
    assert_eq!(oauth.refresh(&old).await.unwrap(), a);

    // The refresh answer had no refresh token: the original is kept, saved and still works.
    let tokens = oauth.tokens().unwrap();
    assert_eq!(tokens.refresh_token.as_ref(), Some(&original_refresh));
    assert_eq!(
        store.get().unwrap().refresh_token.as_ref(),
        Some(&original_refresh)
    );
    assert_eq!(
        store.saves(),
        2,
        "saved after the exchange and after the refresh"
    );
    let again = oauth.refresh_now().await.unwrap();
    assert_ne!(again, a);
    assert_eq!(whoami(&emu, &again).await, StatusCode::OK);
    assert_eq!(
        oauth.tokens().unwrap().refresh_token,
        Some(original_refresh)
    );
    // The refresh's id_token was verified too and still names the tenant.
    assert!(oauth.id_token().unwrap().verified);
    assert_eq!(
        oauth.context_identifier().as_deref(),
        Some(emu.context_identifier())
    );
}

/// A token endpoint that counts refreshes, answers them slowly (so concurrent callers pile
/// up) without a refresh token, and records the refresh tokens it was sent.
#[derive(Default)]
struct FakeTokenEndpoint {
    refreshes: AtomicUsize,
    seen_refresh_tokens: Mutex<Vec<String>>,
}

async fn fake_tokens(
    State(fake): State<Arc<FakeTokenEndpoint>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_request"})),
        )
            .into_response();
    }
    let n = fake.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    fake.seen_refresh_tokens
        .lock()
        .unwrap()
        .push(form.get("refresh_token").cloned().unwrap_or_default());
    tokio::time::sleep(Duration::from_millis(100)).await;
    axum::Json(serde_json::json!({
        "token_type": "Bearer",
        "access_token": format!("access-{n}"),
        "expires_in": 3600,
    }))
    .into_response()
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn concurrent_callers_near_expiry_share_exactly_one_refresh() {
    let fake = Arc::new(FakeTokenEndpoint::default());
    let base = serve(
        axum::Router::new()
            .route("/login/common/oauth/tokens", post(fake_tokens))
            .with_state(fake.clone()),
    )
    .await;
    let store = Arc::new(MemoryTokenStore::with_tokens(StoredTokens {
        access_token: Secret::new("access-0"),
        refresh_token: Some(Secret::new("refresh-original")),
        expires_at: Some(Utc::now() + chrono::Duration::seconds(30)),
        context_identifier: Some("Cust1".into()),
        webapi_url: None,
        system_token: None,
    }));
    let config = OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri())
        .with_client_secret(CLIENT_SECRET)
        .with_store(store.clone());
    let oauth = Arc::new(OAuth::from_store(config).unwrap());

    let calls = (0..20).map(|_| {
        let oauth = oauth.clone();
        tokio::spawn(async move { oauth.credential().await })
    });
    let results = futures::future::join_all(calls).await;
    let expected = Credential::Bearer(Secret::new("access-1"));
    for result in results {
        assert_eq!(result.unwrap().unwrap(), expected);
    }
    assert_eq!(
        fake.refreshes.load(Ordering::SeqCst),
        1,
        "exactly one refresh"
    );
    // Fresh now: no more refreshes.
    assert_eq!(oauth.credential().await.unwrap(), expected);
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);

    // 401 with access-1: two concurrent reactive refreshes make one request.
    let (a, b) = tokio::join!(oauth.refresh(&expected), oauth.refresh(&expected));
    let second = Credential::Bearer(Secret::new("access-2"));
    assert_eq!((a.unwrap(), b.unwrap()), (second.clone(), second.clone()));
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 2);
    assert_eq!(oauth.refresh(&expected).await.unwrap(), second);
    assert_eq!(fake.refreshes.load(Ordering::SeqCst), 2);

    // The answers carried no refresh token: the original was sent each time and is kept.
    assert_eq!(
        *fake.seen_refresh_tokens.lock().unwrap(),
        ["refresh-original", "refresh-original"]
    );
    let saved = store.get().unwrap();
    assert_eq!(saved.refresh_token, Some(Secret::new("refresh-original")));
    assert_eq!(saved.access_token, Secret::new("access-2"));
    assert_eq!(
        saved.context_identifier.as_deref(),
        Some("Cust1"),
        "claims survive a refresh without id_token"
    );
    assert_eq!(store.saves(), 2);
}

#[tokio::test]
async fn failed_refreshes_keep_a_still_valid_token_and_report_typed_errors() {
    // 1st and 2nd refresh: 503 (login host down); then 400 invalid_grant (consent revoked).
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let base = serve(axum::Router::new().route(
        "/login/common/oauth/tokens",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    let body = serde_json::json!({"error": "invalid_grant", "error_description": "Unknown or revoked refresh token"});
                    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
                }
            }
        }),
    ))
    .await;
    let current = Credential::Bearer(Secret::new("access-0"));
    let store = Arc::new(MemoryTokenStore::with_tokens(StoredTokens {
        access_token: Secret::new("access-0"),
        refresh_token: Some(Secret::new("refresh-0")),
        expires_at: Some(Utc::now() + chrono::Duration::seconds(30)),
        context_identifier: None,
        webapi_url: None,
        system_token: None,
    }));
    let config = OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri()).with_store(store.clone());
    let oauth = OAuth::from_store(config).unwrap();

    // Proactive refresh fails, but the token has 30 s left: it is still handed out, and the
    // next calls do not hammer the login host.
    assert_eq!(oauth.credential().await.unwrap(), current);
    assert_eq!(oauth.credential().await.unwrap(), current);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // After a 401 the failure is reported: 5xx is a transport error with its status ...
    let err = oauth.refresh(&current).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    // ... a revoked refresh token an auth error that says what to do.
    let err = oauth.refresh(&current).await.unwrap_err();
    let Error::Auth(message) = &err else {
        panic!("expected Error::Auth, got {err:?}")
    };
    assert!(
        message.contains("invalid_grant") && message.contains("sign in again"),
        "{message}"
    );
    assert_eq!(store.saves(), 0, "nothing saved after failures");
}

fn test_signing_keys() -> emulator::auth::Keys {
    emulator::auth::Keys::load(
        emulator::test_keys::SIGNING_PRIVATE_KEY_PEM,
        emulator::test_keys::SYSTEM_USER_PUBLIC_KEY_PEM,
    )
    .unwrap()
}

/// The nonce a fake token endpoint puts in the id_token (set by the test after it made the
/// authorize request).
type Nonce = Arc<Mutex<String>>;

/// A login host whose token endpoint answers every request with an id_token (signed with the
/// emulator's key, `iss` = the host, `aud` = `audience`, `nonce` = what the test set) and
/// which has no JWKS (404).
async fn token_endpoint_without_jwks(audience: &str) -> (String, Nonce) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let nonce = Nonce::default();
    let (issuer, audience, current) = (base.clone(), audience.to_string(), nonce.clone());
    let router = axum::Router::new().route(
        "/login/common/oauth/tokens",
        post(move || {
            let now = Utc::now().timestamp();
            let id_token = test_signing_keys().jwt(&serde_json::json!({
                "iss": issuer, "aud": audience, "exp": now + 300,
                "nonce": *current.lock().unwrap(),
                "http://schemes.superoffice.net/identity/ctx": "Cust777",
            }));
            async move {
                axum::Json(serde_json::json!({
                    "token_type": "Bearer", "access_token": "access-x", "expires_in": 3600,
                    "refresh_token": "refresh-x", "id_token": id_token,
                }))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, nonce)
}

#[tokio::test]
async fn an_unreachable_jwks_fails_the_sign_in() {
    let (base, nonce) = token_endpoint_without_jwks(CLIENT_ID).await;
    let store = Arc::new(MemoryTokenStore::default());
    let oauth = OAuth::new(
        OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri()).with_store(store.clone()),
    )
    .unwrap();
    let request = oauth.authorize_request();
    *nonce.lock().unwrap() = request.nonce.clone();
    let err = oauth
        .exchange_code(&request, &Secret::new("code"))
        .await
        .unwrap_err();
    let Error::JwksUnavailable { jwks, reason } = &err else {
        panic!("expected Error::JwksUnavailable, got {err:?}")
    };
    assert_eq!(jwks, &format!("{base}/login/.well-known/jwks"));
    assert!(reason.contains("404"), "{reason}");
    assert!(
        !oauth.is_signed_in(),
        "the unverified tokens were not taken"
    );
    assert_eq!(oauth.context_identifier(), None);
    assert_eq!(store.saves(), 0, "nothing saved");
}

#[tokio::test]
async fn the_explicit_opt_out_accepts_checked_but_unverified_claims() {
    let (base, nonce) = token_endpoint_without_jwks(CLIENT_ID).await;
    let oauth = OAuth::new(
        OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri())
            .allow_unverified_id_token_when_jwks_unreachable(true),
    )
    .unwrap();
    let request = oauth.authorize_request();
    *nonce.lock().unwrap() = request.nonce.clone();
    let token = oauth
        .exchange_code(&request, &Secret::new("code"))
        .await
        .unwrap()
        .unwrap();
    assert!(!token.verified);
    assert_eq!(token.claims.context_identifier.as_deref(), Some("Cust777"));
    assert_eq!(oauth.context_identifier().as_deref(), Some("Cust777"));

    // The opt-out skips the signature, not the claims: a token of another sign-in (nonce) ...
    let request = oauth.authorize_request();
    let err = oauth
        .exchange_code(&request, &Secret::new("code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Auth(m) if m.contains("nonce")),
        "{err:?}"
    );
    // ... or for another client is refused.
    let (base, nonce) = token_endpoint_without_jwks("some-other-client").await;
    let oauth = OAuth::new(
        OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri())
            .allow_unverified_id_token_when_jwks_unreachable(true),
    )
    .unwrap();
    let request = oauth.authorize_request();
    *nonce.lock().unwrap() = request.nonce.clone();
    let err = oauth
        .exchange_code(&request, &Secret::new("code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Auth(m) if m.contains("audience")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_redirecting_jwks_is_an_error_even_with_the_opt_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let now = Utc::now().timestamp();
    let id_token = test_signing_keys().jwt(&serde_json::json!({
        "iss": base, "aud": CLIENT_ID, "exp": now + 300,
    }));
    let answer = serde_json::json!({
        "token_type": "Bearer", "access_token": "access-x", "expires_in": 3600,
        "id_token": id_token,
    });
    let router = axum::Router::new()
        .route(
            "/login/common/oauth/tokens",
            post(move || {
                let answer = answer.clone();
                async move { axum::Json(answer) }
            }),
        )
        .route(
            "/login/.well-known/jwks",
            axum::routing::get(|| async {
                (
                    StatusCode::FOUND,
                    [(LOCATION, "http://127.0.0.1:9/evil-keys")],
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let oauth = OAuth::new(
        OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri())
            .allow_unverified_id_token_when_jwks_unreachable(true),
    )
    .unwrap();
    let err = oauth
        .exchange_code(&oauth.authorize_request(), &Secret::new("code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { operation, location: Some(l), .. }
            if operation == "jwks" && l == "http://127.0.0.1:9/evil-keys"),
        "{err:?}"
    );
    assert!(!oauth.is_signed_in());
}

/// A server that records every request it gets (the target of a redirect).
async fn recorder() -> (String, Arc<Mutex<Vec<http::HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let base = serve(
        axum::Router::new().fallback(move |headers: http::HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(headers);
                StatusCode::OK
            }
        }),
    )
    .await;
    (base, seen)
}

#[tokio::test]
async fn a_redirecting_token_endpoint_gets_no_secret_forwarded() {
    let (elsewhere, seen) = recorder().await;
    let target = format!("{elsewhere}/steal");
    let location = target.clone();
    let base = serve(axum::Router::new().route(
        "/login/common/oauth/tokens",
        post(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]) }
        }),
    ))
    .await;
    let store = Arc::new(MemoryTokenStore::with_tokens(StoredTokens {
        access_token: Secret::new("access-0"),
        refresh_token: Some(Secret::new("refresh-0")),
        expires_at: Some(Utc::now() + chrono::Duration::seconds(3600)),
        context_identifier: None,
        webapi_url: None,
        system_token: None,
    }));
    let oauth = OAuth::from_store(
        OAuthConfig::new(env(&base), CLIENT_ID, redirect_uri())
            .with_client_secret(CLIENT_SECRET)
            .with_store(store),
    )
    .unwrap();
    // Code exchange and refresh: both refused, nothing forwarded.
    let err = oauth
        .exchange_code(&oauth.authorize_request(), &Secret::new("code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { operation, status, location: Some(l), followed: false }
            if operation == "token endpoint" && *status == StatusCode::TEMPORARY_REDIRECT && *l == target),
        "{err:?}"
    );
    let err = oauth.refresh_now().await.unwrap_err();
    assert!(matches!(&err, Error::Redirect { .. }), "{err:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the redirect target got a request"
    );
}

#[tokio::test]
async fn a_corrupt_token_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, "not json").unwrap();
    let config = OAuthConfig::new(Environment::Sod, CLIENT_ID, redirect_uri())
        .with_store(Arc::new(FileTokenStore::new(&path)));
    let err = OAuth::from_store(config).unwrap_err();
    assert!(matches!(err, Error::TokenStore { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not json",
        "left alone"
    );

    // An empty store is "not signed in", naming the store.
    let missing = dir.path().join("none.json");
    let config = OAuthConfig::new(Environment::Sod, CLIENT_ID, redirect_uri())
        .with_store(Arc::new(FileTokenStore::new(&missing)));
    let err = OAuth::from_store(config).unwrap_err();
    assert!(
        matches!(&err, Error::Auth(m) if m.contains(missing.to_str().unwrap())),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// System user

fn pem_key() -> SystemUserKey {
    SystemUserKey::parse(emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM).unwrap()
}

/// The PEM test key in the RSA-XML form the Developer Portal hands out.
fn xml_from_pem(pem: &str) -> String {
    let pkcs1 = emulator::rsa_der::private_pem_to_pkcs1(pem).unwrap();
    let [n, e, d, p, q, dp, dq, qinv] = emulator::rsa_der::pkcs1_private_integers(&pkcs1).unwrap();
    let b64 = |bytes: &Vec<u8>| STANDARD.encode(bytes);
    format!(
        "<RSAKeyValue>\n  <Modulus>{}</Modulus>\n  <Exponent>{}</Exponent>\n  <P>{}</P>\n  <Q>{}</Q>\n  <DP>{}</DP>\n  <DQ>{}</DQ>\n  <InverseQ>{}</InverseQ>\n  <D>{}</D>\n</RSAKeyValue>",
        b64(&n),
        b64(&e),
        b64(&p),
        b64(&q),
        b64(&dp),
        b64(&dq),
        b64(&qinv),
        b64(&d)
    )
}

fn system_user(emu: &Emulator, key: SystemUserKey) -> SystemUser {
    SystemUser::new(SystemUserConfig::new(
        env(&emu.base_url()),
        emu.context_identifier(),
        SYSTEM_TOKEN,
        CLIENT_SECRET,
        key,
    ))
    .unwrap()
}

#[tokio::test]
async fn system_user_gets_a_verified_ticket_and_renews_it_after_a_401() {
    let emu = emulator().await;
    let su = Arc::new(system_user(&emu, pem_key()));
    // Concurrent first calls share one login (each login issues a different ticket).
    let calls = (0..10).map(|_| {
        let su = su.clone();
        tokio::spawn(async move { su.credential().await })
    });
    let results = futures::future::join_all(calls).await;
    let credential = su.credential().await.unwrap();
    for result in results {
        assert_eq!(result.unwrap().unwrap(), credential);
    }
    let Credential::Ticket { ticket, app_token } = &credential else {
        panic!("expected a ticket, got {credential:?}")
    };
    assert!(ticket.expose().starts_with("7T:"));
    assert_eq!(app_token.expose(), CLIENT_SECRET);
    let jwt = su.claims().unwrap();
    assert!(
        jwt.verified,
        "the system-user JWT verifies against the JWKS"
    );
    assert_eq!(jwt.claims.iss, "SuperOffice AS");
    assert!(jwt.claims.aud[0].starts_with("spn:"));
    assert_eq!(
        jwt.claims.context_identifier.as_deref(),
        Some(emu.context_identifier())
    );
    assert_eq!(whoami(&emu, &credential).await, StatusCode::OK);

    // Cached: no new login for the next calls.
    assert_eq!(su.credential().await.unwrap(), credential);

    // After a 401 two concurrent renewals with the rejected ticket share one login.
    emu.expire_tokens();
    assert_eq!(whoami(&emu, &credential).await, StatusCode::UNAUTHORIZED);
    let (a, b) = tokio::join!(su.refresh(&credential), su.refresh(&credential));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a, credential);
    assert_eq!(a, b);
    assert_eq!(su.refresh(&credential).await.unwrap(), a);
    assert_eq!(whoami(&emu, &a).await, StatusCode::OK);

    // Nothing secret in Debug output.
    let Credential::Ticket {
        ticket: renewed, ..
    } = &a
    else {
        unreachable!()
    };
    let debug = format!("{su:?} {a:?} {jwt:?}");
    for secret in [
        renewed.expose(),
        ticket.expose(),
        CLIENT_SECRET,
        SYSTEM_TOKEN,
        "PRIVATE KEY",
    ] {
        assert!(
            !debug.contains(secret),
            "Debug output leaks a secret: {debug}"
        );
    }
}

#[tokio::test]
async fn system_user_tickets_are_renewed_after_the_max_age() {
    let emu = emulator().await;
    let su = SystemUser::new(
        SystemUserConfig::new(
            env(&emu.base_url()),
            emu.context_identifier(),
            SYSTEM_TOKEN,
            CLIENT_SECRET,
            pem_key(),
        )
        .with_max_ticket_age(Duration::from_millis(400)),
    )
    .unwrap();
    let first = su.credential().await.unwrap();
    // (A loaded CI machine can stall for tens of milliseconds between two calls.)
    assert_eq!(su.credential().await.unwrap(), first, "fresh: cached");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = su.credential().await.unwrap();
    assert_ne!(second, first, "too old: renewed");
    assert_eq!(whoami(&emu, &second).await, StatusCode::OK);
}

#[tokio::test]
async fn system_user_with_a_wrong_key_fails_with_an_auth_error() {
    let emu = emulator().await;
    let wrong = SystemUserKey::parse(emulator::test_keys::SIGNING_PRIVATE_KEY_PEM).unwrap();
    let err = system_user(&emu, wrong).credential().await.unwrap_err();
    let Error::Auth(message) = &err else {
        panic!("expected Error::Auth, got {err:?}")
    };
    assert!(message.contains("signature"), "{message}");
}

#[tokio::test]
async fn rsa_xml_and_pem_forms_of_one_key_sign_alike() {
    let pem = emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM;
    let xml = xml_from_pem(pem);
    assert!(xml.starts_with("<RSAKeyValue>") && xml.contains("<InverseQ>"));
    let pkcs1 = {
        let der = emulator::rsa_der::private_pem_to_pkcs1(pem).unwrap();
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        )
    };
    let at = DateTime::parse_from_rfc3339("2026-03-05T14:22:10Z")
        .unwrap()
        .with_timezone(&Utc);
    let from_pem = sign_system_token(&pem_key(), SYSTEM_TOKEN, at);
    let from_xml = sign_system_token(&SystemUserKey::parse(&xml).unwrap(), SYSTEM_TOKEN, at);
    let from_pkcs1 = sign_system_token(&SystemUserKey::parse(&pkcs1).unwrap(), SYSTEM_TOKEN, at);
    assert_eq!(from_pem, from_xml);
    assert_eq!(from_pem, from_pkcs1);
    assert!(
        from_pem.starts_with(&format!("{SYSTEM_TOKEN}.202603051422.")),
        "{from_pem}"
    );

    // The XML key logs in against the emulator, whose signature check uses the public PEM.
    let emu = emulator().await;
    let su = system_user(&emu, SystemUserKey::parse(&xml).unwrap());
    assert_eq!(
        whoami(&emu, &su.credential().await.unwrap()).await,
        StatusCode::OK
    );
}

#[test]
fn the_timestamp_is_utc_yyyymmddhhmm() {
    let at = DateTime::parse_from_rfc3339("2026-12-31T23:59:59-02:00")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(system_token_timestamp(at), "202701010159");
    let now = Utc::now();
    let stamp = system_token_timestamp(now);
    assert_eq!(stamp.len(), 12);
    assert!(stamp.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(stamp, now.format("%Y%m%d%H%M").to_string());
    // The emulator's parser agrees.
    let ts = emulator::Ts(now.timestamp());
    assert_eq!(emulator::auth::stamp(ts), stamp);
}

/// A login host whose system-user login answers with a JWT carrying a ticket (signed with the
/// emulator's key) and which has no JWKS (404).
async fn system_user_login_without_jwks() -> String {
    let now = Utc::now().timestamp();
    let jwt = test_signing_keys().jwt(&serde_json::json!({
        "iss": "SuperOffice AS", "aud": "spn:1234", "exp": now + 300,
        "http://schemes.superoffice.net/identity/ticket": "7T:unverified",
    }));
    let answer = serde_json::json!({ "IsSuccessful": true, "Token": jwt });
    serve(axum::Router::new().route(
        "/Login/api/PartnerSystemUser/Authenticate",
        post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    ))
    .await
}

fn system_user_config(base: &str) -> SystemUserConfig {
    SystemUserConfig::new(env(base), "Cust1", SYSTEM_TOKEN, CLIENT_SECRET, pem_key())
}

#[tokio::test]
async fn system_user_with_an_unreachable_jwks_fails_unless_opted_out() {
    let base = system_user_login_without_jwks().await;
    let su = SystemUser::new(system_user_config(&base)).unwrap();
    let err = su.credential().await.unwrap_err();
    assert!(
        matches!(&err, Error::JwksUnavailable { jwks, .. } if jwks.ends_with("/login/.well-known/jwks")),
        "{err:?}"
    );
    assert!(su.claims().is_none(), "no ticket was taken");

    // Through a client: the typed error survives the runtime (after its retries).
    let client = superoffice::Client::builder()
        .base_url(format!("{base}/Cust1"))
        .auth(SystemUser::new(system_user_config(&base)).unwrap())
        .retry(
            superoffice::retry::RetryPolicy::default()
                .with_max_attempts(2)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .build()
        .unwrap();
    let err = client
        .send_raw(
            "contact_get",
            superoffice::RawRequest::new(reqwest::Method::GET, "/api/v1/Contact/1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::JwksUnavailable { jwks, .. } if jwks.ends_with("/login/.well-known/jwks")),
        "{err:?}"
    );

    let su =
        SystemUser::new(system_user_config(&base).allow_unverified_jwt_when_jwks_unreachable(true))
            .unwrap();
    let credential = su.credential().await.unwrap();
    assert!(
        matches!(&credential, Credential::Ticket { ticket, .. } if ticket.expose() == "7T:unverified")
    );
    assert!(!su.claims().unwrap().verified);
}

#[tokio::test]
async fn a_redirecting_system_user_login_forwards_nothing() {
    let (elsewhere, seen) = recorder().await;
    let target = format!("{elsewhere}/Login/api/PartnerSystemUser/Authenticate");
    let location = target.clone();
    let base = serve(axum::Router::new().route(
        "/Login/api/PartnerSystemUser/Authenticate",
        post(move || {
            let location = location.clone();
            async move { (StatusCode::PERMANENT_REDIRECT, [(LOCATION, location)]) }
        }),
    ))
    .await;
    let su = SystemUser::new(system_user_config(&base)).unwrap();
    let err = su.credential().await.unwrap_err();
    assert!(
        matches!(&err, Error::Redirect { operation, status, location: Some(l), followed: false }
            if operation == "system-user login" && *status == StatusCode::PERMANENT_REDIRECT && *l == target),
        "{err:?}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the login body (application token, signed system token) reached the redirect target"
    );
}
