//! Fault injection: statuses with Retry-After, latency, dropped connections, route classes,
//! counts, seeded rates and clearing.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use emulator::{FaultRule, RouteClass};
use serde_json::{Value, json};

#[tokio::test]
async fn status_faults_answer_so_errors_with_retry_after() {
    let env = Env::default().await;
    env.admin(
        reqwest::Method::POST,
        "faults",
        Some(json!({"route_class": "odata", "status": 503, "rate": 1.0, "retry_after": 7, "count": 2})),
    )
    .await;
    for _ in 0..2 {
        let r = env.get("Contact?$select=contactId").send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Error"], true);
        assert!(body["ErrorType"].is_string());
    }
    assert_eq!(
        env.get("Contact?$select=contactId")
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "count exhausted"
    );
    // Entity calls are not in the odata class.
    env.emu
        .add_fault(FaultRule::status(RouteClass::Odata, 500))
        .unwrap();
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 200);
    assert_eq!(
        env.get("Archive/SimpleContact")
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    env.admin(reqwest::Method::DELETE, "faults", None).await;
    assert_eq!(
        env.get("Archive/SimpleContact")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    env.emu
        .add_fault(FaultRule::status(RouteClass::Entity, 429))
        .unwrap();
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 429);
    assert_eq!(env.get("Contact").send().await.unwrap().status(), 200);
    env.emu.clear_faults();

    // Admin calls are never faulted.
    env.emu
        .add_fault(FaultRule::status(RouteClass::All, 500))
        .unwrap();
    let stats = env.admin(reqwest::Method::GET, "stats", None).await;
    assert!(stats["by_status"]["503"].as_u64().unwrap() >= 2);
    assert!(stats["faults_injected"].as_u64().unwrap() >= 4);
    env.emu.clear_faults();
}

#[tokio::test]
async fn dropped_connections_are_transport_errors() {
    let env = Env::default().await;
    env.emu
        .add_fault(FaultRule {
            drop_connection: true,
            status: None,
            count: Some(1),
            ..FaultRule::status(RouteClass::Data, 500)
        })
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let err = client
        .get(env.url("Contact/1"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "no HTTP answer at all: {err}");
    let ok = client
        .get(env.url("Contact/1"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(env.emu.stats().connections_dropped, 1);
}

#[tokio::test]
async fn latency_and_auth_and_state_classes() {
    let env = Env::default().await;
    env.emu
        .add_fault(FaultRule {
            count: Some(1),
            ..FaultRule::latency(RouteClass::Entity, 150)
        })
        .unwrap();
    let t = Instant::now();
    assert_eq!(env.get("Contact/1").send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    env.emu
        .add_fault(FaultRule {
            count: Some(1),
            ..FaultRule::status(RouteClass::Auth, 502)
        })
        .unwrap();
    let r = env
        .http
        .post(format!("{}/login/common/oauth/tokens", env.emu.base_url()))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    env.emu
        .add_fault(FaultRule {
            count: Some(1),
            ..FaultRule::status(RouteClass::State, 500)
        })
        .unwrap();
    let state = format!("{}/api/state/Cust12345", env.emu.base_url());
    assert_eq!(env.http.get(&state).send().await.unwrap().status(), 500);
    assert_eq!(env.http.get(&state).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn rates_are_seeded_and_repeatable() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let mut config = common::config();
        config.seed = seed;
        let env = Env::start(config).await;
        env.emu
            .add_fault(FaultRule {
                rate: 0.3,
                ..FaultRule::status(RouteClass::Entity, 503)
            })
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(env.get("Contact/1").send().await.unwrap().status().as_u16());
        }
        out
    }
    let a = pattern(5).await;
    assert_eq!(a, pattern(5).await);
    let failures = a.iter().filter(|s| **s == 503).count();
    assert!((4..=22).contains(&failures), "{failures} of 40");
    let env = Env::default().await;
    let bad = reqwest::Client::new()
        .post(format!("{}/__admin/faults", env.emu.base_url()))
        .json(&json!({"route_class": "data", "rate": 3.0, "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn body_faults_answer_the_given_body_instead_of_the_archive() {
    let env = Env::default().await;
    env.emu
        .add_fault(FaultRule {
            count: Some(1),
            ..FaultRule::body(RouteClass::Odata, r#"{"odata.nextLink":null}"#)
        })
        .unwrap();
    let r = env.get("Contact?$select=contactId").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"odata.nextLink": null}), "no `value` array");
    let body: Value = env
        .get("Contact?$select=contactId")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["value"].is_array(),
        "count exhausted: the archive answers"
    );
}
