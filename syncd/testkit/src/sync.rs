//! Helpers shared by the subscription tests: an emulator, a daemon configured against it
//! (in-process or as the `syncd` binary), and checks of the local copy and the change feed
//! against the emulator's ground truth.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::{Emulator, EntityType, SeedCounts};
use superoffice::auth::StaticAuth;
use syncd::clock::ManualClock;
pub use syncd::feed::Op;
pub use syncd::store::runs::{Run, RunStatus, SubState};
pub use syncd::store::status::Request;
pub use syncd::store::types::PassKind;
use syncd::{Config, Daemon};
use tokio_util::sync::CancellationToken;

/// The webhook secret the tests configure.
pub const SECRET: &str = "test-webhook-secret";

/// An emulator with `counts`, fast webhook retries, and `tweak` applied to its config.
pub async fn emulator(counts: SeedCounts, tweak: impl FnOnce(&mut emulator::Config)) -> Emulator {
    let mut config = emulator::Config {
        counts,
        seed: 7,
        ..emulator::Config::default()
    };
    config.webhooks.retry_scale = 0.01;
    tweak(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// A directory that lives as long as the test.
pub fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The `[control]` + `[[tenant]]` part of a config against `emu` (system-user auth, so token
/// expiry is survivable), storing in `dir/syncd.db`.
pub fn base_config(emu: &Emulator, dir: &Path, control_extra: &str) -> String {
    tenant_config(
        &emu.base_url(),
        emu.context_identifier(),
        &emu.config().auth,
        dir,
        control_extra,
    )
}

/// [`base_config`] for an emulator known only by its address (one running as its own
/// process): `environment`, its context identifier and its auth settings.
pub fn tenant_config(
    environment: &str,
    context: &str,
    auth: &emulator::config::AuthConfig,
    dir: &Path,
    control_extra: &str,
) -> String {
    let key_file = dir.join("system-user.pem");
    std::fs::write(&key_file, emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM).unwrap();
    format!(
        r#"store = {store:?}

[control]
listen = "127.0.0.1:0"
{control_extra}

[[tenant]]
name = "emu"
environment = {env:?}
customer_id = {ctx:?}
client_id = {client_id:?}
client_secret = {{ value = {secret:?} }}
auth = "system-user"
system_token = {token:?}
private_key = {key:?}
"#,
        store = dir.join("syncd.db").display().to_string(),
        env = environment,
        ctx = context,
        client_id = auth.client_id,
        secret = auth.client_secret,
        token = auth.system_token,
        key = key_file.display().to_string(),
    )
}

/// `[control]` lines that turn the webhook receiver and auto-registration on.
pub fn webhook_control() -> String {
    format!("webhook_secret = {{ value = {SECRET:?} }}\npublic_url = \"auto\"")
}

/// A running in-process daemon.
#[derive(Debug)]
pub struct Running {
    pub daemon: Option<Daemon>,
    pub shutdown: CancellationToken,
    pub store: syncd::Store,
    pub config: Config,
    /// The clock the daemon's loops wait on: real time unless the test advances it.
    pub clock: ManualClock,
}

impl Running {
    pub fn services(&self) -> &Arc<syncd::Services> {
        self.daemon.as_ref().expect("running").services()
    }

    pub fn control_url(&self) -> String {
        format!(
            "http://{}",
            self.daemon.as_ref().expect("running").control_addr()
        )
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(daemon) = self.daemon.take() {
            daemon.wait().await.unwrap();
        }
    }

    /// Like [`eventually`], but re-checks whenever change rows commit (the daemon's feed
    /// notifier); a fallback tick (200 ms) covers state that changes without a change row (a
    /// stored record whose hash did not change, a run's status, a metric).
    pub async fn when_fed<F, Fut>(&self, timeout: Duration, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let fed = self.services().feed.subscribe();
        until_signalled(fed, timeout, what, check).await
    }
}

/// Checks `check` now and again after every change of `signal` (or at the latest every
/// 200 ms) until it returns `Ok`; fails with its last message after `timeout`.
pub async fn until_signalled<T, F, Fut>(
    mut signal: tokio::sync::watch::Receiver<T>,
    timeout: Duration,
    what: &str,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        signal.borrow_and_update();
        let message = match check().await {
            Ok(()) => return,
            Err(message) => message,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {timeout:?}: {message}");
        }
        let tick = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    panic!("{what}: the signal closed (the daemon stopped): {message}");
                }
            }
            _ = tokio::time::sleep_until(tick) => {}
        }
    }
}

/// Parses `text` and starts the daemon in this process.
pub async fn start(text: &str) -> Running {
    try_start(text).await.expect("daemon starts")
}

/// Like [`start`], returning the error.
pub async fn try_start(text: &str) -> syncd::Result<Running> {
    let config = Config::parse(text, "test.toml", &BTreeMap::new())?;
    let shutdown = CancellationToken::new();
    let clock = ManualClock::new();
    let (daemon, store) =
        Daemon::start_embedded_with_clock(config.clone(), shutdown.clone(), clock.clone().into())
            .await?;
    Ok(Running {
        daemon: Some(daemon),
        shutdown,
        store,
        config,
        clock,
    })
}

/// An SDK client on the emulator as an interactive user (to make edits).
pub fn client(emu: &Emulator) -> superoffice::Client {
    superoffice::Client::builder()
        .environment(emu.base_url().parse().unwrap())
        .customer_id(emu.context_identifier())
        .auth(StaticAuth::bearer(emu.issue_access_token()))
        .build()
        .unwrap()
}

/// Polls `check` until it returns `Ok`, or fails with its last message after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let outcome = check().await;
        match outcome {
            Ok(()) => return,
            Err(message) if started.elapsed() > timeout => {
                panic!("{what}: not reached within {timeout:?}: {message}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub json: String,
    pub hash: String,
    pub modified: Option<String>,
    pub deleted: bool,
    pub parent: Option<i64>,
}

/// A change of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub id: i64,
    pub op: String,
    pub hash: Option<String>,
}

/// The daemon's database, opened read-only through the store (the functions the daemon uses;
/// no hand-written SQL). Panics when it is not there.
pub fn store(db: &Path) -> syncd::Store {
    syncd::store::open_read_only(db).expect("open the database read-only")
}

/// [`store`] that answers `None` while the database is not there or not migrated yet.
pub fn try_store(db: &Path) -> Option<syncd::Store> {
    syncd::store::open_read_only(db).ok()
}

/// The records of a subscription.
pub fn records(db: &Path, subscription: &str) -> BTreeMap<i64, Record> {
    let subscription = subscription.to_string();
    store(db)
        .read_blocking(|c| syncd::store::records::all(c, &subscription))
        .expect("read records")
        .into_iter()
        .map(|r| {
            (
                r.id.get(),
                Record {
                    json: r.json,
                    hash: r.hash,
                    modified: r.modified,
                    deleted: r.deleted,
                    parent: r.parent,
                },
            )
        })
        .collect()
}

/// The change rows of one subscription or all, in order.
pub fn all_changes(db: &Path, subscription: Option<&str>) -> Vec<syncd::store::records::Change> {
    store(db)
        .read_blocking(|c| syncd::store::records::changes(c, subscription))
        .expect("read changes")
}

/// The change feed of a subscription, in order.
pub fn changes(db: &Path, subscription: &str) -> Vec<Change> {
    all_changes(db, Some(subscription))
        .into_iter()
        .map(|c| Change {
            seq: c.seq.get(),
            id: c.id.get(),
            op: c.op.as_str().to_string(),
            hash: c.hash,
        })
        .collect()
}

/// How many change rows (of every subscription) have `op` (`None`: any).
pub fn count_changes(db: &Path, op: Option<Op>) -> i64 {
    all_changes(db, None)
        .iter()
        .filter(|c| op.is_none_or(|op| c.op == op))
        .count() as i64
}

/// Every `runs` row, in order.
pub fn runs(db: &Path) -> Vec<Run> {
    store(db)
        .read_blocking(syncd::store::runs::all_runs)
        .expect("read runs")
}

/// The `runs` rows with `id > after`; `None` while the database is not there or not migrated
/// yet (a process being started).
pub fn try_runs_after(db: &Path, after: i64) -> Option<Vec<Run>> {
    try_store(db)?
        .read_blocking(|c| syncd::store::runs::runs_after(c, None, after))
        .ok()
}

/// How many runs (of every subscription) are of `kind` and ended with `status` (`None`: any).
pub fn count_runs(db: &Path, kind: Option<PassKind>, status: Option<RunStatus>) -> i64 {
    runs(db)
        .iter()
        .filter(|r| kind.is_none_or(|k| r.kind == k) && status.is_none_or(|s| r.status == s))
        .count() as i64
}

/// A subscription's cursor and breaker state.
pub fn state(db: &Path, subscription: &str) -> SubState {
    let subscription = subscription.to_string();
    store(db)
        .read_blocking(|c| syncd::store::runs::state(c, &subscription))
        .expect("read the subscription state")
}

/// Sets a request flag on a subscription (what `syncd resync`/`reconcile` do).
pub fn request(db: &Path, subscription: &str, request: Request) {
    let subscription = subscription.to_string();
    let found = syncd::store::open_existing(db)
        .expect("open the database")
        .write_blocking(|tx| syncd::store::status::request(tx, &subscription, request))
        .expect("set the request flag");
    assert!(found, "subscription {subscription} has no cursor yet");
}

/// The stored webhook events, oldest first.
pub fn webhook_events(db: &Path) -> Vec<syncd::store::webhooks::Event> {
    store(db)
        .read_blocking(syncd::store::webhooks::events)
        .expect("read webhook events")
}

/// How many targeted refetches are queued (every subscription).
pub fn queued_refetches(db: &Path) -> i64 {
    store(db)
        .read_blocking(syncd::store::webhooks::queue)
        .expect("read the refetch queue")
        .len() as i64
}

/// The highest seq in the change feed (0 while it is empty).
pub fn last_seq(db: &Path) -> i64 {
    store(db)
        .read_blocking(syncd::store::feed::last_seq)
        .expect("read the last seq")
}

/// The daemon's database as a test that polls it every few milliseconds watches it: opened
/// once, when it is there and migrated, and read through the store's functions from then on
/// (a poll costs a query, not a connection).
#[derive(Debug)]
pub struct Watch {
    db: PathBuf,
    store: Option<syncd::Store>,
}

impl Watch {
    /// Watches the database at `db` (which need not exist yet).
    pub fn new(db: &Path) -> Watch {
        Watch {
            db: db.to_path_buf(),
            store: None,
        }
    }

    /// Runs `read` on the database; `None` while it is not there or not migrated yet, or when
    /// the read fails.
    pub fn read<T>(
        &mut self,
        read: impl FnOnce(&rusqlite::Connection) -> syncd::Result<T>,
    ) -> Option<T> {
        if self.store.is_none() {
            self.store = try_store(&self.db);
        }
        self.store.as_ref()?.read_blocking(read).ok()
    }

    /// The `runs` rows with `id > after` (none while the database is not there yet).
    pub fn runs_after(&mut self, after: i64) -> Vec<Run> {
        self.read(|c| syncd::store::runs::runs_after(c, None, after))
            .unwrap_or_default()
    }

    /// The id of the newest run (0: none yet).
    pub fn last_run(&mut self) -> i64 {
        self.runs_after(0).last().map_or(0, |r| r.id)
    }

    /// Whether a run newer than `after` is open.
    pub fn running_after(&mut self, after: i64) -> bool {
        self.runs_after(after)
            .iter()
            .any(|r| r.status == RunStatus::Running)
    }

    /// How many changes `sink` has not acknowledged yet (the feed's last seq minus the sink's
    /// acknowledged one); `None` while the database is not there yet.
    pub fn sink_behind(&mut self, sink: &str) -> Option<i64> {
        self.read(|c| {
            Ok(syncd::store::feed::last_seq(c)? - syncd::store::sinks::acked_seq(c, sink)?)
        })
    }

    /// The seq `sink` acknowledged last (0: nothing yet, or no database yet).
    pub fn acked_seq(&mut self, sink: &str) -> i64 {
        self.read(|c| syncd::store::sinks::acked_seq(c, sink))
            .unwrap_or(0)
    }
}

/// Fault injection: runs a hand-written SQL statement against the daemon's database (renaming
/// a table away under a running daemon, and the like). Every hand-written statement in the
/// sync tests goes through here; reads and ordinary writes use the store's functions.
pub fn sabotage(db: &Path, sql: &str) {
    open(db).execute(sql, []).unwrap();
}

fn open(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// The live rows of the truth: id → updated.
pub fn truth_live(emu: &Emulator, entity: EntityType) -> BTreeMap<i64, String> {
    emu.truth(entity)
        .into_iter()
        .filter(|t| !t.deleted)
        .map(|t| (i64::from(t.id), t.updated))
        .collect()
}

/// Whether the subscription's live records equal `expected` (id → source timestamp) and
/// every other stored record is tombstoned.
pub fn matches(
    db: &Path,
    subscription: &str,
    expected: &BTreeMap<i64, String>,
) -> Result<(), String> {
    records_match(&records(db, subscription), subscription, expected)
}

/// [`matches`] on records already read (with [`records`]).
pub fn records_match(
    records: &BTreeMap<i64, Record>,
    subscription: &str,
    expected: &BTreeMap<i64, String>,
) -> Result<(), String> {
    let live: BTreeMap<i64, Option<String>> = records
        .iter()
        .filter(|(_, r)| !r.deleted)
        .map(|(id, r)| (*id, r.modified.clone()))
        .collect();
    let missing: Vec<i64> = expected
        .keys()
        .filter(|id| !live.contains_key(id))
        .copied()
        .collect();
    let extra: Vec<i64> = live
        .keys()
        .filter(|id| !expected.contains_key(id))
        .copied()
        .collect();
    let stale: Vec<(i64, Option<String>, String)> = expected
        .iter()
        .filter_map(|(id, updated)| {
            live.get(id)
                .filter(|m| m.as_deref() != Some(updated.as_str()))
                .map(|m| (*id, m.clone(), updated.clone()))
        })
        .take(5)
        .collect();
    if missing.is_empty() && extra.is_empty() && stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{subscription}: {} live locally, {} expected; missing {:?}, extra {:?}, stale (id, local, truth) {:?}",
            live.len(),
            expected.len(),
            &missing[..missing.len().min(10)],
            &extra[..extra.len().min(10)],
            stale
        ))
    }
}

/// Checks the change feed against the records: per record the ops alternate sensibly
/// (first an insert, a delete only of a live record, an insert only after a delete), no change
/// repeats the previous hash (a duplicate), and the last change describes the stored record.
pub fn feed_is_consistent(db: &Path, subscription: &str) -> Result<(), String> {
    feed_consistent_with(
        &records(db, subscription),
        changes(db, subscription),
        subscription,
    )
}

/// [`feed_is_consistent`] on a subscription's records and change feed already read (with
/// [`records`] and [`changes`]).
pub fn feed_consistent_with(
    records: &BTreeMap<i64, Record>,
    changes: Vec<Change>,
    subscription: &str,
) -> Result<(), String> {
    let mut by_id: BTreeMap<i64, Vec<Change>> = BTreeMap::new();
    for change in changes {
        by_id.entry(change.id).or_default().push(change);
    }
    for (id, list) in &by_id {
        let mut live = false;
        let mut last_hash: Option<&String> = None;
        for change in list {
            match change.op.as_str() {
                "insert" if !live => live = true,
                "update" if live => {
                    if change.hash.as_ref() == last_hash {
                        return Err(format!("{subscription} {id}: duplicate update {change:?}"));
                    }
                }
                "delete" if live => live = false,
                _ => {
                    return Err(format!(
                        "{subscription} {id}: {} while {} ({list:?})",
                        change.op,
                        if live { "live" } else { "absent" }
                    ));
                }
            }
            last_hash = change.hash.as_ref();
        }
        let record = records
            .get(id)
            .ok_or_else(|| format!("{subscription} {id}: changes but no record"))?;
        if record.deleted == live {
            return Err(format!(
                "{subscription} {id}: feed says live={live}, record deleted={}",
                record.deleted
            ));
        }
        if live && last_hash != Some(&record.hash) {
            return Err(format!(
                "{subscription} {id}: last change hash {last_hash:?} != stored {}",
                record.hash
            ));
        }
    }
    for (id, record) in records {
        if !by_id.contains_key(id) {
            return Err(format!(
                "{subscription} {id}: stored ({record:?}) without a change"
            ));
        }
    }
    Ok(())
}

/// Ids set difference helper.
pub fn ids(map: &BTreeMap<i64, String>) -> BTreeSet<i64> {
    map.keys().copied().collect()
}

/// Seed counts with only some entities.
pub fn counts(contacts: u32, persons: u32, tickets: u32) -> SeedCounts {
    SeedCounts {
        contacts,
        persons,
        tickets,
        ..SeedCounts::NONE
    }
}

/// The database path of a config written by [`base_config`].
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("syncd.db")
}

pub mod kill;
pub use crate::process;
