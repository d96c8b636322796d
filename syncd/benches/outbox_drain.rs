//! Outbox drain rate against the emulator's maximum create rate.
//!
//! `cargo bench -p syncd --bench outbox_drain [-- COUNT]` (default 10 000). Each phase runs on
//! a fresh emulator in this process, with at most 8 HTTP requests in flight (the SDK's
//! per-tenant limit, `max_concurrency = 8`):
//!
//! - **reference** ("the emulator's maximum create rate"): what a client achieves against
//!   the emulator over HTTP on the same machine: COUNT plain `POST /api/v1/Contact` through
//!   the SDK's entity API (the HTTP stack, auth and runtime syncd uses), 8 in flight.
//! - **protocol**: the requests an exactly-once create needs and nothing else (no ledger):
//!   one `ForeignKeys` archive lookup per 24 keys, then per create `POST` + `POST …/Key`,
//!   8 creates in flight. The ceiling for any ForeignApp-keyed scheme at this concurrency.
//! - **outbox**: the daemon in-process with `outbox.concurrency = 8`; COUNT create tasks are
//!   inserted into the ledger in one transaction, the clock runs until every task is `done`.
//!
//! Ratio = outbox / reference (goal ≥ 0.8). Each phase checks the truth: COUNT new records.
//! Then the three phases again with `OUTBOX_BENCH_LATENCY_MS` (default 30; 0 skips) of server
//! time per data call and COUNT / 5 creates: against a real tenant the 8 slots, not the CPU,
//! decide, and an exactly-once create needs two writes (the record, then its key).
//! CPU per create is this process's user + system time (client and emulator together).

use std::collections::BTreeMap;
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

const CONCURRENCY: usize = 8;
/// Keys per archive lookup in the protocol phase (what the outbox's claims average).
const LOOKUP_BATCH: usize = 24;

/// CPU time this process used so far (user + system), from `/proc/self/stat`; `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Measured {
    rate: f64,
    seconds: f64,
    requests_per_create: f64,
    cpu_per_create: Option<f64>,
}

/// Times `work`, which creates `count` contacts on `emu`.
async fn measure<F: Future<Output = ()>>(emu: &Emulator, count: usize, work: F) -> Measured {
    let requests = emu.stats().requests;
    let cpu = cpu_seconds();
    let start = Instant::now();
    work.await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu).map(|(b, a)| b - a);
    Measured {
        rate: count as f64 / seconds,
        seconds,
        requests_per_create: (emu.stats().requests - requests) as f64 / count as f64,
        cpu_per_create: cpu.map(|c| c / count as f64),
    }
}

/// A new empty emulator; `latency_ms > 0` delays every data call by that much (a server that
/// takes time to answer, like a real tenant).
async fn fresh_emulator(latency_ms: u64) -> Emulator {
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

/// Plain POSTs through the SDK, `CONCURRENCY` in flight.
async fn reference(count: usize, latency_ms: u64) -> Measured {
    let emu = fresh_emulator(latency_ms).await;
    let client = client(&emu);
    warm_up(&client).await;
    let measured = measure(&emu, count, async {
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

/// The exactly-once request pattern without a ledger.
async fn protocol(count: usize, latency_ms: u64) -> Measured {
    let emu = fresh_emulator(latency_ms).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(
        &config_text(&emu, dir.path()),
        "bench.toml",
        &BTreeMap::new(),
    )
    .expect("config");
    let keys = ForeignKeys::new(&config.outbox);
    let client = client(&emu);
    warm_up(&client).await;
    keys.ensure(&client).await.expect("foreign app");
    let measured = measure(&emu, count, async {
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

async fn outbox(count: usize, latency_ms: u64) -> Measured {
    let emu = fresh_emulator(latency_ms).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(
        &config_text(&emu, dir.path()),
        "bench.toml",
        &BTreeMap::new(),
    )
    .expect("config");
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
    let measured = measure(&emu, count, async {
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

fn line(name: &str, m: &Measured) {
    println!(
        "  {name:<10} {:>7.0} creates/s  ({:>5.2} s, {:.2} HTTP requests/create, {} CPU/create)",
        m.rate,
        m.seconds,
        m.requests_per_create,
        m.cpu_per_create
            .map(|c| format!("{:.0} µs", c * 1e6))
            .unwrap_or_else(|| "n/a".into())
    );
}

/// The three phases in order, each on a fresh emulator.
async fn phases(count: usize, latency_ms: u64) -> (Measured, Measured, Measured) {
    let reference = reference(count, latency_ms).await;
    let protocol = protocol(count, latency_ms).await;
    let outbox = outbox(count, latency_ms).await;
    (reference, protocol, outbox)
}

/// One line per phase, then the ratios.
fn report((reference, protocol, outbox): &(Measured, Measured, Measured)) {
    line("reference", reference);
    line("protocol", protocol);
    line("outbox", outbox);
    let ratio = outbox.rate / reference.rate;
    println!(
        "  ratio outbox / reference = {ratio:.2} (goal >= 0.80: {}); protocol / reference = {:.2}, outbox / protocol = {:.2}",
        if ratio >= 0.8 { "met" } else { "missed" },
        protocol.rate / reference.rate,
        outbox.rate / protocol.rate
    );
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var("OUTBOX_DRAIN_ONLY").as_deref() == Ok("outbox") {
        // For profiling: the outbox phase alone.
        let outbox = runtime.block_on(outbox(count, 0));
        line("outbox", &outbox);
        return;
    }
    runtime.block_on(async {
        let in_process = fresh_emulator(0)
            .await
            .measure_create_rate(EntityType::Contact, count as u32);
        let measured = phases(count, 0).await;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        println!(
            "outbox drain: {count} creates of Contact, 8 in flight, emulator and client in one process ({cpus} CPUs)"
        );
        println!(
            "  emulator in-process create rate, no HTTP (context only): {:.0} creates/s",
            in_process.per_second
        );
        report(&measured);
        println!(
            "  reference = \"the emulator's maximum create rate\": plain POSTs over HTTP from a client on the same machine, 8 in flight"
        );
        println!(
            "  protocol  = the same plus what exactly-once needs (batched key lookup, key POST), no ledger"
        );

        // The same against a server that takes time to answer: here the client's 8 slots, not
        // the CPU, decide, as against a real tenant.
        let latency: u64 = std::env::var("OUTBOX_BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        if latency > 0 {
            let slow_count = (count / 5).max(CONCURRENCY * 10);
            let slow = phases(slow_count, latency).await;
            println!("with {latency} ms per data call at the server, {slow_count} creates:");
            report(&slow);
        }
    });
}
