//! The SIGKILL scenario shared by `tests/sync_kill.rs` (20 kills in CI) and
//! `benches/sync.rs` (more): the `syncd` binary against a busy emulator, killed at random
//! moments and restarted; afterwards the local copy must equal the ground truth and the change
//! feed must be consistent.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use emulator::{EntityType, SeedCounts};
use rand::{Rng, SeedableRng};

use super::process::spawn_logged;
use super::*;

const SUBSCRIPTIONS: [(&str, EntityType); 3] = [
    ("contacts", EntityType::Contact),
    ("persons", EntityType::Person),
    ("tickets", EntityType::Ticket),
];

/// What [`kill_scenario`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// SIGKILLs sent.
    pub kills: u32,
    /// Kills sent while the process had a sync run open.
    pub mid_run: u32,
    /// Changes the simulated users made meanwhile.
    pub activity: usize,
    /// Runs the kills left `running` (marked `aborted` at the next start).
    pub aborted_runs: i64,
    /// Change feed rows by op.
    pub inserts: i64,
    /// Updates.
    pub updates: i64,
    /// Deletes.
    pub deletes: i64,
    /// Time from the last restart until the local copy equalled the truth.
    pub converged: Duration,
}

/// Runs the `syncd` binary (`binary`) against a busy emulator, SIGKILLs it `runs` times at
/// random moments (seeded), restarts it, and checks in the end that the local copy equals
/// the ground truth and the change feed is consistent (no loss, no duplicate). Panics with
/// the reason otherwise.
pub async fn kill_scenario(binary: &Path, runs: u32, seed: u64) -> KillReport {
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
    // While the daemon is down its webhook receiver is too, and the emulator drops events after
    // its retries; the deletes they announced then all reach one reconcile at the last start.
    // That is the mass-delete breaker's job to stop (tested in `tests/sync.rs`), not this
    // scenario's, so the breaker is set out of reach here.
    text.push_str(
        r#"
[[subscription]]
name = "contacts"
entity = "contact"
columns = ["name", "department", "category"]
page_size = 50
poll_interval = "300ms"
reconcile_interval = "2s"
mass_delete_percent = 100.0
mass_delete_absolute = 1000000

[[subscription]]
name = "persons"
entity = "person"
shape = "entity"
concurrency = 8
page_size = 40
poll_interval = "300ms"
reconcile_interval = "2s"
mass_delete_percent = 100.0
mass_delete_absolute = 1000000

[[subscription]]
name = "tickets"
entity = "ticket"
columns = ["title"]
page_size = 30
poll_interval = "300ms"
reconcile_interval = "2s"
mass_delete_percent = 100.0
mass_delete_absolute = 1000000
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

    let mut watch = Watch::new(&db);
    let mut mid_run = 0;
    for run in 0..runs {
        let before = watch.last_run();
        let mut child = spawn_logged(binary, &config, &log);
        // Early runs die during the initial load, later ones anywhere.
        let lifetime = if run < runs / 2 {
            rng.gen_range(80..600)
        } else {
            rng.gen_range(150..1500)
        };
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        // Then at the next moment this process is inside a sync run (a page being fetched,
        // built or committed), so that kills between runs or before start-up do not make the
        // scenario vacuous; a few random milliseconds later, to land anywhere in the run.
        let waited = Instant::now();
        while !watch.running_after(before) && waited.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if watch.running_after(before) {
            mid_run += 1;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..15))).await;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("syncd exited by itself ({status}) in run {run}:\n{log}");
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let made = activity.await.unwrap();
    // The users stopped, so the truth stays as it is: read once (the emulator renders and
    // hashes every row for it, about a second per thousand rows in a debug build).
    let truths: Vec<(&str, Vec<emulator::TruthRow>)> = SUBSCRIPTIONS
        .iter()
        .map(|(sub, entity)| (*sub, emu.truth(*entity)))
        .collect();
    let live = |truth: &[emulator::TruthRow]| -> BTreeMap<i64, String> {
        truth
            .iter()
            .filter(|t| !t.deleted)
            .map(|t| (i64::from(t.id), t.updated.clone()))
            .collect()
    };
    let settle = Instant::now();
    let mut child = spawn_logged(binary, &config, &log);
    for (sub, truth) in &truths {
        let expected = live(truth);
        eventually(Duration::from_secs(60), sub, || async {
            matches(&db, sub, &expected)
        })
        .await;
    }
    let converged = settle.elapsed();
    if let Ok(copy) = std::env::var("SYNCD_KILL_LOG") {
        std::fs::copy(&log, copy).unwrap();
    }
    // Let a reconcile pass over the settled data: one that starts after the copy equalled the
    // truth ends successfully, on every subscription (due every 2 s).
    let settled = watch.last_run();
    eventually(
        Duration::from_secs(30),
        "a reconcile after settling",
        || {
            let since = watch.runs_after(settled);
            let pending: Vec<&str> = SUBSCRIPTIONS
                .iter()
                .map(|(sub, _)| *sub)
                .filter(|sub| {
                    !since.iter().any(|r| {
                        r.subscription == *sub
                            && r.kind == PassKind::Reconcile
                            && r.status == RunStatus::Ok
                    })
                })
                .collect();
            async move {
                if pending.is_empty() {
                    Ok(())
                } else {
                    Err(format!("no reconcile yet: {pending:?}"))
                }
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Each subscription's records and feed are read once for all of its checks.
    for (sub, truth) in &truths {
        let stored = records(&db, sub);
        records_match(&stored, sub, &live(truth)).unwrap();
        if let Err(error) = feed_consistent_with(&stored, changes(&db, sub), sub) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{error}\n{}", &log[log.len().saturating_sub(4000)..]);
        }
        // Every record ever stored that the truth says is deleted is tombstoned.
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
    let feed = all_changes(&db, None);
    let count = |op: Op| feed.iter().filter(|c| c.op == op).count() as i64;
    KillReport {
        kills: runs,
        mid_run,
        activity: made,
        aborted_runs: count_runs(&db, None, Some(RunStatus::Aborted)),
        inserts: count(Op::Insert),
        updates: count(Op::Update),
        deletes: count(Op::Delete),
        converged,
    }
}
