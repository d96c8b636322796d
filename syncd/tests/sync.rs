//! Subscription engine against the in-process emulator: initial load, incremental polls,
//! deletes (webhooks, reconcile, tickets, restores), the breaker, webhooks, child
//! subscriptions, echoes, faults and configuration errors.

mod common_sync;

use std::time::Duration;

use common_sync::*;
use emulator::EntityType;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn subscription(name: &str, entity: &str, extra: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nentity = {entity:?}\npoll_interval = \"200ms\"\npage_size = 37\n{extra}\n"
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
    fetched = syncd::sync::hash::strip_metadata(fetched);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&record.json).unwrap(),
        fetched
    );
    assert_eq!(record.hash, syncd::sync::hash::record_hash(&fetched));
    // Never-edited rows (0001-01-01 updated) carry their registered time.
    assert!(records(&db, "contacts").values().all(|r| {
        r.modified
            .as_deref()
            .is_some_and(|m| !m.starts_with("0001"))
    }));

    // Idle passes re-read the overlap window and emit nothing.
    let before = query_i64(&db, "SELECT count(*) FROM changes");
    let polls = query_i64(
        &db,
        "SELECT count(*) FROM runs WHERE kind = 'poll' AND status = 'ok'",
    );
    eventually(T, "three more polls", || async {
        let now = query_i64(
            &db,
            "SELECT count(*) FROM runs WHERE kind = 'poll' AND status = 'ok'",
        );
        if now >= polls + 6 {
            Ok(())
        } else {
            Err(format!("{now} polls"))
        }
    })
    .await;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM changes"), before);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM changes WHERE op <> 'insert'"),
        0
    );
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_rows{subscription=\"contacts\"} 150"),
        "{metrics}"
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
        eventually(T, sub, || async {
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
        for sub in ["rows", "entities"] {
            eventually(T, sub, || async { matches(&db, sub, &expected) }).await;
        }
        let stored = records(&db, "rows");
        assert!(
            stored[&5].json.contains(&format!("r{round} e2")),
            "{}",
            stored[&5].json
        );
        let stored = records(&db, "entities");
        assert!(
            stored[&5].json.contains(&format!("r{round} e2")),
            "{}",
            stored[&5].json
        );
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
