//! Subscription engine benchmark: `cargo bench -p syncd --bench sync`.
//!
//! Measured the way users run it: the emulator is its own release-mode process (this bench
//! binary started again in emulator mode, serving on 127.0.0.1:0), `syncd` is its own process
//! (the `syncd` binary of the same build), and the Python baseline is
//! `benches/python_sync.py` under `python3` (standard library only). Each measurement runs
//! `SYNC_BENCH_ROUNDS` times (default 3), the contenders alternating within a round so drift
//! affects all of them; rates are medians with the range of the rounds beside them.
//!
//! 1. **Row shape** for each size in `SYNC_BENCH_SIZES` (default `100000,1000000` contacts,
//!    7 columns, pages of 1000), on one emulator process per size:
//!    - fetch only: the same keyset pages fetched with the SDK and dropped;
//!    - syncd's initial load (fresh database): rows ÷ the time of its `runs` row (first page
//!      requested → last page committed); its peak RSS (`VmHWM`) and CPU time;
//!    - the Python sync (fresh database): rows ÷ its own time (first request → last commit).
//!
//!    Ratios syncd ÷ Python (goal ≥ 4) and syncd ÷ fetch-only (goal ≥ 0.3); peak RSS at the
//!    largest size (goal ≤ 100 MB). After the first load at the largest size, the first poll
//!    with nothing changed: its requests ÷ the minimum for the rows it read (goal ≤ 1.2).
//! 2. **Entity shape** on `SYNC_BENCH_ENTITY_ROWS` contacts (default 20 000): syncd's initial
//!    load with `concurrency = 8` (one GET per contact) ÷ the Python sync doing the same GETs
//!    with 8 threads (goal ≥ 3).
//! 3. **Requests for a 1 % change** (in-process emulator, which counts requests): 1 % of the
//!    contacts edited while the daemon polls every second; the requests of the runs until every
//!    change is in the feed ÷ the minimum any client needs (`⌊changed / 1000⌋ + 1`, plus one
//!    GET per changed record for entity shape). Goal ≤ 1.2.
//! 4. **Late-day incremental passes**: a simulated day of `SYNC_BENCH_DAY_EDITS` edits (default
//!    20 000) with polls every 5 minutes (`syncd_testkit::lateday`): rows read ÷ rows changed,
//!    without and with webhooks (goal ≤ 10 with healthy webhooks).
//! 5. **Outbox drain** ÷ the emulator's rate for the two calls an exactly-once create needs (POST
//!    and foreign-key write) at the same concurrency (`syncd_testkit::bench::outbox`), goal ≥ 0.8:
//!    `SYNC_BENCH_OUTBOX_CREATES` creates (default 10 000), then a fifth of them with
//!    `OUTBOX_BENCH_LATENCY_MS` (default 30; 0 skips) of server time per data call.
//! 6. **SIGKILL runs**: the crash scenario of `tests/sync_kill.rs` with `SYNC_BENCH_KILLS` kills
//!    (default 100; 0 skips it).
//!
//! A summary of every ratio with its goal (met or missed) ends the output. Set
//! `SYNC_BENCH_SKIP` to a comma list of `rows,entity,changes,lateday,outbox,kill` to skip
//! parts; `SYNC_BENCH_BASELINE=PATH` adds another `syncd` binary's row-shape load to every
//! round (an A/B of a change; it must use this build's database schema);
//! `SYNC_BENCH_PERF=FILE` records the daemon with `perf record -g`; `SYNC_BENCH_LOG`
//! keeps the daemon's log (and sets its `RUST_LOG`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use emulator::{Emulator, RouteClass, SeedCounts};
use futures::TryStreamExt;
use superoffice::auth::StaticAuth;
use superoffice::odata::Query;
use superoffice::paginate::{self, Source, Strategy};
use syncd_testkit::sync::*;

const COLUMNS: [&str; 4] = ["name", "department", "orgnr", "category"];
const PAGE: u32 = 1000;
/// Set in the environment of the emulator process (its value: the contacts to seed).
const EMULATOR_MODE: &str = "SYNC_BENCH_EMULATOR_CONTACTS";

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

/// The emulator process: this binary in emulator mode, seeded with `contacts`.
struct Remote {
    child: Child,
    /// Closing it stops the emulator.
    stdin: Option<ChildStdin>,
    base_url: String,
    context: String,
    /// The tenant's REST root (`…/{host label}/{context}`, what the State API answers).
    tenant_url: String,
    token: String,
}

impl Remote {
    async fn start(contacts: u64) -> Remote {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(EMULATOR_MODE, contacts.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the emulator process");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("emulator said {line:?}: {e}"));
        let base_url = ready["base_url"].as_str().unwrap().to_string();
        let context = ready["context"].as_str().unwrap().to_string();
        let token = ready["token"].as_str().unwrap().to_string();
        let tenant_url = ready["tenant_url"].as_str().unwrap().to_string();
        println!(
            "  (emulator process {} serving {contacts} contacts at {base_url}, seeded in {:.1} s)",
            child.id(),
            started.elapsed().as_secs_f64()
        );
        Remote {
            child,
            stdin,
            base_url,
            context,
            tenant_url,
            token,
        }
    }

    fn client(&self) -> superoffice::Client {
        superoffice::Client::builder()
            .environment(self.base_url.parse().unwrap())
            .customer_id(&self.context)
            .auth(StaticAuth::bearer(self.token.clone()))
            .build()
            .unwrap()
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(self.child.id()).unwrap_or(0.0)
    }

    /// A config for syncd against this emulator (system-user auth, the emulator's defaults).
    fn config(&self, dir: &Path, subscriptions: &str) -> PathBuf {
        let defaults = emulator::Config::default();
        let mut text = tenant_config(&self.base_url, &self.context, &defaults.auth, dir, "");
        text.push_str(subscriptions);
        let path = dir.join("syncd.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Emulator mode: seed, print where it serves, serve until stdin closes.
async fn serve_emulator(contacts: u32) {
    let emu = emulator(SeedCounts::contacts_only(contacts), |c| {
        c.never_updated_fraction = 0.02;
    })
    .await;
    println!(
        "{}",
        serde_json::json!({
            "base_url": emu.base_url(),
            "context": emu.context_identifier(),
            "token": emu.issue_access_token(),
            "tenant_url": emu.tenant_url(),
        })
    );
    tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
    })
    .await
    .unwrap();
    emu.shutdown().await;
}

fn spawn(binary: &Path, config: &Path, log: &Path) -> Child {
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
            // SYNC_BENCH_PERF_CALLGRAPH=dwarf for stacks of a build without frame pointers.
            let graph = std::env::var("SYNC_BENCH_PERF_CALLGRAPH").unwrap_or_else(|_| "fp".into());
            perf.arg("record")
                .arg("--call-graph")
                .arg(graph)
                .arg("-o")
                .arg(out)
                .arg("--")
                .arg(binary);
            perf
        }
        None => Command::new(binary),
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

fn columns_toml() -> String {
    let quoted: Vec<String> = COLUMNS.iter().map(|c| format!("{c:?}")).collect();
    format!("columns = [{}]", quoted.join(", "))
}

fn write_config(emu: &Emulator, dir: &Path, subscriptions: &str) -> PathBuf {
    let mut text = base_config(emu, dir, "");
    text.push_str(subscriptions);
    let path = dir.join("syncd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits for `count` finished runs of `kind` for `subscription`.
async fn wait_runs(db: &Path, subscription: &str, kind: PassKind, count: usize, child: &mut Child) {
    let started = Instant::now();
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
        // The store refuses a database of another schema version (a SYNC_BENCH_BASELINE
        // binary must have this build's schema).
        if ended.is_none() && started.elapsed() > Duration::from_secs(60) {
            panic!(
                "{}: not readable by this build's store after 60 s",
                db.display()
            );
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("syncd exited ({status}) while waiting for {kind} of {subscription}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last finished run of `kind`: (seconds from start to end, rows fetched, requests, status).
fn last_run(db: &Path, subscription: &str, kind: PassKind) -> (f64, i64, i64, RunStatus) {
    let run = runs(db)
        .into_iter()
        .rev()
        .find(|r| r.subscription == subscription && r.kind == kind && r.ended_at.is_some())
        .expect("a finished run");
    let ended = run.ended_at.expect("ended").at();
    let seconds = (ended - run.started_at.at()).num_milliseconds() as f64 / 1000.0;
    (seconds, run.fetched, run.requests, run.status)
}

fn data_requests(emu: &Emulator) -> u64 {
    emu.stats()
        .by_class
        .get(&RouteClass::Data)
        .copied()
        .unwrap_or(0)
}

/// Rates of the rounds of one contender: median and range.
#[derive(Default, Clone)]
struct Rates(Vec<f64>);

impl Rates {
    fn push(&mut self, rate: f64) {
        self.0.push(rate);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn range(&self) -> (f64, f64) {
        let v = self.sorted();
        (
            v.first().copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
        )
    }

    /// Per-round ratios self ÷ other (the rounds pair up: measured side by side).
    fn ratios(&self, other: &Rates) -> Rates {
        Rates(self.0.iter().zip(&other.0).map(|(a, b)| a / b).collect())
    }

    fn show(&self, unit: &str) -> String {
        let (lo, hi) = self.range();
        if unit.is_empty() {
            format!("{:.2} ({lo:.2}–{hi:.2})", self.median())
        } else {
            format!("{:>9.0} {unit} ({lo:.0}–{hi:.0})", self.median())
        }
    }
}

/// One line of the closing summary.
struct Goal {
    what: String,
    value: String,
    goal: &'static str,
    /// `None`: a figure shown for context, without a goal.
    met: Option<bool>,
}

fn goal(summary: &mut Vec<Goal>, what: String, value: String, goal: &'static str, met: bool) {
    summary.push(Goal {
        what,
        value,
        goal,
        met: Some(met),
    });
}

fn context(summary: &mut Vec<Goal>, what: String, value: String) {
    summary.push(Goal {
        what,
        value,
        goal: "",
        met: None,
    });
}

/// Fetch only: the pages syncd reads (same select, keyset, page size), dropped.
async fn fetch_only(client: &superoffice::Client, select: &[&str]) -> (u64, Duration) {
    let started = Instant::now();
    let mut rows = 0u64;
    let mut pages = std::pin::pin!(paginate::pages(
        client,
        Source::List("Contact".into()),
        Query::new().select(select.to_vec()),
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

/// What one syncd initial load measured.
struct Load {
    rate: f64,
    seconds: f64,
    cpu: f64,
    peak_rss_kib: u64,
    /// The first poll after the load (nothing changed): (requests, rows read).
    idle_poll: Option<(i64, i64)>,
}

/// syncd's initial load of `subscription` into a fresh database, as its own process; with
/// `idle_poll`, also the first poll after it.
async fn syncd_load(
    binary: &Path,
    remote: &Remote,
    name: &str,
    extra: &str,
    rows: u64,
    idle_poll: bool,
) -> Load {
    let dir = workdir();
    let db = db_path(dir.path());
    let config = remote.config(dir.path(), &subscription(name, extra));
    let mut child = spawn(binary, &config, &dir.path().join(format!("{name}.log")));
    let pid = child.id();
    let mut peak = 0;
    let sampler = async {
        loop {
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = wait_runs(&db, name, PassKind::Initial, 1, &mut child) => {}
        _ = sampler => {}
    }
    let cpu = cpu_seconds(pid).unwrap_or(0.0);
    let peak_rss_kib = peak_rss_kib(pid).unwrap_or(0).max(peak);
    let (seconds, loaded, _, status) = last_run(&db, name, PassKind::Initial);
    assert_eq!(
        status,
        RunStatus::Ok,
        "the initial load of {name} succeeded"
    );
    assert_eq!(
        loaded as u64, rows,
        "the initial load of {name} read every row"
    );
    let idle_poll = if idle_poll {
        wait_runs(&db, name, PassKind::Poll, 1, &mut child).await;
        let (_, fetched, requests, status) = last_run(&db, name, PassKind::Poll);
        assert_eq!(status, RunStatus::Ok);
        Some((requests, fetched))
    } else {
        None
    };
    stop(child);
    Load {
        rate: loaded as f64 / seconds,
        seconds,
        cpu,
        peak_rss_kib,
        idle_poll,
    }
}

/// `SYNC_BENCH_BASELINE=PATH`: another `syncd` binary (say, built from the previous commit)
/// whose row-shape load runs in every round beside this one, for an A/B of a change.
fn baseline() -> Option<PathBuf> {
    std::env::var_os("SYNC_BENCH_BASELINE").map(PathBuf::from)
}

fn python() -> Option<&'static str> {
    Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "python3")
}

/// The Python sync into a fresh database: rows/s by its own clock.
fn python_load(python: &str, remote: &Remote, shape: &str, rows: u64) -> f64 {
    let dir = workdir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_sync.py");
    let output = Command::new(python)
        .arg(script)
        .arg("--root")
        .arg(&remote.tenant_url)
        .arg("--token")
        .arg(&remote.token)
        .arg("--db")
        .arg(dir.path().join("python.db"))
        .arg("--shape")
        .arg(shape)
        .arg("--columns")
        .arg(COLUMNS.join(","))
        .arg("--page")
        .arg(PAGE.to_string())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python_sync.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["rows"].as_u64(), Some(rows), "python read every row");
    rows as f64 / result["seconds"].as_f64().unwrap()
}

/// Part 1 for one size: fetch-only, syncd and Python alternating for `rounds` rounds.
async fn row_shape(rows: u64, rounds: usize, largest: bool, summary: &mut Vec<Goal>) {
    println!(
        "\n1. row shape, {rows} contacts, pages of {PAGE}, {} columns:",
        COLUMNS.len() + 3
    );
    let remote = Remote::start(rows).await;
    let client = remote.client();
    let mut select = vec!["contactId", "updatedDate", "registeredDate"];
    select.extend(COLUMNS);
    let python = python();
    // Warm-up: the emulator's first pass over its rows is slower for every client.
    fetch_only(&client, &select).await;
    let (mut fetch, mut sync, mut py) = (Rates::default(), Rates::default(), Rates::default());
    let mut base = Rates::default();
    let mut cpu = Rates::default();
    let mut peak_rss = 0u64;
    let mut idle_poll = None;
    for round in 0..rounds {
        let (n, took) = fetch_only(&client, &select).await;
        assert_eq!(n, rows);
        fetch.push(n as f64 / took.as_secs_f64());
        let emulator_cpu = remote.cpu();
        let load = syncd_load(
            &binary(),
            &remote,
            "rows",
            &columns_toml(),
            rows,
            largest && round == 0,
        )
        .await;
        let emulator_cpu = remote.cpu() - emulator_cpu;
        sync.push(load.rate);
        cpu.push(load.cpu * 1e6 / rows as f64);
        peak_rss = peak_rss.max(load.peak_rss_kib);
        idle_poll = idle_poll.or(load.idle_poll);
        let mut line = format!(
            "  round {}: fetch {:.0}/s; syncd {:.0}/s ({:.2} s, {:.2} µs CPU per row, emulator {:.2} µs, peak RSS {:.1} MB)",
            round + 1,
            n as f64 / took.as_secs_f64(),
            load.rate,
            load.seconds,
            load.cpu * 1e6 / rows as f64,
            emulator_cpu * 1e6 / rows as f64,
            load.peak_rss_kib as f64 / 1024.0
        );
        if let Some(python) = python {
            let rate = python_load(python, &remote, "row", rows);
            py.push(rate);
            line.push_str(&format!("; python {rate:.0}/s"));
        }
        if let Some(other) = baseline() {
            let load = syncd_load(&other, &remote, "rows", &columns_toml(), rows, false).await;
            line.push_str(&format!(
                "; baseline syncd {:.0}/s ({:.2} µs CPU per row, peak RSS {:.1} MB)",
                load.rate,
                load.cpu * 1e6 / rows as f64,
                load.peak_rss_kib as f64 / 1024.0
            ));
            base.push(load.rate);
        }
        println!("{line}");
    }
    if baseline().is_some() {
        println!(
            "  this syncd ÷ baseline syncd: {} (SYNC_BENCH_BASELINE)",
            sync.ratios(&base).show("")
        );
    }
    println!(
        "  fetch only (SDK, pages dropped): {}",
        fetch.show("rows/s")
    );
    println!("  syncd initial load:              {}", sync.show("rows/s"));
    context(
        summary,
        format!("row shape {rows}: syncd rows/s"),
        sync.show("rows/s").trim().to_string(),
    );
    context(
        summary,
        format!("row shape {rows}: syncd CPU per row (µs)"),
        cpu.show(""),
    );
    let vs_fetch = sync.ratios(&fetch);
    println!("  syncd ÷ fetch-only: {} (goal ≥ 0.3)", vs_fetch.show(""));
    goal(
        summary,
        format!("row shape {rows}: syncd ÷ fetch-only"),
        vs_fetch.show(""),
        "≥ 0.3",
        vs_fetch.median() >= 0.3,
    );
    if python.is_some() {
        println!("  python sync:                     {}", py.show("rows/s"));
        context(
            summary,
            format!("row shape {rows}: python rows/s"),
            py.show("rows/s").trim().to_string(),
        );
        let vs_python = sync.ratios(&py);
        println!("  syncd ÷ python: {} (goal ≥ 4)", vs_python.show(""));
        goal(
            summary,
            format!("row shape {rows}: syncd ÷ python"),
            vs_python.show(""),
            "≥ 4",
            vs_python.median() >= 4.0,
        );
    } else {
        println!("  (no python3: the Python sync is skipped)");
    }
    if largest {
        let mb = peak_rss as f64 / 1024.0;
        println!("  syncd peak RSS over the rounds: {mb:.1} MB (goal ≤ 100 MB)");
        goal(
            summary,
            format!("peak RSS, initial load of {rows}"),
            format!("{mb:.1} MB"),
            "≤ 100 MB",
            mb <= 100.0,
        );
        if let Some((requests, fetched)) = idle_poll {
            let minimum = fetched / i64::from(PAGE) + 1;
            let ratio = requests as f64 / minimum as f64;
            println!(
                "  first poll after the load, nothing changed: {fetched} rows read (its day window, of {rows}) with {requests} requests; minimum {minimum} → ratio {ratio:.2} (goal ≤ 1.2)"
            );
            goal(
                summary,
                format!("idle poll over {rows}: requests ÷ minimum"),
                format!("{ratio:.2} ({fetched} rows read)"),
                "≤ 1.2",
                ratio <= 1.2 && (fetched as u64) < rows,
            );
        }
    }
}

/// Part 2: entity shape, syncd (concurrency 8) against the Python loop with 8 threads.
async fn entity_shape(rows: u64, rounds: usize, summary: &mut Vec<Goal>) {
    println!("\n2. entity shape, {rows} contacts (a GET per contact, 8 in flight):");
    let remote = Remote::start(rows).await;
    let python = python();
    let (mut sync, mut py) = (Rates::default(), Rates::default());
    for round in 0..rounds {
        let load = syncd_load(
            &binary(),
            &remote,
            "entities",
            "shape = \"entity\"\nconcurrency = 8",
            rows,
            false,
        )
        .await;
        sync.push(load.rate);
        let mut line = format!(
            "  round {}: syncd {:.0}/s ({:.2} s, {:.1} µs CPU per entity)",
            round + 1,
            load.rate,
            load.seconds,
            load.cpu * 1e6 / rows as f64
        );
        if let Some(python) = python {
            let rate = python_load(python, &remote, "entity", rows);
            py.push(rate);
            line.push_str(&format!("; python {rate:.0}/s"));
        }
        println!("{line}");
    }
    println!("  syncd initial load: {}", sync.show("entities/s"));
    if python.is_some() {
        println!("  python, 8 threads:  {}", py.show("entities/s"));
        let ratio = sync.ratios(&py);
        println!("  syncd ÷ python: {} (goal ≥ 3)", ratio.show(""));
        goal(
            summary,
            format!("entity shape {rows}: syncd ÷ python"),
            ratio.show(""),
            "≥ 3",
            ratio.median() >= 3.0,
        );
    }
}
/// With the daemon running (poll interval 1 s): moves the watermark to today with a few
/// edits, then edits 1 % of the contacts right after a poll ended and sums the requests of
/// the runs (`runs.requests`, counted by syncd) from then until every changed record is in
/// the change feed. The emulator's own count of data requests over the same time is printed
/// as a cross-check (it includes idle polls that overlapped).
async fn changes_part(
    emu: &Emulator,
    db: &Path,
    subscription: &str,
    rows: u64,
    per_get: bool,
) -> f64 {
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
    requests as f64 / minimum as f64
}

/// Part 3: requests for a 1 % change, row and entity shape, against an in-process emulator
/// (which counts the requests it serves).
async fn change_requests(rows: u64, summary: &mut Vec<Goal>) {
    println!("\n3. requests for a 1 % change of {rows} contacts:");
    let emu = emulator(SeedCounts::contacts_only(rows as u32), |c| {
        c.never_updated_fraction = 0.02;
    })
    .await;
    let dir = workdir();
    let db = db_path(dir.path());
    let entity = "shape = \"entity\"\nconcurrency = 8".to_string();
    for (name, shape, extra, per_get) in [
        ("rows", "row", columns_toml(), false),
        ("entities", "entity", entity, true),
    ] {
        let config = write_config(&emu, dir.path(), &subscription(name, &extra));
        let mut child = spawn(&binary(), &config, &dir.path().join(format!("{name}.log")));
        wait_runs(&db, name, PassKind::Initial, 1, &mut child).await;
        let ratio = changes_part(&emu, &db, name, rows, per_get).await;
        goal(
            summary,
            format!("1 % change, {shape} shape: requests ÷ minimum"),
            format!("{ratio:.3}"),
            "≤ 1.2",
            ratio <= 1.2,
        );
        stop(child);
    }
    emu.shutdown().await;
}

/// Part 4: a simulated day of `edits` edits with polls every 5 minutes (in-process daemon and
/// emulator on controlled clocks), without and with webhooks.
async fn late_day(edits: u32, summary: &mut Vec<Goal>) {
    use syncd_testkit::lateday::{DayOptions, simulate};
    println!(
        "\n4. late-day incremental passes: a simulated day of {edits} edits on {edits} contacts, polls every 5 minutes:"
    );
    for webhooks in [false, true] {
        let report = simulate(DayOptions {
            edits,
            seeded: edits,
            webhooks,
            ..DayOptions::default()
        })
        .await;
        println!("  {report}");
        assert_eq!(report.failed_runs, 0, "no run of the simulated day failed");
        let what = format!(
            "late day, {edits} edits, webhooks {}: rows read ÷ changed",
            if webhooks { "on" } else { "off" }
        );
        let value = format!("{:.2} ({} polls)", report.ratio(), report.polls);
        if webhooks {
            goal(summary, what, value, "≤ 10", report.ratio() <= 10.0);
        } else {
            context(summary, what, value);
        }
    }
}

/// Part 5: the outbox drain ÷ the two calls an exactly-once create needs, at the same
/// concurrency (`syncd_testkit::bench::outbox`; `cargo bench -p syncd --bench outbox_drain`
/// prints the details).
async fn outbox_part(count: usize, latency: u64, summary: &mut Vec<Goal>) {
    use syncd_testkit::bench::outbox::{CONCURRENCY, measure};
    println!(
        "\n5. outbox drain, {count} creates of Contact, {CONCURRENCY} in flight (emulator in this process):"
    );
    let report = measure(count, 0).await;
    println!("{report}");
    goal(
        summary,
        format!("outbox ÷ two-call protocol, {count} creates"),
        format!("{:.2}", report.ratio()),
        "≥ 0.8",
        report.met(),
    );
    if latency > 0 {
        let slow_count = (count / 5).max(CONCURRENCY * 10);
        let slow = measure(slow_count, latency).await;
        println!("  with {latency} ms per data call at the server, {slow_count} creates:");
        println!("{slow}");
        goal(
            summary,
            format!("outbox ÷ protocol, {latency} ms per call"),
            format!("{:.2}", slow.ratio()),
            "≥ 0.8",
            slow.met(),
        );
    }
}

fn main() {
    if let Ok(contacts) = std::env::var(EMULATOR_MODE) {
        let contacts = contacts.parse().expect("contacts");
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(serve_emulator(contacts));
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let sizes: Vec<u64> = std::env::var("SYNC_BENCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().replace('_', "").parse().expect("SYNC_BENCH_SIZES"))
        .collect();
    let rounds = env_u64("SYNC_BENCH_ROUNDS", 3).max(1) as usize;
    let kills = env_u64("SYNC_BENCH_KILLS", 100) as u32;
    println!(
        "syncd subscription benchmark (release build: {}; {rounds} rounds; python3: {})",
        !cfg!(debug_assertions),
        python().is_some()
    );
    let mut summary = Vec::new();

    if !skipped("rows") {
        let largest = sizes.iter().copied().max().unwrap_or(0);
        for &rows in &sizes {
            row_shape(rows, rounds, rows == largest, &mut summary).await;
        }
    }
    if !skipped("entity") {
        entity_shape(
            env_u64("SYNC_BENCH_ENTITY_ROWS", 20_000),
            rounds,
            &mut summary,
        )
        .await;
    }
    if !skipped("changes") {
        change_requests(env_u64("SYNC_BENCH_CHANGE_ROWS", 100_000), &mut summary).await;
    }

    if !skipped("lateday") {
        late_day(env_u64("SYNC_BENCH_DAY_EDITS", 20_000) as u32, &mut summary).await;
    }

    if !skipped("outbox") {
        let count = env_u64("SYNC_BENCH_OUTBOX_CREATES", 10_000) as usize;
        outbox_part(count, env_u64("OUTBOX_BENCH_LATENCY_MS", 30), &mut summary).await;
    }

    if kills > 0 && !skipped("kill") {
        let seed = env_u64("SYNCD_KILL_SEED", 7_700_001);
        let started = Instant::now();
        let report = kill::kill_scenario(&binary(), kills, seed).await;
        println!(
            "\n6. {kills} SIGKILLs at random points (seed {seed}, {:.0} s): local copy = ground truth, change feed consistent; {report:?}",
            started.elapsed().as_secs_f64()
        );
    }

    println!("\nsummary (median of {rounds} rounds, range in parentheses):");
    let width = summary
        .iter()
        .map(|g| g.what.chars().count())
        .max()
        .unwrap_or(0);
    for g in &summary {
        match g.met {
            Some(met) => println!(
                "  {:<width$}  {:<28} goal {:<9} {}",
                g.what,
                g.value,
                g.goal,
                if met { "met" } else { "MISSED" }
            ),
            None => println!("  {:<width$}  {:<28} (context)", g.what, g.value),
        }
    }
}
