//! Scans through the SDK's keyset paging against a server that caps `$top` below the
//! configured `page_size` (SuperOffice's default and maximum `$top` are undocumented): the first
//! short page is probed, the cap is learned and stored, nothing is missed, and a load or a
//! reconcile costs one request per page of the cap (requests ÷ minimum = 1.000). A server that
//! ignores the keyset filter fails the run instead of paging forever.

use std::time::Duration;

use emulator::{EntityType, FaultRule, RouteClass};
use syncd_testkit::sync::{
    PassKind, Request, RunStatus, base_config, counts, db_path, eventually, matches, records,
    request, runs, start, state, truth_live, try_runs_after, workdir,
};

const T: Duration = Duration::from_secs(30);

/// The `requests` of the newest successful run of `kind`, once there is one.
async fn requests_of_ok_run(db: &std::path::Path, kind: PassKind) -> i64 {
    let newest = || {
        runs(db)
            .into_iter()
            .rev()
            .find(|r| r.kind == kind && r.status == RunStatus::Ok)
    };
    eventually(T, &format!("a successful {kind:?} run"), || {
        let found = newest().is_some();
        async move {
            if found {
                Ok(())
            } else {
                Err("none yet".to_string())
            }
        }
    })
    .await;
    newest().expect("a successful run").requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_cap_below_page_size_is_probed_learned_and_costs_no_extra_requests() {
    // 450 contacts; the server answers at most 120 rows a page; syncd asks for 200.
    let emu = syncd_testkit::sync::emulator(counts(450, 0, 0), |c| c.odata.max_top = 120).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\n\
         webhooks = false\npoll_interval = \"200ms\"\npage_size = 200\n",
    );
    let running = start(&text).await;
    // Pages of 120, 120 (the probe's rows), 120 and 90: four requests, the minimum for 450
    // rows at 120 a page; a short page without the probe would have ended the load at 120.
    assert_eq!(requests_of_ok_run(&db, PassKind::Initial).await, 4);
    assert!(matches(&db, "contacts", &truth_live(&emu, EntityType::Contact)).is_ok());
    assert_eq!(records(&db, "contacts").len(), 450);
    assert_eq!(state(&db, "contacts").page_cap, Some(120));

    // The reconcile's id scan pages at the learned cap from its first request: 4 requests,
    // nothing taken for deleted.
    request(&db, "contacts", Request::Reconcile);
    assert_eq!(requests_of_ok_run(&db, PassKind::Reconcile).await, 4);
    assert_eq!(
        records(&db, "contacts")
            .values()
            .filter(|r| !r.deleted)
            .count(),
        450
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_is_the_end_only_after_an_empty_probe() {
    // 150 contacts, no cap: the one short page (150 of 200 asked) is probed once; the empty
    // answer confirms the end, so the load costs two requests and learns no cap.
    let emu = syncd_testkit::sync::emulator(counts(150, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\n\
         webhooks = false\npoll_interval = \"1h\"\npage_size = 200\n",
    );
    let running = start(&text).await;
    assert_eq!(requests_of_ok_run(&db, PassKind::Initial).await, 2);
    assert!(matches(&db, "contacts", &truth_live(&emu, EntityType::Contact)).is_ok());
    assert_eq!(state(&db, "contacts").page_cap, None);
    running.stop().await;
}

/// The errors of the failed initial runs, joined.
fn failed_initial_runs(db: &std::path::Path) -> String {
    match try_runs_after(db, 0) {
        Some(runs) => runs
            .into_iter()
            .filter(|r| r.kind == PassKind::Initial && r.status == RunStatus::Failed)
            .filter_map(|r| r.error)
            .collect::<Vec<_>>()
            .join(" | "),
        None => "(not readable yet)".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_keyset_filter_fails_the_run() {
    let emu = syncd_testkit::sync::emulator(counts(10, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\"]\n\
         webhooks = false\npoll_interval = \"200ms\"\npage_size = 2\n",
    );
    // Every page answers the same two rows, whatever `contactId gt N` asks for.
    emu.add_fault(FaultRule::body(
        RouteClass::Odata,
        r#"{"value":[{"contactId":1,"name":"A"},{"contactId":2,"name":"B"}]}"#,
    ))
    .unwrap();
    let running = start(&text).await;
    eventually(T, "a failed initial run", || {
        let errors = failed_initial_runs(&db);
        async move {
            if errors.contains("the keyset filter was not applied") {
                Ok(())
            } else {
                Err(format!("failed runs so far: {errors:?}"))
            }
        }
    })
    .await;
    let errors = failed_initial_runs(&db);
    assert!(errors.contains("subscription \"contacts\""), "{errors}");
    assert!(
        errors.contains("rows after contactId 2 (the page ends at 2"),
        "{errors}"
    );
    running.stop().await;
}
