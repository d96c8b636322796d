//! Subscription engine benchmark: `cargo bench -p syncd --bench sync`.
//!
//! The emulator runs in this process; `syncd` runs as its own process (the `syncd` binary,
//! built with the same profile), so its memory is measured alone. Prints:
//!
//! 1. **Throughput** on `SYNC_BENCH_ROWS` contacts (default 100 000), row shape, pages of 1000:
//!    the initial load's rows/s (from its `runs` row: first page requested → last page
//!    committed) divided by the rows/s of fetching the very same pages with the SDK and
//!    discarding them. Goal ≥ 0.8. Against the in-process emulator both are CPU-bound on the
//!    same cores, so the same ratio is also measured with `SYNC_BENCH_LATENCY_MS` (default 30)
//!    of server time per page, closer to a real tenant.
//! 2. **Requests for a 1 % change** (1 % of the contacts edited by other users while the
//!    daemon runs with a 1 s poll interval): the requests of the runs from the change until
//!    every changed record is in the change feed (syncd's own count, `runs.requests`; the
//!    emulator's count of data requests is printed beside it), divided by the minimum any
//!    client needs: the changed rows in pages of 1000 plus the page that shows the end
//!    (`⌊changed / 1000⌋ + 1`), plus one GET per changed record for entity shape. Goal ≤ 1.2.
//!    Row and entity shape are measured apart.
//! 3. **Peak RSS** (`VmHWM` of the syncd process) while loading `SYNC_BENCH_RSS_ROWS` contacts
//!    (default 1 000 000). Goal ≤ 100 MB.
//! 4. **SIGKILL runs**: the crash scenario of `tests/sync_kill.rs` with `SYNC_BENCH_KILLS`
//!    kills (default 100; 0 skips it).
//!
//! Set `SYNC_BENCH_SKIP` to a comma list of `throughput,changes,entity,rss,kill` to skip parts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emulator::{Emulator, RouteClass, SeedCounts};
use futures::TryStreamExt;
use superoffice::odata::Query;
use superoffice::paginate::{self, Source, Strategy};
use syncd_testkit::sync::*;

const COLUMNS: [&str; 4] = ["name", "department", "orgnr", "category"];
const PAGE: u32 = 1000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn skipped(part: &str) -> bool {
    std::env::var("SYNC_BENCH_SKIP")
        .map(|v| v.split(',').any(|p| p.trim() == part))
        .unwrap_or(false)
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_syncd"))
}

fn spawn(config: &Path, log: &Path) -> Child {
    // With SYNC_BENCH_LOG set, keep the daemon's log where it can be read afterwards.
    let log = match std::env::var_os("SYNC_BENCH_LOG") {
        Some(_) => std::env::temp_dir().join(format!(
            "sync-bench-{}",
            log.file_name().unwrap().to_string_lossy()
        )),
        None => log.to_path_buf(),
    };
    let log = std::fs::File::create(log).unwrap();
    // SYNC_BENCH_PERF=FILE profiles the daemon with `perf record` (figures then include perf).
    let mut command = match std::env::var_os("SYNC_BENCH_PERF") {
        Some(out) => {
            let mut perf = Command::new("perf");
            perf.arg("record")
                .arg("-g")
                .arg("-o")
                .arg(out)
                .arg("--")
                .arg(binary());
            perf
        }
        None => Command::new(binary()),
    };
    command
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("human")
        .arg("run")
        .env(
            "RUST_LOG",
            std::env::var("SYNC_BENCH_LOG").unwrap_or_else(|_| "warn,syncd=info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn syncd")
}

fn stop(mut child: Child) {
    // SIGTERM: a clean stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn subscription(name: &str, extra: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nentity = \"contact\"\npage_size = {PAGE}\npoll_interval = \"1s\"\nreconcile_interval = \"24h\"\nwebhooks = false\n{extra}\n"
    )
}

fn write_config(emu: &Emulator, dir: &Path, subscriptions: &str) -> PathBuf {
    let mut text = base_config(emu, dir, "");
    text.push_str(subscriptions);
    let path = dir.join("syncd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits for `count` finished runs of `kind` for `subscription`; returns the last one's
/// (seconds from start to end, rows fetched, status).
async fn wait_runs(db: &Path, subscription: &str, kind: PassKind, count: usize, child: &mut Child) {
    loop {
        let ended = try_runs_after(db, 0).map(|runs| {
            runs.iter()
                .filter(|r| r.subscription == subscription && r.kind == kind)
                .filter(|r| r.ended_at.is_some())
                .count()
        });
        if ended.is_some_and(|n| n >= count) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("syncd exited ({status}) while waiting for {kind} of {subscription}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn last_run(db: &Path, subscription: &str, kind: PassKind) -> (f64, i64, RunStatus) {
    let run = runs(db)
        .into_iter()
        .rev()
        .find(|r| r.subscription == subscription && r.kind == kind && r.ended_at.is_some())
        .expect("a finished run");
    let ended = run.ended_at.expect("ended").at();
    let seconds = (ended - run.started_at.at()).num_milliseconds() as f64 / 1000.0;
    (seconds, run.fetched, run.status)
}

fn data_requests(emu: &Emulator) -> u64 {
    emu.stats()
        .by_class
        .get(&RouteClass::Data)
        .copied()
        .unwrap_or(0)
}

async fn fetch_only(emu: &Emulator) -> (u64, Duration) {
    let client = client(emu);
    let mut select = vec!["contactId", "updatedDate", "registeredDate"];
    select.extend(COLUMNS);
    let started = Instant::now();
    let mut rows = 0u64;
    let mut pages = std::pin::pin!(paginate::pages(
        &client,
        Source::List("Contact".into()),
        Query::new().select(select),
        PAGE,
        Strategy::Keyset {
            key: "contactId".into()
        },
    ));
    while let Some(page) = pages.try_next().await.unwrap() {
        rows += page.rows.len() as u64;
        drop(page);
    }
    (rows, started.elapsed())
}

fn columns_toml() -> String {
    let quoted: Vec<String> = COLUMNS.iter().map(|c| format!("{c:?}")).collect();
    format!("columns = [{}]", quoted.join(", "))
}

/// With the daemon running (poll interval 1 s): moves the watermark to today with a few
/// edits, then edits 1 % of the contacts right after a poll ended and sums the requests of
/// the runs (`runs.requests`, counted by syncd) from then until every changed record is in
/// the change feed. The emulator's own count of data requests over the same time is printed
/// as a cross-check (it includes idle polls that overlapped).
async fn changes_part(emu: &Emulator, db: &Path, subscription: &str, rows: u64, per_get: bool) {
    let sub = subscription;
    let changes = |db: &Path| all_changes(db, Some(sub)).len() as i64;
    // A first small change moves the watermark to today, as in steady operation.
    emu.activity(0, 10, 0, Some(emulator::EntityType::Contact));
    let truth = truth_live(emu, emulator::EntityType::Contact);
    eventually(Duration::from_secs(60), "warm-up", || async {
        matches(db, sub, &truth)
    })
    .await;
    let last_ended = |db: &Path| {
        runs(db)
            .iter()
            .filter(|r| r.subscription == sub && r.ended_at.is_some())
            .map(|r| r.id)
            .max()
            .unwrap_or(0)
    };
    let mark = last_ended(db);
    eventually(Duration::from_secs(30), "a poll", || async {
        if last_ended(db) > mark {
            Ok(())
        } else {
            Err("waiting".into())
        }
    })
    .await;
    let mark = last_ended(db);
    let before_changes = changes(db);
    let before_requests = data_requests(emu);
    let edits = (rows / 100) as u32;
    let report = emu.activity(0, edits, 0, Some(emulator::EntityType::Contact));
    let changed = report
        .updated
        .iter()
        .map(|t| t.id)
        .collect::<std::collections::BTreeSet<i32>>()
        .len() as i64;
    let started = Instant::now();
    eventually(Duration::from_secs(120), "the 1 % change", || async {
        let n = changes(db) - before_changes;
        if n >= changed {
            Ok(())
        } else {
            Err(format!("{n} of {changed}"))
        }
    })
    .await;
    // The runs since the change, up to the one that completed it.
    let mut runs: Vec<(i64, i64, i64, i64)> = Vec::new();
    loop {
        let rows = store(db)
            .read_blocking(|c| syncd::store::runs::runs_after(c, Some(sub), mark))
            .unwrap();
        let mut total = 0;
        runs.clear();
        let mut complete = false;
        for run in rows {
            if run.ended_at.is_none() {
                break;
            }
            let (id, requests, fetched) = (run.id, run.requests, run.fetched);
            let n = run.inserts + run.updates + run.deletes;
            runs.push((id, requests, fetched, n));
            total += n;
            if total >= changed {
                complete = true;
                break;
            }
        }
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let emulator_requests = data_requests(emu) - before_requests;
    let requests: i64 = runs.iter().map(|r| r.1).sum();
    let fetched: i64 = runs.iter().map(|r| r.2).sum();
    let minimum = changed / i64::from(PAGE) + 1 + if per_get { changed } else { 0 };
    let reported = changes(db) - before_changes;
    println!(
        "  {sub}: {edits} edits of {changed} records → {reported} changes in {:.1} s, {} pass(es) reading {fetched} rows with {requests} requests (emulator saw {emulator_requests} data requests meanwhile); minimum {minimum} → ratio {:.3} (goal ≤ 1.2)",
        took.as_secs_f64(),
        runs.len(),
        requests as f64 / minimum as f64
    );
    assert_eq!(reported, changed, "every changed record reported once");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env_u64("SYNC_BENCH_ROWS", 100_000);
    let rss_rows = env_u64("SYNC_BENCH_RSS_ROWS", 1_000_000);
    let kills = env_u64("SYNC_BENCH_KILLS", 100) as u32;
    println!(
        "syncd subscription benchmark (release build: {})",
        !cfg!(debug_assertions)
    );

    if !(skipped("throughput") && skipped("changes") && skipped("entity")) {
        let emu = emulator(SeedCounts::contacts_only(rows as u32), |c| {
            c.never_updated_fraction = 0.02;
        })
        .await;
        let dir = workdir();
        let db = db_path(dir.path());
        let config = write_config(&emu, dir.path(), &subscription("rows", &columns_toml()));

        // 1. Throughput: fetch-only first (twice; the emulator is warmed the same way).
        let (fetched, took) = fetch_only(&emu).await;
        let (fetched2, took2) = fetch_only(&emu).await;
        let fetch_rate = (fetched + fetched2) as f64 / (took + took2).as_secs_f64();
        let mut child = spawn(&config, &dir.path().join("rows.log"));
        wait_runs(&db, "rows", PassKind::Initial, 1, &mut child).await;
        let rss = peak_rss_kib(child.id());
        let cpu = cpu_seconds(child.id()).unwrap_or(0.0);
        let (seconds, loaded, status) = last_run(&db, "rows", PassKind::Initial);
        assert_eq!(status, RunStatus::Ok);
        assert_eq!(loaded as u64, rows);
        let sync_rate = loaded as f64 / seconds;
        if !skipped("throughput") {
            println!(
                "\n1. throughput, {rows} contacts, pages of {PAGE}, row shape ({} columns):",
                COLUMNS.len() + 3
            );
            println!("  fetch only (SDK, pages discarded): {fetch_rate:>9.0} rows/s");
            println!(
                "  syncd initial load:                 {sync_rate:>9.0} rows/s ({seconds:.2} s, peak RSS {} MB)",
                rss.unwrap_or(0) / 1024
            );
            println!(
                "  ratio syncd / fetch-only: {:.3} (goal ≥ 0.8); syncd used {cpu:.2} s CPU, {:.1} µs per row",
                sync_rate / fetch_rate,
                cpu * 1e6 / loaded as f64
            );
        }

        stop(child);

        // 1b. The same with a server that takes time to answer, like a real tenant: every
        // archive page is delayed by SYNC_BENCH_LATENCY_MS (default 30) for both readers.
        let latency = env_u64("SYNC_BENCH_LATENCY_MS", 30);
        if !skipped("throughput") && latency > 0 {
            emu.add_fault(emulator::FaultRule::latency(RouteClass::Odata, latency))
                .unwrap();
            let (fetched, took) = fetch_only(&emu).await;
            let fetch_rate = fetched as f64 / took.as_secs_f64();
            let slow_dir = workdir();
            let slow_db = db_path(slow_dir.path());
            let slow_config = write_config(
                &emu,
                slow_dir.path(),
                &subscription("rows", &columns_toml()),
            );
            let mut slow = spawn(&slow_config, &slow_dir.path().join("slow.log"));
            wait_runs(&slow_db, "rows", PassKind::Initial, 1, &mut slow).await;
            stop(slow);
            let (seconds, loaded, _) = last_run(&slow_db, "rows", PassKind::Initial);
            let sync_rate = loaded as f64 / seconds;
            println!(
                "  with {latency} ms per page at the server: fetch only {fetch_rate:.0} rows/s, syncd {sync_rate:.0} rows/s, ratio {:.3}",
                sync_rate / fetch_rate
            );
            emu.clear_faults();
        }
        let child = spawn(&config, &dir.path().join("rows-again.log"));

        // 2. Requests for a 1 % change, row shape ...
        if !skipped("changes") {
            println!("\n2. requests for a 1 % change of {rows} contacts:");
            changes_part(&emu, &db, "rows", rows, false).await;
        }
        stop(child);
        // ... and entity shape (its initial load GETs every contact once).
        if !skipped("entity") {
            let config = write_config(
                &emu,
                dir.path(),
                &subscription("entities", "shape = \"entity\"\nconcurrency = 8"),
            );
            let mut child = spawn(&config, &dir.path().join("entities.log"));
            wait_runs(&db, "entities", PassKind::Initial, 1, &mut child).await;
            let (seconds, _, status) = last_run(&db, "entities", PassKind::Initial);
            assert_eq!(status, RunStatus::Ok);
            println!(
                "  (entity shape: initial load of {rows} entities in {seconds:.1} s, {:.0}/s)",
                rows as f64 / seconds
            );
            changes_part(&emu, &db, "entities", rows, true).await;
            stop(child);
        }
        emu.shutdown().await;
    }

    // 3. Peak RSS on a million rows.
    if !skipped("rss") {
        let emu = emulator(SeedCounts::contacts_only(rss_rows as u32), |_| {}).await;
        let dir = workdir();
        let db = db_path(dir.path());
        let config = write_config(&emu, dir.path(), &subscription("big", &columns_toml()));
        let mut child = spawn(&config, &dir.path().join("big.log"));
        let pid = child.id();
        let mut peak = 0;
        let sampler = async {
            loop {
                if let Some(kib) = peak_rss_kib(pid) {
                    peak = peak.max(kib);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = wait_runs(&db, "big", PassKind::Initial, 1, &mut child) => {}
            _ = sampler => {}
        }
        let hwm = peak_rss_kib(pid).unwrap_or(peak).max(peak);
        stop(child);
        let (seconds, loaded, status) = last_run(&db, "big", PassKind::Initial);
        assert_eq!(status, RunStatus::Ok);
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!(
            "\n3. memory, {loaded} contacts in {seconds:.1} s ({:.0} rows/s):",
            loaded as f64 / seconds
        );
        println!(
            "  syncd peak RSS (VmHWM): {:.1} MB (goal ≤ 100 MB); database {:.0} MB",
            hwm as f64 / 1024.0,
            size as f64 / 1_048_576.0
        );
        emu.shutdown().await;
    }

    // 4. SIGKILL runs.
    if kills > 0 && !skipped("kill") {
        let seed = env_u64("SYNCD_KILL_SEED", 7_700_001);
        let started = Instant::now();
        let report = kill::kill_scenario(&binary(), kills, seed).await;
        println!(
            "\n4. {kills} SIGKILLs at random points (seed {seed}, {:.0} s): local copy = ground truth, change feed consistent; {report:?}",
            started.elapsed().as_secs_f64()
        );
    }
}
