//! Conditional writes: a 412 leads to `conflict` with both versions under `fail`, is sent again
//! unconditionally under `overwrite`, is re-read and re-applied under `refetch-and-reapply`
//! (patches only); a failed JSON Patch `test` (409) is always a conflict; the synced record's
//! last-modified is the default condition and our own later writes do not count against it.

use std::time::Duration;

use chrono::Utc;
use emulator::Emulator;
use serde_json::{Value, json};
use syncd::outbox::TaskState;
use syncd_testkit::outbox::*;

const WAIT: Duration = Duration::from_secs(20);

fn route(policy: &str) -> String {
    format!("[[route]]\nentity = \"contact\"\nconflict = \"{policy}\"\n")
}

/// Someone else edits contact `id` a minute (emulator time) from now; returns its UpdatedDate.
async fn edited_by_someone_else(emu: &Emulator, id: i64) -> String {
    emu.advance_clock(60);
    let theirs = merge_patch(emu, "Contact", id, json!({ "Department": "Theirs" })).await;
    assert_eq!(theirs["Department"], "Theirs");
    theirs["UpdatedDate"].as_str().unwrap().to_string()
}

/// A patch conditioned on a time before the other user's edit.
fn stale_patch(id: i64, payload: Value) -> syncd::outbox::PublishRequest {
    let mut r = request("patch", "contact", Some(payload));
    r.id = Some(id);
    r.if_unmodified_since = Some((Utc::now() - chrono::Duration::seconds(5)).to_rfc3339());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_keeps_both_versions_and_retry_overwrite_resolves() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", &route("fail"));
    let running = setup.daemon().await;
    let request = stale_patch(1, json!({ "Department": "Ours" }));
    edited_by_someone_else(&emu, 1).await;
    let id = running.publish(&request).await.unwrap().task().id;
    let conflict = wait_state(&running.store, id, TaskState::Conflict, WAIT).await;
    let both = conflict.conflict.clone().unwrap();
    assert_eq!(both["status"], 412);
    assert_eq!(both["ours"]["Department"], "Ours");
    assert_eq!(both["theirs"]["Department"], "Theirs");
    assert_eq!(get_entity(&emu, "Contact", 1).await["Department"], "Theirs");

    // A conflict blocks later changes of the record.
    let mut later = request.clone();
    later.payload = Some(json!({ "Name": "Later" }).to_string());
    later.if_unmodified_since = None;
    let later = running.publish(&later).await.unwrap().task().id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(task(&running.store, later).state, TaskState::Pending);

    // Ours wins after all.
    running
        .store
        .write(move |tx| syncd::store::tasks::retry(tx, id, true, Utc::now()))
        .await
        .unwrap();
    running.daemon.as_ref().unwrap().services().outbox.wake();
    wait_state(&running.store, later, TaskState::Done, WAIT).await;
    let record = get_entity(&emu, "Contact", 1).await;
    assert_eq!(record["Department"], "Ours");
    assert_eq!(record["Name"], "Later");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_sends_again_without_the_condition() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", &route("overwrite"));
    let running = setup.daemon().await;
    let request = stale_patch(2, json!({ "Department": "Ours" }));
    edited_by_someone_else(&emu, 2).await;
    let id = running.publish(&request).await.unwrap().task().id;
    let done = wait_state(&running.store, id, TaskState::Done, WAIT).await;
    assert_eq!(get_entity(&emu, "Contact", 2).await["Department"], "Ours");
    let record = done.conflict.unwrap();
    assert_eq!(record["resolution"], "overwrote");
    assert_eq!(
        record["theirs"][0]["Department"], "Theirs",
        "their version is kept"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refetch_and_reapply_patches_the_current_version_but_not_a_put() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", &route("refetch-and-reapply"));
    let running = setup.daemon().await;
    let patch = stale_patch(3, json!({ "Name": "Ours" }));
    let mut put_body = get_entity(&emu, "Contact", 4).await;
    put_body.as_object_mut().unwrap().remove("_Links");
    put_body["Name"] = json!("Put ours");
    let mut put = request("update", "contact", Some(put_body));
    put.id = Some(4);
    put.if_unmodified_since = patch.if_unmodified_since.clone();
    edited_by_someone_else(&emu, 3).await;
    edited_by_someone_else(&emu, 4).await;

    let patched = running.publish(&patch).await.unwrap().task().id;
    let put = running.publish(&put).await.unwrap().task().id;
    let patched = wait_state(&running.store, patched, TaskState::Done, WAIT).await;
    let record = get_entity(&emu, "Contact", 3).await;
    assert_eq!(record["Name"], "Ours");
    assert_eq!(
        record["Department"], "Theirs",
        "their change survives the re-applied patch"
    );
    assert_eq!(patched.conflict.unwrap()["resolution"], "reapplied");
    let put = wait_state(&running.store, put, TaskState::Conflict, WAIT).await;
    assert_eq!(put.conflict.unwrap()["theirs"]["Department"], "Theirs");
    assert_ne!(get_entity(&emu, "Contact", 4).await["Name"], "Put ours");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_json_patch_test_is_a_conflict_whatever_the_policy() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", &route("overwrite"));
    let running = setup.daemon().await;
    let mut r = request(
        "patch",
        "contact",
        Some(json!([
            { "op": "test", "path": "/Name", "value": "Not the name" },
            { "op": "replace", "path": "/Name", "value": "Never" }
        ])),
    );
    r.id = Some(1);
    let id = running.publish(&r).await.unwrap().task().id;
    let conflict = wait_state(&running.store, id, TaskState::Conflict, WAIT).await;
    assert_eq!(conflict.conflict.unwrap()["status"], 409);
    assert_ne!(get_entity(&emu, "Contact", 1).await["Name"], "Never");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synced_last_modified_is_the_default_condition_and_our_own_writes_do_not_conflict() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", &route("fail"));
    let running = setup.daemon().await;
    // What a subscription stored for contacts 1 and 2.
    let mut synced = Vec::new();
    for id in [1i64, 2] {
        let entity = get_entity(&emu, "Contact", id).await;
        let modified = syncd::outbox::deliver::last_modified(&entity).unwrap();
        synced.push((id, modified.format("%Y-%m-%dT%H:%M:%S").to_string()));
    }
    running
        .store
        .write(move |tx| {
            let now = syncd::store::types::UtcTime::now();
            let kind = superoffice::entity::EntityKind::Contact;
            syncd::store::runs::register(
                tx,
                syncd::store::runs::Registration {
                    name: "contacts",
                    kind,
                    fingerprint: "",
                },
                now,
            )?;
            let mut page = syncd::store::records::PageWrite::new("contacts".into(), kind, now);
            for (id, modified) in synced {
                page.upserts.push(syncd::store::records::Upsert {
                    id,
                    json: "{}".into(),
                    hash: "h".into(),
                    modified: Some(modified),
                    entity_hash: None,
                });
            }
            syncd::store::records::apply(tx, &page)?;
            Ok(())
        })
        .await
        .unwrap();

    // Contact 1: someone else changed it after the sync: conflict.
    edited_by_someone_else(&emu, 1).await;
    let mut stale = request("patch", "contact", Some(json!({ "Name": "Ours" })));
    stale.id = Some(1);
    let stale = running.publish(&stale).await.unwrap().task().clone();
    assert_eq!(
        stale.ius_source,
        Some(syncd::outbox::task::IusSource::Synced)
    );
    // Contact 2: two of our patches queued on the same synced copy; the first moves
    // UpdatedDate (a later second), the second must not conflict with it.
    emu.advance_clock(60);
    let mut first = request("patch", "contact", Some(json!({ "Name": "One" })));
    first.id = Some(2);
    let mut second = request("patch", "contact", Some(json!({ "Department": "Two" })));
    second.id = Some(2);
    let first = running.publish(&first).await.unwrap().task().id;
    let second = running.publish(&second).await.unwrap().task().id;

    let stale = wait_state(&running.store, stale.id, TaskState::Conflict, WAIT).await;
    assert_eq!(stale.conflict.unwrap()["status"], 412);
    wait_state(&running.store, first, TaskState::Done, WAIT).await;
    wait_state(&running.store, second, TaskState::Done, WAIT).await;
    let record = get_entity(&emu, "Contact", 2).await;
    assert_eq!(
        (record["Name"].as_str(), record["Department"].as_str()),
        (Some("One"), Some("Two"))
    );
    running.stop().await;
}
