//! Supervision and transform budgets against the in-process emulator: a subscription loop that
//! fails is restarted (metric, readiness, `syncd status`) and recovers; transforms that fail
//! or never end quarantine only their record, and `quarantine retry` refetches it.

use std::time::{Duration, Instant};

use emulator::EntityType;
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(30);

/// Restarts come quickly; a restarted loop counts as healthy only after an hour on the daemon's
/// clock, which the test skips ([`Running::clock`]) once it wants the loop healthy.
const SUPERVISOR: &str = "\n[supervisor]\nrestart_backoff = \"100ms\"\nrestart_max_backoff = \"400ms\"\nhealthy_after = \"1h\"\n";
const HEALTHY_AFTER: Duration = Duration::from_secs(3600);

fn restarts(running: &Running, name: &str) -> f64 {
    running
        .services()
        .metrics
        .get("syncd_loop_restarts_total", &[("loop", name)])
}

fn loop_problem(running: &Running, name: &str) -> Option<String> {
    let prefix = format!("loop {name}:");
    running
        .services()
        .health
        .problems()
        .into_iter()
        .find(|p| p.starts_with(&prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscription_loop_is_restarted_reported_and_recovers() {
    let emu = emulator(counts(40, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\npoll_interval = \"200ms\"\nwebhooks = false\n",
    );
    text.push_str(SUPERVISOR);
    let running = start(&text).await;
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    assert_eq!(restarts(&running, "sync:contacts"), 0.0);
    assert!(running.services().health.problems().is_empty());
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_loop_restarts_total{loop=\"sync:contacts\"} 0"),
        "{metrics}"
    );

    // Break what the loop reads first on every round: it fails (returns an error) each time.
    sabotage(&db, "ALTER TABLE cursors RENAME TO cursors_away");
    eventually(T, "restarts and not ready", || async {
        let n = restarts(&running, "sync:contacts");
        match loop_problem(&running, "sync:contacts") {
            Some(problem) if n >= 3.0 => {
                assert!(problem.contains("cursors"), "{problem}");
                Ok(())
            }
            other => Err(format!("{n} restarts, readiness problem {other:?}")),
        }
    })
    .await;
    // The watchdog still waits for the loop: it is not reporting, so no ping goes out.
    assert!(
        running
            .services()
            .notifier
            .watched()
            .contains(&"sync:contacts".to_string())
    );
    // `syncd status` reads the loops table.
    let loops = syncd::status::loop_rows(&running.store).unwrap();
    let row = loops
        .iter()
        .find(|r| r.name == "sync:contacts")
        .expect("a row for the loop");
    assert!(row.failing >= 2 && row.restarts >= 2, "{row:?}");
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("cursors")),
        "{row:?}"
    );
    let line = syncd::cli::status::loop_line(row);
    assert!(
        line.contains("restarting") && line.contains("restarts"),
        "{line}"
    );
    // The outbox loop is unaffected.
    let outbox = loops
        .iter()
        .find(|r| r.name == "outbox")
        .expect("outbox row");
    assert_eq!((outbox.restarts, outbox.failing), (0, 0), "{outbox:?}");

    // Repair: the loop comes back and polls again, but it is not ready before it has run
    // `healthy_after` without failing.
    sabotage(&db, "ALTER TABLE cursors_away RENAME TO cursors");
    let polls = count_runs(&db, None, Some(RunStatus::Ok));
    eventually(T, "a poll succeeds again", || async {
        let n = count_runs(&db, None, Some(RunStatus::Ok));
        if n > polls {
            Ok(())
        } else {
            Err(format!("{n} ok runs"))
        }
    })
    .await;
    assert!(
        loop_problem(&running, "sync:contacts").is_some(),
        "ready before healthy_after"
    );
    // An hour later (skipped, not slept) it is healthy and ready again.
    running.clock.advance(HEALTHY_AFTER);
    eventually(T, "ready again", || async {
        match loop_problem(&running, "sync:contacts") {
            None => Ok(()),
            Some(p) => Err(p),
        }
    })
    .await;
    eventually(T, "loop row healthy", || async {
        let loops = syncd::status::loop_rows(&running.store).unwrap();
        let row = loops.iter().find(|r| r.name == "sync:contacts").unwrap();
        if row.failing == 0 && syncd::cli::status::loop_line(row).contains(": running") {
            Ok(())
        } else {
            Err(format!("{row:?}"))
        }
    })
    .await;
    let before = restarts(&running, "sync:contacts");
    let polls = count_runs(&db, None, Some(RunStatus::Ok));
    eventually(T, "polls succeed again", || async {
        let n = count_runs(&db, None, Some(RunStatus::Ok));
        if n >= polls + 3 {
            Ok(())
        } else {
            Err(format!("{n} ok runs"))
        }
    })
    .await;
    assert_eq!(restarts(&running, "sync:contacts"), before);
    running.stop().await;
    // Shutdown is recorded as a stop, not a failure.
    let loops = syncd::status::loop_rows(&syncd::store::open(&db).unwrap()).unwrap();
    assert!(
        loops
            .iter()
            .all(|r| syncd::cli::status::loop_line(r).contains(": stopped")),
        "{loops:?}"
    );
}

fn quarantined(db: &std::path::Path) -> Vec<(i64, i64, String)> {
    let store = syncd::store::open(db).unwrap();
    store
        .read_blocking(|c| syncd::store::quarantine::list(c, Some("contacts"), &[]))
        .unwrap()
        .into_iter()
        .map(|q| (q.id, q.attempts, q.error))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_endless_transforms_quarantine_only_their_record() {
    let emu = emulator(counts(45, 0, 0), |_| {}).await;
    let truth = truth_live(&emu, EntityType::Contact);
    let ids: Vec<i64> = truth.keys().copied().collect();
    // One record makes the transform loop forever (no output, ever), one makes it fail.
    let (looping, failing) = (ids[3], ids[20]);
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&format!(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\npage_size = 10\npoll_interval = \"300ms\"\nwebhooks = false\ntransform_timeout = \"250ms\"\ntransform = 'def f: f; (.contactId | tostring) as $id | if $id == \"{looping}\" then f elif $id == \"{failing}\" then error(\"x\") else {{id: .contactId, name}} end'\n"
    ));
    let began = Instant::now();
    let running = start(&text).await;
    // Every other record is stored, in the pages of the two bad ones too.
    eventually(T, "the other records", || async {
        let stored = records(&db, "contacts");
        let want: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| *id != looping && *id != failing)
            .collect();
        let missing: Vec<&i64> = want.iter().filter(|id| !stored.contains_key(id)).collect();
        if missing.is_empty() && stored.len() == want.len() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}, {} stored", stored.len()))
        }
    })
    .await;
    let loaded_in = began.elapsed();
    let q = quarantined(&db);
    assert_eq!(q.len(), 2, "{q:?}");
    let by_id = |id: i64| q.iter().find(|(i, _, _)| *i == id).cloned().unwrap();
    assert!(by_id(looping).2.contains("time budget"), "{q:?}");
    assert!(by_id(failing).2.contains('x'), "{q:?}");
    // The endless record cost its budget (250 ms), not the pass: 45 records in 5 pages.
    assert!(
        loaded_in < Duration::from_secs(10),
        "initial load took {loaded_in:?}"
    );
    // The quarantined input is the record as fetched.
    let raw: serde_json::Value = serde_json::from_str(
        &syncd::store::open(&db)
            .unwrap()
            .read_blocking(|c| syncd::store::quarantine::list(c, None, &[failing]))
            .unwrap()[0]
            .json,
    )
    .unwrap();
    assert_eq!(
        raw["contactId"].to_string().trim_matches('"'),
        failing.to_string()
    );

    // Later passes re-read the window but neither run the transform on the unchanged
    // quarantined records again (no new abandoned thread) nor stop syncing.
    let ok_runs = count_runs(&db, None, Some(RunStatus::Ok));
    eventually(T, "more passes", || async {
        let n = count_runs(&db, None, Some(RunStatus::Ok));
        if n >= ok_runs + 3 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    assert_eq!(count_runs(&db, None, Some(RunStatus::Failed)), 0);
    assert_eq!(syncd::transform::Pool::global().abandoned(), 1);
    let q2 = quarantined(&db);
    assert_eq!(
        q2, q,
        "unchanged quarantined records are not transformed again"
    );
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_quarantined_records{subscription=\"contacts\"} 2"),
        "{metrics}"
    );
    let status = syncd::status::status_rows(&running.store).unwrap();
    assert_eq!(status[0].quarantined, 2);

    // Retry with the same transform: refetched, fails again, counted once more, not doubled.
    let queued = running
        .store
        .write(move |tx| {
            syncd::store::quarantine::requeue(
                tx,
                Some("contacts"),
                &[failing],
                "2026-01-01T00:00:00Z".parse().unwrap(),
            )
        })
        .await
        .unwrap();
    assert_eq!(queued, vec![("contacts".to_string(), failing)]);
    eventually(T, "the retry ran", || async {
        let q = quarantined(&db);
        let queue = queued_refetches(&db);
        match q.iter().find(|(id, _, _)| *id == failing) {
            Some((_, 2, _)) if queue == 0 => Ok(()),
            other => Err(format!("{other:?}, {queue} queued")),
        }
    })
    .await;
    assert_eq!(quarantined(&db).len(), 2);
    assert!(!records(&db, "contacts").contains_key(&failing));

    running.stop().await;

    // Fixing the transform (a config change: the subscription resyncs) transforms every
    // record again; none is quarantined any more.
    let fixed = text.replace(
        &format!("def f: f; (.contactId | tostring) as $id | if $id == \"{looping}\" then f elif $id == \"{failing}\" then error(\"x\") else {{id: .contactId, name}} end"),
        "{id: .contactId, name}",
    );
    assert_ne!(fixed, text);
    let running = start(&fixed).await;
    eventually(T, "the formerly bad records stored", || async {
        let stored = records(&db, "contacts");
        if stored.contains_key(&failing) && stored.contains_key(&looping) {
            Ok(())
        } else {
            Err(format!("{} stored", stored.len()))
        }
    })
    .await;
    assert!(quarantined(&db).is_empty());
    let metrics = running.services().metrics.render();
    assert!(
        metrics.contains("syncd_quarantined_records{subscription=\"contacts\"} 0"),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_shape_quarantines_the_entity_as_fetched() {
    let emu = emulator(counts(25, 0, 0), |_| {}).await;
    let truth = truth_live(&emu, EntityType::Contact);
    let ids: Vec<i64> = truth.keys().copied().collect();
    let bad = ids[7];
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&format!(
        "\n[[subscription]]\nname = \"entities\"\nentity = \"contact\"\nshape = \"entity\"\npage_size = 10\npoll_interval = \"300ms\"\nwebhooks = false\ntransform_timeout = \"2s\"\ntransform = 'if .ContactId == {bad} then .Name | error else del(.Category) end'\n"
    ));
    let running = start(&text).await;
    eventually(T, "all but one stored", || async {
        let stored = records(&db, "entities");
        if stored.len() == ids.len() - 1 && !stored.contains_key(&bad) {
            Ok(())
        } else {
            Err(format!("{} stored", stored.len()))
        }
    })
    .await;
    let store = syncd::store::open(&db).unwrap();
    let q = store
        .read_blocking(|c| syncd::store::quarantine::list(c, Some("entities"), &[]))
        .unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].id, bad);
    let entity: serde_json::Value = serde_json::from_str(&q[0].json).unwrap();
    assert_eq!(entity["ContactId"], serde_json::json!(bad));
    assert!(
        entity.get("_Links").is_none(),
        "stored as fetched, minus metadata"
    );
    assert!(
        q[0].error.contains(entity["Name"].as_str().unwrap()),
        "{q:?}"
    );
    running.stop().await;
}
