//! `POST /publish`: 202 with the task, replays answer the stored task (200 once done), the same
//! key with another request is 409, bad input is 400 naming the field, `?dry_run=true` queues
//! and sends nothing. (Authentication and limits: `control_plane.rs`.)

use std::time::Duration;

use emulator::EntityType;
use serde_json::{Value, json};
use syncd::outbox::{TaskId, TaskState};
use syncd_testkit::outbox::*;

async fn post(url: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .bearer_auth(CONTROL_TOKEN)
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_replay_and_mismatch() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "").with_token();
    let running = setup.daemon().await;
    let url = format!("{}/publish", running.control_url());
    let body = json!({ "action": "create", "entity": "contact", "payload": { "Name": "Http AS" } })
        .to_string();

    let (status, first) = post(&url, Some("http-1"), &body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["key"], "http-1");
    let task_id = first["task_id"].as_i64().unwrap();
    assert!(first["state"].is_string());

    let (status, replay) = post(&url, Some("http-1"), &body).await;
    assert!(status == 202 || status == 200, "{status} {replay}");
    assert_eq!(replay["task_id"], task_id);

    wait_state(
        &running.store,
        TaskId(task_id),
        TaskState::Done,
        Duration::from_secs(20),
    )
    .await;
    let (status, done) = post(&url, Some("http-1"), &body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "done");
    assert!(done["result_id"].as_i64().unwrap() > SEEDED as i64);
    assert_eq!(done["result"]["Name"], "Http AS");

    let other = json!({ "action": "create", "entity": "contact", "payload": { "Name": "Other" } })
        .to_string();
    let (status, mismatch) = post(&url, Some("http-1"), &other).await;
    assert_eq!(status, 409, "{mismatch}");
    assert_eq!(mismatch["task_id"], task_id);

    // The key may also travel in the body; a conflicting header is refused.
    let keyed = json!({ "action": "create", "entity": "contact", "key": "body-key", "payload": { "Name": "B" } }).to_string();
    let (status, _) = post(&url, None, &keyed).await;
    assert_eq!(status, 202);
    let (status, error) = post(&url, Some("header-key"), &keyed).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("key")));
    settle(&running.store, Duration::from_secs(20)).await;
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_naming_the_field_and_dry_run_sends_nothing() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "").with_token();
    let running = setup.daemon().await;
    let url = format!("{}/publish", running.control_url());
    let cases = [
        ("{not json", "body"),
        (
            r#"{"action":"create","entity":"widget","payload":{}}"#,
            "entity",
        ),
        (
            r#"{"action":"upsurt","entity":"contact","payload":{}}"#,
            "action",
        ),
        (
            r#"{"action":"create","entity":"contact","payload":{"Name":7}}"#,
            "payload.Name",
        ),
        (
            r#"{"action":"update","entity":"contact","payload":{"Name":"x"}}"#,
            "id",
        ),
        (
            r#"{"action":"update","entity":"contact","id":"7","payload":{}}"#,
            "id",
        ),
        (
            r#"{"action":"create","entity":"contact","payload":{},"colour":"red"}"#,
            "colour",
        ),
        (
            r#"{"action":"patch","entity":"contact","id":7,"payload":5}"#,
            "payload",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = post(&url, None, body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
    }

    let before = emu.stats().requests;
    let body = json!({ "action": "create", "entity": "contact", "payload": { "Name": "Dry" } })
        .to_string();
    let (status, plan) = post(&format!("{url}?dry_run=true"), Some("dry-1"), &body).await;
    assert_eq!(status, 200, "{plan}");
    let requests = plan["requests"].as_array().unwrap();
    assert!(
        requests[0]
            .as_str()
            .unwrap()
            .starts_with("GET /api/v1/ForeignApp/")
    );
    assert!(
        requests[1]
            .as_str()
            .unwrap()
            .starts_with("POST /api/v1/Contact")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.stats().requests, before, "a dry run sends nothing");
    assert!(tasks(&running.store).is_empty(), "and queues nothing");
    running.stop().await;
}
