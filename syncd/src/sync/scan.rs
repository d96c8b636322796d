//! Reading the archive: keyset pages of one scope (`pk gt after`, ordered by the key), the
//! scan of a scope that writes each page with its resume position, and the `$top` cap probe.
//!
//! Every archive page goes through `Engine::fetch`, which refuses answers of unexpected shape:
//! a body without its `value` array ([`superoffice::Error::MissingValue`]) or a row without
//! the primary key is [`Error::UnexpectedAnswer`] (subscription, request, what was missing), so
//! the run fails before anything of that page is built or committed, and a reconcile's id scan
//! can never take a malformed answer for "these records are gone".

use std::time::Instant;

use chrono::Utc;
use superoffice::odata::{Order, Query, Row, col};
use superoffice::paginate::{self, Source};

use super::build::Built;
use super::db::{self, Applied, CursorWrite, Resume, SubState};
use super::engine::{Engine, Outcome, earlier, later, shutting_down};
use super::plan::{ParentRecord, Window};
use crate::{Error, Result};

/// A short page of a full scan with at least this many rows is checked for a server-side
/// `$top` cap (see `Engine::probe_cap`).
pub const PROBE_MIN: usize = 100;

impl Engine<'_> {
    /// One archive page: `base` and `pk gt after`, ordered by the key.
    pub(super) async fn fetch(
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
    pub(super) async fn probe_cap(
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
            .write(move |tx| db::set_page_cap(tx, &name, cap))
            .await?;
        Ok((0, Some(page)))
    }

    /// The last key of a page (rows come in key order).
    pub(super) fn last_key(&self, rows: &[Row]) -> Result<i64> {
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

    /// Keyset scan of one scope. Each page is committed with the resume position; the last
    /// page of a plain subscription also closes the pass (watermark, next window), the last
    /// page of a child scope marks the scope loaded and moves on to the next parent.
    pub(super) async fn scan(
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
        let unannounced = if resume.kind == "poll" {
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
                    write.unannounced = unannounced.clone();
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
                if resume.kind != "poll" {
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
}
