//! `[retention]` and `[supervisor]`: how long history is kept and how failed loops restart.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::raw::{RawRetention, RawSupervisor};
use super::values::{BACKOFF, Ctx, SECOND};
use crate::Result;

/// Restart timing of a supervised loop (`[supervisor]`; the supervisor is
/// `crate::supervise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The first backoff after a failure.
    pub initial: Duration,
    /// The longest backoff (the backoff doubles per failure in a row up to this).
    pub max: Duration,
    /// A restarted loop that runs this long without failing is healthy again.
    pub healthy_after: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The backoff after `failing` failures in a row (`failing` ≥ 1).
    pub fn backoff(&self, failing: u32) -> Duration {
        let factor = 1u32 << failing.saturating_sub(1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// `[retention]` durations: longer than zero (rows would be deleted at once), at most 100 years.
pub(super) const RETENTION: RangeInclusive<Duration> = SECOND..=Duration::from_secs(36_500 * 86400);

/// `[retention]`: how long history rows are kept before the daemon deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `webhook_events` rows (by `received_at`; only events whose refetch is done).
    pub webhook_events: Duration,
    /// `runs` rows (by `started_at`; only ended runs).
    pub runs: Duration,
    /// `changes` rows (by `at`), only once every `[[sink]]` acknowledged them, never the
    /// newest row (`None`, the default: the feed is kept).
    pub changes: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            webhook_events: Duration::from_secs(7 * 86400),
            runs: Duration::from_secs(30 * 86400),
            changes: None,
        }
    }
}

/// `[retention]`.
pub(super) fn retention(ctx: &Ctx<'_>, raw: &RawRetention) -> Result<Retention> {
    let defaults = Retention::default();
    Ok(Retention {
        webhook_events: ctx.duration(
            raw.webhook_events.as_ref(),
            "retention.webhook_events",
            defaults.webhook_events,
            RETENTION,
        )?,
        runs: ctx.duration(
            raw.runs.as_ref(),
            "retention.runs",
            defaults.runs,
            RETENTION,
        )?,
        changes: ctx.optional_duration(raw.changes.as_ref(), "retention.changes", RETENTION)?,
    })
}

/// `[supervisor]`: `restart_max_backoff` not shorter than `restart_backoff`.
pub(super) fn supervisor(ctx: &Ctx<'_>, sv: &RawSupervisor) -> Result<Policy> {
    let defaults = Policy::default();
    let supervisor = Policy {
        initial: ctx.duration(
            sv.restart_backoff.as_ref(),
            "supervisor.restart_backoff",
            defaults.initial,
            BACKOFF,
        )?,
        max: ctx.duration(
            sv.restart_max_backoff.as_ref(),
            "supervisor.restart_max_backoff",
            defaults.max,
            BACKOFF,
        )?,
        healthy_after: ctx.duration(
            sv.healthy_after.as_ref(),
            "supervisor.healthy_after",
            defaults.healthy_after,
            BACKOFF,
        )?,
    };
    if let (Some(span), true) = (
        sv.restart_max_backoff
            .as_ref()
            .or(sv.restart_backoff.as_ref()),
        supervisor.max < supervisor.initial,
    ) {
        return Err(ctx.at(
            span,
            "supervisor.restart_max_backoff",
            "must not be shorter than supervisor.restart_backoff",
        ));
    }
    Ok(supervisor)
}
