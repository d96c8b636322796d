//! Login service: the authorization-code flow with PKCE, refresh, expiry, discovery and JWKS,
//! id_token claims, the system-user exchange and credential checks on data calls.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Env;
use emulator::test_keys;
use ring::rsa::PublicKeyComponents;
use ring::signature::RSA_PKCS1_2048_8192_SHA256;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CLAIM: &str = "http://schemes.superoffice.net/identity/";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Verifies an RS256 JWT against the published JWKS and returns its claims.
async fn verify_jwt(env: &Env, jwt: &str) -> Value {
    let jwks: Value = env
        .http
        .get(format!("{}/login/.well-known/jwks", env.emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let b = |k: &str| URL_SAFE_NO_PAD.decode(key[k].as_str().unwrap()).unwrap();
    let public = PublicKeyComponents {
        n: b("n"),
        e: b("e"),
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], key["kid"]);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    public
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &sig,
        )
        .expect("signature verifies with the JWKS key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn authorize(env: &Env, challenge: Option<&str>, redirect: &str) -> reqwest::Response {
    let mut q = vec![
        ("client_id", "emulator-client".to_string()),
        ("redirect_uri", redirect.to_string()),
        ("response_type", "code".to_string()),
        ("scope", "openid".to_string()),
        ("state", "xyz-123".to_string()),
        ("nonce", "n-0S6".to_string()),
    ];
    if let Some(c) = challenge {
        q.push(("code_challenge", c.to_string()));
        q.push(("code_challenge_method", "S256".to_string()));
    }
    no_redirects()
        .get(format!(
            "{}/login/common/oauth/authorize",
            env.emu.base_url()
        ))
        .query(&q)
        .send()
        .await
        .unwrap()
}

fn code_from(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let pairs: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "xyz-123");
    pairs["code"].clone()
}

async fn token_call(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let r = env
        .http
        .post(format!("{}/login/common/oauth/tokens", env.emu.base_url()))
        .header("Accept", "application/json")
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_and_refresh() {
    let env = Env::default().await;
    let discovery: Value = env
        .http
        .get(format!(
            "{}/login/.well-known/openid-configuration",
            env.emu.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], env.emu.base_url());
    assert_eq!(
        discovery["token_endpoint"],
        format!("{}/login/common/oauth/tokens", env.emu.base_url())
    );
    assert_eq!(discovery["scopes_supported"], json!(["openid"]));

    let verifier = "a-very-long-random-verifier-string-0123456789-abcdefghijklmnop";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:53682/callback";
    let code = code_from(&authorize(&env, Some(&challenge), redirect).await);

    // A wrong verifier fails and burns the code.
    let (status, body) = token_call(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "emulator-client"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");

    let code = code_from(&authorize(&env, Some(&challenge), redirect).await);
    let (status, tokens) = token_call(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("8A:Cust12345."));
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    let claims = verify_jwt(&env, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], env.emu.base_url());
    assert_eq!(claims["aud"], "emulator-client");
    assert_eq!(claims["nonce"], "n-0S6");
    assert_eq!(claims[format!("{CLAIM}ctx")], "Cust12345");
    assert_eq!(
        claims[format!("{CLAIM}system_token")],
        env.emu.config().auth.system_token.as_str()
    );
    assert_eq!(claims[format!("{CLAIM}associateid")], "1");
    let webapi = claims[format!("{CLAIM}webapi_url")].as_str().unwrap();
    assert_eq!(
        webapi,
        format!("{}/Cust12345/api/", env.emu.base_url()),
        "the documented un-numbered host"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let ok = env
        .http
        .get(env.url("Contact/1"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The id_token's webapi_url points at a host without a label: 421.
    let misdirected = env
        .http
        .get(format!("{webapi}v1/Contact/1"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(misdirected.status(), 421);

    // A used code cannot be reused.
    let (status, _) = token_call(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, 400);

    // Refresh: no new refresh token, and the old one keeps working.
    for _ in 0..2 {
        let (status, refreshed) = token_call(
            &env,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "emulator-client"),
                ("client_secret", "emulator-secret"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
        assert_eq!(status, 200, "{refreshed}");
        assert!(refreshed.get("refresh_token").is_none());
        assert!(refreshed["id_token"].is_string());
        assert_ne!(refreshed["access_token"], tokens["access_token"]);
    }
    let (status, body) = token_call(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "emulator-client"),
            ("client_secret", "wrong"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = token_call(
        &env,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client"),
            ("client_secret", "emulator-secret"),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn authorize_rejects_unregistered_redirects_and_needs_a_secret_without_pkce() {
    let env = Env::default().await;
    let r = authorize(&env, None, "https://evil.example/cb").await;
    assert_eq!(r.status(), 400);
    for loopback in ["http://[::1]:9000/cb", "http://localhost:9000/cb"] {
        assert_eq!(authorize(&env, None, loopback).await.status(), 302);
    }
    let redirect = "http://127.0.0.1:9000/cb";
    let code = code_from(&authorize(&env, None, redirect).await);
    let (status, _) = token_call(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "emulator-client"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(status, 401, "no PKCE and no secret");
    let code = code_from(&authorize(&env, None, redirect).await);
    let basic = base64::engine::general_purpose::STANDARD.encode("emulator-client:emulator-secret");
    let r = env
        .http
        .post(format!("{}/login/common/oauth/tokens", env.emu.base_url()))
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "client_secret_basic works");
}

#[tokio::test]
async fn access_tokens_expire_after_the_ttl() {
    let mut config = common::config();
    config.auth.access_token_ttl_secs = 60;
    let env = Env::start(config).await;
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 200);
    env.emu.advance_clock(61);
    let r = env.get("Contact/1").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Error"], true);

    let fresh = env.emu.issue_access_token();
    assert_eq!(
        env.http
            .get(env.url("Contact/1"))
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    env.admin(reqwest::Method::POST, "tokens/expire", None)
        .await;
    assert_eq!(
        env.http
            .get(env.url("Contact/1"))
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        env.http
            .get(env.url("Contact/1"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "no credential"
    );
    assert_eq!(
        env.http
            .get(env.url("Contact/1"))
            .bearer_auth("8A:forged")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let mut open = common::config();
    open.auth.require_auth = false;
    let open = Env::start(open).await;
    assert_eq!(
        open.http
            .get(open.url("Contact/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn authenticate(env: &Env, signed: &str, app_token: &str, kind: &str) -> Value {
    env.http
        .post(format!(
            "{}/Login/api/PartnerSystemUser/Authenticate",
            env.emu.base_url()
        ))
        .json(&json!({
            "SignedSystemToken": signed,
            "ApplicationToken": app_token,
            "ContextIdentifier": "Cust12345",
            "ReturnTokenType": kind,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn system_user_exchange_gives_a_ticket() {
    let env = Env::default().await;
    let system_token = env.emu.config().auth.system_token.clone();
    let signed = emulator::sign_system_token(
        test_keys::SYSTEM_USER_PRIVATE_KEY_PEM,
        &system_token,
        env.emu.now(),
    )
    .unwrap();
    let answer = authenticate(&env, &signed, "emulator-secret", "JWT").await;
    assert_eq!(answer["IsSuccessful"], true, "{answer}");
    let claims = verify_jwt(&env, answer["Token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], "SuperOffice AS");
    assert_eq!(
        claims["aud"],
        format!("spn:{}", env.emu.config().tenant.serial)
    );
    assert_eq!(claims[format!("{CLAIM}ctx")], "Cust12345");
    assert_eq!(claims[format!("{CLAIM}associateid")], "2");
    let ticket = claims[format!("{CLAIM}ticket")]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ticket.starts_with("7T:"));

    let call = |app: Option<&str>| {
        let mut r = env
            .http
            .get(env.url("Contact/1"))
            .header("Authorization", format!("SOTicket {ticket}"));
        if let Some(a) = app {
            r = r.header("SO-AppToken", a);
        }
        r.send()
    };
    assert_eq!(call(Some("emulator-secret")).await.unwrap().status(), 200);
    assert_eq!(
        call(None).await.unwrap().status(),
        401,
        "SO-AppToken is required"
    );
    assert_eq!(call(Some("wrong")).await.unwrap().status(), 401);
    // Changes by the system user carry its associate id.
    let saved: Value = env
        .http
        .patch(env.url("Contact/1"))
        .header("Authorization", format!("SOTicket {ticket}"))
        .header("SO-AppToken", "emulator-secret")
        .json(&json!({"Department": "System"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["UpdatedBy"]["AssociateId"], 2);

    // Sliding expiry: each use restarts the 6 h window.
    env.emu.advance_clock(5 * 3600);
    assert_eq!(call(Some("emulator-secret")).await.unwrap().status(), 200);
    env.emu.advance_clock(5 * 3600);
    assert_eq!(call(Some("emulator-secret")).await.unwrap().status(), 200);
    env.emu.advance_clock(6 * 3600 + 1);
    assert_eq!(call(Some("emulator-secret")).await.unwrap().status(), 401);

    let raw = authenticate(
        &env,
        &emulator::sign_system_token(
            test_keys::SYSTEM_USER_PRIVATE_KEY_PEM,
            &system_token,
            env.emu.now(),
        )
        .unwrap(),
        "emulator-secret",
        "Ticket",
    )
    .await;
    assert!(raw["Token"].as_str().unwrap().starts_with("7T:"));
}

#[tokio::test]
async fn system_user_exchange_rejects_bad_input() {
    let env = Env::default().await;
    let st = env.emu.config().auth.system_token.clone();
    let now = env.emu.now();
    let good =
        emulator::sign_system_token(test_keys::SYSTEM_USER_PRIVATE_KEY_PEM, &st, now).unwrap();
    let wrong_key =
        emulator::sign_system_token(test_keys::SIGNING_PRIVATE_KEY_PEM, &st, now).unwrap();
    let wrong_token =
        emulator::sign_system_token(test_keys::SYSTEM_USER_PRIVATE_KEY_PEM, "OtherApp-1", now)
            .unwrap();
    let stale =
        emulator::sign_system_token(test_keys::SYSTEM_USER_PRIVATE_KEY_PEM, &st, now.plus(-3600))
            .unwrap();
    for (signed, app) in [
        (&wrong_key, "emulator-secret"),
        (&wrong_token, "emulator-secret"),
        (&stale, "emulator-secret"),
        (&good, "wrong-secret"),
    ] {
        let a = authenticate(&env, signed, app, "JWT").await;
        assert_eq!(a["IsSuccessful"], false, "{signed}");
        assert!(a["Token"].is_null());
        assert!(!a["ErrorMessage"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn state_api_reports_endpoint_and_validity() {
    let env = Env::default().await;
    let s: Value = env
        .http
        .get(format!("{}/api/state/Cust12345", env.emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["ContextIdentifier"], "Cust12345");
    assert_eq!(s["State"], "Running");
    assert_eq!(s["IsRunning"], true);
    assert_eq!(s["Endpoint"], env.emu.tenant_url());
    let valid = emulator::Ts::parse_literal(s["ValidUntil"].as_str().unwrap())
        .unwrap()
        .0;
    assert!(valid.0 - env.emu.now().0 >= 3590);
    assert!(s["Version"].is_string());
}
