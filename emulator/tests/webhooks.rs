//! Webhooks: registration with the test event, event names and payloads, signatures, retries,
//! dropping and `TooManyErrors`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Env, Receiver};
use emulator::EntityType;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(5);

async fn register(env: &Env, rx: &Receiver, events: Value, secret: &str) -> Value {
    let r = env
        .post("Webhook")
        .json(&json!({"Name": "test-sync", "Events": events, "TargetUrl": rx.url, "Secret": secret, "State": "Active", "Type": "webhook"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD
        .decode(header)
        .unwrap();
    mac.verify_slice(&expected).is_ok()
}

/// Polls `Webhook/{id}` until `settled` holds: the emulator updates a webhook's counters after
/// the receiver's answer reaches it, which is after the receiver has recorded the request.
async fn webhook_when(env: &Env, id: i64, settled: impl Fn(&Value) -> bool) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        let hook = env.get_json(&format!("Webhook/{id}")).await;
        if settled(&hook) {
            return hook;
        }
        assert!(
            started.elapsed() < WAIT,
            "webhook {id} did not settle: {hook}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn registration_sends_a_test_event_that_must_succeed() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    let hook = register(&env, &rx, json!(["contact.created"]), "s3cret").await;
    assert_eq!(hook["State"], "Active");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let test = &got[0];
    assert_eq!(test.header("x-hook-test").as_deref(), Some("true"));
    assert_eq!(test.header("x-superoffice-event").as_deref(), Some("test"));
    let body = test.json();
    assert_eq!(body["Event"], "test");
    assert_eq!(body["Entity"], "test");
    assert_eq!(body["PrimaryKey"], 0);
    assert!(verify(
        "s3cret",
        &test.body,
        &test.header("x-superoffice-signature").unwrap()
    ));

    // A receiver that does not answer 200 makes the save fail.
    rx.script(&[500]);
    let r = env
        .post("Webhook")
        .json(&json!({"Name": "broken", "Events": ["contact.created"], "TargetUrl": rx.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let list: Value = env.get_json("Webhook").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let remote = env
        .post("Webhook")
        .json(&json!({"Name": "remote", "Events": ["contact.created"], "TargetUrl": "https://example.com/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        remote.status(),
        400,
        "non-loopback targets are refused by default"
    );

    let ping: Value = env
        .post("Webhook/Test")
        .json(&json!({"Name": "p", "TargetUrl": rx.url, "Events": ["x"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping["Success"], true);
    let id = hook["WebhookId"].as_i64().unwrap();
    assert_eq!(
        env.get_json(&format!("Webhook/{id}")).await["Name"],
        "test-sync"
    );
    assert_eq!(
        env.delete(&format!("Webhook/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        env.get(&format!("Webhook/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn events_are_named_signed_and_shaped_per_facts() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    env.patch("Sale/1")
        .json(&json!({"Status": "Open"}))
        .send()
        .await
        .unwrap();
    register(
        &env,
        &rx,
        json!([
            "contact.created",
            "contact.changed",
            "contact.softdeleted",
            "contact.deleted",
            "activity.*",
            "ticket.*",
            "sale.sold",
            "sale.changed"
        ]),
        "topsecret",
    )
    .await;

    let c: Value = env
        .post("Contact")
        .json(&json!({"Name": "Hooked AS"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = c["ContactId"].as_i64().unwrap();
    env.patch(&format!("Contact/{id}"))
        .json(&json!({"Department": "Ops"}))
        .send()
        .await
        .unwrap();
    // Child-table only: no event.
    env.patch(&format!("Contact/{id}"))
        .json(&json!({"Phones": [{"Value": "+47 1"}]}))
        .send()
        .await
        .unwrap();
    env.delete(&format!("Contact/{id}")).send().await.unwrap();
    env.post("Appointment")
        .json(&json!({"Title": "Meet"}))
        .send()
        .await
        .unwrap();
    env.delete("Ticket/1").send().await.unwrap();
    env.patch("Sale/1")
        .json(&json!({"Status": "Sold"}))
        .send()
        .await
        .unwrap();
    env.post("Selection")
        .json(&json!({"Name": "No events for selections"}))
        .send()
        .await
        .unwrap();

    let expected = [
        "contact.created",
        "contact.changed",
        "contact.softdeleted",
        "activity.created",
        "ticket.changed",
        "sale.changed",
        "sale.sold",
    ];
    let got = rx.wait_for(expected.len(), WAIT).await;
    let names: Vec<String> = got
        .iter()
        .map(|r| r.header("x-superoffice-event").unwrap())
        .collect();
    assert_eq!(
        names, expected,
        "no event for child rows, no ticket.deleted, nothing for selections"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.events().len(), expected.len());

    for r in &got {
        let sig = r.header("x-superoffice-signature").expect("signed");
        assert!(
            verify("topsecret", &r.body, &sig),
            "signature over the raw body"
        );
        assert_eq!(r.header("x-superoffice-retry").as_deref(), Some("0"));
        assert!(
            r.header("user-agent")
                .unwrap()
                .starts_with("NetServer-Webhook/")
        );
        let b = r.json();
        assert_eq!(
            r.header("x-superoffice-eventid").unwrap(),
            b["EventId"].as_str().unwrap()
        );
        assert_eq!(b["ContextIdentifier"], "Cust12345");
        assert_eq!(b["WebhookName"], "test-sync");
        assert!(b["Timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let created = got[0].json();
    assert_eq!(created["Entity"], "contact");
    assert_eq!(created["PrimaryKey"], id);
    assert_eq!(created["ChangedByAssociateId"], 1);
    assert_eq!(created["FieldValues"]["deleted"], 0);
    assert!(
        created["Changes"]
            .as_array()
            .unwrap()
            .contains(&json!("contact_id"))
    );
    let changed = got[1].json();
    assert_eq!(
        changed["Changes"],
        json!([
            "contact_id",
            "department",
            "updated_associate_id",
            "updated",
            "updatedCount"
        ])
    );
    let soft = got[2].json();
    assert_eq!(soft["FieldValues"]["deleted"], 1);
    assert_eq!(got[3].json()["Entity"], "activity");

    // The purge hard-deletes and fires contact.deleted with Values.
    env.emu.advance_clock(15 * 86_400);
    let got = rx.wait_for(expected.len() + 1, WAIT).await;
    let last = got.last().unwrap();
    assert_eq!(
        last.header("x-superoffice-event").as_deref(),
        Some("contact.deleted")
    );
    let body = last.json();
    assert_eq!(body["Changes"], json!([]));
    assert_eq!(body["Values"]["contact_id"], id);
}

#[tokio::test]
async fn activity_by_other_users_fires_events() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    register(&env, &rx, json!(["person.*"]), "").await;
    let report = env.emu.activity(2, 3, 1, Some(EntityType::Person));
    let n = report.created.len() + report.updated.len() + report.deleted.len();
    let got = rx.wait_for(n, WAIT).await;
    assert_eq!(got.len(), n);
    for r in &got {
        assert!(
            r.header("x-superoffice-signature").is_none(),
            "no secret, no signature"
        );
        let by = r.json()["ChangedByAssociateId"].as_i64().unwrap();
        assert!((3..=10).contains(&by), "other users, not the API user");
    }
}

#[tokio::test]
async fn failed_deliveries_retry_three_times_then_drop() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    let hook = register(&env, &rx, json!(["project.changed"]), "k").await;
    let id = hook["WebhookId"].as_i64().unwrap();
    rx.script(&[500, 503]);
    env.patch("Project/1")
        .json(&json!({"Name": "Retried"}))
        .send()
        .await
        .unwrap();
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    let retries: Vec<String> = got
        .iter()
        .map(|r| r.header("x-superoffice-retry").unwrap())
        .collect();
    assert_eq!(retries, ["0", "1", "2"]);
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "retries resend the same body"
    );
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(9) && gap2 >= Duration::from_millis(39),
        "1 s and 4 s scaled by 0.01: {gap1:?} {gap2:?}"
    );
    let h = webhook_when(&env, id, |h| h["ConsecutiveErrors"] == 0).await;
    assert_eq!(h["TotalErrors"], 2, "the third attempt succeeded");

    // Three failures: the event is dropped.
    rx.fail_all(Some(500));
    env.patch("Project/2")
        .json(&json!({"Name": "Dropped"}))
        .send()
        .await
        .unwrap();
    rx.wait_for(6, WAIT).await;
    let h = webhook_when(&env, id, |h| h["ConsecutiveErrors"] == 3).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rx.events().len(), 6, "three attempts, no fourth");
    assert_eq!(h["State"], "Active");
    assert!(h["LastError"].as_str().unwrap().contains("500"));
    assert_eq!(
        env.get_json(&format!("Webhook/{id}/LastError")).await,
        h["LastError"]
    );
    let stats = env.emu.stats();
    assert!(stats.events_dropped >= 1);
}

#[tokio::test]
async fn nine_consecutive_failures_stop_the_webhook() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    let hook = register(&env, &rx, json!(["sale.changed"]), "").await;
    let id = hook["WebhookId"].as_i64().unwrap();
    rx.fail_all(Some(502));
    for i in 1..=4 {
        env.patch(&format!("Sale/{i}"))
            .json(&json!({"Heading": format!("Attempt {i}")}))
            .send()
            .await
            .unwrap();
    }
    rx.wait_for(9, WAIT).await;
    let h = webhook_when(&env, id, |h| h["State"] == "TooManyErrors").await;
    assert_eq!(h["ConsecutiveErrors"], 9);
    // Events still queued when the webhook stopped (3 and 4) are dropped, not delivered later.
    let started = tokio::time::Instant::now();
    while env.emu.stats().events_dropped < 4 {
        assert!(started.elapsed() < WAIT, "{:?}", env.emu.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.events().len(),
        9,
        "delivery stops after nine failed attempts"
    );

    // Events while stopped are lost; setting State back to Active resumes delivery.
    env.patch("Sale/5")
        .json(&json!({"Heading": "Lost"}))
        .send()
        .await
        .unwrap();
    rx.fail_all(None);
    let r = env
        .patch(&format!("Webhook/{id}"))
        .json(&json!({"State": "Active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["State"], "Active");
    assert_eq!(h["ConsecutiveErrors"], 0);
    env.patch("Sale/6")
        .json(&json!({"Heading": "Delivered"}))
        .send()
        .await
        .unwrap();
    let got = rx.wait_for(10, WAIT).await;
    assert_eq!(got.len(), 10);
    assert_eq!(got[9].json()["PrimaryKey"], 6);
}

#[tokio::test]
async fn webhook_faults_apply_to_deliveries() {
    let env = Env::default().await;
    let rx = Receiver::start().await;
    register(&env, &rx, json!(["document.changed"]), "").await;
    env.admin(
        reqwest::Method::POST,
        "faults",
        Some(json!({"route_class": "webhook", "status": 500, "count": 2})),
    )
    .await;
    env.patch("Document/1")
        .json(&json!({"Header": "x"}))
        .send()
        .await
        .unwrap();
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("x-superoffice-retry").as_deref(),
        Some("2"),
        "the first two attempts were failed by the fault"
    );
}
