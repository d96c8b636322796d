//! Crash safety of the NATS sink: the `syncd` binary publishes into a real `nats-server`
//! (see `syncd_testkit::nats`) while "other users" keep changing the emulator, and is SIGKILLed 20
//! times at random moments while the sink is behind (changes committed, not all acknowledged),
//! then restarted. A kill between a publish and the cursor write makes the next process send
//! those changes again with the same `Nats-Msg-Id`; the stream's de-duplication window drops
//! them. In the end the stream holds every change of the feed exactly once, none missing, with
//! its content.
//!
//! `SYNCD_KILL_RUNS` (default 20) sets the number of kills, `SYNCD_KILL_SEED` the seed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use emulator::{EntityType, SeedCounts};
use rand::{Rng, SeedableRng};
use syncd::feed::Tenants;
use syncd_testkit::nats::*;
use syncd_testkit::sync::process::spawn_logged;
use syncd_testkit::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_publishing_leaves_every_change_in_the_stream_exactly_once() {
    if !available("sigkill_while_publishing_leaves_every_change_in_the_stream_exactly_once") {
        return;
    }
    let runs: u32 = std::env::var("SYNCD_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SYNCD_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_205);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = workdir();
    let nats = NatsServer::start(dir.path());
    let emu = Arc::new(
        emulator(
            SeedCounts {
                contacts: 1200,
                persons: 300,
                ..SeedCounts::NONE
            },
            |_| {},
        )
        .await,
    );
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(&format!(
        r#"
[[subscription]]
name = "contacts"
entity = "contact"
columns = ["name", "department"]
page_size = 50
poll_interval = "300ms"
webhooks = false

[[subscription]]
name = "persons"
entity = "person"
columns = ["firstname", "lastname"]
page_size = 40
poll_interval = "300ms"
webhooks = false

[[sink]]
name = "js"
kind = "nats"
url = {url:?}
batch = 8
"#,
        url = nats.url()
    ));
    let config = dir.path().join("syncd.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("syncd.log");

    let stop = Arc::new(AtomicBool::new(false));
    let activity = {
        let (emu, stop) = (emu.clone(), stop.clone());
        tokio::spawn(async move {
            let mut made = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for entity in [EntityType::Contact, EntityType::Person] {
                    let report = emu.activity(1, 3, 0, Some(entity));
                    made += report.created.len() + report.updated.len();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            made
        })
    };

    let mut watch = Watch::new(&db);
    let mut kills_behind = 0;
    let mut kills_with_resend = 0;
    let js = nats.jetstream().await;
    let started = Instant::now();
    for run in 0..runs {
        let mut child = spawn_logged(Path::new(env!("CARGO_BIN_EXE_syncd")), &config, &log);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..700))).await;
        // Then at the next moment the sink is behind (a batch may be in flight).
        let waited = Instant::now();
        while watch.sink_behind("js").unwrap_or(0) == 0 && waited.elapsed() < Duration::from_secs(2)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if watch.sink_behind("js").unwrap_or(0) > 0 {
            kills_behind += 1;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("syncd exited by itself ({status}) in run {run}:\n{log}");
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Stored in the stream but not yet recorded as acknowledged: the next process sends
        // these again, and only the server's de-duplication keeps them single.
        let acked = watch.acked_seq("js");
        if let Ok(mut stream) = js.get_stream("SUPEROFFICE").await
            && let Ok(info) = stream.info().await
            && info.state.messages as i64 > acked
        {
            kills_with_resend += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let made = activity.await.unwrap();

    // A last process catches up.
    let mut child = spawn_logged(Path::new(env!("CARGO_BIN_EXE_syncd")), &config, &log);
    for (sub, entity) in [
        ("contacts", EntityType::Contact),
        ("persons", EntityType::Person),
    ] {
        let expected = truth_live(&emu, entity);
        eventually(Duration::from_secs(60), sub, || async {
            matches(&db, sub, &expected)
        })
        .await;
    }
    eventually(Duration::from_secs(60), "the sink caught up", || {
        let behind = watch.sink_behind("js");
        async move {
            match behind {
                Some(0) => Ok(()),
                other => Err(format!("behind by {other:?}")),
            }
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    let parsed = syncd::Config::parse(&text, "syncd.toml", &BTreeMap::new()).unwrap();
    let store = syncd::store::open_read_only(&db).unwrap();
    let tenants = Tenants::from_config(&parsed);
    let feed = store
        .read_blocking(|c| syncd::store::feed::changes_after(c, 0, None, usize::MAX, &tenants))
        .unwrap();
    // Written by the sink before its first publish, so reading it here writes nothing.
    let instance: String = store
        .read_blocking(syncd::store::sinks::instance_id)
        .unwrap();
    let stored = read_stream(&js, "SUPEROFFICE").await;
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for message in &stored {
        *by_id.entry(message.msg_id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(repeated.is_empty(), "msg ids stored twice: {repeated:?}");
    let in_stream: BTreeMap<i64, &Stored> = stored.iter().map(|m| (m.event.seq, m)).collect();
    let missing: Vec<i64> = feed
        .iter()
        .filter(|e| !in_stream.contains_key(&e.seq))
        .map(|e| e.seq)
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "changes missing from the stream: {missing:?}"
    );
    assert_eq!(stored.len(), feed.len(), "exactly the feed, nothing else");
    for event in &feed {
        let message = in_stream[&event.seq];
        assert_eq!(&message.event, event, "content of seq {}", event.seq);
        assert_eq!(message.msg_id, format!("{instance}:{}", event.seq));
    }
    println!(
        "{runs} kills ({kills_behind} while the sink was behind, {kills_with_resend} left published but unrecorded changes to re-send), {} changes, {made} user edits, {:?}",
        feed.len(),
        started.elapsed()
    );
    assert!(
        kills_behind >= runs / 2,
        "not vacuous: most kills hit a sink that was behind ({kills_behind} of {runs})"
    );
    assert!(
        kills_with_resend >= 1,
        "not vacuous: some kill left changes to re-send ({kills_with_resend} of {runs})"
    );
}
