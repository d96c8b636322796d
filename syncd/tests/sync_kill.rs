//! Crash safety of the subscription engine: the `syncd` binary, run as a child process against
//! an emulator in this process while "other users" keep creating, editing and deleting, is
//! killed with SIGKILL at random moments and restarted, again and again. In the end the local
//! copy equals the emulator's ground truth and the change feed has no gap and no duplicate.
//!
//! `SYNCD_KILL_RUNS` (default 20) sets the number of kills, `SYNCD_KILL_SEED` the seed.

mod common_sync;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common_sync::*;
use emulator::{EntityType, SeedCounts};
use rand::{Rng, SeedableRng};

const SUBSCRIPTIONS: [(&str, EntityType); 3] = [
    ("contacts", EntityType::Contact),
    ("persons", EntityType::Person),
    ("tickets", EntityType::Ticket),
];

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_syncd"))
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("human")
        .arg("run")
        .env("RUST_LOG", "warn,syncd=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn syncd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_duplicates_nothing() {
    let runs: u32 = std::env::var("SYNCD_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SYNCD_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_260_722);
    println!("kill runs: {runs}, seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let emu = Arc::new(
        emulator(
            SeedCounts {
                contacts: 1500,
                persons: 300,
                tickets: 300,
                ..SeedCounts::NONE
            },
            |_| {},
        )
        .await,
    );
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), &webhook_control());
    text.push_str(
        r#"
[[subscription]]
name = "contacts"
entity = "contact"
columns = ["name", "department", "category"]
page_size = 50
poll_interval = "300ms"
reconcile_interval = "2s"

[[subscription]]
name = "persons"
entity = "person"
shape = "entity"
concurrency = 8
page_size = 40
poll_interval = "300ms"
reconcile_interval = "2s"

[[subscription]]
name = "tickets"
entity = "ticket"
columns = ["title"]
page_size = 30
poll_interval = "300ms"
reconcile_interval = "2s"
"#,
    );
    let config = dir.path().join("syncd.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("syncd.log");

    // Other users at work the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let activity = {
        let emu = emu.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut made = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (_, entity) in SUBSCRIPTIONS {
                    let report = emu.activity(1, 4, 1, Some(entity));
                    made += report.created.len() + report.updated.len() + report.deleted.len();
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            made
        })
    };

    let started = Instant::now();
    for run in 0..runs {
        let mut child = spawn(&config, &log);
        // Early runs die during the initial load, later ones anywhere.
        let lifetime = if run < runs / 2 {
            rng.gen_range(80..600)
        } else {
            rng.gen_range(150..1500)
        };
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("syncd exited by itself ({status}) in run {run}:\n{log}");
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let made = activity.await.unwrap();
    println!(
        "{runs} kills in {:?}; other users made {made} changes",
        started.elapsed()
    );
    let settle = Instant::now();
    let mut child = spawn(&config, &log);
    for (sub, entity) in SUBSCRIPTIONS {
        let expected = truth_live(&emu, entity);
        eventually(Duration::from_secs(60), sub, || async {
            matches(&db, sub, &expected)
        })
        .await;
    }
    println!("converged {:?} after the last restart", settle.elapsed());
    if let Ok(copy) = std::env::var("SYNCD_KILL_LOG") {
        std::fs::copy(&log, copy).unwrap();
    }
    // Let a reconcile pass over the settled data.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    for (sub, entity) in SUBSCRIPTIONS {
        matches(&db, sub, &truth_live(&emu, entity)).unwrap();
        if let Err(error) = feed_is_consistent(&db, sub) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{error}\n{}", &log[log.len().saturating_sub(4000)..]);
        }
        // Every record ever stored that the truth says is deleted is tombstoned.
        let truth = emu.truth(entity);
        let stored = records(&db, sub);
        for row in truth.iter().filter(|t| t.deleted) {
            if let Some(record) = stored.get(&i64::from(row.id)) {
                assert!(
                    record.deleted,
                    "{sub} {}: deleted upstream, live here",
                    row.id
                );
            }
        }
    }
    // Kills leave aborted runs behind (marked at the next start).
    let aborted = query_i64(&db, "SELECT count(*) FROM runs WHERE status = 'aborted'");
    let deletes = query_i64(&db, "SELECT count(*) FROM changes WHERE op = 'delete'");
    let updates = query_i64(&db, "SELECT count(*) FROM changes WHERE op = 'update'");
    println!("aborted runs: {aborted}, updates: {updates}, deletes: {deletes}");
    assert!(
        aborted >= u64::from(runs) as i64 / 2,
        "kills leave aborted runs"
    );
    assert!(updates > 0 && deletes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_bad_subscription_with_a_clear_error() {
    let emu = emulator(counts(3, 0, 0), |_| {}).await;
    let dir = workdir();
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"persons\"\nentity = \"person\"\nfilter = \"contactId eq {contactId}\"\n",
    );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, &text).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_syncd"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("subscription \"persons\"") && stderr.contains("parent"),
        "{stderr}"
    );
}
