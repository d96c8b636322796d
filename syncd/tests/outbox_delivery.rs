//! Delivery against the in-process emulator: exactly-once creates under replays, updates,
//! patches, deletes, upserts, echo rows, FIFO per record under concurrency, backoff to `dead`,
//! the transactional `outbox` table, and validation at intake.

use std::time::Duration;

use emulator::{EntityType, FaultRule, RouteClass};
use serde_json::json;
use superoffice::entity::EntityKind;
use syncd::outbox::{Intake, TaskId, TaskState};
use syncd::store::outbox_rows;
use syncd_testkit::outbox::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_one_key_many_times_creates_one_record() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let running = setup.daemon().await;

    let mut request = request("create", "contact", Some(json!({ "Name": "Replay AS" })));
    request.key = Some("order-4711".into());
    let mut handles = Vec::new();
    for _ in 0..40 {
        let store = running.store.clone();
        let config = running.config.clone();
        let request = request.clone();
        handles.push(tokio::spawn(async move {
            syncd::outbox::publish(&store, &config, &request, "api").await
        }));
    }
    let mut ids = Vec::new();
    for handle in handles {
        let intake = handle.await.unwrap().expect("accepted");
        assert!(matches!(intake, Intake::Queued(_) | Intake::Replay(_)));
        ids.push(intake.task().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one task for one key");
    let done = wait_state(&running.store, ids[0], TaskState::Done, WAIT).await;

    // Replays after delivery answer the stored task and send nothing.
    for _ in 0..5 {
        let intake = running.publish(&request).await.unwrap();
        assert!(
            matches!(intake, Intake::Replay(ref t) if t.id == done.id && t.state == TaskState::Done)
        );
    }
    // The same key with another payload is refused.
    let mut other = request.clone();
    other.payload = Some(json!({ "Name": "Something else" }).to_string());
    assert!(matches!(
        running.publish(&other).await.unwrap(),
        Intake::Mismatch(_)
    ));
    running.stop().await;

    // A second daemon with an empty ledger (a restored or lost database) publishes the same
    // key again: the ForeignApp lookup adopts the record instead of creating another.
    let again = Setup::new(&emu, "", "");
    let second = again.daemon().await;
    let intake = second.publish(&request).await.unwrap();
    let adopted = wait_state(&second.store, intake.task().id, TaskState::Done, WAIT).await;
    assert_eq!(adopted.result_id, done.result_id);
    second.stop().await;

    let created = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(created.len(), 1, "exactly one record: {created:?}");
    let keys = foreign_keys(&emu, "contact").await;
    assert_eq!(keys.get("order-4711"), Some(&vec![created[0].id as i64]));

    // The echo row carries the hash of what the POST answered: what a subscription fetching
    // the record computes.
    let (hash, task_id) =
        echo(&setup.store(), EntityKind::Contact, created[0].id as i64).expect("echo row");
    let fetched = get_entity(&emu, "Contact", created[0].id as i64).await;
    assert_eq!(hash, Some(syncd::hash::entity_hash(&fetched)));
    assert_eq!(task_id, Some(done.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_patches_and_deletes_reach_the_record() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let running = setup.daemon().await;

    let mut entity = get_entity(&emu, "Contact", 2).await;
    entity["Name"] = json!("Put AS");
    entity.as_object_mut().unwrap().remove("_Links");
    let mut put = request("update", "contact", Some(entity));
    put.id = Some(2);
    let mut json_patch = request(
        "patch",
        "contact",
        Some(json!([{ "op": "replace", "path": "/Department", "value": "Patched" }])),
    );
    json_patch.id = Some(2);
    let mut merge = request("patch", "contact", Some(json!({ "OrgNr": "998877" })));
    merge.path.insert("id".into(), "2".into());
    let mut delete = request("delete", "contact", None);
    delete.id = Some(3);
    let mut delete_again = delete.clone();
    delete_again.key = Some("delete-3-again".into());
    let mut missing = request("patch", "contact", Some(json!({ "Name": "x" })));
    missing.id = Some(999_999);

    let mut ids = Vec::new();
    for r in [&put, &json_patch, &merge, &delete, &delete_again, &missing] {
        ids.push(running.publish(r).await.unwrap().task().id);
    }
    let tasks = settle(&running.store, WAIT).await;
    let state = |id: TaskId| tasks.iter().find(|t| t.id == id).unwrap().clone();
    for id in &ids[..5] {
        assert_eq!(state(*id).state, TaskState::Done, "{:#?}", state(*id));
    }
    let failed = state(ids[5]);
    assert_eq!(failed.state, TaskState::Failed);
    assert!(failed.last_error.unwrap().contains("not found"));

    let after = get_entity(&emu, "Contact", 2).await;
    assert_eq!(after["Name"], "Put AS");
    assert_eq!(after["Department"], "Patched");
    assert_eq!(after["OrgNr"], "998877");
    let truth = emu.truth(EntityType::Contact);
    let row3 = truth.iter().find(|r| r.id == 3).unwrap();
    assert!(row3.deleted);
    // The last write's echo matches the record as it is now.
    let (hash, task_id) = echo(&running.store, EntityKind::Contact, 2).unwrap();
    assert_eq!(hash, Some(syncd::hash::entity_hash(&after)));
    assert_eq!(task_id, Some(ids[2]));
    let (deleted_hash, _) = echo(&running.store, EntityKind::Contact, 3).unwrap();
    assert_eq!(deleted_hash, None, "a delete's echo has no hash");
    assert!(
        state(ids[4]).result.unwrap()["note"]
            .as_str()
            .unwrap()
            .contains("404"),
        "the second delete met a 404 and is done"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_find_by_external_key_or_lookup_filter_else_create_from_default() {
    let emu = emulator().await;
    let setup = Setup::new(
        &emu,
        "",
        "[[route]]\nentity = \"contact\"\nlookup_filter = \"orgnr eq {OrgNr}\"\n",
    );
    let running = setup.daemon().await;
    merge_patch(&emu, "Contact", 4, json!({ "OrgNr": "LOOKUP-4" })).await;

    let mut first = request(
        "upsert",
        "contact",
        Some(json!({ "Name": "Upsert AS", "OrgNr": "NEW-1" })),
    );
    first.external_key = Some("EXT-1".into());
    let created_task = running.publish(&first).await.unwrap().task().id;
    let created_task = wait_state(&running.store, created_task, TaskState::Done, WAIT).await;
    let record = created_task.result_id.unwrap();
    assert!(record > SEEDED as i64, "created");

    let mut second = request("upsert", "contact", Some(json!({ "Department": "By key" })));
    second.external_key = Some("EXT-1".into());
    let by_key = running.publish(&second).await.unwrap().task().id;
    let by_key = wait_state(&running.store, by_key, TaskState::Done, WAIT).await;
    assert_eq!(by_key.result_id, Some(record));

    let mut third = request(
        "upsert",
        "contact",
        Some(json!({ "OrgNr": "LOOKUP-4", "Department": "By filter" })),
    );
    third.external_key = Some("EXT-4".into());
    let by_filter = running.publish(&third).await.unwrap().task().id;
    let by_filter = wait_state(&running.store, by_filter, TaskState::Done, WAIT).await;
    assert_eq!(by_filter.result_id, Some(4));
    running.stop().await;

    let created = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(created.len(), 1);
    let fresh = get_entity(&emu, "Contact", record).await;
    assert_eq!(fresh["Name"], "Upsert AS");
    assert_eq!(fresh["Department"], "By key");
    // The /default template was the base: it fills Associate with the current user.
    assert!(
        fresh["Associate"]["AssociateId"].as_i64().unwrap_or(0) > 0,
        "{fresh}"
    );
    assert_eq!(
        get_entity(&emu, "Contact", 4).await["Department"],
        "By filter"
    );
    let keys = foreign_keys(&emu, "contact").await;
    assert_eq!(keys.get("EXT-1"), Some(&vec![record]));
    assert_eq!(
        keys.get("EXT-4"),
        Some(&vec![4]),
        "the filter's hit got the key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_changes_never_overtake_earlier_ones_of_the_same_record() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "concurrency = 8", "");
    let running = setup.daemon().await;
    // Jitter: half of the entity calls wait 15 ms.
    emu.add_fault(FaultRule {
        rate: 0.5,
        ..FaultRule::latency(RouteClass::Entity, 15)
    })
    .unwrap();

    const STEPS: usize = 12;
    let step = |i: usize| {
        json!([
            { "op": "test", "path": "/Department", "value": format!("v{}", i - 1) },
            { "op": "replace", "path": "/Department", "value": format!("v{i}") }
        ])
    };
    // Lanes: records 1 and 2 by id, and a record created by external key then patched by it.
    let mut new = request(
        "create",
        "contact",
        Some(json!({ "Name": "Fifo AS", "Department": "v0" })),
    );
    new.external_key = Some("FIFO-NEW".into());
    running.publish(&new).await.unwrap();
    for id in [1, 2] {
        let mut reset = request("patch", "contact", Some(json!({ "Department": "v0" })));
        reset.id = Some(id);
        running.publish(&reset).await.unwrap();
    }
    for i in 1..=STEPS {
        for id in [1, 2] {
            let mut r = request("patch", "contact", Some(step(i)));
            r.id = Some(id);
            running.publish(&r).await.unwrap();
        }
        let mut r = request("patch", "contact", Some(step(i)));
        r.external_key = Some("FIFO-NEW".into());
        running.publish(&r).await.unwrap();
    }
    let tasks = settle(&running.store, Duration::from_secs(60)).await;
    let bad: Vec<_> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Done)
        .collect();
    assert!(
        bad.is_empty(),
        "a JSON Patch test failed, so an update overtook another: {bad:#?}"
    );
    let new_id = tasks[0].result_id.unwrap();
    for id in [1, 2, new_id] {
        assert_eq!(
            get_entity(&emu, "Contact", id).await["Department"],
            format!("v{STEPS}")
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_until_dead_and_block_the_record() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "max_attempts = 3", "");
    let running = setup.daemon().await;
    emu.add_fault(FaultRule::status(RouteClass::Entity, 503))
        .unwrap();

    let mut create = request("create", "contact", Some(json!({ "Name": "Dead AS" })));
    create.external_key = Some("DEAD-1".into());
    let id = running.publish(&create).await.unwrap().task().id;
    let mut follow = request("patch", "contact", Some(json!({ "Department": "after" })));
    follow.external_key = Some("DEAD-1".into());
    let follower = running.publish(&follow).await.unwrap().task().id;

    let dead = wait_state(&running.store, id, TaskState::Dead, WAIT).await;
    assert_eq!(dead.attempts, 3);
    assert!(
        dead.last_error.as_deref().unwrap().contains("503"),
        "{dead:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        task(&running.store, follower).state,
        TaskState::Pending,
        "blocked behind the dead create"
    );
    assert_eq!(task(&running.store, follower).attempts, 0);

    // The operator fixes the cause and retries: both go through, in order.
    emu.clear_faults();
    running
        .store
        .write(move |tx| syncd::store::tasks::retry(tx, id, false, chrono::Utc::now()))
        .await
        .unwrap();
    running.daemon.as_ref().unwrap().services().outbox.wake();
    let done = wait_state(&running.store, follower, TaskState::Done, WAIT).await;
    assert_eq!(task(&running.store, id).state, TaskState::Done);
    assert_eq!(
        get_entity(&emu, "Contact", done.result_id.unwrap()).await["Department"],
        "after"
    );
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_table_rows_become_tasks_and_bad_rows_are_kept_as_dead() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let running = setup.daemon().await;
    {
        // Another local process, with its own connection and transaction.
        let mut conn = setup.foreign_writer();
        let tx = conn.transaction().unwrap();
        // (key, action, entity, record id, payload)
        type OutboxRow<'a> = (&'a str, &'a str, &'a str, Option<i64>, Option<&'a str>);
        let rows: &[OutboxRow<'_>] = &[
            (
                "good-1",
                "create",
                "contact",
                None,
                Some(r#"{"Name":"From outbox AS"}"#),
            ),
            ("bad-action", "frobnicate", "contact", None, Some("{}")),
            ("bad-json", "create", "contact", None, Some("{not json")),
            (
                "bad-type",
                "create",
                "contact",
                None,
                Some(r#"{"Name": 42}"#),
            ),
            ("bad-id", "update", "contact", None, Some(r#"{"Name":"x"}"#)),
            ("bad-entity", "create", "widget", None, Some("{}")),
            (
                "good-1",
                "create",
                "contact",
                None,
                Some(r#"{"Name":"Another payload"}"#),
            ),
            (
                "good-1",
                "create",
                "contact",
                None,
                Some(r#"{"Name":"From outbox AS"}"#),
            ),
        ];
        for (key, action, entity, id, payload) in rows {
            tx.execute(
                "INSERT INTO outbox (key, action, entity, record_id, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![key, action, entity, id, payload],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let store = running.store.clone();
    wait_for(WAIT, "the outbox table to drain", || {
        store.read_blocking(outbox_rows::count).unwrap() == 0
    })
    .await;
    let tasks = settle(&running.store, WAIT).await;
    let good: Vec<_> = tasks.iter().filter(|t| t.key == "good-1").collect();
    assert_eq!(good.len(), 1, "the replayed row did not queue twice");
    assert_eq!(good[0].state, TaskState::Done);
    let dead: Vec<_> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Dead)
        .collect();
    assert_eq!(dead.len(), 6, "{dead:#?}");
    let reason = |needle: &str| {
        dead.iter()
            .any(|t| t.last_error.as_deref().unwrap_or_default().contains(needle))
    };
    assert!(reason("action:"), "unknown action named");
    assert!(reason("payload: not JSON"));
    assert!(reason("payload.Name"));
    assert!(reason("column record_id: required for update"));
    assert!(reason("entity:"));
    assert!(reason("already used by task"), "same key, other payload");
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_outbox_rows_become_dead_tasks_naming_the_column_and_never_block_the_rest() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    // The schema exists before anything is written (another program's view of it).
    drop(setup.store());
    let conn = setup.foreign_writer();
    // Each statement is what a careless writer might do; SQLite keeps it as written, except
    // that a number in a TEXT column is stored as its text.
    let rows: &[(&str, &str)] = &[
        (
            "int-key",
            "INSERT INTO outbox (key, action, entity, payload) VALUES (4711, 'create', 'contact', '{\"Name\":\"Integer key AS\"}')",
        ),
        (
            "record_id",
            "INSERT INTO outbox (key, action, entity, record_id, payload) VALUES ('text-id', 'update', 'contact', 'abc', '{}')",
        ),
        (
            "record_id",
            "INSERT INTO outbox (key, action, entity, record_id, payload) VALUES ('real-id', 'update', 'contact', 1.5, '{}')",
        ),
        (
            "payload",
            "INSERT INTO outbox (key, action, entity, payload) VALUES ('blob', 'create', 'contact', x'7b7d')",
        ),
        (
            "payload",
            "INSERT INTO outbox (key, action, entity, payload) VALUES ('bad-json', 'create', 'contact', '{not json')",
        ),
        (
            "action",
            "INSERT INTO outbox (key, action, entity, payload) VALUES ('bad-action', 'frobnicate', 'contact', '{}')",
        ),
        (
            "entity",
            "INSERT INTO outbox (key, action, entity, payload) VALUES ('bad-entity', 'create', 'widget', '{}')",
        ),
        (
            "key",
            "INSERT INTO outbox (key, action, entity, payload) VALUES (x'00ff', 'create', 'contact', '{}')",
        ),
        (
            "good",
            "INSERT INTO outbox (key, action, entity, payload) VALUES ('after-the-bad-ones', 'create', 'contact', '{\"Name\":\"After AS\"}')",
        ),
    ];
    for (_, sql) in rows {
        conn.execute(sql, []).unwrap();
    }
    let stored: (String, String, String) = conn
        .query_row(
            "SELECT (SELECT typeof(key) FROM outbox WHERE action = 'create' AND payload LIKE '%Integer key%'),
                    (SELECT typeof(record_id) FROM outbox WHERE key = 'text-id'),
                    (SELECT typeof(payload) FROM outbox WHERE key = 'blob')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        stored,
        ("text".into(), "text".into(), "blob".into()),
        "what SQLite kept"
    );
    drop(conn);

    // One pass takes every row: the malformed ones do not fail the batch.
    let store = setup.store();
    let config = setup.config();
    let moved = syncd::outbox::ledger::poll_outbox(&store, &config, 500, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        moved,
        syncd::outbox::ledger::Moved {
            queued: 2,
            replays: 0,
            rejected: 7
        }
    );
    let left = store.read_blocking(outbox_rows::count).unwrap();
    assert_eq!(left, 0, "every row was taken in the same pass");
    // A second pass finds nothing and records nothing twice.
    let again = syncd::outbox::ledger::poll_outbox(&store, &config, 500, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(again, syncd::outbox::ledger::Moved::default());
    drop(store);

    let all = tasks(&setup.store());
    let dead: Vec<_> = all.iter().filter(|t| t.state == TaskState::Dead).collect();
    assert_eq!(dead.len(), 7, "{dead:#?}");
    let error_of = |needle: &str| -> String {
        dead.iter()
            .filter_map(|t| t.last_error.clone())
            .find(|e| e.contains(needle))
            .unwrap_or_else(|| panic!("no dead task says {needle:?}: {dead:#?}"))
    };
    for needle in [
        "column record_id: text \"abc\", expected an integer",
        "column record_id: a real number (1.5), expected an integer",
        "column payload: a BLOB of 2 bytes, expected JSON text",
        "column payload: not JSON",
        "column action: \"frobnicate\" is not one of",
        "column entity:",
        "column key: a BLOB of 2 bytes, expected text",
    ] {
        let error = error_of(needle);
        assert!(error.starts_with("outbox row "), "{error}");
    }
    // The raw row is kept in the dead task, bytes included.
    let blob = dead
        .iter()
        .find(|t| {
            t.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("column payload: a BLOB")
        })
        .unwrap();
    let raw = &blob.payload.as_ref().expect("raw row kept")["outbox_row"];
    assert_eq!(raw["key"], "blob");
    assert_eq!(raw["payload"], json!({ "blob_hex": "7b7d" }));
    assert!(blob.key.starts_with("rejected:outbox row "));
    let text_id = dead
        .iter()
        .find(|t| {
            t.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("text \"abc\"")
        })
        .unwrap();
    assert_eq!(
        text_id.payload.as_ref().unwrap()["outbox_row"]["record_id"],
        "abc"
    );
    // Rejected rows cannot be retried as they are (they are not requests).
    let retried = setup
        .store()
        .write_blocking(|tx| syncd::store::tasks::retry(tx, blob.id, false, chrono::Utc::now()));
    assert!(retried.is_err());

    // The daemon delivers the good row queued after the bad ones, and the integer key (stored
    // by SQLite as the text "4711").
    let running = setup.daemon().await;
    let good = all.iter().find(|t| t.key == "after-the-bad-ones").unwrap();
    let done = wait_state(&running.store, good.id, TaskState::Done, WAIT).await;
    let numeric = all
        .iter()
        .find(|t| t.key == "4711")
        .expect("integer key taken as text");
    wait_state(&running.store, numeric.id, TaskState::Done, WAIT).await;
    let created = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(
        get_entity(&emu, "Contact", done.result_id.unwrap()).await["Name"],
        "After AS"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_at_intake_and_nothing_queued_is_lost() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let running = setup.daemon().await;
    let mut good = request("create", "contact", Some(json!({ "Name": "Keep me" })));
    good.key = Some("keep".into());
    let kept = running.publish(&good).await.unwrap().task().id;

    let cases: Vec<(syncd::outbox::PublishRequest, &str)> = vec![
        (request("create", "widget", Some(json!({}))), "entity:"),
        (request("frobnicate", "contact", Some(json!({}))), "action:"),
        (
            syncd::outbox::PublishRequest {
                payload: Some("{oops".into()),
                ..request("create", "contact", None)
            },
            "payload: not JSON",
        ),
        (
            request("create", "contact", Some(json!({ "Name": ["x"] }))),
            "payload.Name",
        ),
        (
            request("update", "contact", Some(json!({ "Name": "x" }))),
            "id: required",
        ),
        (
            request("patch", "contact", Some(json!([{ "op": "replace" }]))),
            "id: required",
        ),
    ];
    for (request, field) in cases {
        let error = running.publish(&request).await.unwrap_err().to_string();
        assert!(error.contains(field), "{error} should name {field}");
    }
    let done = wait_state(&running.store, kept, TaskState::Done, WAIT).await;
    assert_eq!(tasks(&running.store).len(), 1);
    assert!(done.result_id.is_some());
    running.stop().await;
}
