//! The outbox drain benchmark's core (`cargo bench -p syncd --bench outbox_drain`, and the
//! one-run summary of `syncd/benches/sync.rs`): [`measure`] runs three phases, each on a fresh
//! emulator in this process with at most [`CONCURRENCY`] HTTP requests in flight, and returns
//! an [`OutboxReport`].
//!
//! - **reference** ("the emulator's maximum create rate"): COUNT plain `POST /api/v1/Contact`
//!   through the SDK's entity API (the HTTP stack, auth and runtime syncd uses). Context only.
//! - **protocol**: the requests an exactly-once create needs and nothing else (no ledger): one
//!   `ForeignKeys` archive lookup per [`LOOKUP_BATCH`] keys, then per create `POST` +
//!   `POST …/Key`. The ceiling for any ForeignApp-keyed scheme at this concurrency.
//! - **outbox**: the daemon in-process with `outbox.concurrency = 8`; COUNT create tasks are
//!   inserted into the ledger in one transaction, the clock runs until every task is `done`.
//!
//! The figure of merit is outbox ÷ protocol (goal ≥ [`GOAL`]): what the ledger (claims,
//! durable state changes, the worker's bookkeeping) costs on top of the two calls an
//! exactly-once create cannot avoid. Each phase checks the truth: COUNT new records, and
//! exactly one per outbox task. With `latency_ms > 0` every data call waits that long at the
//! server: against a real tenant the slots, not the CPU, decide. CPU per create is this
//! process's user + system time (client and emulator together).
//!
//! What is known (release build, 10 000 creates, a busy 2-core machine): the drain is not CPU-
//! or fsync-bound (the process uses under one core; an fsync of the WAL takes about 0.12 ms,
//! 0.18 s in all for 3 000 creates). Timing each step showed a create's POST taking about
//! 2 ms while the commit of its id and the commit of its outcome each waited about 9 ms in
//! the ledger's group commit, so a slot held across the id commit spent most of its time
//! waiting: the worker gives the slot back when the POST answers. With 30 ms of server
//! latency the outbox keeps up with the protocol (about 1.0–1.08).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use emulator::{Emulator, EntityType, FaultRule, RouteClass, SeedCounts};
use futures::StreamExt;
use serde_json::json;
use superoffice::auth::StaticAuth;
use superoffice::entity::EntityKind;
use syncd::outbox::foreign::ForeignKeys;
use syncd::outbox::{PublishRequest, TaskState, task};
use syncd::store::tasks as ledger;
use syncd::{Config, Daemon};
use tokio_util::sync::CancellationToken;

/// Goal for outbox ÷ protocol.
pub const GOAL: f64 = 0.8;

/// HTTP requests in flight in every phase (the SDK's per-tenant limit, `max_concurrency = 8`).
pub const CONCURRENCY: usize = 8;
/// Keys per archive lookup in the protocol phase (what the outbox's claims average).
pub const LOOKUP_BATCH: usize = 24;

/// CPU time this process used so far (user + system), from `/proc/self/stat`; `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// One phase's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Creates per second (wall clock).
    pub rate: f64,
    /// Wall-clock seconds the phase took.
    pub seconds: f64,
    /// HTTP requests the emulator saw per create.
    pub requests_per_create: f64,
    /// This process's CPU seconds (user + system, client and emulator together) per create;
    /// `None` where `/proc/self/stat` is missing.
    pub cpu_per_create: Option<f64>,
}

/// Times `work`, which creates `count` contacts on `emu`.
async fn timed<F: Future<Output = ()>>(emu: &Emulator, count: usize, work: F) -> Phase {
    let requests = emu.stats().requests;
    let cpu = cpu_seconds();
    let start = Instant::now();
    work.await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu).map(|(b, a)| b - a);
    Phase {
        rate: count as f64 / seconds,
        seconds,
        requests_per_create: (emu.stats().requests - requests) as f64 / count as f64,
        cpu_per_create: cpu.map(|c| c / count as f64),
    }
}

/// A new empty emulator; `latency_ms > 0` delays every data call by that much (a server that
/// takes time to answer, like a real tenant).
pub async fn fresh_emulator(latency_ms: u64) -> Emulator {
    let emu = Emulator::start(emulator::Config {
        counts: SeedCounts::NONE,
        ..emulator::Config::default()
    })
    .await
    .expect("emulator starts");
    if latency_ms > 0 {
        emu.add_fault(FaultRule::latency(RouteClass::Data, latency_ms))
            .expect("latency rule");
    }
    emu
}

/// The daemon's config against `emu`, storing in `dir`.
fn config(emu: &Emulator, dir: &std::path::Path) -> Config {
    Config::parse(&config_text(emu, dir), "bench.toml", &BTreeMap::new()).expect("config")
}

fn config_text(emu: &Emulator, dir: &std::path::Path) -> String {
    format!(
        r#"store = {store:?}
[control]
listen = "127.0.0.1:0"
[[tenant]]
name = "main"
environment = {env:?}
customer_id = {ctx:?}
auth = "static"
token = {{ value = {token:?} }}
max_concurrency = {CONCURRENCY}
[outbox]
concurrency = {CONCURRENCY}
"#,
        store = dir.join("syncd.db").display().to_string(),
        env = emu.base_url(),
        ctx = emu.context_identifier(),
        token = emu.issue_access_token(),
    )
}

fn client(emu: &Emulator) -> superoffice::Client {
    superoffice::Client::builder()
        .base_url(emu.tenant_url())
        .auth(StaticAuth::bearer(emu.issue_access_token()))
        .max_concurrency(CONCURRENCY)
        .build()
        .expect("client")
}

async fn warm_up(client: &superoffice::Client) {
    for i in 0..CONCURRENCY {
        client
            .entities(EntityKind::Contact)
            .create(&json!({ "Name": format!("Warm {i}") }))
            .await
            .expect("create");
    }
}

/// Plain POSTs through the SDK, [`CONCURRENCY`] in flight (the reference: the emulator's
/// maximum create rate over HTTP).
pub async fn reference(count: usize, latency_ms: u64) -> Phase {
    let emu = fresh_emulator(latency_ms).await;
    let client = client(&emu);
    warm_up(&client).await;
    let measured = timed(&emu, count, async {
        let results: Vec<_> = futures::stream::iter(0..count)
            .map(|i| {
                let client = client.clone();
                async move {
                    client
                        .entities(EntityKind::Contact)
                        .create(&json!({ "Name": format!("Reference {i}") }))
                        .await
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        assert!(results.iter().all(Result::is_ok), "every POST succeeded");
    })
    .await;
    assert_eq!(emu.truth(EntityType::Contact).len(), count + CONCURRENCY);
    measured
}

/// The exactly-once request pattern without a ledger: one batched key lookup per
/// [`LOOKUP_BATCH`] keys, then per create `POST` + `POST …/Key`, [`CONCURRENCY`] creates in flight.
pub async fn protocol(count: usize, latency_ms: u64) -> Phase {
    let emu = fresh_emulator(latency_ms).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&emu, dir.path());
    let keys = ForeignKeys::new(&config.outbox);
    let client = client(&emu);
    warm_up(&client).await;
    keys.ensure(&client).await.expect("foreign app");
    let measured = timed(&emu, count, async {
        let batches: Vec<Vec<usize>> = (0..count)
            .collect::<Vec<_>>()
            .chunks(LOOKUP_BATCH)
            .map(<[usize]>::to_vec)
            .collect();
        futures::stream::iter(batches)
            .map(|batch| {
                let (client, keys) = (client.clone(), keys.clone());
                async move {
                    let values: Vec<String> =
                        batch.iter().map(|i| format!("protocol-{i}")).collect();
                    let found = keys
                        .lookup_many(&client, EntityKind::Contact, &values)
                        .await
                        .expect("lookup");
                    assert!(found.is_empty());
                    futures::stream::iter(batch)
                        .map(|i| {
                            let (client, keys) = (client.clone(), keys.clone());
                            async move {
                                let answer = client
                                    .entities(EntityKind::Contact)
                                    .create(&json!({ "Name": format!("Protocol {i}") }))
                                    .await
                                    .expect("create");
                                let id = answer["ContactId"].as_i64().expect("id");
                                keys.store(
                                    &client,
                                    EntityKind::Contact,
                                    &format!("protocol-{i}"),
                                    id,
                                )
                                .await
                                .expect("key");
                            }
                        })
                        .buffer_unordered(CONCURRENCY)
                        .collect::<Vec<()>>()
                        .await;
                }
            })
            .buffered(2)
            .collect::<Vec<()>>()
            .await;
    })
    .await;
    assert_eq!(emu.truth(EntityType::Contact).len(), count + CONCURRENCY);
    measured
}

/// The daemon in-process with `outbox.concurrency = CONCURRENCY`: `count` create tasks queued
/// in one transaction, timed until every task is `done`; checks one record per task.
pub async fn outbox(count: usize, latency_ms: u64) -> Phase {
    let emu = fresh_emulator(latency_ms).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&emu, dir.path());
    let shutdown = CancellationToken::new();
    let (daemon, store) = Daemon::start_embedded(config.clone(), shutdown.clone())
        .await
        .expect("daemon starts");
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let request = PublishRequest {
            action: "create".into(),
            entity: "contact".into(),
            payload: Some(json!({ "Name": format!("Outbox {i}") }).to_string()),
            key: Some(format!("bench-{i}")),
            ..PublishRequest::default()
        };
        tasks.push(task::validate(&config, &request).expect("valid"));
    }
    // Queue everything in one transaction (intake is not part of the drain), then time until
    // every task is done.
    let synced: Vec<bool> = tasks.iter().map(|t| t.uses_synced_ius(&config)).collect();
    store
        .write(move |tx| {
            for (new, synced) in tasks.iter().zip(synced) {
                ledger::insert(tx, new, "api", synced, chrono::Utc::now())?;
            }
            Ok(())
        })
        .await
        .expect("queued");
    let measured = timed(&emu, count, async {
        daemon.services().outbox.wake();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let open: i64 = store
                .read(|conn| ledger::count_in(conn, &[TaskState::Pending, TaskState::InFlight]))
                .await
                .expect("count");
            if open == 0 {
                break;
            }
        }
    })
    .await;
    let counts = store.read(ledger::counts).await.expect("counts");
    assert_eq!(
        counts[&TaskState::Done] as usize,
        count,
        "all done: {counts:?}"
    );
    shutdown.cancel();
    daemon.wait().await.expect("stops");
    assert_eq!(
        emu.truth(EntityType::Contact).len(),
        count,
        "exactly one record per task"
    );
    measured
}

/// The three phases of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxReport {
    /// Creates per phase.
    pub count: usize,
    /// Server time per data call, in milliseconds (0: none).
    pub latency_ms: u64,
    /// Plain POSTs (context).
    pub reference: Phase,
    /// The exactly-once request pattern without a ledger.
    pub protocol: Phase,
    /// The daemon's outbox.
    pub outbox: Phase,
}

impl OutboxReport {
    /// Outbox rate ÷ protocol rate (goal ≥ [`GOAL`]).
    pub fn ratio(&self) -> f64 {
        self.outbox.rate / self.protocol.rate
    }

    /// Whether [`OutboxReport::ratio`] reaches [`GOAL`].
    pub fn met(&self) -> bool {
        self.ratio() >= GOAL
    }

    /// `met` or `missed`.
    pub fn verdict(&self) -> &'static str {
        if self.met() { "met" } else { "missed" }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.0} creates/s  ({:>5.2} s, {:.2} HTTP requests/create, {} CPU/create)",
            self.rate,
            self.seconds,
            self.requests_per_create,
            self.cpu_per_create
                .map(|c| format!("{:.0} µs", c * 1e6))
                .unwrap_or_else(|| "n/a".into())
        )
    }
}

/// One line per phase, then the ratio to the protocol with its goal, the reference as context.
impl fmt::Display for OutboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  {:<10} {}", "reference", self.reference)?;
        writeln!(f, "  {:<10} {}", "protocol", self.protocol)?;
        writeln!(f, "  {:<10} {}", "outbox", self.outbox)?;
        write!(
            f,
            "  ratio outbox / protocol = {:.2} (goal >= {GOAL:.2}: {}); context: outbox / reference = {:.2}, protocol / reference = {:.2}",
            self.ratio(),
            self.verdict(),
            self.outbox.rate / self.reference.rate,
            self.protocol.rate / self.reference.rate,
        )
    }
}

/// Runs the three phases in order, each on a fresh emulator, `count` creates each, with
/// `latency_ms` of server time per data call. Needs a multi-threaded tokio runtime (the
/// store runs on the blocking pool).
pub async fn measure(count: usize, latency_ms: u64) -> OutboxReport {
    let reference = reference(count, latency_ms).await;
    let protocol = protocol(count, latency_ms).await;
    let outbox = outbox(count, latency_ms).await;
    OutboxReport {
        count,
        latency_ms,
        reference,
        protocol,
        outbox,
    }
}
