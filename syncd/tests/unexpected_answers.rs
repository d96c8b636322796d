//! Answers of unexpected shape are errors, never data: a list without its `value` array or
//! with rows lacking their primary key fails the sync run (named in `runs`, `/readyz` and
//! `syncd status`) and writes nothing, a reconcile never reads it as "everything was deleted",
//! and an upsert whose lookup fails in any way never falls through to a create. The emulator's
//! body faults serve the odd answers.

use std::path::Path;
use std::time::Duration;

use emulator::{EntityType, FaultRule, RouteClass};
use serde_json::json;
use syncd::outbox::TaskState;
use syncd_testkit::sync::{
    Op, PassKind, Request, RunStatus, base_config, count_changes, count_runs, counts, db_path,
    eventually, matches, records, request, start, state, truth_live, try_runs_after, workdir,
};

const T: Duration = Duration::from_secs(30);

/// The newest failed run of `kind` whose error contains `needle`, once there is one.
async fn failed_run(db: &Path, kind: PassKind, needle: &str) -> String {
    let mut found = String::new();
    eventually(T, &format!("a failed {kind} run saying {needle:?}"), || {
        let result = try_runs_after(db, 0).map(|runs| {
            runs.into_iter()
                .filter(|r| r.kind == kind && r.status == RunStatus::Failed)
                .filter_map(|r| r.error)
                .collect::<Vec<_>>()
                .join(" | ")
        });
        let outcome = match result {
            Some(errors) if errors.contains(needle) => {
                found = errors;
                Ok(())
            }
            Some(errors) => Err(format!("failed runs so far: {errors:?}")),
            None => Err("the database is not ready".to_string()),
        };
        async move { outcome }
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_answers_without_value_or_keys_fail_the_run_and_write_nothing() {
    let emu = syncd_testkit::sync::emulator(counts(40, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\n\
         webhooks = false\npoll_interval = \"200ms\"\npage_size = 50\n",
    );
    // Every archive call answers 200 without `value`, as if there were no contacts.
    emu.add_fault(FaultRule::body(
        RouteClass::Odata,
        r#"{"odata.nextLink":null}"#,
    ))
    .unwrap();
    let running = start(&text).await;
    let error = failed_run(&db, PassKind::Initial, "no `value` array").await;
    assert!(error.contains("subscription \"contacts\""), "{error}");
    assert!(error.contains("/api/v1/Contact?"), "names the URL: {error}");
    assert_eq!(count_changes(&db, None), 0);
    assert!(records(&db, "contacts").is_empty());
    let problems = running.services().health.problems().join("\n");
    assert!(
        problems.contains("subscription contacts: last run failed") && problems.contains("`value`"),
        "/readyz reports it: {problems}"
    );
    let status = syncd::status::status_rows(&running.store).unwrap();
    assert!(status[0].errors >= 1, "{status:?}");
    assert!(
        running
            .services()
            .metrics
            .render()
            .contains("syncd_errors_total{subscription=\"contacts\"}")
    );

    // The real answers load everything.
    emu.clear_faults();
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    let changes = count_changes(&db, None);
    assert_eq!(changes, 40);

    // Rows without their primary key fail the poll; nothing is written for them.
    emu.add_fault(FaultRule::body(
        RouteClass::Odata,
        r#"{"value":[{"name":"No key AS"}]}"#,
    ))
    .unwrap();
    let error = failed_run(&db, PassKind::Poll, "has no `contactId` (primary key)").await;
    assert!(error.contains("subscription \"contacts\""), "{error}");
    assert_eq!(count_changes(&db, None), changes);

    // A reconcile whose id scan (it selects only the key) answers without `value` fails; it
    // deletes nothing. Polls keep working meanwhile.
    emu.clear_faults();
    emu.add_fault(FaultRule {
        matching: Some("$select=contactId&".into()),
        ..FaultRule::body(RouteClass::Odata, r#"{"odata.nextLink":null}"#)
    })
    .unwrap();
    request(&db, "contacts", Request::Reconcile);
    let error = failed_run(&db, PassKind::Reconcile, "no `value` array").await;
    assert!(error.contains("/api/v1/Contact?"), "{error}");
    assert_eq!(count_changes(&db, Some(Op::Delete)), 0);
    assert_eq!(
        records(&db, "contacts")
            .values()
            .filter(|r| !r.deleted)
            .count(),
        40
    );
    assert_eq!(
        state(&db, "contacts").degraded,
        None,
        "not even the breaker: nothing was read as deleted"
    );
    emu.clear_faults();
    eventually(T, "a clean reconcile", || async {
        let ok = count_runs(&db, Some(PassKind::Reconcile), Some(RunStatus::Ok));
        if ok >= 1 {
            Ok(())
        } else {
            Err("no reconcile yet".to_string())
        }
    })
    .await;
    assert_eq!(count_changes(&db, Some(Op::Delete)), 0);
    assert!(
        running.services().health.problems().is_empty(),
        "{:?}",
        running.services().health.problems()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_whose_lookup_fails_never_creates() {
    use syncd_testkit::outbox::*;
    let emu = emulator().await;
    let setup = Setup::new(
        &emu,
        "max_attempts = 2",
        "[[route]]\nentity = \"contact\"\nlookup_filter = \"orgnr eq {OrgNr}\"\n",
    );
    let running = setup.daemon().await;
    let cases = [
        (
            "no value",
            FaultRule::body(RouteClass::Odata, r#"{"odata.nextLink":null}"#),
            "no `value` array",
        ),
        (
            "rows without ids",
            FaultRule::body(RouteClass::Odata, r#"{"value":[{"orgnr":"ORG-1"}]}"#),
            "row without `contactId`",
        ),
        ("500", FaultRule::status(RouteClass::Odata, 500), "500"),
    ];
    for (n, (case, fault, reason)) in cases.into_iter().enumerate() {
        emu.clear_faults();
        emu.add_fault(fault).unwrap();
        let mut upsert = request(
            "upsert",
            "contact",
            Some(json!({ "Name": "Upsert AS", "OrgNr": format!("ORG-{n}") })),
        );
        upsert.external_key = Some(format!("EXT-{n}"));
        let id = running.publish(&upsert).await.unwrap().task().id;
        let dead = wait_state(&running.store, id, TaskState::Dead, T).await;
        let error = dead.last_error.clone().unwrap_or_default();
        assert!(error.contains(reason), "{case}: {error}");
        assert_eq!(dead.attempts, 2, "{case}: retried, then dead");
        assert_eq!(dead.result_id, None, "{case}");
        assert!(
            created(&emu, EntityType::Contact, SEEDED).is_empty(),
            "{case}: nothing was created"
        );
    }
    // With the lookups answering properly, a retried task creates its record once.
    emu.clear_faults();
    let last = tasks(&running.store).last().unwrap().id;
    running
        .store
        .write(move |tx| syncd::store::tasks::retry(tx, last, false, chrono::Utc::now()))
        .await
        .unwrap();
    running.daemon.as_ref().unwrap().services().outbox.wake();
    wait_state(&running.store, last, TaskState::Done, T).await;
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 1);
    running.stop().await;
}

/// The ForeignKey lookup by value (the generated `v1ForeignAppEntity_GetKeyByValue`): a 404
/// or a `null` body is "no record", a stored key is found, and any other shape is an error
/// naming the lookup, never "absent" (which would let a create go ahead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_lookup_of_unexpected_shape_is_an_error() {
    use superoffice::entity::EntityKind;
    use syncd::outbox::foreign::ForeignKeys;
    let emu = syncd_testkit::outbox::emulator().await;
    let setup = syncd_testkit::outbox::Setup::new(&emu, "", "");
    let keys = ForeignKeys::new(&setup.config().outbox);
    let api = syncd_testkit::sync::client(&emu);
    keys.ensure(&api).await.unwrap();
    keys.ensure(&api).await.unwrap();
    let kind = EntityKind::Contact;
    assert_eq!(keys.lookup(&api, kind, "EXT-1").await.unwrap(), None, "404");
    keys.store(&api, kind, "EXT-1", 3).await.unwrap();
    assert_eq!(keys.lookup(&api, kind, "EXT-1").await.unwrap(), Some(3));
    keys.ensure_stored(&api, kind, "EXT-1", 3).await.unwrap();

    let lookup = |body: &str| FaultRule {
        matching: Some("keyValue=EXT-1".into()),
        ..FaultRule::body(RouteClass::Entity, body)
    };
    emu.add_fault(lookup("null")).unwrap();
    assert_eq!(
        keys.lookup(&api, kind, "EXT-1").await.unwrap(),
        None,
        "null"
    );
    for bad in ["{}", r#"{"RecordId":"seven"}"#, "[]", r#""x""#, "<html>"] {
        emu.clear_faults();
        emu.add_fault(lookup(bad)).unwrap();
        let error = keys.lookup(&api, kind, "EXT-1").await.unwrap_err();
        assert!(
            matches!(error, syncd::Error::Api(superoffice::Error::Decode { .. })),
            "{bad}: {error:?}"
        );
        assert!(
            error.to_string().contains("ForeignKey lookup"),
            "{bad}: {error}"
        );
    }
    emu.clear_faults();
    assert_eq!(keys.lookup(&api, kind, "EXT-1").await.unwrap(), Some(3));
}
