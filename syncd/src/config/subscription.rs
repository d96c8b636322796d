//! `[[subscription]]`: what is synced from which tenant, how often, and in which shape.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use superoffice::entity::EntityKind;
use toml::Spanned;

use super::raw::RawSubscription;
use super::tenant::Tenant;
use super::values::{Ctx, SECOND};
use crate::Result;

/// `poll_interval`: zero would be a hot loop.
const POLL_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(30 * 86_400);
/// The default `poll_interval_max` with webhooks on: a change webhooks missed (a lost
/// delivery, a stopped registration) is found by a poll at most this late.
const POLL_INTERVAL_MAX: Duration = Duration::from_secs(2 * 3600);
/// `reconcile_interval`.
const RECONCILE_INTERVAL: RangeInclusive<Duration> = SECOND..=Duration::from_secs(365 * 86_400);

/// What is stored per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Archive columns, one request per page.
    Row,
    /// The full entity, fetched by id for each changed row.
    Entity,
}

/// Mass-delete breaker: more than `percent`% of the rows or more than `absolute` rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassDelete {
    /// Percentage of stored rows.
    pub percent: f64,
    /// Absolute number of rows.
    pub absolute: u64,
}

/// One `[[subscription]]`.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Unique name.
    pub name: String,
    /// Tenant name.
    pub tenant: String,
    /// Entity.
    pub entity: EntityKind,
    /// Row or full entity.
    pub shape: Shape,
    /// Archive columns (row shape; the primary key and last-modified columns are always added).
    pub columns: Vec<String>,
    /// Extra `$filter`, ANDed with the sync filter.
    pub filter: Option<String>,
    /// Path parameters; a value `{parent.column}` is taken from the parent's rows.
    pub path: BTreeMap<String, String>,
    /// Extra query parameters.
    pub query: BTreeMap<String, String>,
    /// Parent subscription whose rows provide path values.
    pub parent: Option<String>,
    /// jq program applied to each record before storing.
    pub transform: Option<String>,
    /// Time between incremental polls.
    pub poll_interval: Duration,
    /// The longest the time between polls stretches to while webhooks are healthy
    /// (`poll_interval_max`; default the larger of 2 h and `poll_interval` with webhooks on,
    /// else `poll_interval`; equal to `poll_interval`: no stretching).
    pub poll_interval_max: Duration,
    /// Use webhooks (when the tenant has them) for faster change detection.
    pub webhooks: bool,
    /// Time between delete reconciliations.
    pub reconcile_interval: Duration,
    /// Mass-delete breaker.
    pub mass_delete: MassDelete,
    /// Rows per page.
    pub page_size: u32,
    /// Days the incremental window overlaps the watermark day.
    pub overlap_days: u32,
    /// Concurrent entity fetches (entity shape).
    pub concurrency: usize,
    /// Time budget of the transform per record (`transform_timeout`, default 100 ms, > 0).
    pub transform_timeout: Duration,
    /// Largest transform output per record, bytes of JSON (`transform_max_output`, default
    /// 1 MiB, > 0).
    pub transform_max_output: usize,
}

/// Every `[[subscription]]`, in file order: names are unique, each names a tenant and a
/// parent defined before it.
pub(super) fn subscriptions(
    ctx: &Ctx<'_>,
    raw: &[Spanned<RawSubscription>],
    tenants: &[Tenant],
) -> Result<Vec<Subscription>> {
    let mut subscriptions: Vec<Subscription> = Vec::new();
    for (index, spanned) in raw.iter().enumerate() {
        let new = subscription(ctx, index, spanned, tenants, &subscriptions)?;
        subscriptions.push(new);
    }
    Ok(subscriptions)
}

/// The `index`th `[[subscription]]`, after the `earlier` ones.
fn subscription(
    ctx: &Ctx<'_>,
    index: usize,
    spanned: &Spanned<RawSubscription>,
    tenants: &[Tenant],
    earlier: &[Subscription],
) -> Result<Subscription> {
    let s = spanned.get_ref();
    let key = |k: &str| format!("subscription[{index}].{k}");
    if earlier.iter().any(|x| x.name == s.name) {
        return Err(ctx.at(
            spanned,
            &key("name"),
            format!("subscription {:?} is defined twice", s.name),
        ));
    }
    let tenant = match &s.tenant {
        Some(t) if tenants.iter().any(|x| x.name == *t.get_ref()) => t.get_ref().clone(),
        Some(t) => {
            return Err(ctx.at(
                t,
                &key("tenant"),
                format!("no [[tenant]] is named {:?}", t.get_ref()),
            ));
        }
        None if tenants.len() == 1 => tenants[0].name.clone(),
        None => {
            return Err(ctx.at(
                spanned,
                &key("tenant"),
                "required when there is not exactly one tenant",
            ));
        }
    };
    let entity: EntityKind = s
        .entity
        .get_ref()
        .parse()
        .map_err(|e| ctx.at(&s.entity, &key("entity"), e))?;
    let shape = ctx.keyword(
        s.shape.as_ref(),
        &key("shape"),
        Shape::Row,
        "row or entity",
        |text| match text {
            "row" => Some(Shape::Row),
            "entity" => Some(Shape::Entity),
            _ => None,
        },
    )?;
    if shape == Shape::Entity && !entity.supports_get() {
        return Err(ctx.at(
            &s.entity,
            &key("shape"),
            format!("{entity} has no GET by id; use shape = \"row\""),
        ));
    }
    if let Some(parent) = &s.parent
        && !earlier.iter().any(|x| x.name == *parent.get_ref())
    {
        return Err(ctx.at(
            parent,
            &key("parent"),
            format!("no earlier subscription is named {:?}", parent.get_ref()),
        ));
    }
    if let Some(program) = &s.transform {
        crate::transform::Transform::compile(program.get_ref())
            .map_err(|e| ctx.at(program, &key("transform"), e))?;
    }
    let poll_interval = ctx.duration(
        s.poll_interval.as_ref(),
        &key("poll_interval"),
        Duration::from_secs(300),
        POLL_INTERVAL,
    )?;
    let webhooks = s.webhooks.unwrap_or(true);
    let poll_interval_max = ctx.duration(
        s.poll_interval_max.as_ref(),
        &key("poll_interval_max"),
        if webhooks {
            POLL_INTERVAL_MAX.max(poll_interval)
        } else {
            poll_interval
        },
        POLL_INTERVAL,
    )?;
    if let Some(max) = &s.poll_interval_max
        && poll_interval_max < poll_interval
    {
        return Err(ctx.at(
            max,
            &key("poll_interval_max"),
            format!(
                "{:?} is shorter than poll_interval ({}): give at least poll_interval (equal: the interval never stretches)",
                max.get_ref(),
                super::format_duration(poll_interval)
            ),
        ));
    }
    let reconcile_interval = ctx.duration(
        s.reconcile_interval.as_ref(),
        &key("reconcile_interval"),
        Duration::from_secs(6 * 3600),
        RECONCILE_INTERVAL,
    )?;
    let transform_timeout = ctx.duration(
        s.transform_timeout.as_ref(),
        &key("transform_timeout"),
        crate::transform::DEFAULT_TIMEOUT,
        Duration::from_millis(1)..=Duration::from_secs(60),
    )?;
    let transform_max_output = ctx.count(
        s.transform_max_output.as_ref(),
        &key("transform_max_output"),
        crate::transform::DEFAULT_MAX_OUTPUT,
        1..=(256 << 20),
    )?;
    Ok(Subscription {
        name: s.name.clone(),
        tenant,
        entity,
        shape,
        columns: s.columns.clone(),
        filter: s.filter.clone(),
        path: s.path.clone(),
        query: s.query.clone(),
        parent: s.parent.as_ref().map(|p| p.get_ref().clone()),
        transform: s.transform.as_ref().map(|t| t.get_ref().clone()),
        poll_interval,
        poll_interval_max,
        webhooks,
        reconcile_interval,
        mass_delete: MassDelete {
            percent: ctx.number(
                s.mass_delete_percent.as_ref(),
                &key("mass_delete_percent"),
                10.0,
                0.0..=100.0,
            )?,
            absolute: ctx.count(
                s.mass_delete_absolute.as_ref(),
                &key("mass_delete_absolute"),
                1000,
                0..=i64::MAX,
            )?,
        },
        // SuperOffice serves at most 1000 rows a page.
        page_size: ctx.count(s.page_size.as_ref(), &key("page_size"), 1000, 1..=1000)?,
        overlap_days: ctx.count(s.overlap_days.as_ref(), &key("overlap_days"), 1, 0..=365)?,
        concurrency: ctx.count(s.concurrency.as_ref(), &key("concurrency"), 4, 1..=64)?,
        transform_timeout,
        transform_max_output,
    })
}
