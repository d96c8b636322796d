//! The real `syncd` binary, killed with SIGKILL at random moments and exactly between a POST
//! and the commit of its answer, 20 runs in a row: after each restart every publish has exactly
//! one record (checked against `/__admin/truth`) carrying its key (checked against the
//! ForeignApp keys), and no record exists that no task owns. SIGTERM leaves no task half
//! recorded.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emulator::{Emulator, EntityType, FaultRule, RouteClass};
use rand::{Rng, SeedableRng};
use serde_json::json;
use syncd::outbox::TaskState;
use syncd_testkit::outbox::*;
use syncd_testkit::process::{KillOnDrop, run_syncd};

const RUNS: usize = 20;
const PER_RUN: usize = 6;

struct Daemon {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
}

fn spawn(config: &Path, failpoint: Option<String>) -> Daemon {
    let (child, lines) = run_syncd(binary(), config, failpoint.as_deref());
    Daemon { child, lines }
}

impl Daemon {
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_line(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

fn any_in_flight(store: &syncd::Store) -> bool {
    store
        .read_blocking(syncd::store::tasks::any_in_flight)
        .unwrap()
}

fn all_done(store: &syncd::Store) -> bool {
    tasks(store).iter().all(|t| t.state == TaskState::Done)
}

/// Every task is done, owns exactly one created record, and that record carries its key; no
/// created record is unowned.
async fn check(emu: &Emulator, store: &syncd::Store, expected: usize, context: &str) {
    let tasks = tasks(store);
    assert_eq!(tasks.len(), expected, "{context}");
    let created = created(emu, EntityType::Contact, SEEDED);
    let keys = foreign_keys(emu, "contact").await;
    let created_ids: BTreeSet<i64> = created.iter().map(|r| r.id as i64).collect();
    assert_eq!(
        created.len(),
        expected,
        "{context}: {} records for {expected} publishes (duplicate or lost); keys {keys:?}",
        created.len()
    );
    let mut owned = BTreeSet::new();
    for task in &tasks {
        assert_eq!(task.state, TaskState::Done, "{context}: {task:#?}");
        let record = task.result_id.expect("a done create has its record");
        assert_eq!(
            keys.get(&task.key),
            Some(&vec![record]),
            "{context}: the key of task {} is on exactly its record",
            task.id
        );
        assert!(
            owned.insert(record),
            "{context}: record {record} owned twice"
        );
    }
    assert_eq!(
        owned, created_ids,
        "{context}: every created record is owned by a task"
    );
}

async fn wait_done(store: &syncd::Store, what: &str) {
    wait_for(Duration::from_secs(30), what, || all_done(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_post_and_commit_leaves_no_duplicate_and_no_lost_publish() {
    let emu = emulator().await;
    // A little latency on every entity call keeps deliveries in flight long enough for the
    // random kills to land mid-call.
    emu.add_fault(FaultRule {
        rate: 0.7,
        ..FaultRule::latency(RouteClass::Entity, 4)
    })
    .unwrap();
    let setup = Setup::new(&emu, "concurrency = 3", "");
    let config_file = setup.config_file();
    let config = setup.config();
    let store = setup.store();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut total = 0;
    let mut parked = 0;
    for run in 0..RUNS {
        for i in 0..PER_RUN {
            let mut r = request(
                "create",
                "contact",
                Some(json!({ "Name": format!("Crash {run}-{i}"), "Department": "Outbox" })),
            );
            r.key = Some(format!("crash-{run}-{i}"));
            syncd::outbox::publish(&store, &config, &r, "api")
                .await
                .unwrap();
        }
        total += PER_RUN;
        let nth = rng.gen_range(1..=PER_RUN);
        let how = match run % 4 {
            0 => {
                // Killed right after a POST answered, before its id is committed.
                let daemon = spawn(&config_file, Some(format!("outbox.after_post@{nth}")));
                if daemon.wait_line(
                    "failpoint outbox.after_post reached",
                    Duration::from_secs(20),
                ) {
                    parked += 1;
                }
                daemon.kill();
                "after the POST, before its commit"
            }
            1 => {
                // Killed after the id is committed, before the key is stored.
                let daemon = spawn(&config_file, Some(format!("outbox.after_record@{nth}")));
                if daemon.wait_line(
                    "failpoint outbox.after_record reached",
                    Duration::from_secs(20),
                ) {
                    parked += 1;
                }
                daemon.kill();
                "after the id commit, before the key"
            }
            2 => {
                // Killed as soon as a task is seen in flight.
                let daemon = spawn(&config_file, None);
                let watch = store.clone();
                let deadline = Instant::now() + Duration::from_secs(20);
                tokio::task::spawn_blocking(move || {
                    while !any_in_flight(&watch) && !all_done(&watch) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                })
                .await
                .unwrap();
                daemon.kill();
                "while a task was in flight"
            }
            _ => {
                // Killed at a random moment.
                let daemon = spawn(&config_file, None);
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
                daemon.kill();
                "at a random moment"
            }
        };
        let daemon = spawn(&config_file, None);
        wait_done(&store, &format!("run {run} to finish after a kill {how}")).await;
        daemon.kill();
        check(&emu, &store, total, &format!("run {run} (killed {how})")).await;
    }
    eprintln!("failpoints fired in {parked} of {} runs", RUNS / 2);
    assert!(
        parked >= RUNS / 2 - 2,
        "the failpoints fired ({parked} times)"
    );
    let recovered = tasks(&store).iter().filter(|t| t.maybe_sent).count();
    assert!(recovered > 0, "some tasks went through recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_no_task_half_recorded() {
    let emu = emulator().await;
    emu.add_fault(FaultRule::latency(RouteClass::Entity, 100))
        .unwrap();
    let setup = Setup::new(&emu, "concurrency = 4", "");
    let config_file = setup.config_file();
    let config = setup.config();
    let store = setup.store();
    const N: usize = 40;
    for i in 0..N {
        let mut r = request(
            "create",
            "contact",
            Some(json!({ "Name": format!("Term {i}") })),
        );
        r.key = Some(format!("term-{i}"));
        syncd::outbox::publish(&store, &config, &r, "api")
            .await
            .unwrap();
    }
    // 40 creates at 4 at a time and 100 ms each take over a second: SIGTERM after the
    // fifth lands mid-way even on a machine that stalls for a few hundred milliseconds.
    let mut daemon = spawn(&config_file, None);
    wait_for(Duration::from_secs(20), "a few deliveries", || {
        tasks(&store)
            .iter()
            .filter(|t| t.state == TaskState::Done)
            .count()
            >= 5
    })
    .await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = daemon.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "syncd did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit: {exit:?}");
    let after = tasks(&store);
    assert!(
        after.iter().all(|t| t.state != TaskState::InFlight),
        "nothing left in flight"
    );
    assert!(
        after
            .iter()
            .all(|t| matches!(t.state, TaskState::Done | TaskState::Pending))
    );
    assert!(
        after.iter().any(|t| t.state == TaskState::Pending),
        "stopped mid-way"
    );
    for t in after.iter().filter(|t| t.state == TaskState::Done) {
        assert!(t.result_id.is_some(), "a done task has its record: {t:#?}");
    }
    for t in after.iter().filter(|t| t.state == TaskState::Pending) {
        assert!(
            t.result_id.is_none() && !t.maybe_sent,
            "a given-back task was never sent: {t:#?}"
        );
    }
    drop(daemon);

    let daemon = spawn(&config_file, None);
    wait_done(&store, "the rest after a restart").await;
    daemon.kill();
    check(&emu, &store, N, "after SIGTERM and restart").await;
}
