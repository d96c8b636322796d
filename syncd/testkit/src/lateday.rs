//! One simulated day of edits against an in-process daemon, to measure how many rows the
//! daemon reads per row changed (issue 13, item 5).
//!
//! SuperOffice's last-modified filters compare days, so every incremental poll re-reads every
//! row changed since the start of its window's first day: late in a busy day a poll reads
//! thousands of rows to find the few changed since the previous one. [`simulate`] runs a day
//! fast: the emulator and the daemon in this process, the emulator's clock and the daemon's
//! [`syncd::clock::ManualClock`] moved together in steps from the emulator's midnight, the
//! edits spread evenly over the steps (`Emulator::activity`, which fires webhooks like API
//! edits), the daemon left to finish its polls and webhook refetches after every step. At the
//! end it checks that nothing was lost and reports what was read:
//!
//! - rows read by polls: the `fetched` of the day's poll runs;
//! - rows read by webhook refetches: `syncd_rows_read_total{kind="webhook"}` (refetch batches
//!   get a `runs` row only when they fail);
//! - rows changed: the distinct records the day's edits touched.
//!
//! The day starts on an empty "yesterday": with `overlap_days = 1` (the default) a poll on a
//! day that follows a busy day also re-reads that day's changes, which this does not count.
//! Entity shape works but is slow with webhooks: a targeted refetch waits a real second for
//! its entities' timestamps to settle (see `syncd::sync`), once per step; without webhooks
//! the end of the day needs one more poll (counted) for the last step's edits.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use emulator::{Emulator, EntityType};
use syncd::config::{Shape, format_duration};

use crate::sync::{
    PassKind, Request, RunStatus, Running, base_config, counts, db_path, emulator,
    feed_is_consistent, last_seq, matches, request, runs, start, truth_live, webhook_control,
    workdir,
};

/// The subscription [`simulate`] configures.
const SUBSCRIPTION: &str = "contacts";

/// The tenant [`crate::sync::base_config`] configures.
const TENANT: &str = "emu";

/// How long the daemon's loop waits for more webhook events before it refetches
/// (`syncd::sync`'s `WEBHOOK_GATHER`): skipped on its clock rather than waited for.
const GATHER: Duration = Duration::from_millis(150);

/// The outbox worker's idle wait (`syncd::outbox`'s `IDLE`): a pending wait with at most this
/// left may be the outbox's, so a wait is taken for the gather only above it.
const OUTBOX_IDLE: Duration = Duration::from_millis(100);

/// The longest the subscription loop sleeps between looks at its flags
/// (`syncd::sync`'s `FLAG_CHECK`): a pending wait of more than [`GATHER`] and at most this
/// is the loop asleep between its work (nothing else of the daemon waits that long).
const FLAG_CHECK: Duration = Duration::from_secs(2);

/// How long [`simulate`] waits for the daemon to settle after a step before it gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What day to simulate.
#[derive(Debug, Clone)]
pub struct DayOptions {
    /// Edits over the day (creates, updates and deletes of contacts by other users).
    pub edits: u32,
    /// Contacts seeded before the day starts.
    pub seeded: u32,
    /// Whether the daemon registers and receives webhooks.
    pub webhooks: bool,
    /// The time of day at which SuperOffice stops the webhook (as after too many failed
    /// deliveries): later changes arrive only by polls, and deletes by the end-of-day
    /// reconcile (`None`: it keeps delivering).
    pub webhook_stops_at: Option<Duration>,
    /// What the subscription stores (`row` columns or whole entities).
    pub shape: Shape,
    /// How far both clocks move per step; the day's edits are spread evenly over the steps.
    pub step: Duration,
    /// The subscription's `poll_interval`.
    pub poll_interval: Duration,
    /// The subscription's `poll_interval_max` (`None`: the daemon's default).
    pub poll_interval_max: Option<Duration>,
    /// Of every 100 edits, how many create a contact.
    pub creates_percent: u32,
    /// Of every 100 edits, how many delete one.
    pub deletes_percent: u32,
    /// The emulator's seed (its data and which records the edits hit).
    pub seed: u64,
}

impl Default for DayOptions {
    /// 20,000 edits on 20,000 contacts in row shape, 5-minute polls and steps, webhooks on.
    fn default() -> DayOptions {
        DayOptions {
            edits: 20_000,
            seeded: 20_000,
            webhooks: true,
            webhook_stops_at: None,
            shape: Shape::Row,
            step: Duration::from_secs(300),
            poll_interval: Duration::from_secs(300),
            poll_interval_max: None,
            creates_percent: 5,
            deletes_percent: 1,
            seed: 7,
        }
    }
}

/// What a simulated day read.
#[derive(Debug, Clone, PartialEq)]
pub struct DayReport {
    /// Whether webhooks were on.
    pub webhooks: bool,
    /// Edits made.
    pub edits: u32,
    /// Distinct records the edits touched.
    pub changed: u64,
    /// Rows read by the day's polls.
    pub poll_rows: u64,
    /// Rows read by webhook refetches.
    pub webhook_rows: u64,
    /// Polls run.
    pub polls: u64,
    /// Webhook refetch runs (batches of the refetch queue drained).
    pub webhook_runs: u64,
    /// Rows read by reconciles (primary keys only; not part of [`DayReport::ratio`]).
    pub reconcile_rows: u64,
    /// Changes polls found that no webhook announced (`syncd_unannounced_changes_total`).
    pub unannounced: u64,
    /// Runs that failed (passes, reconciles, webhook refetch batches).
    pub failed_runs: u64,
    /// The poll interval in force at the end of the day, in seconds.
    pub final_interval_seconds: f64,
    /// Wall-clock time the simulation took.
    pub elapsed: Duration,
}

impl DayReport {
    /// Rows read by polls and webhook refetches per record changed.
    pub fn ratio(&self) -> f64 {
        (self.poll_rows + self.webhook_rows) as f64 / self.changed.max(1) as f64
    }
}

impl fmt::Display for DayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "webhooks {}: {} edits changed {} records; {} polls read {} rows, {} webhook runs read {} rows: {:.2} rows read per row changed ({} unannounced; {} failed runs; reconcile read {} keys; poll interval at the end {}; {:.1} s)",
            if self.webhooks { "on" } else { "off" },
            self.edits,
            self.changed,
            self.polls,
            self.poll_rows,
            self.webhook_runs,
            self.webhook_rows,
            self.ratio(),
            self.unannounced,
            self.failed_runs,
            self.reconcile_rows,
            format_duration(Duration::from_secs_f64(self.final_interval_seconds)),
            self.elapsed.as_secs_f64()
        )
    }
}

/// The day's subscription.
fn subscription(opts: &DayOptions) -> String {
    let mut text = format!(
        "\n[[subscription]]\nname = {SUBSCRIPTION:?}\nentity = \"contact\"\npoll_interval = {:?}\nwebhooks = {}\n# No reconcile within the day; the end of the day asks for one when webhooks were not delivering all day.\nreconcile_interval = \"3d\"\n",
        format_duration(opts.poll_interval),
        opts.webhooks
    );
    if let Some(max) = opts.poll_interval_max {
        text.push_str(&format!("poll_interval_max = {:?}\n", format_duration(max)));
    }
    match opts.shape {
        Shape::Row => text.push_str("columns = [\"name\", \"department\", \"category\"]\n"),
        Shape::Entity => text.push_str("shape = \"entity\"\n"),
    }
    text
}

/// Moves the emulator's clock and the daemon's together by `by` (whole seconds). The
/// daemon's clock runs ahead by the webhook gathers [`settle`] skipped (150 ms each): that
/// only makes a poll due a little earlier, never later.
fn advance(emu: &Emulator, running: &Running, by: Duration) {
    emu.advance_clock(by.as_secs() as i64);
    running.clock.advance(by);
}

/// Whether a pending wait on the daemon's clock has between `left.start` and `left.end` to go.
async fn waiting(running: &Running, left: std::ops::Range<Duration>) -> bool {
    tokio::time::timeout(
        Duration::from_millis(1),
        running.clock.until_waiting(1, left),
    )
    .await
    .is_ok()
}

/// Waits until the emulator has delivered every webhook, the daemon's refetch queue is empty
/// and its subscription loop sleeps between its work. A webhook gather wait is skipped on the
/// daemon's clock.
async fn settle(emu: &Emulator, running: &Running) {
    let started = Instant::now();
    loop {
        let stats = emu.stats();
        let delivered = stats.deliveries_ok + stats.events_dropped >= stats.events_queued;
        let queued = running
            .store
            .read(syncd::store::webhooks::queue)
            .await
            .expect("read the refetch queue")
            .len();
        if delivered
            && queued == 0
            && waiting(
                running,
                GATHER + Duration::from_millis(1)..FLAG_CHECK + Duration::from_millis(1),
            )
            .await
        {
            return;
        }
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "the daemon did not settle within {SETTLE_TIMEOUT:?}: delivered {delivered} ({stats:?}), {queued} refetches queued"
        );
        let gather = OUTBOX_IDLE + Duration::from_millis(1)..GATHER + Duration::from_millis(1);
        if waiting(running, gather).await {
            running.clock.advance(GATHER);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The longest time between polls the subscription can reach (its `poll_interval_max`).
fn longest_interval(opts: &DayOptions) -> Duration {
    match opts.poll_interval_max {
        Some(max) => max,
        None if opts.webhooks => Duration::from_secs(2 * 3600).max(opts.poll_interval),
        None => opts.poll_interval,
    }
}

/// Stops every webhook of the tenant, as SuperOffice does after nine failed deliveries.
async fn stop_webhooks(emu: &Emulator) {
    let api = crate::sync::client(emu);
    let hooks = syncd::sync::ensure::list(&api, None)
        .await
        .expect("list the webhooks");
    for id in hooks.iter().filter_map(|h| h.webhook_id) {
        let request =
            superoffice::RawRequest::new(reqwest::Method::PATCH, format!("/api/v1/Webhook/{id}"))
                .json(
                    "application/merge-patch+json",
                    &serde_json::json!({"State": "TooManyErrors"}),
                )
                .expect("a JSON body");
        api.send_raw("webhook_patch", request)
            .await
            .expect("stop the webhook");
    }
}

/// Splits the edits `from..to` (of the day's sequence) into (creates, updates, deletes).
fn mix(opts: &DayOptions, from: u32, to: u32) -> (u32, u32, u32) {
    let (mut creates, mut updates, mut deletes) = (0, 0, 0);
    for n in from..to {
        let slot = n % 100;
        if slot < opts.deletes_percent {
            deletes += 1;
        } else if slot < opts.deletes_percent + opts.creates_percent {
            creates += 1;
        } else {
            updates += 1;
        }
    }
    (creates, updates, deletes)
}

/// Runs one simulated day (see the module docs) and reports what it read. Panics when a
/// change was lost: the local copy differs from the emulator's, a changed record has no
/// change in the feed, or the feed is inconsistent.
pub async fn simulate(opts: DayOptions) -> DayReport {
    let began = Instant::now();
    let seed = opts.seed;
    let emu = emulator(counts(opts.seeded, 0, 0), |c| {
        c.seed = seed;
        // The clocks jump by up to a day at once: keep the credentials valid meanwhile.
        c.auth.ticket_ttl_secs = 7 * 86_400;
        c.auth.access_token_ttl_secs = 7 * 86_400;
        c.auth.system_user_max_skew_secs = 7 * 86_400;
    })
    .await;
    let dir = workdir();
    let db = db_path(dir.path());
    let control = if opts.webhooks {
        webhook_control()
    } else {
        String::new()
    };
    let mut text = base_config(&emu, dir.path(), &control);
    text.push_str(&subscription(&opts));
    let running = start(&text).await;

    // The initial load, then the emulator's next midnight.
    let seeded = truth_live(&emu, EntityType::Contact);
    running
        .when_fed(SETTLE_TIMEOUT, "the initial load", || async {
            matches(&db, SUBSCRIPTION, &seeded)
        })
        .await;
    if opts.webhooks {
        crate::sync::eventually(SETTLE_TIMEOUT, "the webhook registration", || async {
            if running.services().sync.webhooks_registered(TENANT) {
                Ok(())
            } else {
                Err("not registered".into())
            }
        })
        .await;
    }
    settle(&emu, &running).await;
    let to_midnight = 86_400 - emu.now().0.rem_euclid(86_400);
    advance(&emu, &running, Duration::from_secs(to_midnight as u64));
    settle(&emu, &running).await;

    let first_run = runs(&db).last().map_or(0, |r| r.id);
    let first_seq = last_seq(&db);
    let metrics = &running.services().metrics;
    let webhook_read = |metrics: &syncd::metrics::Metrics| {
        let labels = [("subscription", SUBSCRIPTION), ("kind", "webhook")];
        let ok = [
            ("subscription", SUBSCRIPTION),
            ("kind", "webhook"),
            ("status", "ok"),
        ];
        (
            metrics.get("syncd_rows_read_total", &labels) as u64,
            metrics.get("syncd_runs_total", &ok) as u64,
        )
    };
    let (webhook_rows_before, webhook_runs_before) = webhook_read(metrics);
    let unannounced = |metrics: &syncd::metrics::Metrics| {
        metrics.get(
            "syncd_unannounced_changes_total",
            &[("subscription", SUBSCRIPTION)],
        ) as u64
    };
    let unannounced_before = unannounced(metrics);
    let mut webhook_stops_at = opts.webhook_stops_at;

    // The day.
    let steps = (86_400 / opts.step.as_secs().max(1)).max(1) as u32;
    let mut touched: BTreeSet<i64> = BTreeSet::new();
    for k in 0..steps {
        let from = (u64::from(opts.edits) * u64::from(k) / u64::from(steps)) as u32;
        let to = (u64::from(opts.edits) * u64::from(k + 1) / u64::from(steps)) as u32;
        let (creates, updates, deletes) = mix(&opts, from, to);
        if webhook_stops_at.is_some_and(|at| opts.step * k >= at) {
            webhook_stops_at = None;
            stop_webhooks(&emu).await;
        }
        let report = emu.activity(creates, updates, deletes, Some(EntityType::Contact));
        for t in report
            .created
            .iter()
            .chain(&report.updated)
            .chain(&report.deleted)
        {
            touched.insert(i64::from(t.id));
        }
        settle(&emu, &running).await;
        advance(&emu, &running, opts.step);
        settle(&emu, &running).await;
    }

    // Entity shape fetches an entity only once the server's clock has provably left the
    // second of its timestamp, estimated from our (wall) clock, which barely moves here: the
    // last step's edits wait for a poll a second later.
    if opts.shape == Shape::Entity {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        advance(&emu, &running, longest_interval(&opts));
        settle(&emu, &running).await;
    }
    // The end of the day: without webhooks (all day) only a reconcile finds the deletes.
    if !opts.webhooks || opts.webhook_stops_at.is_some() {
        let reconciles = || {
            runs(&db)
                .iter()
                .filter(|r| r.kind == PassKind::Reconcile && r.status == RunStatus::Ok)
                .count()
        };
        let before = reconciles();
        request(&db, SUBSCRIPTION, Request::Reconcile);
        crate::sync::eventually(SETTLE_TIMEOUT, "the end-of-day reconcile", || async {
            if reconciles() > before {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;
        settle(&emu, &running).await;
    }

    // Nothing lost: the copy equals the truth, every touched record that was ever visible has
    // a change in the feed, and the feed is consistent.
    let truth = truth_live(&emu, EntityType::Contact);
    if let Err(message) = matches(&db, SUBSCRIPTION, &truth) {
        panic!("a change was lost: {message}");
    }
    let fed: BTreeSet<i64> = crate::sync::changes(&db, SUBSCRIPTION)
        .into_iter()
        .filter(|c| c.seq > first_seq)
        .map(|c| c.id)
        .collect();
    let missing: Vec<i64> = touched
        .iter()
        .filter(|id| truth.contains_key(id) || seeded.contains_key(id))
        .filter(|id| !fed.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} changed records have no change in the feed: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    if let Err(message) = feed_is_consistent(&db, SUBSCRIPTION) {
        panic!("the change feed is inconsistent: {message}");
    }

    let day: Vec<_> = runs(&db).into_iter().filter(|r| r.id > first_run).collect();
    let sum = |kind: PassKind| -> (u64, u64) {
        day.iter()
            .filter(|r| r.kind == kind && r.status == RunStatus::Ok)
            .fold((0, 0), |(n, rows), r| {
                (n + 1, rows + r.fetched.max(0) as u64)
            })
    };
    let (polls, poll_rows) = sum(PassKind::Poll);
    let (_, reconcile_rows) = sum(PassKind::Reconcile);
    let (webhook_rows, webhook_runs) = webhook_read(metrics);
    let final_interval_seconds = metrics.get(
        "syncd_poll_interval_seconds",
        &[("subscription", SUBSCRIPTION)],
    );
    // `syncd status` shows the interval the gauge shows.
    let status = syncd::status::status_rows(&running.store).expect("read the status");
    let shown = status
        .iter()
        .find(|r| r.subscription == SUBSCRIPTION)
        .and_then(|r| r.poll_interval_seconds);
    assert_eq!(
        shown,
        Some(final_interval_seconds),
        "syncd status and syncd_poll_interval_seconds disagree"
    );
    let report = DayReport {
        webhooks: opts.webhooks,
        edits: opts.edits,
        changed: touched.len() as u64,
        poll_rows,
        webhook_rows: webhook_rows - webhook_rows_before,
        polls,
        webhook_runs: webhook_runs - webhook_runs_before,
        reconcile_rows,
        unannounced: unannounced(metrics) - unannounced_before,
        failed_runs: day.iter().filter(|r| r.status == RunStatus::Failed).count() as u64,
        final_interval_seconds,
        elapsed: Duration::ZERO,
    };
    running.stop().await;
    emu.shutdown().await;
    DayReport {
        elapsed: began.elapsed(),
        ..report
    }
}
