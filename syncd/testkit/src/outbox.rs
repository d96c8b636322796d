//! Helpers shared by the outbox and publish tests: an emulator, a daemon configured against it
//! (in-process or as the `syncd` binary), the ledger as the tests see it, and the emulator's
//! ground truth (records ever created, ForeignApp keys).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::{Emulator, EntityType, SeedCounts};
use serde_json::Value;
use superoffice::entity::EntityKind;
use syncd::clock::ManualClock;
use syncd::outbox::{Intake, PublishRequest, Task, TaskId, TaskState};
use syncd::store::tasks as ledger;
use syncd::{Config, Daemon, Store};
use tokio_util::sync::CancellationToken;

/// Contacts the emulator starts with.
pub const SEEDED: usize = 5;

/// An emulator with a few contacts and nothing else.
pub async fn emulator() -> Emulator {
    Emulator::start(emulator::Config {
        counts: SeedCounts::contacts_only(SEEDED as u32),
        seed: 11,
        ..emulator::Config::default()
    })
    .await
    .expect("emulator starts")
}

/// The control token [`Setup::with_token`] configures (`Authorization: Bearer …` on
/// `/publish`).
pub const CONTROL_TOKEN: &str = "test-control-token-0123456789";

/// A test directory plus the config text against an emulator.
#[derive(Debug)]
pub struct Setup {
    /// The directory of the database and the token file; every [`Running`] started from this
    /// setup keeps it too, so it outlives the daemon even when the setup is a temporary.
    pub dir: Arc<tempfile::TempDir>,
    pub text: String,
}

impl Setup {
    /// `outbox` lines go under `[outbox]`; `tables` after it (e.g. `[[route]]`).
    pub fn new(emu: &Emulator, outbox: &str, tables: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            r#"store = {store:?}

[control]
listen = "127.0.0.1:0"

[[tenant]]
name = "main"
environment = {env:?}
customer_id = {ctx:?}
auth = "static"
token = {{ value = {token:?} }}

[outbox]
backoff = "20ms"
max_backoff = "200ms"
{outbox}

{tables}
"#,
            store = dir.path().join("syncd.db").display().to_string(),
            env = emu.base_url(),
            ctx = emu.context_identifier(),
            token = emu.issue_access_token(),
        );
        Setup {
            dir: Arc::new(dir),
            text,
        }
    }

    /// Adds `lines` to `[control]`.
    pub fn control(mut self, lines: &str) -> Setup {
        self.text = self.text.replacen(
            "listen = \"127.0.0.1:0\"\n",
            &format!("listen = \"127.0.0.1:0\"\n{lines}\n"),
            1,
        );
        self
    }

    /// Configures [`CONTROL_TOKEN`] as the control token (turns `POST /publish` on).
    pub fn with_token(self) -> Setup {
        self.control(&format!("token = {{ value = {CONTROL_TOKEN:?} }}"))
    }

    pub fn config(&self) -> Config {
        Config::parse(&self.text, "syncd.toml", &BTreeMap::new()).expect("valid config")
    }

    /// Writes the config file for the binary.
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("syncd.toml");
        std::fs::write(&path, &self.text).unwrap();
        path
    }

    pub fn store(&self) -> Store {
        syncd::store::open(&self.dir.path().join("syncd.db")).expect("store opens")
    }

    /// The database as another local program opens it to write the `outbox` table in SQL (the
    /// outbox's interface to other programs; see `syncd/README.md`): the only hand-written SQL
    /// of the outbox tests, playing that program.
    pub fn foreign_writer(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.dir.path().join("syncd.db"))
            .expect("open the database");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    /// Starts the daemon in-process.
    pub async fn daemon(&self) -> Running {
        let config = self.config();
        let shutdown = CancellationToken::new();
        let clock = ManualClock::new();
        let (daemon, store) = Daemon::start_embedded_with_clock(
            config.clone(),
            shutdown.clone(),
            clock.clone().into(),
        )
        .await
        .expect("daemon starts");
        Running {
            daemon: Some(daemon),
            shutdown,
            store,
            config,
            clock,
            _dir: Arc::clone(&self.dir),
        }
    }
}

/// A running in-process daemon.
#[derive(Debug)]
pub struct Running {
    pub daemon: Option<Daemon>,
    pub shutdown: CancellationToken,
    pub store: Store,
    pub config: Config,
    /// The clock the daemon's loops wait on: real time unless the test advances it.
    pub clock: ManualClock,
    /// The setup's directory: a daemon whose database directory was deleted under it (a
    /// `Setup` dropped at the end of the statement that started it) fails to open new
    /// connections, "unable to open database file".
    _dir: Arc<tempfile::TempDir>,
}

impl Running {
    pub fn control_url(&self) -> String {
        format!(
            "http://{}",
            self.daemon.as_ref().expect("running").control_addr()
        )
    }

    pub async fn publish(&self, request: &PublishRequest) -> syncd::Result<Intake> {
        let intake = syncd::outbox::publish(&self.store, &self.config, request, "api").await;
        if let Some(daemon) = &self.daemon {
            daemon.services().outbox.wake();
        }
        intake
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(daemon) = self.daemon.take() {
            daemon.wait().await.expect("clean shutdown");
        }
    }
}

/// A request with the usual fields.
pub fn request(action: &str, entity: &str, payload: Option<Value>) -> PublishRequest {
    PublishRequest {
        action: action.into(),
        entity: entity.into(),
        payload: payload.map(|p| p.to_string()),
        ..PublishRequest::default()
    }
}

/// Every task, in id order.
pub fn tasks(store: &Store) -> Vec<Task> {
    let mut tasks = store
        .read_blocking(|conn| ledger::list(conn, None, 1_000_000))
        .expect("tasks");
    tasks.reverse();
    tasks
}

pub fn task(store: &Store, id: TaskId) -> Task {
    store
        .read_blocking(|conn| ledger::get(conn, id))
        .expect("read")
        .expect("task exists")
}

/// Waits until `done` holds (checked every 20 ms) or panics after `timeout` with `what`.
pub async fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no task is pending or in flight.
pub async fn settle(store: &Store, timeout: Duration) -> Vec<Task> {
    wait_for(timeout, "the ledger to settle", || {
        tasks(store)
            .iter()
            .all(|t| !matches!(t.state, TaskState::Pending | TaskState::InFlight))
    })
    .await;
    tasks(store)
}

/// Waits until task `id` reaches `state`.
pub async fn wait_state(store: &Store, id: TaskId, state: TaskState, timeout: Duration) -> Task {
    let mut last = None;
    let start = Instant::now();
    loop {
        let t = task(store, id);
        if t.state == state {
            return t;
        }
        if start.elapsed() > timeout {
            panic!(
                "task {id} did not reach {state} within {timeout:?}; it is {t:#?} (was {last:?})"
            );
        }
        last = Some(t.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records of an entity created after the seed (ids beyond the seeded ones), from the truth.
pub fn created(emu: &Emulator, entity: EntityType, seeded: usize) -> Vec<emulator::TruthRow> {
    let mut rows = emu.truth(entity);
    rows.sort_by_key(|r| r.id);
    rows.into_iter().skip(seeded).collect()
}

/// The ForeignApp keys of the default app/device/key name: value → record ids (ForeignKeys
/// archive, every row).
pub async fn foreign_keys(emu: &Emulator, table: &str) -> BTreeMap<String, Vec<i64>> {
    let url = format!(
        "{}/api/v1/ForeignApp?$select=keyValue,recordId,tableName,appName,deviceName,keyName&$top=1000",
        emu.tenant_url()
    );
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut after = 0i64;
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{url}&$filter=foreignkeyId gt {after}&$orderBy=foreignkeyId"
            ))
            .bearer_auth(emu.issue_access_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = page["value"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            if row["tableName"] == table
                && row["appName"] == "syncd"
                && row["deviceName"] == "syncd"
                && row["keyName"] == "idempotency_key"
            {
                out.entry(row["keyValue"].as_str().unwrap().to_string())
                    .or_default()
                    .push(row["recordId"].as_i64().unwrap());
            }
            after = after.max(
                row["foreignkeyId"]
                    .as_i64()
                    .or_else(|| row["PrimaryKey"].as_i64())
                    .unwrap_or(after),
            );
        }
        if rows.len() < 1000 {
            break;
        }
    }
    out
}

/// GET an entity straight from the emulator.
pub async fn get_entity(emu: &Emulator, entity: &str, id: i64) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/v1/{entity}/{id}", emu.tenant_url()))
        .bearer_auth(emu.issue_access_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// PATCH (merge) an entity straight on the emulator, as another user would.
pub async fn merge_patch(emu: &Emulator, entity: &str, id: i64, patch: Value) -> Value {
    reqwest::Client::new()
        .patch(format!("{}/api/v1/{entity}/{id}", emu.tenant_url()))
        .bearer_auth(emu.issue_access_token())
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `echoes` row of a record: (entity_hash, task_id).
pub fn echo(
    store: &Store,
    entity: EntityKind,
    id: i64,
) -> Option<(Option<String>, Option<TaskId>)> {
    store
        .read_blocking(|conn| ledger::echo(conn, entity, id))
        .unwrap()
        .map(|row| (row.hash, row.task_id))
}

/// The path of the `syncd` binary: the one cargo built beside the running test or bench
/// (tests and benches run from `target/<profile>/deps/`, the binary is `target/<profile>/syncd`;
/// `CARGO_BIN_EXE_syncd` is only known when compiling syncd's own tests, not this crate).
pub fn binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the path of the running test");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let binary = profile.join("syncd");
        assert!(
            binary.is_file(),
            "{} does not exist: the syncd binary is built for syncd's own tests and benches",
            binary.display()
        );
        binary
    })
}
