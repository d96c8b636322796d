//! Reading the archive: keyset scans of one scope through [`superoffice::paginate::Keyset`]
//! (`pk gt after`, ordered by the key, resumable after a key, with the `$top` cap probe on full
//! scans), single keyset pages for targeted lookups, and the scan of a scope that writes each
//! page with its resume position.
//!
//! Every archive page goes through `Engine::next_page` or `Engine::fetch`, which refuse answers
//! of unexpected shape: a body without its `value` array ([`superoffice::Error::MissingValue`]),
//! a row without the primary key ([`superoffice::Error::MissingKey`]) or a page that does not
//! advance past the key it was asked to start after ([`superoffice::Error::KeysetStalled`]) is
//! [`Error::UnexpectedAnswer`] (subscription, request, what was wrong), so the run fails before
//! anything of that page is built or committed, and a reconcile's id scan can never take a
//! malformed answer for "these records are gone".

use std::time::Instant;

use chrono::Utc;
use superoffice::odata::{Query, Row};
use superoffice::paginate::{self, Keyset, KeysetPage, Source};

use super::build::Built;
use super::engine::{Engine, Outcome, earlier, later, shutting_down};
use super::plan::{ParentRecord, Window};
use crate::store::records::{Applied, CursorWrite};
use crate::store::runs::{self, Resume, SubState};
use crate::store::types::PassKind;
use crate::{Error, Result};

/// A short page of a full scan with at least this many rows is checked for a server-side
/// `$top` cap (see `Engine::keyset`).
pub const PROBE_MIN: usize = 100;

impl Engine<'_> {
    /// Rows asked for per page: `page_size`, or the server's cap once one was seen.
    pub fn top(&self) -> u32 {
        match self.page_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.plan.page_size,
            cap => cap.min(self.plan.page_size),
        }
    }

    /// A keyset scan of `base` from `source` on the primary key, [`Engine::top`] rows a page,
    /// resuming after `after`.
    ///
    /// `probe`: the default and maximum `$top` of SuperOffice are undocumented (FACTS §8.1). A
    /// server that answers fewer rows than asked although more exist would make a short page
    /// look like the end of the data. So a full scan (initial load, resync, reconcile) asks once
    /// more after a short page of at least [`PROBE_MIN`] rows: rows there mean the server caps
    /// `$top` at this page's length, which [`Engine::next_page`] remembers (`cursors.page_cap`)
    /// and uses from then on (incremental windows included); the probed rows are the next page.
    pub(super) fn keyset(
        &self,
        source: Source,
        base: Query,
        after: Option<i64>,
        probe: bool,
    ) -> Keyset {
        let keyset = Keyset::new(source, base, self.plan.kind.primary_key())
            .page_size(self.top())
            .after(after);
        if probe {
            keyset.probe_cap(PROBE_MIN)
        } else {
            keyset
        }
    }

    /// The next page of a keyset scan (`None` once a page ended it), refused when the answer
    /// has an unexpected shape. A cap the probe revealed is stored and used from now on.
    pub(super) async fn next_page(&self, pages: &mut Keyset) -> Result<Option<KeysetPage>> {
        let asked = Instant::now();
        let top = pages.current_page_size();
        // Biased: after the last page (or with probed rows) the scan answers at once, and a
        // shutdown does not turn that into an error.
        let page = tokio::select! {
            biased;
            page = pages.next_page(&self.client) => page.map_err(|e| self.answer_error(e))?,
            _ = self.shutdown.cancelled() => return Err(shutting_down()),
        };
        let Some(page) = page else {
            return Ok(None);
        };
        tracing::debug!(
            subscription = %self.plan.name,
            rows = page.rows.len(),
            requests = page.requests,
            ms = asked.elapsed().as_secs_f64() * 1e3,
            "page fetched"
        );
        self.observe(&page.rows, page.read_at);
        if let Some(probed) = pages.probed_rows() {
            self.observe(probed, Instant::now());
        }
        if let Some(cap) = page.cap {
            self.page_cap
                .store(cap, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(subscription = %self.plan.name, asked = top, answered = cap, "the server caps $top below page_size; using its page size from now on");
            let name = self.plan.name.clone();
            self.runtime
                .store
                .write(move |tx| runs::set_page_cap(tx, &name, cap))
                .await?;
        }
        Ok(Some(page))
    }

    /// One archive page of at most `top` rows: `base` ordered by the key, checked like the
    /// pages of a scan. Returns the rows and when they were read.
    pub(super) async fn fetch(
        &self,
        source: &Source,
        base: &Query,
        top: u32,
    ) -> Result<(Vec<Row>, Instant)> {
        let asked = Instant::now();
        let key = self.plan.kind.primary_key();
        let rows = tokio::select! {
            rows = paginate::keyset_page(&self.client, source, base, key, None, top) => {
                rows.map_err(|e| self.answer_error(e))?
            }
            _ = self.shutdown.cancelled() => return Err(shutting_down()),
        };
        tracing::debug!(
            subscription = %self.plan.name,
            rows = rows.len(),
            ms = asked.elapsed().as_secs_f64() * 1e3,
            "page fetched"
        );
        let read_at = Instant::now();
        self.observe(&rows, read_at);
        Ok((rows, read_at))
    }

    /// An SDK error of a page, with answers of unexpected shape as
    /// [`Error::UnexpectedAnswer`]: a row without its primary key is never skipped (it would
    /// look deleted to a reconcile, and a page of them like the end of the data).
    fn answer_error(&self, error: superoffice::Error) -> Error {
        let unexpected = |url: String, missing: String| Error::UnexpectedAnswer {
            subscription: self.plan.name.clone(),
            url,
            missing,
        };
        match error {
            superoffice::Error::MissingValue { path, excerpt } => unexpected(
                path,
                format!("no `value` array (the body starts with {excerpt:?})"),
            ),
            superoffice::Error::MissingKey {
                path,
                key,
                row,
                rows,
            } => unexpected(
                path,
                format!("row {row} of {rows} has no `{key}` (primary key)"),
            ),
            superoffice::Error::KeysetStalled {
                path,
                key,
                after,
                last,
            } => unexpected(
                path,
                format!(
                    "rows after {key} {after} (the page ends at {last}: the keyset filter was not applied)"
                ),
            ),
            error => error.into(),
        }
    }

    /// Raises the lower bound of the server's clock from the rows' timestamps, read at
    /// `read_at` (see `Engine::build`).
    fn observe(&self, rows: &[Row], read_at: Instant) {
        let read = Utc::now() - chrono::Duration::from_std(read_at.elapsed()).unwrap_or_default();
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
        let unannounced = if resume.kind == PassKind::Poll {
            self.unannounced_since()
        } else {
            None
        };
        // Three stages overlap: page N+1 is fetched while page N is built, and page N-1 is
        // committed meanwhile on the store's blocking thread. Commits stay in page order.
        let mut in_flight: Option<tokio::task::JoinHandle<Result<Applied>>> = None;
        let mut pages = self.keyset(source, base, resume.after, window.is_none());
        let result = async {
            let mut current = self.next_page(&mut pages).await?;
            while let Some(page) = current {
                self.alive();
                outcome.requests += page.requests;
                outcome.fetched += page.rows.len() as u64;
                let KeysetPage {
                    rows,
                    more: full,
                    last,
                    read_at,
                    ..
                } = page;
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
                // The next page (none after the last: no request then) while this one is
                // built; rows a cap probe already fetched come back at once.
                let (next, built) = tokio::join!(self.next_page(&mut pages), build_page);
                let (write, requests) = built?;
                outcome.requests += requests;
                if let Some(previous) = in_flight.take() {
                    outcome.applied += self.settle_commit(previous).await?;
                }
                in_flight = Some(self.start_commit(write));
                if resume.kind != PassKind::Poll {
                    self.runtime.notifier.status(&format!(
                        "{}: {} load, {} rows read",
                        self.plan.name, resume.kind, outcome.fetched
                    ));
                }
                current = next?;
                if current.is_some() {
                    self.cancelled()?;
                }
            }
            Ok(())
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
