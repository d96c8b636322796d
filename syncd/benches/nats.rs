//! NATS JetStream sink benchmark (printed, not asserted), against a real `nats-server` on a
//! free loopback port and the in-process emulator and daemon:
//!
//! 1. **Sink throughput during an initial load** of `NATS_BENCH_ROWS` contacts (default
//!    100 000): the time until the feed holds every row (sync) and until the sink
//!    acknowledged every row; their ratio (sync time / sink time: 1.0 = the sink kept up and
//!    finished with the sync), the largest lag seen, and the sink's own rate replaying the
//!    whole feed into a second stream afterwards (the sink alone, nothing else running)
//!    divided by the sync rate.
//! 2. **End-to-end latency** of `NATS_BENCH_CHANGES` edits (default 500), one every 10 ms:
//!    emulator change → webhook → refetch → change row → JetStream message received by a
//!    subscriber; p50, p99, max. Polling is set to 1 h, so only webhooks carry the changes.
//!
//! `NATS_BENCH_BATCH` sets the sink's `batch` (default 256, as the config's default).
//!
//! `cargo bench -p syncd --bench nats` (release), or `cargo test -p syncd --bench nats` for a
//! debug build. Needs `nats-server` on the PATH.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use superoffice::entity::EntityKind;
use syncd_testkit::nats::*;
use syncd_testkit::sync::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn acked(running: &Running, sink: &str) -> i64 {
    running
        .store
        .read_blocking(|c| syncd::store::sinks::acked_seq(c, sink))
        .unwrap()
}

fn sink(name: &str, url: &str, subject: &str, stream: &str) -> String {
    format!(
        "\n[[sink]]\nname = {name:?}\nkind = \"nats\"\nurl = {url:?}\nsubject = {subject:?}\nstream = {stream:?}\nbatch = {}\n",
        env_u64("NATS_BENCH_BATCH", 256)
    )
}

async fn throughput() {
    let rows = env_u64("NATS_BENCH_ROWS", 100_000) as i64;
    let dir = workdir();
    let nats = NatsServer::start(dir.path());
    let emu = emulator(counts(rows as u32, 0, 0), |_| {}).await;
    let base = {
        let mut text = base_config(&emu, dir.path(), "");
        text.push_str(
            "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\npage_size = 1000\npoll_interval = \"1h\"\nreconcile_interval = \"365d\"\nwebhooks = false\ncolumns = [\"name\", \"department\", \"orgnr\", \"category\"]\n",
        );
        text
    };
    let text = format!(
        "{base}{}",
        sink("js", &nats.url(), "load.{tenant}.{entity}.{op}", "LOAD")
    );
    let started = Instant::now();
    let running = start(&text).await;
    let (mut synced_at, mut acked_at, mut max_lag) = (None, None, 0i64);
    while acked_at.is_none() {
        let last = running.services().feed.last();
        let acked = acked(&running, "js");
        max_lag = max_lag.max(last - acked);
        if synced_at.is_none() && last >= rows {
            synced_at = Some(started.elapsed());
        }
        if acked >= rows {
            acked_at = Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(900) {
            panic!("not done within 15 min: feed {last}, acked {acked}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (synced_at, acked_at) = (synced_at.unwrap(), acked_at.unwrap());
    running.stop().await;

    // The sink alone: the same feed into a second stream, nothing else to do.
    let text = format!(
        "{base}{}",
        sink(
            "replay",
            &nats.url(),
            "replay.{tenant}.{entity}.{op}",
            "REPLAY"
        )
    );
    let running = start(&text).await;
    let replay_started = Instant::now();
    while acked(&running, "replay") < rows {
        if replay_started.elapsed() > Duration::from_secs(900) {
            panic!("replay not done within 15 min");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replay = replay_started.elapsed();
    running.stop().await;

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("sink throughput during an initial load of {rows} contacts (pages of 1000):");
    println!(
        "  sync: all rows in the feed after {:.2?} ({:.0} rows/s, from daemon start)",
        synced_at,
        rate(synced_at)
    );
    println!(
        "  sink: all rows acknowledged after {:.2?} ({:.0} rows/s); ratio sync time / sink time = {:.3}; largest lag {max_lag} changes",
        acked_at,
        rate(acked_at),
        synced_at.as_secs_f64() / acked_at.as_secs_f64()
    );
    println!(
        "  sink alone (replaying the feed into a second stream): {:.2?} ({:.0} msgs/s) = {:.2}x the sync rate",
        replay,
        rate(replay),
        rate(replay) / rate(synced_at)
    );
}

async fn latency() {
    let changes = env_u64("NATS_BENCH_CHANGES", 500) as i64;
    let dir = workdir();
    let nats = NatsServer::start(dir.path());
    let emu = emulator(counts(changes as u32 + 10, 0, 0), |_| {}).await;
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), &webhook_control());
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\npoll_interval = \"1h\"\nreconcile_interval = \"365d\"\ncolumns = [\"name\", \"department\"]\n",
    );
    text.push_str(&sink(
        "js",
        &nats.url(),
        "superoffice.{tenant}.{entity}.{op}",
        "SUPEROFFICE",
    ));
    let running = start(&text).await;
    let truth = truth_live(&emu, emulator::EntityType::Contact);
    eventually(Duration::from_secs(120), "initial load", || async {
        matches(&db, "contacts", &truth)
    })
    .await;
    eventually(Duration::from_secs(120), "sink caught up", || async {
        let last = running.services().feed.last();
        if acked(&running, "js") == last {
            Ok(())
        } else {
            Err("behind".into())
        }
    })
    .await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client
        .subscribe("superoffice.emu.contact.update")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let received: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let receiver = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let event: syncd::feed::ChangeEvent =
                    serde_json::from_slice(&message.payload).unwrap();
                received
                    .lock()
                    .unwrap()
                    .entry(event.id)
                    .or_insert_with(Instant::now);
            }
        })
    };
    let api = client_for(&emu);
    let contacts = api.entities(EntityKind::Contact);
    let mut sent = BTreeMap::new();
    for id in 1..=changes {
        sent.insert(id, Instant::now());
        contacts
            .merge_patch(
                id as i32,
                &json!({ "Department": format!("latency {id}") }),
                None,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = Instant::now();
    while received.lock().unwrap().len() < changes as usize
        && waited.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.abort();
    let received = received.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| received.get(id).map(|r| r.duration_since(*at)))
        .collect();
    latencies.sort();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "end-to-end latency (emulator change → webhook → change row → JetStream message), {} of {changes} changes arrived:",
        latencies.len()
    );
    println!(
        "  p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        pick(0.50),
        pick(0.99),
        latencies.last().unwrap()
    );
    running.stop().await;
}

fn client_for(emu: &emulator::Emulator) -> superoffice::Client {
    client(emu)
}

fn main() {
    if !available("bench nats") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if std::env::var("NATS_BENCH_SKIP").map_or(true, |s| !s.contains("throughput")) {
            throughput().await;
        }
        if std::env::var("NATS_BENCH_SKIP").map_or(true, |s| !s.contains("latency")) {
            latency().await;
        }
    });
}
