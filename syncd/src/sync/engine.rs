//! The passes of one subscription: the keyset load and the windowed incremental pass (both
//! one transaction per page, the next page fetched while the current one is written), the
//! targeted refetch of webhook-announced records, and the delete reconcile with its breaker.
//!
//! Every archive page goes through `Engine::fetch`, which refuses answers of unexpected shape:
//! a body without its `value` array ([`superoffice::Error::MissingValue`]) or a row without
//! the primary key is [`Error::UnexpectedAnswer`] (subscription, request, what was missing), so
//! the run fails before anything of that page is built or committed, and a reconcile's id scan
//! can never take a malformed answer for "these records are gone".

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use superoffice::odata::{Filter, Order, Query, Row, col};
use superoffice::paginate::{self, Source};
use superoffice::{Client, SoDateTime};
use tokio_util::sync::CancellationToken;

use super::plan::{ParentRecord, Plan, Window, entity_deleted};
use crate::config::Shape;
use crate::hash::{canonical_text_and_hash, entity_hash, strip_metadata};
use crate::store::records::{self, Applied, CursorWrite, EchoMode, PageWrite, Upsert};
use crate::store::runs::{self, Resume, SubState};
use crate::store::types::{PassKind, UtcTime};
use crate::store::webhooks::{self, Queued};
use crate::transform::Failure;
use crate::{Error, Result, Services};

/// Entity shape: an entity is fetched no sooner than this after the page (or webhook) that
/// showed its new timestamp arrived, so a second edit within the same (second-precision)
/// timestamp is already in what we fetch; a later edit carries a later timestamp.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Rows whose source timestamp is older than this need no settling (covers any time-zone
/// offset between the server's timestamps and our clock).
const SETTLE_HORIZON_HOURS: i64 = 15;

/// A short page of a full scan with at least this many rows is checked for a server-side
/// `$top` cap (see `Engine::probe_cap`).
pub const PROBE_MIN: usize = 100;

/// Queued webhook refetches handled per request.
pub const REFETCH_BATCH: usize = 40;

/// A page turned into a write.
#[derive(Debug)]
struct Built {
    write: PageWrite,
    max: Option<String>,
    floor: Option<String>,
    requests: u64,
}

/// The earlier of two source timestamps (as written).
pub fn earlier(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (instant_of(&a), instant_of(&b)) {
            (Some(x), Some(y)) if y < x => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

/// What a pass or batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows read from archives.
    pub fetched: u64,
    /// Changes and other effects.
    pub applied: Applied,
    /// Requests made (pages, GETs).
    pub requests: u64,
}

/// One subscription at work.
#[derive(Debug)]
pub struct Engine<'a> {
    /// Shared services.
    pub services: &'a Arc<Services>,
    /// The compiled subscription.
    pub plan: &'a Plan,
    /// Its tenant's client.
    pub client: Client,
    /// Shutdown.
    pub shutdown: &'a CancellationToken,
    /// Loop name for the watchdog.
    pub loop_name: &'a str,
    /// The largest (source timestamp − our clock when we read it) seen, in milliseconds: the
    /// server's clock is at least our clock plus this (see `Engine::build`).
    pub server_ahead_ms: std::sync::atomic::AtomicI64,
    /// Rows the server answers per page at most, when it turned out to be fewer than
    /// `page_size` (0: not seen; see `Engine::probe_cap`).
    pub page_cap: std::sync::atomic::AtomicU32,
}

fn instant_of(text: &str) -> Option<chrono::DateTime<Utc>> {
    text.parse::<SoDateTime>().ok().map(|d| d.to_utc())
}

/// The later of two source timestamps (as written).
pub fn later(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (instant_of(&a), instant_of(&b)) {
            (Some(x), Some(y)) if y > x => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

fn shutting_down() -> Error {
    Error::Shutdown
}

impl Engine<'_> {
    fn alive(&self) {
        self.services.notifier.alive(self.loop_name);
    }

    fn cancelled(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        Ok(())
    }

    fn echo(&self) -> Option<EchoMode> {
        self.services
            .config
            .outbox
            .echo_suppression
            .then_some(match self.plan.shape {
                Shape::Row => EchoMode::Row,
                Shape::Entity => EchoMode::Entity,
            })
    }

    fn page_write(&self, parent: Option<i64>) -> PageWrite {
        PageWrite {
            parent,
            echo: self.echo(),
            echo_peers: self.services.sync.peers(self.plan.kind),
            ..PageWrite::new(self.plan.name.clone(), self.plan.kind, UtcTime::now())
        }
    }

    /// Since when a webhook must have announced a change for it to count as announced.
    fn unannounced_since(&self) -> Option<(&'static str, UtcTime)> {
        let entity = self.plan.kind.webhook_entity()?;
        if !self.plan.webhooks {
            return None;
        }
        let horizon = (self.plan.poll_interval * 3).max(Duration::from_secs(600));
        let since = Utc::now() - chrono::Duration::from_std(horizon).unwrap_or_default();
        Some((entity, UtcTime::from(since)))
    }

    async fn commit(&self, write: PageWrite) -> Result<Applied> {
        let applied = self
            .services
            .store
            .write(move |tx| records::apply(tx, &write))
            .await?;
        if let Some(seq) = applied.last_seq {
            self.services.feed.committed(seq.get());
        }
        self.record_metrics(applied);
        Ok(applied)
    }

    fn record_metrics(&self, applied: Applied) {
        let metrics = &self.services.metrics;
        let name = self.plan.name.as_str();
        for (op, n) in [
            ("insert", applied.inserts),
            ("update", applied.updates),
            ("delete", applied.deletes),
        ] {
            if n > 0 {
                metrics.inc(
                    "syncd_changes_total",
                    &[("subscription", name), ("op", op)],
                    n,
                );
            }
        }
        if applied.unannounced > 0 {
            metrics.inc(
                "syncd_unannounced_changes_total",
                &[("subscription", name)],
                applied.unannounced,
            );
        }
        if let Some(quarantined) = applied.quarantined {
            metrics.set(
                "syncd_quarantined_records",
                &[("subscription", name)],
                quarantined as f64,
            );
        }
        if applied.live_delta != 0 {
            let rows = metrics.get("syncd_rows", &[("subscription", name)]);
            metrics.set(
                "syncd_rows",
                &[("subscription", name)],
                rows + applied.live_delta as f64,
            );
        }
    }

    /// One archive page: `base` and `pk gt after`, ordered by the key.
    async fn fetch(
        &self,
        source: &Source,
        base: &Query,
        after: Option<i64>,
        top: u32,
    ) -> Result<(Vec<Row>, Instant)> {
        let key = self.plan.kind.primary_key();
        let mut query = base.clone();
        if let Some(after) = after {
            query = query.filter(col(key).gt(after));
        }
        let query = query
            .set_order_by(vec![(key.to_string(), Order::Asc)])
            .top(top);
        let asked = Instant::now();
        let url = format!("{}?{}", source.path(), query.to_query_string());
        let unexpected = |missing: String| Error::UnexpectedAnswer {
            subscription: self.plan.name.clone(),
            url: url.clone(),
            missing,
        };
        let rows = tokio::select! {
            rows = paginate::fetch(&self.client, source, &query) => match rows {
                Ok(rows) => rows,
                Err(superoffice::Error::MissingValue { excerpt, .. }) => {
                    return Err(unexpected(format!(
                        "no `value` array (the body starts with {excerpt:?})"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
            _ = self.shutdown.cancelled() => return Err(shutting_down()),
        };
        // Every row carries its primary key: a row without one is never skipped (it would
        // look deleted to a reconcile, and a page of them like the end of the data).
        if let Some(index) = rows.iter().position(|r| self.plan.row_id(r).is_none()) {
            return Err(unexpected(format!(
                "row {index} of {} has no `{}` (primary key)",
                rows.len(),
                self.plan.kind.primary_key()
            )));
        }
        tracing::debug!(
            subscription = %self.plan.name,
            rows = rows.len(),
            ms = asked.elapsed().as_secs_f64() * 1e3,
            "page fetched"
        );
        let read = Utc::now();
        if let Some(newest) = rows
            .iter()
            .filter_map(|r| self.plan.row_modified(r))
            .map(|d| d.to_utc())
            .max()
        {
            let ahead = (newest - read).num_milliseconds();
            self.server_ahead_ms
                .fetch_max(ahead, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((rows, Instant::now()))
    }

    /// Rows asked for per page: `page_size`, or the server's cap once one was seen.
    pub fn top(&self) -> u32 {
        match self.page_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.plan.page_size,
            cap => cap.min(self.plan.page_size),
        }
    }

    /// The default and maximum `$top` of SuperOffice are undocumented (FACTS §8.1). A server
    /// that answers fewer rows than asked although more exist would make a short page look like
    /// the end of the data. So when a full scan (initial load, resync, reconcile) gets a short
    /// page of at least [`PROBE_MIN`] rows, the next page is asked for once more: rows there
    /// mean the server caps `$top` at this page's length, which is remembered
    /// (`cursors.page_cap`) and used from then on (incremental windows included); the page is
    /// returned to be processed next. Returns `(requests made, next page)`.
    async fn probe_cap(
        &self,
        source: &Source,
        base: &Query,
        len: usize,
        last: Option<i64>,
    ) -> Result<(u64, Option<(Vec<Row>, Instant)>)> {
        let top = self.top();
        if len < PROBE_MIN || len >= top as usize || last.is_none() {
            return Ok((0, None));
        }
        let page = self.fetch(source, base, last, top).await?;
        if page.0.is_empty() {
            return Ok((1, None));
        }
        let cap = len as u32;
        self.page_cap
            .store(cap, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(subscription = %self.plan.name, asked = top, answered = cap, "the server caps $top below page_size; using its page size from now on");
        let name = self.plan.name.clone();
        self.services
            .store
            .write(move |tx| runs::set_page_cap(tx, &name, cap))
            .await?;
        Ok((0, Some(page)))
    }

    /// What a record stores: the transform's output as canonical JSON and its hash; `None`
    /// when the transform skips the record, or when it failed or ran out of its budget: then
    /// the record goes to `write.quarantine` (stored in the page's transaction, so the page
    /// and the cursor move on). `held`: the input a quarantined record failed with; when the
    /// record has not changed since, the transform is not run again (a record that made its
    /// transform loop would otherwise cost a thread on every pass that re-reads it); only a
    /// change or `syncd quarantine retry` runs it again. Fails only when no transform can run
    /// at all.
    async fn stored(
        &self,
        write: &mut PageWrite,
        id: i64,
        value: Value,
        modified: Option<String>,
        held: Option<&String>,
    ) -> Result<Option<Upsert>> {
        if let Some(held) = held
            && canonical_text_and_hash(&value).0 == *held
        {
            return Ok(None);
        }
        let raw = self.plan.transform.is_some().then(|| value.clone());
        let output = match self.plan.transform(value).await {
            Ok(output) => output,
            Err(Failure::Unavailable(reason)) => {
                return Err(Error::Degraded {
                    subscription: self.plan.name.clone(),
                    reason,
                });
            }
            Err(failure) => {
                let error = failure.to_string();
                tracing::warn!(subscription = %self.plan.name, id, %error, "transform failed; record quarantined");
                let json = raw
                    .map(|v| canonical_text_and_hash(&v).0)
                    .unwrap_or_default();
                write.quarantine.push(records::Rejected { id, json, error });
                return Ok(None);
            }
        };
        if raw.is_some() {
            write.transformed.push(id);
        }
        Ok(output.map(|stored| {
            let (json, hash) = canonical_text_and_hash(&stored);
            Upsert {
                id,
                json,
                hash,
                modified,
                entity_hash: None,
            }
        }))
    }

    /// The last key of a page (rows come in key order).
    fn last_key(&self, rows: &[Row]) -> Result<i64> {
        rows.iter()
            .filter_map(|r| self.plan.row_id(r))
            .max()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "subscription {:?}: a full page has no `{}` values",
                    self.plan.name,
                    self.plan.kind.primary_key()
                ))
            })
    }

    /// GETs an entity: `Ok(None)` when it is gone (404).
    async fn get_entity(&self, id: i64) -> Result<Option<Value>> {
        let id32 = i32::try_from(id).map_err(|_| {
            Error::Invalid(format!("{} id {id} does not fit the API", self.plan.kind))
        })?;
        match self.client.entities(self.plan.kind).get(id32).await {
            Ok(value) => Ok(Some(value)),
            Err(superoffice::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Turns archive rows into stored records and deletes: row shape directly, entity shape
    /// by fetching the entities whose timestamps moved (or all of them with `refetch_all`).
    ///
    /// Entity shape and same-second edits: an entity is fetched only when the server's clock
    /// has provably passed the second of its timestamp, so a later edit in that same second is
    /// in what we fetch and any later one carries a later timestamp. The server's clock is at
    /// least our clock plus the largest (timestamp read − our clock when it was read) seen so
    /// far; a row is fetched once its timestamp is [`SETTLE`] below that bound (or older than
    /// [`SETTLE_HORIZON_HOURS`]). A page never waits: a row changed within the last second is
    /// left for a later pass (its timestamp becomes the `floor` the next window starts from).
    /// Targeted refetches (`refetch_all`) instead wait until [`SETTLE`] after `read_at`.
    ///
    /// Returns the page write, the highest source timestamp of the page, the lowest timestamp
    /// of a row left for the next pass, and the number of entity requests made.
    async fn build(
        &self,
        rows: Vec<Row>,
        read_at: Instant,
        parent: Option<i64>,
        refetch_all: bool,
    ) -> Result<Built> {
        let mut write = self.page_write(parent);
        let mut newest: Option<(chrono::DateTime<Utc>, String)> = None;
        let mut floor: Option<String> = None;
        let mut requests = 0;
        let mut wanted: Vec<(i64, Option<String>)> = Vec::new();
        write.upserts.reserve(rows.len());
        // Quarantined records of this page (not for targeted refetches: they run it again).
        let held = if self.plan.transform.is_some() && !refetch_all {
            let ids: Vec<i64> = rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
            let name = self.plan.name.clone();
            self.services
                .store
                .read(move |conn| crate::store::quarantine::inputs(conn, &name, &ids))
                .await?
        } else {
            Default::default()
        };
        for row in rows {
            // `fetch` refused pages with rows lacking their key; none is skipped here.
            let Some(id) = self.plan.row_id(&row) else {
                continue;
            };
            let modified = self.plan.row_modified_text(&row).map(|(at, text)| {
                if newest.as_ref().is_none_or(|(n, _)| at > *n) {
                    newest = Some((at, text.clone()));
                }
                text
            });
            if self.plan.row_deleted(&row) {
                write.deletes.push(id);
                continue;
            }
            match self.plan.shape {
                Shape::Row => {
                    let json = self.plan.row_json(row);
                    if let Some(stored) = self
                        .stored(&mut write, id, json, modified, held.get(&id))
                        .await?
                    {
                        write.upserts.push(stored);
                    }
                }
                Shape::Entity => wanted.push((id, modified)),
            }
        }
        let max = newest.map(|(_, text)| text);
        let done = |write, max, floor, requests| {
            Ok(Built {
                write,
                max,
                floor,
                requests,
            })
        };
        if wanted.is_empty() {
            return done(write, max, floor, requests);
        }
        let ids: Vec<i64> = wanted.iter().map(|(id, _)| *id).collect();
        let name = self.plan.name.clone();
        let stored = self
            .services
            .store
            .read(move |conn| records::stored(conn, &name, &ids))
            .await?;
        let changed: Vec<(i64, Option<String>)> = wanted
            .into_iter()
            .filter(|(id, modified)| {
                refetch_all
                    || stored
                        .get(id)
                        .is_none_or(|s| s.deleted || s.modified != *modified)
            })
            .collect();
        let horizon = Utc::now() - chrono::Duration::hours(SETTLE_HORIZON_HOURS);
        let ahead = self
            .server_ahead_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let server_passed = (ahead != i64::MIN).then(|| {
            Utc::now() + chrono::Duration::milliseconds(ahead)
                - chrono::Duration::from_std(SETTLE).unwrap_or_default()
        });
        let settled = |modified: &Option<String>| {
            modified
                .as_deref()
                .and_then(instant_of)
                .is_some_and(|at| at < horizon || server_passed.is_some_and(|p| at <= p))
        };
        let mut fetch = Vec::with_capacity(changed.len());
        for (id, modified) in changed {
            if refetch_all || settled(&modified) {
                fetch.push((id, modified));
            } else {
                floor = earlier(floor, modified);
            }
        }
        if fetch.is_empty() {
            return done(write, max, floor, requests);
        }
        if refetch_all && !fetch.iter().all(|(_, m)| settled(m)) {
            tokio::select! {
                _ = tokio::time::sleep_until((read_at + SETTLE).into()) => {}
                _ = self.shutdown.cancelled() => return Err(shutting_down()),
            }
        }
        requests += fetch.len() as u64;
        let fetched: Vec<(i64, Option<String>, Option<Value>)> =
            stream::iter(fetch.into_iter().map(|(id, modified)| async move {
                self.get_entity(id).await.map(|v| (id, modified, v))
            }))
            .buffer_unordered(self.plan.concurrency)
            .try_collect()
            .await?;
        for (id, modified, entity) in fetched {
            match entity {
                None => write.deletes.push(id),
                Some(entity) if entity_deleted(self.plan.kind, &entity) => write.deletes.push(id),
                Some(entity) => {
                    let entity = strip_metadata(entity);
                    // Without a transform the stored document is the entity itself, so its
                    // hash is the entity hash: computed once.
                    let raw_hash = self.plan.transform.is_some().then(|| entity_hash(&entity));
                    if let Some(mut stored) = self
                        .stored(&mut write, id, entity, modified, held.get(&id))
                        .await?
                    {
                        stored.entity_hash = Some(raw_hash.unwrap_or_else(|| stored.hash.clone()));
                        write.upserts.push(stored);
                    }
                }
            }
        }
        write.upserts.sort_by_key(|u| u.id);
        write.deletes.sort_unstable();
        done(write, max, floor, requests)
    }

    /// A full (initial/resync) or incremental pass, resuming `state.resume` if a previous
    /// process stopped in the middle of one.
    pub async fn pass(&self, state: &SubState, kind: PassKind) -> Result<Outcome> {
        let mut resume = match &state.resume {
            Some(resume) => resume.clone(),
            None => Resume {
                kind,
                window: if state.incremental {
                    state.window_from.clone()
                } else {
                    None
                },
                parent: None,
                after: None,
                max: None,
                started: UtcTime::now(),
                floor: None,
            },
        };
        let window = resume.window.as_deref().and_then(Window::parse);
        let mut outcome = Outcome::default();
        let Some(parent_subscription) = &self.plan.parent else {
            self.scan(&mut resume, None, window, state, &mut outcome)
                .await?;
            return Ok(outcome);
        };
        loop {
            self.cancelled()?;
            let from = resume.parent.unwrap_or(i64::MIN);
            let parent_name = parent_subscription.clone();
            let batch = self
                .services
                .store
                .read(move |conn| records::parents(conn, &parent_name, from, 200))
                .await?;
            if batch.is_empty() {
                break;
            }
            for (id, json) in batch {
                let json: Map<String, Value> = match serde_json::from_str(&json) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                let parent = ParentRecord {
                    id,
                    json,
                    subscription: parent_subscription.clone(),
                };
                let name = self.plan.name.clone();
                let loaded = self
                    .services
                    .store
                    .read(move |conn| records::scope_loaded(conn, &name, id))
                    .await?;
                if resume.parent != Some(id) {
                    resume.parent = Some(id);
                    resume.after = None;
                }
                let scope_window = if loaded { window } else { None };
                self.scan(
                    &mut resume,
                    Some(&parent),
                    scope_window,
                    state,
                    &mut outcome,
                )
                .await?;
            }
        }
        // Every scope is done: close the pass.
        let mut write = self.page_write(None);
        write.cursor = Some(self.finish_cursor(state, &resume));
        outcome.applied += self.commit(write).await?;
        Ok(outcome)
    }

    fn finish_cursor(&self, state: &SubState, resume: &Resume) -> CursorWrite {
        let watermark = later(state.watermark.clone(), resume.max.clone());
        let cap = earlier(watermark.clone(), resume.floor.clone())
            .as_deref()
            .and_then(instant_of)
            .map(|w| w.naive_utc());
        CursorWrite::Finish {
            watermark,
            window_from: self.plan.next_window(cap, resume.started()).to_text(),
        }
    }

    /// Keyset scan of one scope. Each page is committed with the resume position; the last
    /// page of a plain subscription also closes the pass (watermark, next window), the last
    /// page of a child scope marks the scope loaded and moves on to the next parent.
    async fn scan(
        &self,
        resume: &mut Resume,
        parent: Option<&ParentRecord>,
        window: Option<Window>,
        state: &SubState,
        outcome: &mut Outcome,
    ) -> Result<()> {
        let source = self.plan.source(parent)?;
        let base = self.plan.base_query(&self.plan.select, parent, window)?;
        let parent_id = parent.map(|p| p.id);
        let unannounced = if resume.kind == PassKind::Poll {
            self.unannounced_since()
        } else {
            None
        };
        // Three stages overlap: page N+1 is fetched while page N is built, and page N-1 is
        // committed meanwhile on the store's blocking thread. Commits stay in page order.
        let mut in_flight: Option<tokio::task::JoinHandle<Result<Applied>>> = None;
        let result = async {
            let mut current = self.fetch(&source, &base, resume.after, self.top()).await?;
            outcome.requests += 1;
            loop {
                self.alive();
                let (rows, read_at) = current;
                let mut full = rows.len() >= self.top() as usize;
                let last = if rows.is_empty() {
                    None
                } else {
                    Some(self.last_key(&rows)?)
                };
                let mut probed = None;
                if !full && window.is_none() {
                    let (requests, page) = self.probe_cap(&source, &base, rows.len(), last).await?;
                    outcome.requests += requests;
                    if page.is_some() {
                        full = true;
                        probed = page;
                    }
                }
                outcome.fetched += rows.len() as u64;
                let count = rows.len();
                let build_page = async {
                    let began = Instant::now();
                    let Built {
                        mut write,
                        max,
                        floor,
                        requests,
                    } = self.build(rows, read_at, parent_id, false).await?;
                    resume.max = later(resume.max.take(), max);
                    resume.floor = earlier(resume.floor.take(), floor);
                    if full {
                        resume.after = last;
                        write.cursor = Some(CursorWrite::Progress(resume.clone()));
                    } else if let Some(parent) = parent_id {
                        resume.parent = Some(parent.saturating_add(1));
                        resume.after = None;
                        write.cursor = Some(CursorWrite::Progress(resume.clone()));
                        if window.is_none() {
                            write.scope_loaded = Some(parent);
                        }
                    } else {
                        write.cursor = Some(self.finish_cursor(state, resume));
                    }
                    write.unannounced = unannounced;
                    tracing::debug!(
                        subscription = %self.plan.name,
                        rows = count,
                        ms = began.elapsed().as_secs_f64() * 1e3,
                        "page built"
                    );
                    Ok::<_, Error>((write, requests))
                };
                let (next, built) = if let Some(page) = probed {
                    (Some(Ok(page)), build_page.await)
                } else if full {
                    let (next, built) =
                        tokio::join!(self.fetch(&source, &base, last, self.top()), build_page);
                    (Some(next), built)
                } else {
                    (None, build_page.await)
                };
                let (write, requests) = built?;
                outcome.requests += requests;
                if let Some(previous) = in_flight.take() {
                    outcome.applied += self.settle_commit(previous).await?;
                }
                in_flight = Some(self.start_commit(write));
                if resume.kind != PassKind::Poll {
                    self.services.notifier.status(&format!(
                        "{}: {} load, {} rows read",
                        self.plan.name, resume.kind, outcome.fetched
                    ));
                }
                match next {
                    Some(next) => {
                        current = next?;
                        outcome.requests += 1;
                    }
                    None => return Ok(()),
                }
                self.cancelled()?;
            }
        }
        .await;
        // The last page's commit (or the one in flight when something failed) completes
        // before the scan returns.
        if let Some(last) = in_flight.take() {
            let applied = self.settle_commit(last).await;
            match (&result, applied) {
                (_, Ok(applied)) => outcome.applied += applied,
                (Ok(()), Err(error)) => return Err(error),
                (Err(_), Err(error)) => {
                    tracing::warn!(subscription = %self.plan.name, %error, "committing a page failed")
                }
            }
        }
        result
    }

    /// Starts committing a page on the store's blocking thread.
    fn start_commit(&self, write: PageWrite) -> tokio::task::JoinHandle<Result<Applied>> {
        let store = self.services.store.clone();
        let feed = self.services.feed.clone();
        let name = self.plan.name.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let rows = write.upserts.len() + write.deletes.len();
            let applied = store.write(move |tx| records::apply(tx, &write)).await;
            // Wake feed readers as soon as the rows are visible, not when the pass settles.
            if let Ok(Applied {
                last_seq: Some(seq),
                ..
            }) = &applied
            {
                feed.committed(seq.get());
            }
            tracing::debug!(subscription = %name, rows, ms = began.elapsed().as_secs_f64() * 1e3, "page committed");
            applied
        })
    }

    /// Waits for a commit started by [`Engine::start_commit`] and counts it.
    async fn settle_commit(
        &self,
        handle: tokio::task::JoinHandle<Result<Applied>>,
    ) -> Result<Applied> {
        let applied = handle
            .await
            .map_err(|e| Error::Store(format!("commit task failed: {e}")))??;
        self.record_metrics(applied);
        Ok(applied)
    }

    /// Whether `n` deletes trip the mass-delete breaker with `live` rows stored.
    pub fn trips(&self, n: u64, live: i64) -> bool {
        let m = self.plan.mass_delete;
        n > m.absolute || (n as f64) > (live.max(0) as f64) * m.percent / 100.0
    }

    /// Confirms that records are gone: GET answers 404 or shows them deleted (kinds without
    /// GET by id: the archive no longer lists them). Stops once more than `stop_after` are
    /// confirmed. Returns the confirmed ids and the requests made.
    async fn confirm_deleted(
        &self,
        ids: Vec<i64>,
        stop_after: Option<u64>,
    ) -> Result<(Vec<i64>, u64)> {
        let mut confirmed = Vec::new();
        let mut requests = 0;
        if !self.plan.kind.supports_get() {
            let key = self.plan.kind.primary_key();
            for chunk in ids.chunks(REFETCH_BATCH) {
                let filter = chunk
                    .iter()
                    .map(|id| format!("{key} eq {id}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let query = Query::new()
                    .select([key])
                    .filter(Filter::raw(format!("({filter})")));
                let (rows, _) = self
                    .fetch(
                        &Source::List(self.plan.kind.name().to_string()),
                        &query,
                        None,
                        chunk.len() as u32,
                    )
                    .await?;
                requests += 1;
                let present: BTreeSet<i64> =
                    rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
                confirmed.extend(chunk.iter().filter(|id| !present.contains(id)));
            }
            return Ok((confirmed, requests));
        }
        let mut results = stream::iter(ids.into_iter().map(|id| async move {
            self.get_entity(id).await.map(|entity| {
                let gone = entity
                    .as_ref()
                    .is_none_or(|e| entity_deleted(self.plan.kind, e));
                (id, gone)
            })
        }))
        .buffer_unordered(self.plan.concurrency);
        while let Some(result) = results.next().await {
            let (id, gone) = result?;
            requests += 1;
            if gone {
                confirmed.push(id);
                if stop_after.is_some_and(|limit| confirmed.len() as u64 > limit) {
                    break;
                }
            }
            self.alive();
        }
        confirmed.sort_unstable();
        Ok((confirmed, requests))
    }

    /// Applies the webhook refetch queue, a batch at a time. Returns what it did and whether
    /// a child subscription saw records it does not know yet (the caller then polls).
    pub async fn drain_queue(&self, state: &SubState) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let mut unknown = false;
        loop {
            self.cancelled()?;
            let name = self.plan.name.clone();
            let batch = self
                .services
                .store
                .read(move |conn| webhooks::queued(conn, &name, REFETCH_BATCH))
                .await?;
            if batch.is_empty() {
                return Ok((outcome, unknown));
            }
            let (done, saw_unknown) = self.refetch(&batch, state).await?;
            outcome.fetched += done.fetched;
            outcome.requests += done.requests;
            outcome.applied += done.applied;
            unknown |= saw_unknown;
        }
    }

    /// One batch of targeted refetches: the records' archive rows (with the subscription's
    /// filter), their entities (entity shape), and a confirmed delete for each announced
    /// record that is no longer listed.
    async fn refetch(&self, batch: &[Queued], state: &SubState) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let ids: Vec<i64> = batch.iter().map(|q| q.id).collect();
        let key = self.plan.kind.primary_key();
        let filter = ids
            .iter()
            .map(|id| format!("{key} eq {id}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = self.plan.parent.is_some();
        let (source, base) = if child {
            // The scope filter needs a parent; look the records up by key only and keep
            // those this subscription already holds (new ones come with the next pass).
            (
                Source::List(self.plan.kind.name().to_string()),
                Query::new().select(self.plan.select.iter().cloned()),
            )
        } else {
            (
                self.plan.source(None)?,
                self.plan.base_query(&self.plan.select, None, None)?,
            )
        };
        let base = base.filter(Filter::raw(format!("({filter})")));
        let name = self.plan.name.clone();
        let lookup = ids.clone();
        let stored = self
            .services
            .store
            .read(move |conn| records::stored(conn, &name, &lookup))
            .await?;
        let (rows, mut read_at) = self.fetch(&source, &base, None, ids.len() as u32).await?;
        outcome.requests += 1;
        outcome.fetched += rows.len() as u64;
        // Entity shape settles relative to when the newest event arrived (see SETTLE): the
        // edit it announces happened before that.
        if let Some(newest) = batch.iter().map(|q| q.queued_at.at()).max() {
            let age = (Utc::now() - newest).to_std().unwrap_or_default();
            if let Some(received) = Instant::now().checked_sub(age.min(SETTLE)) {
                read_at = read_at.min(received);
            }
        }
        let mut unknown = false;
        let present: BTreeSet<i64> = rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| {
                let known = self
                    .plan
                    .row_id(r)
                    .is_some_and(|id| stored.get(&id).is_some_and(|s| !s.deleted));
                if child && !known {
                    unknown = true;
                }
                !child || known
            })
            .collect();
        let Built {
            mut write,
            requests,
            ..
        } = self.build(rows, read_at, None, true).await?;
        outcome.requests += requests;
        // Announced but not listed: deleted, or outside the filter. Confirm before deleting.
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !present.contains(id) && stored.get(id).is_some_and(|s| !s.deleted))
            .collect();
        if !missing.is_empty() {
            let (confirmed, requests) = self.confirm_deleted(missing, None).await?;
            outcome.requests += requests;
            if state.degraded.is_some() {
                if !confirmed.is_empty() {
                    tracing::warn!(subscription = %self.plan.name, deletes = confirmed.len(), "degraded: holding back webhook-confirmed deletes until `syncd reconcile`");
                }
            } else {
                let name = self.plan.name.clone();
                let live = self
                    .services
                    .store
                    .read(move |conn| records::live_count(conn, &name))
                    .await?;
                if self.trips(confirmed.len() as u64, live) {
                    let reason =
                        self.breaker_reason(&confirmed.len().to_string(), live, "webhooks");
                    self.degrade(&reason).await?;
                } else {
                    write.deletes.extend(confirmed);
                }
            }
        }
        write.dequeue = batch.iter().map(|q| (q.id, q.event_id.clone())).collect();
        outcome.applied += self.commit(write).await?;
        Ok((outcome, unknown))
    }

    fn breaker_reason(&self, n: &str, live: i64, source: &str) -> String {
        let m = self.plan.mass_delete;
        format!(
            "mass-delete breaker: {source} would delete {n} of {live} records (limit: more than {}% or {}); nothing was deleted. Check the tenant, then run `syncd reconcile {}` to apply the deletes or `syncd resync {}` to reload",
            m.percent, m.absolute, self.plan.name, self.plan.name
        )
    }

    async fn degrade(&self, reason: &str) -> Result<()> {
        let name = self.plan.name.clone();
        let text = reason.to_string();
        self.services
            .store
            .write(move |tx| runs::degrade(tx, &name, &text, UtcTime::now()))
            .await?;
        self.services.metrics.set(
            "syncd_subscription_degraded",
            &[("subscription", self.plan.name.as_str())],
            1.0,
        );
        tracing::error!(subscription = %self.plan.name, %reason, "subscription degraded");
        Ok(())
    }

    /// Reconcile: scan primary keys only, diff with the live records, confirm each candidate,
    /// then delete — unless the breaker trips (then the subscription is degraded and nothing
    /// is deleted). `force` (an operator's `syncd reconcile` while degraded) skips the breaker
    /// and lifts the degraded state. Returns the outcome and whether the breaker tripped.
    pub async fn reconcile(&self, state: &SubState, force: bool) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let select = vec![self.plan.kind.primary_key().to_string()];
        let mut candidates: Vec<i64> = Vec::new();
        let mut scopes: Vec<Option<ParentRecord>> = Vec::new();
        match &self.plan.parent {
            None => scopes.push(None),
            Some(parent_subscription) => {
                let mut from = i64::MIN;
                loop {
                    let parent_name = parent_subscription.clone();
                    let batch = self
                        .services
                        .store
                        .read(move |conn| records::parents(conn, &parent_name, from, 500))
                        .await?;
                    let Some(last) = batch.last().map(|(id, _)| *id) else {
                        break;
                    };
                    for (id, json) in batch {
                        let json = match serde_json::from_str(&json) {
                            Ok(Value::Object(map)) => map,
                            _ => Map::new(),
                        };
                        scopes.push(Some(ParentRecord {
                            id,
                            json,
                            subscription: parent_subscription.clone(),
                        }));
                    }
                    from = last.saturating_add(1);
                }
            }
        }
        for scope in &scopes {
            let parent = scope.as_ref();
            let source = self.plan.source(parent)?;
            let base = self.plan.base_query(&select, parent, None)?;
            let mut after: Option<i64> = None;
            let mut pending: Option<(Vec<Row>, Instant)> = None;
            loop {
                self.cancelled()?;
                self.alive();
                let (rows, _) = match pending.take() {
                    Some(page) => page,
                    None => self.fetch(&source, &base, after, self.top()).await?,
                };
                outcome.requests += 1;
                outcome.fetched += rows.len() as u64;
                let mut full = rows.len() >= self.top() as usize;
                let seen: BTreeSet<i64> = rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
                if !full {
                    let (requests, page) = self
                        .probe_cap(&source, &base, rows.len(), seen.last().copied())
                        .await?;
                    outcome.requests += requests;
                    if page.is_some() {
                        full = true;
                        pending = page;
                    }
                }
                let upto = if full { seen.last().copied() } else { None };
                let name = self.plan.name.clone();
                let parent_id = parent.map(|p| p.id);
                let live = self
                    .services
                    .store
                    .read(move |conn| {
                        records::live_ids_between(conn, &name, parent_id, after, upto)
                    })
                    .await?;
                candidates.extend(live.into_iter().filter(|id| !seen.contains(id)));
                if !full {
                    break;
                }
                after = upto;
            }
        }
        if let Some(parent_subscription) = &self.plan.parent {
            let name = self.plan.name.clone();
            let parent_name = parent_subscription.clone();
            let orphans = self
                .services
                .store
                .read(move |conn| records::orphans(conn, &name, &parent_name))
                .await?;
            candidates.extend(orphans);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let name = self.plan.name.clone();
        let live = self
            .services
            .store
            .read(move |conn| records::live_count(conn, &name))
            .await?;
        let degraded = state.degraded.is_some();
        let check_breaker = !(force && degraded);
        let limit = {
            let m = self.plan.mass_delete;
            m.absolute
                .min(((live.max(0) as f64) * m.percent / 100.0).floor() as u64)
        };
        let (confirmed, requests) = if candidates.is_empty() {
            (Vec::new(), 0)
        } else {
            self.confirm_deleted(candidates, check_breaker.then_some(limit))
                .await?
        };
        outcome.requests += requests;
        if check_breaker && self.trips(confirmed.len() as u64, live) {
            let at_least = if confirmed.len() as u64 > limit {
                "at least "
            } else {
                ""
            };
            let reason =
                self.breaker_reason(&format!("{at_least}{}", confirmed.len()), live, "reconcile");
            self.degrade(&reason).await?;
            return Ok((outcome, true));
        }
        let mut write = self.page_write(None);
        write.reconciled = true;
        write.unannounced = self.unannounced_since();
        write.deletes = confirmed;
        write.clear_degraded = degraded;
        outcome.applied += self.commit(write).await?;
        // Echoes older than a day were seen by every poll that could see them.
        let kind = self.plan.kind;
        let before = UtcTime::now().minus(chrono::Duration::days(1));
        self.services
            .store
            .write(move |tx| records::expire_echoes(tx, kind, before))
            .await?;
        if degraded {
            self.services.metrics.set(
                "syncd_subscription_degraded",
                &[("subscription", self.plan.name.as_str())],
                0.0,
            );
            tracing::info!(subscription = %self.plan.name, "reconcile applied by request; the breaker is lifted");
        }
        Ok((outcome, false))
    }
}
