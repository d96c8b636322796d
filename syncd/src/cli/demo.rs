//! `syncd demo`: the whole product on one machine. Starts the built-in SuperOffice emulator
//! with seed data and live activity ("other users" editing, creating and deleting), runs the
//! daemon against it with webhooks, shows progress, and stops by itself after `--duration`
//! with a summary that compares the local copy with the emulator's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::{EntityType, SeedCounts};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::{Config, parse_duration};
use crate::store;
use crate::{Daemon, Error, Result};

/// `syncd demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long to run before stopping by itself (e.g. `30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Contacts to seed (persons: 2×, sales and appointments: ½×, tickets: ¼×).
    #[arg(long, default_value_t = 5_000)]
    pub contacts: u32,
    /// Emulator seed (the data is deterministic for a seed).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Changes per second made by "other users" while the demo runs.
    #[arg(long, default_value_t = 20)]
    pub activity: u32,
    /// Poll interval of the subscriptions.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Keep the database here instead of a temporary directory.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Also publish the change feed to this NATS server (JetStream; stream `SUPEROFFICE`,
    /// subjects `superoffice.demo.{entity}.{op}`), e.g. `nats://127.0.0.1:4222`.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The control plane's address (the change feed: `/changes`, `/changes/stream`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

const SUBSCRIPTIONS: [(&str, &str, EntityType); 4] = [
    ("contacts", "contact", EntityType::Contact),
    ("persons", "person", EntityType::Person),
    ("sales", "sale", EntityType::Sale),
    ("tickets", "ticket", EntityType::Ticket),
];

/// What the demo ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Per subscription: (records stored, live records in the emulator, ids that differ).
    pub subscriptions: BTreeMap<String, (usize, usize, usize)>,
    /// Changes in the feed by op.
    pub changes: BTreeMap<String, i64>,
    /// Changes the emulator made while the demo ran.
    pub activity: usize,
    /// Webhook deliveries the daemon queued for a refetch.
    pub webhook_events: u64,
    /// Changes polling found that no webhook announced.
    pub unannounced: u64,
}

impl Summary {
    /// Whether every subscription matches the emulator exactly.
    pub fn in_sync(&self) -> bool {
        self.subscriptions
            .values()
            .all(|(_, _, differing)| *differing == 0)
    }
}

/// Runs the demo; the config file is not used.
pub async fn run(_context: &Context, args: DemoArgs) -> Result<()> {
    let summary = run_demo(&args, std::io::stderr().is_terminal()).await?;
    println!(
        "\nsummary after {:?} ({} changes made by other users):",
        args.duration, summary.activity
    );
    println!(
        "  {:<10} {:>8} {:>10} {:>9}",
        "subscription", "stored", "emulator", "differing"
    );
    for (name, (stored, live, differing)) in &summary.subscriptions {
        println!("  {name:<10} {stored:>8} {live:>10} {differing:>9}");
    }
    let ops: Vec<String> = summary
        .changes
        .iter()
        .map(|(op, n)| format!("{n} {op}"))
        .collect();
    println!(
        "  change feed: {}",
        if ops.is_empty() {
            "empty".into()
        } else {
            ops.join(", ")
        }
    );
    println!(
        "  webhook events queued: {}; changes found by polling that no webhook announced: {}",
        summary.webhook_events, summary.unannounced
    );
    println!(
        "  {}",
        if summary.in_sync() {
            "local copy equals the emulator's ground truth"
        } else {
            "local copy still differs (increase --duration)"
        }
    );
    Ok(())
}

/// The demo without printing the summary (the integration test runs this).
pub async fn run_demo(args: &DemoArgs, fancy: bool) -> Result<Summary> {
    let emu = start_emulator(args).await?;
    let (config, control_token) = demo_config(args, &emu)?;
    let shutdown = CancellationToken::new();
    let (daemon, store) = Daemon::start_embedded(config, shutdown.clone()).await?;
    announce(args, &emu, &daemon, &control_token);
    let activity = Activity::start(emu.clone(), args.activity);
    let progress = Progress::new(fancy);
    show_progress(&progress, &store, &emu, args.duration).await?;
    let made = activity.stop().await;
    let mut summary = settle(&store, &emu, made, args.poll_interval).await?;
    progress.finish();
    if args.nats.is_some() {
        report_nats_sink(&daemon, &store).await?;
    }
    count_webhooks(&mut summary, &daemon.services().metrics);
    shutdown.cancel();
    daemon.wait().await?;
    Ok(summary)
}

/// Starts the emulator with the seed data `args` ask for (webhook retries sped up).
async fn start_emulator(args: &DemoArgs) -> Result<Arc<emulator::Emulator>> {
    let counts = SeedCounts {
        contacts: args.contacts,
        persons: args.contacts * 2,
        sales: args.contacts / 2,
        appointments: args.contacts / 2,
        tickets: args.contacts / 4,
        ..SeedCounts::NONE
    };
    let mut emulator_config = emulator::Config {
        seed: args.seed,
        counts,
        ..emulator::Config::default()
    };
    emulator_config.webhooks.retry_scale = 0.05;
    Ok(Arc::new(emulator::Emulator::start(emulator_config).await?))
}

/// The daemon's configuration for the demo (a tenant on the emulator, the [`SUBSCRIPTIONS`],
/// the NATS sink when asked for) and the control token it uses; writes the system user's key
/// into a temporary directory (which also holds the database unless `--store` is given).
fn demo_config(args: &DemoArgs, emu: &emulator::Emulator) -> Result<(Config, String)> {
    let workdir = tempfile_dir()?;
    let key_file = workdir.join("system-user.pem");
    std::fs::write(&key_file, emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM)
        .map_err(|e| Error::io(format!("writing {}", key_file.display()), e))?;
    let store_path = args
        .store
        .clone()
        .unwrap_or_else(|| workdir.join("syncd.db"));
    // A fresh control token per run: the change feed on the control plane needs one.
    let control_token = format!("demo-{:032x}", rand::random::<u128>());
    let mut text = format!(
        r#"
store = {store:?}

[control]
listen = {listen:?}
webhook_secret = {{ value = "demo-webhook-secret" }}
public_url = "auto"
token = {{ value = {control_token:?} }}

[[tenant]]
name = "demo"
environment = {env:?}
customer_id = {ctx:?}
client_id = {client_id:?}
client_secret = {{ value = {secret:?} }}
auth = "system-user"
system_token = {token:?}
private_key = {key:?}
"#,
        store = store_path.display().to_string(),
        env = emu.base_url(),
        ctx = emu.context_identifier(),
        client_id = emu.config().auth.client_id,
        secret = emu.config().auth.client_secret,
        token = emu.config().auth.system_token,
        key = key_file.display().to_string(),
        listen = args.listen,
        control_token = control_token,
    );
    for (name, entity, _) in SUBSCRIPTIONS {
        text.push_str(&format!(
            "\n[[subscription]]\nname = {name:?}\nentity = {entity:?}\npoll_interval = \"{}ms\"\nreconcile_interval = \"20s\"\n",
            args.poll_interval.as_millis()
        ));
    }
    if let Some(url) = &args.nats {
        text.push_str(&format!(
            "\n[[sink]]\nname = \"nats\"\nkind = \"nats\"\nurl = {url:?}\n"
        ));
    }
    let config = Config::parse(&text, "demo", &BTreeMap::new())?;
    Ok((config, control_token))
}

/// Says where the change feed can be watched (and where it is published).
fn announce(args: &DemoArgs, emu: &emulator::Emulator, daemon: &Daemon, control_token: &str) {
    tracing::info!(emulator = %emu.base_url(), control = %daemon.control_addr(), "demo running");
    eprintln!(
        "demo: the change feed: curl -N -H 'Authorization: Bearer {control_token}' http://{}/changes/stream",
        daemon.control_addr()
    );
    if let Some(url) = &args.nats {
        eprintln!(
            "demo: publishing the change feed to {url}: stream SUPEROFFICE, subjects superoffice.demo.<entity>.<op> (nats sub 'superoffice.>')"
        );
    }
}

/// Live activity by "other users": creates, updates and deletes in the emulator every
/// 250 ms until stopped.
struct Activity {
    /// Changes made so far.
    made: Arc<std::sync::atomic::AtomicUsize>,
    /// Stops the task.
    stop: CancellationToken,
    /// The task making the changes.
    task: tokio::task::JoinHandle<()>,
}

impl Activity {
    /// Starts about `per_second` changes a second.
    fn start(emu: Arc<emulator::Emulator>, per_second: u32) -> Activity {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let per_tick = (per_second / 4).max(1);
        let task = {
            let made = made.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(250));
                let mut tick = 0u32;
                while !stop.is_cancelled() {
                    ticker.tick().await;
                    tick += 1;
                    let creates = per_tick / 4 + 1;
                    // A delete every second: soft for contacts/persons, hard for sales, a status for tickets.
                    let deletes = u32::from(tick.is_multiple_of(4));
                    let report = emu.activity(creates, per_tick, deletes, None);
                    made.fetch_add(
                        report.created.len() + report.updated.len() + report.deleted.len(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            })
        };
        Activity { made, stop, task }
    }

    /// Stops the activity, waits for its last tick and returns the number of changes made.
    async fn stop(self) -> usize {
        self.stop.cancel();
        let _ = self.task.await;
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Updates the progress display every 500 ms for `duration`.
async fn show_progress(
    progress: &Progress,
    store: &store::Store,
    emu: &emulator::Emulator,
    duration: Duration,
) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = crate::status::status_rows(store)?;
        let changes = change_counts(store)?;
        progress.update(&rows, &changes, emu, started.elapsed(), duration);
    }
    Ok(())
}

/// Lets the last changes arrive: summarizes until the local copy is in sync, for at most a
/// few poll intervals without activity.
async fn settle(
    store: &store::Store,
    emu: &emulator::Emulator,
    activity: usize,
    poll_interval: Duration,
) -> Result<Summary> {
    let started = Instant::now();
    let mut summary = summarize(store, emu, activity)?;
    while !summary.in_sync() && started.elapsed() < poll_interval * 6 + Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        summary = summarize(store, emu, activity)?;
    }
    Ok(summary)
}

/// Lets the NATS sink catch up with the last changes (at most 10 s), then says where it is.
async fn report_nats_sink(daemon: &Daemon, store: &store::Store) -> Result<()> {
    let last = daemon.services().feed.last();
    let waited = Instant::now();
    let acked = loop {
        let acked = store.read(|c| store::sinks::acked_seq(c, "nats")).await?;
        if acked >= last || waited.elapsed() > Duration::from_secs(10) {
            break acked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "demo: NATS sink acknowledged up to seq {acked} of {last} ({} behind)",
        last - acked
    );
    Ok(())
}

/// Adds the webhook deliveries queued and the changes no webhook announced to `summary`.
fn count_webhooks(summary: &mut Summary, metrics: &crate::metrics::Metrics) {
    summary.webhook_events =
        metrics.get("syncd_webhook_events_total", &[("outcome", "queued")]) as u64;
    summary.unannounced = SUBSCRIPTIONS
        .iter()
        .map(|(name, _, _)| {
            metrics.get("syncd_unannounced_changes_total", &[("subscription", name)]) as u64
        })
        .sum();
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "syncd-demo-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// Changes in the feed by op (`insert`, `update`, `delete`).
fn change_counts(store: &store::Store) -> Result<BTreeMap<String, i64>> {
    let counts = store.read_blocking(store::feed::counts_by_op)?;
    Ok(counts
        .into_iter()
        .map(|(op, n)| (op.as_str().to_string(), n))
        .collect())
}

/// The live (not deleted) record ids of a subscription.
fn stored_ids(store: &store::Store, subscription: &str) -> Result<BTreeSet<i64>> {
    let ids = store.read_blocking(|conn| {
        store::records::live_ids_between(conn, subscription, None, None, None)
    })?;
    Ok(ids.into_iter().collect())
}

fn summarize(store: &store::Store, emu: &emulator::Emulator, activity: usize) -> Result<Summary> {
    let mut subscriptions = BTreeMap::new();
    for (name, _, entity) in SUBSCRIPTIONS {
        let stored = stored_ids(store, name)?;
        let live: BTreeSet<i64> = emu
            .truth(entity)
            .into_iter()
            .filter(|t| !t.deleted)
            .map(|t| i64::from(t.id))
            .collect();
        let differing = stored.symmetric_difference(&live).count();
        subscriptions.insert(name.to_string(), (stored.len(), live.len(), differing));
    }
    Ok(Summary {
        subscriptions,
        changes: change_counts(store)?,
        activity,
        webhook_events: 0,
        unannounced: 0,
    })
}

/// Progress bars on a terminal, plain lines every few seconds otherwise.
struct Progress {
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(fancy: bool) -> Progress {
        let bars = fancy.then(|| {
            let multi = MultiProgress::new();
            let style =
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos:>7}/{len:7} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            let bars = SUBSCRIPTIONS
                .iter()
                .map(|(name, _, _)| {
                    let bar = multi.add(ProgressBar::new(1));
                    bar.set_style(style.clone());
                    bar.set_prefix(name.to_string());
                    (name.to_string(), bar)
                })
                .collect();
            (multi, bars)
        });
        Progress {
            bars,
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(
        &self,
        rows: &[crate::status::StatusRow],
        changes: &BTreeMap<String, i64>,
        emu: &emulator::Emulator,
        elapsed: Duration,
        total: Duration,
    ) {
        let live =
            |entity: EntityType| emu.truth(entity).iter().filter(|t| !t.deleted).count() as u64;
        match &self.bars {
            Some((_, bars)) => {
                for (name, _, entity) in SUBSCRIPTIONS {
                    if let (Some(bar), Some(row)) =
                        (bars.get(name), rows.iter().find(|r| r.subscription == name))
                    {
                        bar.set_length(live(entity).max(1));
                        bar.set_position(row.rows as u64);
                        bar.set_message(format!(
                            "{} lag {}",
                            row.state,
                            row.lag_seconds
                                .map(|s| format!("{s}s"))
                                .unwrap_or_else(|| "-".into())
                        ));
                    }
                }
            }
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(3) {
                    *last = Instant::now();
                    let parts: Vec<String> = rows
                        .iter()
                        .map(|r| format!("{}={}", r.subscription, r.rows))
                        .collect();
                    let ops: Vec<String> =
                        changes.iter().map(|(op, n)| format!("{op}={n}")).collect();
                    println!(
                        "[{:>3}s/{}s] rows {} | changes {}",
                        elapsed.as_secs(),
                        total.as_secs(),
                        parts.join(" "),
                        ops.join(" ")
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish();
            }
        }
    }
}
