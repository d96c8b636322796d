//! The NATS JetStream sink against a real `nats-server` (see `syncd_testkit::nats`): the stream holds
//! exactly the change feed (count, order per subscription, content, msg ids, subjects); with
//! the server stopped mid-run the sync goes on, the sink reports its lag and the error, and
//! after a restart on the same store it catches up without losing or repeating a change.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use superoffice::entity::EntityKind;
use syncd::feed::{ChangeEvent, Tenants};
use syncd_testkit::nats::*;
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(60);

fn config(emu: &emulator::Emulator, dir: &std::path::Path, nats: &str) -> String {
    config_lag(emu, dir, nats, 1_000_000)
}

fn config_lag(emu: &emulator::Emulator, dir: &std::path::Path, nats: &str, max_lag: u64) -> String {
    let mut text = base_config(emu, dir, "");
    text.push_str(&format!(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\npoll_interval = \"200ms\"\npage_size = 7\ncolumns = [\"name\", \"department\"]\nwebhooks = false\n\
         \n[[subscription]]\nname = \"persons\"\nentity = \"person\"\npoll_interval = \"200ms\"\npage_size = 9\ncolumns = [\"firstname\", \"lastname\"]\nwebhooks = false\n\
         \n[[sink]]\nname = \"js\"\nkind = \"nats\"\nurl = {nats:?}\nbatch = 16\nmax_lag = {max_lag}\n"
    ));
    text
}

fn store_feed(running: &Running) -> Vec<ChangeEvent> {
    let tenants = Tenants::from_config(&running.config);
    running
        .store
        .read_blocking(|c| syncd::store::feed::changes_after(c, 0, None, usize::MAX, &tenants))
        .unwrap()
}

fn acked(running: &Running) -> i64 {
    running
        .store
        .read_blocking(|c| syncd::store::sinks::acked_seq(c, "js"))
        .unwrap()
}

async fn synced(emu: &emulator::Emulator, db: &std::path::Path) {
    let contacts = truth_live(emu, emulator::EntityType::Contact);
    let persons = truth_live(emu, emulator::EntityType::Person);
    eventually(T, "the copy matches the emulator", || async {
        matches(db, "contacts", &contacts)?;
        matches(db, "persons", &persons)
    })
    .await;
}

async fn caught_up(running: &Running) {
    eventually(T, "the sink acknowledged the whole feed", || async {
        let last = running.services().feed.last();
        let acked = acked(running);
        if last > 0 && acked == last {
            Ok(())
        } else {
            Err(format!("acked {acked} of {last}"))
        }
    })
    .await;
}

/// The stream equals the feed: one message per change, in seq order, with the event as its
/// payload, `Nats-Msg-Id = {instance}:{seq}`, and the subject from the template.
fn assert_stream_is_feed(stored: &[Stored], feed: &[ChangeEvent], instance: &str) {
    assert_eq!(stored.len(), feed.len(), "one message per change");
    for (message, event) in stored.iter().zip(feed) {
        assert_eq!(&message.event, event, "content of seq {}", event.seq);
        assert_eq!(message.msg_id, format!("{instance}:{}", event.seq));
        assert_eq!(
            message.subject,
            format!("superoffice.emu.{}.{}", event.entity, event.op)
        );
    }
    // Per subscription, the stream order is the feed order.
    let mut per: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for message in stored {
        per.entry(&message.event.subscription)
            .or_default()
            .push(message.event.seq);
    }
    for (subscription, seqs) in per {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{subscription}: stream order is seq order"
        );
    }
}

fn instance(running: &Running) -> String {
    running
        .store
        .write_blocking(|tx| syncd::store::sinks::instance_id(tx))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_holds_exactly_the_change_feed() {
    if !available("the_stream_holds_exactly_the_change_feed") {
        return;
    }
    let dir = workdir();
    let nats = NatsServer::start(dir.path());
    let emu = emulator(counts(40, 25, 0), |_| {}).await;
    let db = db_path(dir.path());
    let running = start(&config(&emu, dir.path(), &nats.url())).await;
    synced(&emu, &db).await;

    let api = client(&emu);
    let contacts = api.entities(EntityKind::Contact);
    contacts
        .merge_patch(4, &json!({ "Department": "nats test" }), None)
        .await
        .unwrap();
    contacts
        .create(&json!({ "Name": "Nats New" }))
        .await
        .unwrap();
    contacts.delete(6, None).await.unwrap();
    request(&db, "contacts", Request::Reconcile);
    synced(&emu, &db).await;
    caught_up(&running).await;

    let feed = store_feed(&running);
    assert!(
        feed.len() >= 68,
        "65 inserts, an update, an insert, a delete"
    );
    let js = nats.jetstream().await;
    let stored = read_stream(&js, "SUPEROFFICE").await;
    assert_stream_is_feed(&stored, &feed, &instance(&running));
    let metrics = &running.services().metrics;
    assert_eq!(metrics.get("syncd_sink_lag", &[("sink", "js")]), 0.0);
    assert_eq!(
        metrics.get("syncd_sink_acked_seq", &[("sink", "js")]),
        feed.last().unwrap().seq as f64
    );
    // The stream was created with a de-duplication window of at least 2 minutes.
    let mut stream = js.get_stream("SUPEROFFICE").await.unwrap();
    let info = stream.info().await.unwrap();
    assert!(info.config.duplicate_window >= Duration::from_secs(120));
    assert_eq!(info.config.subjects, vec!["superoffice.*.*.*".to_string()]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_delays_the_sink_but_loses_nothing() {
    if !available("a_stopped_server_delays_the_sink_but_loses_nothing") {
        return;
    }
    let dir = workdir();
    let mut nats = NatsServer::start(dir.path());
    let emu = emulator(counts(30, 10, 0), |_| {}).await;
    let db = db_path(dir.path());
    let running = start(&config_lag(&emu, dir.path(), &nats.url(), 5)).await;
    synced(&emu, &db).await;
    caught_up(&running).await;
    eventually(T, "ready once caught up", || async {
        match running.services().health.problems() {
            p if p.is_empty() => Ok(()),
            p => Err(format!("{p:?}")),
        }
    })
    .await;
    let before = running.services().feed.last();

    nats.stop();
    let api = client(&emu);
    let contacts = api.entities(EntityKind::Contact);
    for id in 1..=12 {
        contacts
            .merge_patch(
                id,
                &json!({ "Department": format!("while down {id}") }),
                None,
            )
            .await
            .unwrap();
    }
    // The sync goes on without the sink.
    synced(&emu, &db).await;
    eventually(T, "the sync recorded the edits", || async {
        let last = running.services().feed.last();
        if last >= before + 12 {
            Ok(())
        } else {
            Err(format!("last seq {last}"))
        }
    })
    .await;
    // The sink is behind and says why.
    eventually(T, "the sink reports the failure", || async {
        let errors = running
            .services()
            .metrics
            .get("syncd_sink_errors_total", &[("sink", "js")]);
        let rows = running
            .store
            .read_blocking(syncd::store::sinks::all)
            .unwrap();
        let lag = running
            .services()
            .metrics
            .get("syncd_sink_lag", &[("sink", "js")]);
        if errors >= 1.0 && rows[0].last_error.is_some() && lag >= 12.0 {
            Ok(())
        } else {
            Err(format!("errors {errors}, rows {rows:?}, lag {lag}"))
        }
    })
    .await;
    assert!(acked(&running) <= before);
    // /readyz: more than max_lag (5) behind.
    eventually(T, "not ready while behind", || async {
        let problems = running.services().health.problems();
        if problems
            .iter()
            .any(|p| p.starts_with("sink js: ") && p.contains("changes behind (max_lag 5)"))
        {
            Ok(())
        } else {
            Err(format!("{problems:?}"))
        }
    })
    .await;
    // `syncd status`: the sinks section.
    let rows = syncd::status::sink_rows(&running.store, &["js".to_string()]).unwrap();
    assert!(
        rows[0].lag >= 12 && rows[0].last_error.is_some(),
        "{rows:?}"
    );

    nats.restart();
    caught_up(&running).await;
    let feed = store_feed(&running);
    let js = nats.jetstream().await;
    let stored = read_stream(&js, "SUPEROFFICE").await;
    assert_stream_is_feed(&stored, &feed, &instance(&running));
    let rows = running
        .store
        .read_blocking(syncd::store::sinks::all)
        .unwrap();
    assert_eq!(rows[0].last_error, None, "progress clears the error");
    eventually(T, "ready again", || async {
        match running.services().health.problems() {
            p if p.is_empty() => Ok(()),
            p => Err(format!("{p:?}")),
        }
    })
    .await;
    let rows = syncd::status::sink_rows(&running.store, &["js".to_string()]).unwrap();
    assert_eq!(
        (rows[0].lag, rows[0].acked_seq),
        (0, feed.last().unwrap().seq)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_that_does_not_take_our_subjects_is_an_error() {
    if !available("an_existing_stream_that_does_not_take_our_subjects_is_an_error") {
        return;
    }
    let dir = workdir();
    let nats = NatsServer::start(dir.path());
    let js = nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SUPEROFFICE".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let emu = emulator(counts(5, 0, 0), |_| {}).await;
    let running = start(&config(&emu, dir.path(), &nats.url())).await;
    eventually(T, "the sink refuses the stream", || async {
        let rows = running
            .store
            .read_blocking(syncd::store::sinks::all)
            .unwrap();
        match rows.first().and_then(|r| r.last_error.clone()) {
            Some(e) if e.contains("do not cover") && e.contains("superoffice.*.*.*") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(acked(&running), 0);
    let stored = read_stream(&js, "SUPEROFFICE").await;
    assert!(stored.is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_changes_only_after_the_sink_acknowledged_them() {
    if !available("retention_deletes_changes_only_after_the_sink_acknowledged_them") {
        return;
    }
    let dir = workdir();
    let mut nats = NatsServer::start(dir.path());
    nats.stop();
    let emu = emulator(counts(20, 0, 0), |_| {}).await;
    let db = db_path(dir.path());
    let mut text = config(&emu, dir.path(), &nats.url());
    text.push_str("\n[retention]\nchanges = \"1s\"\n");
    let count = || count_changes(&db, None);

    // NATS is down: the changes are recorded, not acknowledged.
    let running = start(&text).await;
    synced(&emu, &db).await;
    let total = count();
    assert!(total >= 20);
    running.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The prune at start-up keeps every unacknowledged change, however old.
    let running = start(&text).await;
    eventually(T, "the start-up prune ran", || async {
        let n = running
            .services()
            .metrics
            .get("syncd_pruned_rows_total", &[("table", "changes")]);
        let runs = running
            .services()
            .metrics
            .get("syncd_pruned_rows_total", &[("table", "runs")]);
        // The counters are set once the whole prune is done (0 is added too).
        if running
            .services()
            .metrics
            .render()
            .contains("syncd_pruned_rows_total{table=\"changes\"}")
        {
            Ok(())
        } else {
            Err(format!("changes {n}, runs {runs}"))
        }
    })
    .await;
    assert_eq!(count(), total, "nothing was acknowledged: nothing deleted");
    nats.restart();
    caught_up(&running).await;
    let feed = store_feed(&running);
    let instance = instance(&running);
    running.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Acknowledged and older than 1 s: deleted, except the newest row.
    let running = start(&text).await;
    eventually(T, "acknowledged changes deleted", || async {
        match count() {
            1 => Ok(()),
            n => Err(format!("{n} rows")),
        }
    })
    .await;
    let newest = last_seq(&db);
    assert_eq!(newest, feed.last().unwrap().seq, "the newest row is kept");
    // The stream still has everything.
    let js = nats.jetstream().await;
    assert_stream_is_feed(&read_stream(&js, "SUPEROFFICE").await, &feed, &instance);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_credentials_gets_them_and_refuses_wrong_ones() {
    if !available("a_server_that_requires_credentials_gets_them_and_refuses_wrong_ones") {
        return;
    }
    for (server_args, good, bad) in [
        (
            vec!["--user", "syncd", "--pass", "s3cret-pass"],
            "user = \"syncd\"\npassword = { value = \"s3cret-pass\" }",
            "user = \"syncd\"\npassword = { value = \"wrong\" }",
        ),
        (
            vec!["--auth", "n4ts-t0ken"],
            "token = { value = \"n4ts-t0ken\" }",
            "token = { value = \"wrong\" }",
        ),
    ] {
        // Wrong credentials: the sync goes on, the sink reports its error and publishes nothing.
        let dir = workdir();
        let nats = NatsServer::start_with(dir.path(), &server_args);
        let emu = emulator(counts(12, 0, 0), |_| {}).await;
        let db = db_path(dir.path());
        let mut text = config(&emu, dir.path(), &nats.url());
        text.push_str(bad);
        text.push('\n');
        let running = start(&text).await;
        let contacts = truth_live(&emu, emulator::EntityType::Contact);
        running
            .when_fed(T, "the copy matches the emulator", || async {
                matches(&db, "contacts", &contacts)
            })
            .await;
        eventually(T, "the sink reports the refusal", || async {
            let errors = running
                .services()
                .metrics
                .get("syncd_sink_errors_total", &[("sink", "js")]);
            if errors > 0.0 {
                Ok(())
            } else {
                Err("no sink error yet".to_string())
            }
        })
        .await;
        assert_eq!(acked(&running), 0, "{server_args:?}: nothing acknowledged");
        running.stop().await;

        // The right ones: the stream gets the whole feed.
        let dir = workdir();
        let nats = NatsServer::start_with(dir.path(), &server_args);
        let db = db_path(dir.path());
        let mut text = config(&emu, dir.path(), &nats.url());
        text.push_str(good);
        text.push('\n');
        let running = start(&text).await;
        running
            .when_fed(T, "the copy matches the emulator", || async {
                matches(&db, "contacts", &contacts)
            })
            .await;
        caught_up(&running).await;
        let feed = store_feed(&running);
        let client = async_nats::ConnectOptions::new();
        let client = match server_args[0] {
            "--user" => client.user_and_password("syncd".into(), "s3cret-pass".into()),
            _ => client.token("n4ts-t0ken".into()),
        };
        let js = async_nats::jetstream::new(client.connect(nats.url()).await.unwrap());
        let stored = read_stream(&js, "SUPEROFFICE").await;
        assert_stream_is_feed(&stored, &feed, &instance(&running));
        running.stop().await;
    }
}
