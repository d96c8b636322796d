//! Scans through the SDK's keyset paging against a server that caps `$top` below the
//! configured `page_size` (SuperOffice's default and maximum `$top` are undocumented): the first
//! short page is probed, the cap is learned and stored, nothing is missed, and a load or a
//! reconcile costs one request per page of the cap (requests ÷ minimum = 1.000). A server that
//! ignores the keyset filter fails the run instead of paging forever.

use std::time::Duration;

use emulator::{EntityType, FaultRule, RouteClass};
use syncd_testkit::sync::{
    base_config, counts, db_path, eventually, execute, matches, query_i64, start, truth_live,
    workdir,
};

const T: Duration = Duration::from_secs(30);

/// The `requests` of the newest successful run of `kind`, once there is one.
async fn requests_of_ok_run(db: &std::path::Path, kind: &str) -> i64 {
    let sql =
        format!("SELECT coalesce(max(id), 0) FROM runs WHERE kind = '{kind}' AND status = 'ok'");
    eventually(T, &format!("a successful {kind} run"), || {
        let id = query_i64(db, &sql);
        async move {
            if id > 0 {
                Ok(())
            } else {
                Err("none yet".to_string())
            }
        }
    })
    .await;
    query_i64(db, &format!("SELECT requests FROM runs WHERE id = ({sql})"))
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
    assert_eq!(requests_of_ok_run(&db, "initial").await, 4);
    assert!(matches(&db, "contacts", &truth_live(&emu, EntityType::Contact)).is_ok());
    assert_eq!(query_i64(&db, "SELECT count(*) FROM records"), 450);
    assert_eq!(
        query_i64(
            &db,
            "SELECT page_cap FROM cursors WHERE subscription = 'contacts'"
        ),
        120
    );

    // The reconcile's id scan pages at the learned cap from its first request: 4 requests,
    // nothing taken for deleted.
    execute(&db, "UPDATE cursors SET reconcile_requested = 1");
    assert_eq!(requests_of_ok_run(&db, "reconcile").await, 4);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM records WHERE deleted_at IS NULL"),
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
    assert_eq!(requests_of_ok_run(&db, "initial").await, 2);
    assert!(matches(&db, "contacts", &truth_live(&emu, EntityType::Contact)).is_ok());
    assert_eq!(
        query_i64(
            &db,
            "SELECT coalesce(page_cap, 0) FROM cursors WHERE subscription = 'contacts'"
        ),
        0
    );
    running.stop().await;
}

/// The errors of the failed runs `sql` selects, joined.
fn failed_runs(db: &std::path::Path, sql: &str) -> String {
    rusqlite::Connection::open(db)
        .and_then(|conn| conn.query_row(sql, [], |r| r.get::<_, String>(0)))
        .unwrap_or_else(|e| format!("(not readable yet: {e})"))
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
    let sql = "SELECT coalesce(group_concat(error, ' | '), '') FROM runs \
               WHERE kind = 'initial' AND status = 'failed'";
    eventually(T, "a failed initial run", || {
        let errors = failed_runs(&db, sql);
        async move {
            if errors.contains("the keyset filter was not applied") {
                Ok(())
            } else {
                Err(format!("failed runs so far: {errors:?}"))
            }
        }
    })
    .await;
    let errors = failed_runs(&db, sql);
    assert!(errors.contains("subscription \"contacts\""), "{errors}");
    assert!(
        errors.contains("rows after contactId 2 (the page ends at 2"),
        "{errors}"
    );
    running.stop().await;
}
