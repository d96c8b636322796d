//! Subscription engine against the in-process emulator: initial load, incremental polls,
//! deletes (webhooks, reconcile, tickets, restores), the breaker, webhooks, child
//! subscriptions, echoes, faults and configuration errors.

use std::time::Duration;

use emulator::EntityType;
use serde_json::json;
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(30);

/// Waits until `count` reaches `at_least`.
async fn count_reaches(what: &str, count: impl Fn() -> i64, at_least: i64) {
    eventually(T, what, || async {
        let n = count();
        if n >= at_least {
            Ok(())
        } else {
            Err(format!("{n} of {at_least}"))
        }
    })
    .await;
}

/// Waits until two more polls have completed (instead of sleeping for a guess of two poll
/// intervals): at least one of them started after whatever the test just did.
async fn two_more_polls(db: &std::path::Path) {
    let ok_polls = || count_runs(db, Some(PassKind::Poll), Some(RunStatus::Ok));
    let polls = ok_polls();
    count_reaches("two more polls", ok_polls, polls + 2).await;
}

/// For subscriptions polling an hour apart: waits until both subscription loops sleep
/// between polls (in steps of at most 2 s, their flag check; nothing else of the daemon sleeps
/// that long), checks `check`, and if it does not hold yet skips to the next poll.
async fn next_polls_until(running: &Running, what: &str, check: impl Fn() -> Result<(), String>) {
    const POLL: Duration = Duration::from_secs(3600);
    let started = std::time::Instant::now();
    loop {
        tokio::time::timeout(
            T,
            running
                .clock
                .until_waiting(2, Duration::from_millis(300)..Duration::from_millis(2001)),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: the subscription loops did not go to sleep"));
        match check() {
            Ok(()) => return,
            Err(message) if started.elapsed() > T => {
                panic!("{what}: not reached within {T:?}: {message}")
            }
            Err(_) => running.clock.advance(POLL),
        }
    }
}

fn subscription(name: &str, entity: &str, extra: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nentity = {entity:?}\npoll_interval = \"200ms\"\n{}{extra}\n",
        if extra.contains("page_size") {
            ""
        } else {
            "page_size = 37\n"
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_load_equals_truth_and_an_idle_pass_emits_nothing() {
    let emu = emulator(counts(150, 120, 60), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "contacts",
        "contact",
        "columns = [\"name\", \"department\", \"category\"]\nwebhooks = false",
    ));
    text.push_str(&subscription(
        "persons",
        "person",
        "shape = \"entity\"\nconcurrency = 6\nwebhooks = false",
    ));
    text.push_str(&subscription("tickets", "ticket", "webhooks = false"));
    let running = start(&text).await;
    for (sub, entity) in [
        ("contacts", EntityType::Contact),
        ("persons", EntityType::Person),
        ("tickets", EntityType::Ticket),
    ] {
        let expected = truth_live(&emu, entity);
        eventually(T, sub, || async { matches(&db, sub, &expected) }).await;
        feed_is_consistent(&db, sub).unwrap();
    }
    // Entity shape stores the entity as GET answers it, minus links and rights.
    let persons = records(&db, "persons");
    let (id, record) = persons.iter().next().unwrap();
    let mut fetched = client(&emu)
        .entities(superoffice::entity::EntityKind::Person)
        .get(*id as i32)
        .await
        .unwrap();
    fetched = syncd::hash::strip_metadata(fetched);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&record.json).unwrap(),
        fetched
    );
    assert_eq!(record.hash, syncd::hash::record_hash(&fetched));
    // Never-edited rows (0001-01-01 updated) carry their registered time.
    assert!(records(&db, "contacts").values().all(|r| {
        r.modified
            .as_deref()
            .is_some_and(|m| !m.starts_with("0001"))
    }));

    // Idle passes re-read the overlap window and emit nothing.
    let before = count_changes(&db, None);
    let ok_polls = || count_runs(&db, Some(PassKind::Poll), Some(RunStatus::Ok));
    let polls = ok_polls();
    count_reaches("three more polls", ok_polls, polls + 6).await;
    assert_eq!(count_changes(&db, None), before);
    assert_eq!(
        count_changes(&db, None),
        count_changes(&db, Some(Op::Insert))
    );
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_rows{subscription=\"contacts\"} 150"),
        "{metrics}"
    );
    // `syncd status`: LAG is the time since the last pass ended (seconds here), not the age of
    // the newest record (the seed's records were last changed long ago).
    let store = syncd::store::open_read_only(&db).unwrap();
    let rows = syncd::status::status_rows(&store).unwrap();
    let contacts = rows.iter().find(|r| r.subscription == "contacts").unwrap();
    assert!(contacts.lag_seconds.is_some_and(|s| s < 60), "{contacts:?}");
    assert!(
        contacts.newest_change_age_seconds > contacts.lag_seconds,
        "{contacts:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_on_the_watermark_day_and_in_the_same_second_are_all_caught() {
    let emu = emulator(counts(60, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "rows",
        "contact",
        "columns = [\"name\", \"department\"]\nwebhooks = false",
    ));
    text.push_str(&subscription(
        "entities",
        "contact",
        "shape = \"entity\"\nwebhooks = false",
    ));
    let running = start(&text).await;
    let api = client(&emu);
    let contacts = api.entities(superoffice::entity::EntityKind::Contact);
    for sub in ["rows", "entities"] {
        running
            .when_fed(T, sub, || async {
                matches(&db, sub, &truth_live(&emu, EntityType::Contact))
            })
            .await;
    }
    for round in 0..4 {
        // Several edits of one record within one second, and of its neighbours, all on the
        // watermark's day; a new record (never edited: updated = 0001-01-01).
        for n in 0..3 {
            contacts
                .merge_patch(5, &json!({ "Department": format!("r{round} e{n}") }), None)
                .await
                .unwrap();
            contacts
                .merge_patch(
                    6 + n,
                    &json!({ "Name": format!("Name r{round} e{n}") }),
                    None,
                )
                .await
                .unwrap();
        }
        contacts
            .create(&json!({ "Name": format!("New {round}") }))
            .await
            .unwrap();
        let expected = truth_live(&emu, EntityType::Contact);
        let last_edit = format!("r{round} e2");
        for sub in ["rows", "entities"] {
            // Timestamps are whole seconds: a row read between e1 and e2 carries the same
            // `updated` as the truth; the next pass's overlap brings e2.
            running
                .when_fed(T, sub, || async {
                    matches(&db, sub, &expected)?;
                    let json = records(&db, sub)[&5].json.clone();
                    if json.contains(&last_edit) {
                        Ok(())
                    } else {
                        Err(format!("record 5 without {last_edit}: {json}"))
                    }
                })
                .await;
        }
        if round == 1 {
            // Edits within the same second as the previous pass read: make them land right
            // after a poll started.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    for sub in ["rows", "entities"] {
        feed_is_consistent(&db, sub).unwrap();
    }
    running.stop().await;
}

fn signed_post(url: &str, body: &str, signature: Option<String>) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/webhooks/superoffice"))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("X-SuperOffice-Signature", signature);
    }
    request
}

fn sign(body: &str) -> Option<String> {
    Some(syncd::sync::webhook::sign(
        SECRET.as_bytes(),
        body.as_bytes(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deletes_are_confirmed_restores_come_back_and_forgeries_are_rejected() {
    let emu = emulator(counts(80, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), &webhook_control());
    // Polls are slow and reconcile is off, so only webhooks can make deletes appear quickly.
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\npoll_interval = \"3s\"\nreconcile_interval = \"1h\"\n",
    );
    let running = start(&text).await;
    let url = running.control_url();
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    // The daemon registered its webhook (public_url = "auto").
    let hooks = syncd::sync::ensure::list(&client(&emu), None)
        .await
        .unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].name.as_deref(), Some("syncd-Cust12345"));
    assert_eq!(
        hooks[0].target_url.as_deref(),
        Some(format!("{url}/webhooks/superoffice").as_str())
    );

    let api = client(&emu);
    let contacts = api.entities(superoffice::entity::EntityKind::Contact);
    contacts.delete(3, None).await.unwrap();
    contacts.delete(4, None).await.unwrap();
    eventually(Duration::from_secs(10), "webhook deletes", || async {
        let r = records(&db, "contacts");
        if r[&3].deleted && r[&4].deleted {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let deletes: Vec<i64> = changes(&db, "contacts")
        .into_iter()
        .filter(|c| c.op == "delete")
        .map(|c| c.id)
        .collect();
    assert_eq!(deletes, [3, 4]);
    assert!(
        webhook_events(&db)
            .iter()
            .filter(|e| e.event == "contact.softdeleted" && e.processed_at.is_some())
            .count()
            >= 2
    );

    // A restored record comes back with an insert.
    emu.restore(EntityType::Contact, 3).unwrap();
    eventually(T, "restore", || async {
        if records(&db, "contacts")[&3].deleted {
            Err("still deleted".into())
        } else {
            Ok(())
        }
    })
    .await;
    let ops: Vec<String> = changes(&db, "contacts")
        .into_iter()
        .filter(|c| c.id == 3)
        .map(|c| c.op)
        .collect();
    assert_eq!(ops, ["insert", "delete", "insert"]);

    // Forgeries: unsigned, wrongly signed, not JSON, no EventId.
    let forged = r#"{"EventId":"forged-1","Event":"contact.deleted","Entity":"contact","PrimaryKey":10,"ContextIdentifier":"Cust12345"}"#;
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(signed_post(&url, forged, None).send().await.unwrap()),
        401
    );
    assert_eq!(
        status(
            signed_post(&url, forged, Some("bm9wZQ==".into()))
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            signed_post(&url, forged, sign(&forged.replace("10", "11")))
                .send()
                .await
                .unwrap()
        ),
        401
    );
    let bad = signed_post(&url, "{not json", sign("{not json"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("not JSON"));
    let no_id = r#"{"Event":"contact.changed","PrimaryKey":1}"#;
    assert_eq!(
        status(signed_post(&url, no_id, sign(no_id)).send().await.unwrap()),
        400
    );
    let test_event = r#"{"EventId":"t","Event":"test"}"#;
    assert_eq!(
        status(
            signed_post(&url, test_event, sign(test_event))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    // A correctly signed "deleted" event for a record that exists is not believed: the GET
    // shows it is there. Redelivery of the same EventId is a duplicate.
    assert_eq!(
        status(
            signed_post(&url, forged, sign(forged))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let again = signed_post(&url, forged, sign(forged))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert!(again.text().await.unwrap().contains("duplicate"));
    eventually(T, "forged event processed", || async {
        let pending = queued_refetches(&db);
        if pending == 0 {
            Ok(())
        } else {
            Err(format!("{pending} queued"))
        }
    })
    .await;
    assert!(!records(&db, "contacts")[&10].deleted);
    assert!(
        !webhook_events(&db).iter().any(|e| e.event_id == "t"),
        "test events are not stored"
    );
    let metrics = running.services().metrics.render();
    for outcome in ["rejected", "duplicate", "test", "queued"] {
        assert!(
            metrics.contains(&format!(
                "syncd_webhook_events_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }
    feed_is_consistent(&db, "contacts").unwrap();

    // `ensure` is idempotent and re-activates a webhook SuperOffice stopped.
    let services = running.services().clone();
    let target = format!("{url}/webhooks/superoffice");
    let secret = services.sync.webhook_secret().unwrap().secret.clone();
    assert_eq!(secret.expose(), SECRET);
    let again = syncd::sync::ensure::ensure(&services.config, &services.clients, &target, &secret)
        .await
        .unwrap();
    assert_eq!(again[0].action, "unchanged");
    let id = again[0].id.unwrap();
    let request =
        superoffice::RawRequest::new(reqwest::Method::PATCH, format!("/api/v1/Webhook/{id}"))
            .json(
                "application/merge-patch+json",
                &json!({"State": "TooManyErrors"}),
            )
            .unwrap();
    api.send_raw("webhook_patch", request).await.unwrap();
    let fixed = syncd::sync::ensure::ensure(&services.config, &services.clients, &target, &secret)
        .await
        .unwrap();
    assert_eq!(fixed[0].action, "reactivated");
    let hooks = syncd::sync::ensure::list(&api, None).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0].state,
        Some(superoffice::types::WebhookState::Active)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_confirms_deletes_and_the_breaker_trips_on_a_mass_delete() {
    let emu = emulator(counts(100, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "contacts",
        "contact",
        "columns = [\"name\"]\nwebhooks = false\nreconcile_interval = \"1h\"",
    ));
    let running = start(&text).await;
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    let api = client(&emu);
    let contacts = api.entities(superoffice::entity::EntityKind::Contact);
    for id in [7, 8, 9] {
        contacts.delete(id, None).await.unwrap();
    }
    // Polling cannot see soft deletes; nothing happens until a reconcile (two polls that
    // started after the deletes, at least one, find nothing).
    two_more_polls(&db).await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 0);
    request(&db, "contacts", Request::Reconcile);
    running
        .when_fed(T, "reconcile", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 3);
    let cursor = state(&db, "contacts");
    assert!(!cursor.reconcile_requested && cursor.last_reconcile.is_some());

    // A mass delete (15 of 97 > 10 %) trips the breaker: nothing is deleted.
    for id in 20..35 {
        contacts.delete(id, None).await.unwrap();
    }
    request(&db, "contacts", Request::Reconcile);
    eventually(T, "breaker", || async {
        if state(&db, "contacts").degraded.is_some() {
            Ok(())
        } else {
            Err("not degraded".into())
        }
    })
    .await;
    // The run is closed after the subscription is degraded (and its gauge set).
    count_reaches(
        "degraded run recorded",
        || count_runs(&db, Some(PassKind::Reconcile), Some(RunStatus::Degraded)),
        1,
    )
    .await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 3);
    let status = syncd::status::status_rows(&running.store).unwrap();
    assert!(
        status[0].state.contains("mass-delete breaker"),
        "{status:?}"
    );
    assert!(
        status[0].state.contains("syncd reconcile contacts"),
        "{status:?}"
    );
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_subscription_degraded{subscription=\"contacts\"} 1"),
        "{metrics}"
    );
    // Inserts and updates keep flowing while degraded.
    contacts
        .merge_patch(50, &json!({"Name": "still syncing"}), None)
        .await
        .unwrap();
    eventually(T, "update while degraded", || async {
        if records(&db, "contacts")[&50].json.contains("still syncing") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    // The polls meanwhile delete nothing. The operator confirms: `syncd reconcile` applies the
    // deletes and lifts the breaker.
    two_more_polls(&db).await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 3);
    request(&db, "contacts", Request::Reconcile);
    running
        .when_fed(T, "operator reconcile", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 18);
    assert_eq!(state(&db, "contacts").degraded, None);
    feed_is_consistent(&db, "contacts").unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_status_deleted_is_a_delete_and_resync_emits_nothing_new() {
    let emu = emulator(counts(0, 0, 80), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "tickets",
        "ticket",
        "columns = [\"title\"]\nwebhooks = false",
    ));
    let running = start(&text).await;
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "tickets", &truth_live(&emu, EntityType::Ticket))
        })
        .await;
    let api = client(&emu);
    let tickets = api.entities(superoffice::entity::EntityKind::Ticket);
    tickets.delete(12, None).await.unwrap();
    tickets
        .merge_patch(13, &json!({"Title": "renamed"}), None)
        .await
        .unwrap();
    running
        .when_fed(T, "ticket delete", || async {
            matches(&db, "tickets", &truth_live(&emu, EntityType::Ticket))
        })
        .await;
    let mut ops: Vec<(i64, String)> = changes(&db, "tickets")
        .into_iter()
        .filter(|c| c.op != "insert")
        .map(|c| (c.id, c.op))
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [(12, "delete".to_string()), (13, "update".to_string())]
    );

    // `syncd resync` reloads everything; unchanged records emit nothing.
    let before = count_changes(&db, None);
    request(&db, "tickets", Request::Resync);
    eventually(T, "resync", || async {
        let n = count_runs(&db, Some(PassKind::Resync), Some(RunStatus::Ok));
        let r = count_runs(&db, Some(PassKind::Reconcile), Some(RunStatus::Ok));
        if n >= 1 && r >= 1 {
            Ok(())
        } else {
            Err(format!("{n} resyncs, {r} reconciles"))
        }
    })
    .await;
    assert_eq!(count_changes(&db, None), before);
    feed_is_consistent(&db, "tickets").unwrap();
    running.stop().await;
}

async fn person_contacts(emu: &emulator::Emulator) -> std::collections::BTreeMap<i64, i64> {
    use futures::TryStreamExt;
    let api = client(emu);
    let rows: Vec<superoffice::odata::Row> = api
        .entities(superoffice::entity::EntityKind::Person)
        .list(superoffice::odata::Query::new().select(["personId", "contactId"]))
        .try_collect()
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.int("personId").unwrap(), r.int("contactId").unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_subscriptions_follow_the_parent_rows() {
    let emu = emulator(counts(40, 120, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "contacts",
        "contact",
        "columns = [\"name\"]\nfilter = \"contactId le 12\"\nwebhooks = false",
    ));
    text.push_str(&subscription(
        "persons",
        "person",
        "parent = \"contacts\"\nfilter = \"contactId eq {contactId}\"\ncolumns = [\"firstName\", \"contactId\"]\nwebhooks = false\nreconcile_interval = \"1h\"",
    ));
    let running = start(&text).await;
    let expected = |emu_truth: std::collections::BTreeMap<i64, String>,
                    owners: std::collections::BTreeMap<i64, i64>| {
        emu_truth
            .into_iter()
            .filter(|(id, _)| owners.get(id).is_some_and(|c| (1..=12).contains(c)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let owners = person_contacts(&emu).await;
    let want = expected(truth_live(&emu, EntityType::Person), owners.clone());
    assert!(!want.is_empty());
    eventually(T, "child load", || async { matches(&db, "persons", &want) }).await;
    assert!(
        records(&db, "persons")
            .iter()
            .all(|(id, r)| r.parent == owners.get(id).copied())
    );

    // New and edited children of synced parents arrive through the shared window.
    let api = client(&emu);
    let persons = api.entities(superoffice::entity::EntityKind::Person);
    let created = persons
        .create(&json!({"Firstname": "Newchild", "Contact": {"ContactId": 5}}))
        .await
        .unwrap();
    let new_id = created["PersonId"].as_i64().unwrap();
    let edit = *want.keys().next().unwrap();
    persons
        .merge_patch(edit as i32, &json!({"Firstname": "Edited"}), None)
        .await
        .unwrap();
    let owners = person_contacts(&emu).await;
    assert_eq!(
        owners.get(&new_id),
        Some(&5),
        "the new person belongs to contact 5"
    );
    let want = expected(truth_live(&emu, EntityType::Person), owners);
    running
        .when_fed(T, "child changes", || async {
            matches(&db, "persons", &want)
        })
        .await;
    assert!(records(&db, "persons")[&edit].json.contains("Edited"));
    // A child deleted on the server is confirmed and removed by reconcile.
    persons.delete(edit as i32, None).await.unwrap();
    request(&db, "persons", Request::Reconcile);
    eventually(T, "child reconcile", || async {
        if records(&db, "persons")[&edit].deleted {
            Ok(())
        } else {
            Err("live".into())
        }
    })
    .await;
    feed_is_consistent(&db, "persons").unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_of_own_writes_are_stored_but_not_reported() {
    let emu = emulator(counts(30, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    for (name, extra) in [
        ("entities", "shape = \"entity\""),
        ("rows", "columns = [\"name\", \"department\"]"),
    ] {
        text.push_str(&format!(
            "\n[[subscription]]\nname = {name:?}\nentity = \"contact\"\npoll_interval = \"1h\"\nreconcile_interval = \"24h\"\nwebhooks = false\n{extra}\n"
        ));
    }
    // Polls are an hour apart on the daemon's clock: after the initial load, a poll happens
    // only when the test skips the hour (`next_polls_until`), so the write and its echo row
    // are both in place before a poll reads.
    let running = start(&text).await;
    for sub in ["entities", "rows"] {
        running
            .when_fed(T, sub, || async {
                matches(&db, sub, &truth_live(&emu, EntityType::Contact))
            })
            .await;
    }
    let api = client(&emu);
    let contacts = api.entities(superoffice::entity::EntityKind::Contact);
    // Between polls, write like the outbox does and record the echo; then the next polls.
    let closed = || runs(&db).iter().filter(|r| r.ended_at.is_some()).count() as i64;
    count_reaches("the initial passes closed", closed, 2).await;
    let answer = contacts
        .merge_patch(7, &json!({"Department": "echo"}), None)
        .await
        .unwrap();
    let hash = syncd::hash::entity_hash(&answer);
    let echo = syncd::store::ledger::Echo {
        entity: superoffice::entity::EntityKind::Contact,
        id: 7,
        hash: Some(hash),
    };
    running
        .store
        .write(move |tx| {
            syncd::store::tasks::record_echo(
                tx,
                &echo,
                syncd::store::ledger::TaskId(1),
                chrono::Utc::now(),
            )
        })
        .await
        .unwrap();
    next_polls_until(&running, "the echo stored", || {
        for sub in ["entities", "rows"] {
            if !records(&db, sub)[&7].json.contains("echo") {
                return Err(format!("{sub}: not yet"));
            }
        }
        Ok(())
    })
    .await;
    for sub in ["entities", "rows"] {
        assert!(
            changes(&db, sub)
                .iter()
                .all(|c| !(c.id == 7 && c.op == "update")),
            "{sub}: the echo was reported"
        );
    }
    // The first subscription to see it consumed the echo; the other one compares its
    // stored copy with the echo row only if it is still there. Either way, a later external
    // change is reported by both.
    contacts
        .merge_patch(7, &json!({"Department": "external"}), None)
        .await
        .unwrap();
    next_polls_until(&running, "the external change reported", || {
        for sub in ["entities", "rows"] {
            let n = changes(&db, sub)
                .iter()
                .filter(|c| c.id == 7 && c.op == "update")
                .count();
            if n != 1 {
                return Err(format!("{sub}: {n} updates"));
            }
        }
        Ok(())
    })
    .await;
    let echoes = store(&db)
        .read_blocking(syncd::store::records::echo_count)
        .unwrap();
    assert_eq!(echoes, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429_and_503_token_expiry_and_a_tenant_move_all_complete() {
    let emu = emulator(counts(500, 150, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&subscription(
        "contacts",
        "contact",
        "columns = [\"name\"]\nwebhooks = false\npage_size = 25",
    ));
    text.push_str(&subscription(
        "persons",
        "person",
        "shape = \"entity\"\nwebhooks = false\npage_size = 25",
    ));
    // 30 % of data calls fail: 15 % with 429, then 17.6 % of the rest with 503.
    let mut rule = emulator::FaultRule::status(emulator::RouteClass::Data, 429);
    rule.rate = 0.15;
    emu.add_fault(rule).unwrap();
    let mut rule = emulator::FaultRule::status(emulator::RouteClass::Data, 503);
    rule.rate = 0.1765;
    emu.add_fault(rule).unwrap();
    let running = start(&text).await;
    count_reaches(
        "some pages",
        || (records(&db, "contacts").len() + records(&db, "persons").len()) as i64,
        101,
    )
    .await;
    emu.expire_tokens();
    emu.move_tenant();
    // The test's own edit goes through the storm too: let it retry the PATCH.
    let api = client(&emu).with_retry(
        superoffice::retry::RetryPolicy::default()
            .retrying_non_idempotent()
            .with_max_attempts(10),
    );
    api.entities(superoffice::entity::EntityKind::Contact)
        .merge_patch(3, &json!({"Name": "after the move"}), None)
        .await
        .unwrap();
    for (sub, entity) in [
        ("contacts", EntityType::Contact),
        ("persons", EntityType::Person),
    ] {
        running
            .when_fed(Duration::from_secs(60), sub, || async {
                matches(&db, sub, &truth_live(&emu, entity))
            })
            .await;
        feed_is_consistent(&db, sub).unwrap();
    }
    let stats = emu.stats();
    assert!(
        stats.by_status.get(&429).copied().unwrap_or(0) > 5,
        "{stats:?}"
    );
    assert!(
        stats.by_status.get(&503).copied().unwrap_or(0) > 5,
        "{stats:?}"
    );
    assert!(
        stats.by_status.get(&421).copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert!(
        stats.by_status.get(&401).copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_a_clear_error() {
    let emu = emulator(counts(1, 0, 0), |_| {}).await;
    let dir = workdir();
    let base = base_config(&emu, dir.path(), "");
    let cases = [
        (
            "entity = \"person\"\nfilter = \"contactId eq {contactId}\"",
            "placeholders, which need `parent",
        ),
        (
            "entity = \"person\"\nparent = \"c0\"",
            "no {column} placeholder",
        ),
        ("entity = \"person\"\npath = { id = \"5\" }", "path.id"),
        (
            "entity = \"person\"\nshape = \"entity\"\ncolumns = [\"x\"]",
            "columns",
        ),
        (
            "entity = \"person\"\nquery = { \"$top\" = \"5\" }",
            "query.$top",
        ),
        (
            "entity = \"person\"\nfilter = \"a eq {b\"",
            "unclosed placeholder",
        ),
    ];
    for (extra, needle) in cases {
        let text = format!(
            "{base}\n[[subscription]]\nname = \"c0\"\nentity = \"contact\"\n\n[[subscription]]\nname = \"bad\"\n{extra}\n"
        );
        let error = match try_start(&text).await {
            Ok(running) => {
                running.stop().await;
                panic!("{extra}: started")
            }
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains(needle) && error.contains("\"bad\""),
            "{extra}: {error}"
        );
    }
    // Changing what a subscription stores (its columns) makes it resync itself.
    let db = db_path(dir.path());
    let text = format!(
        "{base}{}",
        subscription("c", "contact", "columns = [\"name\"]\nwebhooks = false")
    );
    let running = start(&text).await;
    running
        .when_fed(T, "load", || async {
            matches(&db, "c", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    running.stop().await;
    let text = format!(
        "{base}{}",
        subscription(
            "c",
            "contact",
            "columns = [\"name\", \"department\"]\nwebhooks = false"
        )
    );
    let running = start(&text).await;
    count_reaches(
        "resync after a config change",
        || count_runs(&db, Some(PassKind::Resync), Some(RunStatus::Ok)),
        1,
    )
    .await;
    assert!(records(&db, "c")[&1].json.contains("department"));
    // And a subscription that synced contacts cannot silently become persons.
    running.stop().await;
    let text = format!("{base}{}", subscription("c", "person", "webhooks = false"));
    let error = try_start(&text).await.expect_err("refused").to_string();
    assert!(error.contains("synced contact before"), "{error}");
}
