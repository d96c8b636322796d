//! A task's query parameters and `If-Unmodified-Since` reach the server with its write (the
//! SDK's entity write), against the in-process emulator.

use std::time::Duration;

use chrono::Utc;
use emulator::{EntityType, FaultRule, RouteClass};
use serde_json::json;
use syncd::outbox::TaskState;
use syncd_testkit::outbox::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_and_the_precondition_travel_with_the_write() {
    let emu = emulator().await;
    // Only a PATCH that carries the task's query matches this rule; its answer (instead of the
    // emulator's) shows the query was sent, percent-encoded and decoded back.
    let marked = json!({ "ContactId": 2, "Name": "Answered for the marked request" });
    emu.add_fault(FaultRule {
        matching: Some("/api/v1/Contact/2?$select=Name,Department&marker=a b".into()),
        ..FaultRule::body(RouteClass::Entity, marked.to_string())
    })
    .unwrap();
    let setup = Setup::new(&emu, "", "");
    let running = setup.daemon().await;

    let mut patch = request("patch", "contact", Some(json!({ "Department": "Marked" })));
    patch.id = Some(2);
    patch.query.insert("marker".into(), "a b".into());
    patch
        .query
        .insert("$select".into(), "Name,Department".into());
    let patched = running.publish(&patch).await.unwrap().task().id;
    let patched = wait_state(&running.store, patched, TaskState::Done, WAIT).await;
    assert_eq!(patched.result, Some(marked), "{patched:#?}");
    assert_ne!(
        get_entity(&emu, "Contact", 2).await["Department"],
        "Marked",
        "the rule answered; the emulator never applied the patch"
    );

    // With a query, the precondition is still sent: a time before the record's last change
    // is a 412, a conflict, and nothing is written.
    let mut stale = request("patch", "contact", Some(json!({ "Department": "Stale" })));
    stale.id = Some(3);
    stale.query.insert("marker".into(), "stale".into());
    stale.if_unmodified_since = Some((Utc::now() - chrono::Duration::days(365 * 50)).to_rfc3339());
    let stale = running.publish(&stale).await.unwrap().task().id;
    let stale = wait_state(&running.store, stale, TaskState::Conflict, WAIT).await;
    assert_eq!(stale.conflict.unwrap()["status"], 412);
    assert_ne!(get_entity(&emu, "Contact", 3).await["Department"], "Stale");

    // A create with a query creates exactly one record and completes its key.
    let mut create = request("create", "contact", Some(json!({ "Name": "Queried AS" })));
    create.query.insert("marker".into(), "create".into());
    create.key = Some("queried-create".into());
    let created_task = running.publish(&create).await.unwrap().task().id;
    let created_task = wait_state(&running.store, created_task, TaskState::Done, WAIT).await;
    let created = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created_task.result_id, Some(created[0].id as i64));
    assert_eq!(
        foreign_keys(&emu, "contact").await.get("queried-create"),
        Some(&vec![created[0].id as i64])
    );
    running.stop().await;
}
