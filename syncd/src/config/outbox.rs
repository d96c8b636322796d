//! `[outbox]` and `[[route]]`: how publish requests are delivered.

use std::time::Duration;

use superoffice::entity::EntityKind;
use toml::Spanned;

use super::raw::{RawOutbox, RawRoute};
use super::tenant::Tenant;
use super::values::{BACKOFF, Ctx, format_duration};
use crate::Result;

/// Outbox (publish) settings.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// ForeignApp application name that holds idempotency keys.
    pub foreign_app: String,
    /// ForeignApp device name.
    pub device: String,
    /// ForeignApp key name.
    pub key_name: String,
    /// Attempts before a task is `dead`.
    pub max_attempts: u32,
    /// Concurrent deliveries.
    pub concurrency: usize,
    /// First retry delay; doubles per attempt.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Suppress subscription changes our own publishes caused.
    pub echo_suppression: bool,
    /// Tenant publishes go to (default: the first).
    pub tenant: Option<String>,
}

/// What to do when a conditional write answers 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Keep the task in `conflict` with both versions.
    Fail,
    /// Send again without the condition.
    Overwrite,
    /// Re-read the record and apply the patch to it (patches only).
    RefetchAndReapply,
}

/// Per-entity publish settings.
#[derive(Debug, Clone)]
pub struct Route {
    /// Entity.
    pub entity: EntityKind,
    /// 412 policy.
    pub conflict: ConflictPolicy,
    /// Upsert lookup: `$filter` template with `{Field}` placeholders from the payload.
    pub lookup_filter: Option<String>,
    /// Use the synced record's last-modified as `If-Unmodified-Since` when the task gives none.
    pub use_synced_last_modified: bool,
}

/// `[outbox]`: `max_backoff` not shorter than `backoff`, `tenant` one of `tenants`.
pub(super) fn outbox(ctx: &Ctx<'_>, o: &RawOutbox, tenants: &[Tenant]) -> Result<Outbox> {
    let outbox = Outbox {
        foreign_app: o.foreign_app.clone().unwrap_or_else(|| "syncd".into()),
        device: o.device.clone().unwrap_or_else(|| "syncd".into()),
        key_name: o
            .key_name
            .clone()
            .unwrap_or_else(|| "idempotency_key".into()),
        max_attempts: ctx.count(o.max_attempts.as_ref(), "outbox.max_attempts", 8, 1..=1000)?,
        concurrency: ctx.count(o.concurrency.as_ref(), "outbox.concurrency", 8, 1..=256)?,
        backoff: ctx.duration(
            o.backoff.as_ref(),
            "outbox.backoff",
            Duration::from_secs(1),
            BACKOFF,
        )?,
        max_backoff: ctx.duration(
            o.max_backoff.as_ref(),
            "outbox.max_backoff",
            Duration::from_secs(300),
            BACKOFF,
        )?,
        echo_suppression: o.echo_suppression.unwrap_or(true),
        tenant: o.tenant.as_ref().map(|t| t.get_ref().clone()),
    };
    if let (Some(span), true) = (
        o.max_backoff.as_ref().or(o.backoff.as_ref()),
        outbox.max_backoff < outbox.backoff,
    ) {
        return Err(ctx.at(
            span,
            "outbox.max_backoff",
            format!(
                "{} is shorter than outbox.backoff ({})",
                format_duration(outbox.max_backoff),
                format_duration(outbox.backoff)
            ),
        ));
    }
    if let Some(t) = &o.tenant
        && !tenants.iter().any(|x| x.name == *t.get_ref())
    {
        return Err(ctx.at(
            t,
            "outbox.tenant",
            format!("no [[tenant]] is named {:?}", t.get_ref()),
        ));
    }
    Ok(outbox)
}

/// Every `[[route]]`, in file order.
pub(super) fn routes(ctx: &Ctx<'_>, raw: &[Spanned<RawRoute>]) -> Result<Vec<Route>> {
    raw.iter()
        .enumerate()
        .map(|(index, spanned)| route(ctx, index, spanned.get_ref()))
        .collect()
}

/// The `index`th `[[route]]`.
fn route(ctx: &Ctx<'_>, index: usize, r: &RawRoute) -> Result<Route> {
    let key = |k: &str| format!("route[{index}].{k}");
    let entity: EntityKind = r
        .entity
        .get_ref()
        .parse()
        .map_err(|e| ctx.at(&r.entity, &key("entity"), e))?;
    let conflict = ctx.keyword(
        r.conflict.as_ref(),
        &key("conflict"),
        ConflictPolicy::Fail,
        "fail, overwrite or refetch-and-reapply",
        |text| match text {
            "fail" => Some(ConflictPolicy::Fail),
            "overwrite" => Some(ConflictPolicy::Overwrite),
            "refetch-and-reapply" => Some(ConflictPolicy::RefetchAndReapply),
            _ => None,
        },
    )?;
    Ok(Route {
        entity,
        conflict,
        lookup_filter: r.lookup_filter.clone(),
        use_synced_last_modified: r.use_synced_last_modified.unwrap_or(true),
    })
}
