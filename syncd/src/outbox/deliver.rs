//! Delivering one task: the API calls of each action, conflict policies, and how a failure is
//! classified (retry, dead, failed, conflict).
//!
//! Creates (and the create branch of upserts) are exactly-once:
//!
//! 1. A create whose POST already answered (`result_id` recorded) only makes sure its key is
//!    stored and reads the record back.
//! 2. Otherwise the record key is looked up in ForeignApp (batched at claim time for fresh
//!    tasks); a hit is adopted, nothing is sent.
//! 3. If an earlier attempt may have reached the server (`maybe_sent`: a crash, a timeout, a
//!    5xx), [`super::recover`] searches for the record that POST may have left without a key.
//! 4. Only then the POST; its id is committed to the ledger before anything else, then the key
//!    is stored, then the task is marked done with its echo row.
//!
//! Every lookup that decides "no such record, so create it" (the ForeignApp key, an upsert's
//! `lookup_filter`, the orphan search) only concludes "absent" from a well-formed answer: an
//! error, a list without `value`, a row without its id or a key answer without `RecordId` stops
//! the attempt as a failure that is retried (or `dead` after `max_attempts`), never a create.
//!
//! A per-entity lock keeps step 3 from mistaking a concurrent create's fresh record (POSTed,
//! id not yet committed) for an orphan: POSTs hold it shared until their id is committed, the
//! search holds it exclusively.
//!
//! Decisions are values: every step answers `Ok` with what happened ([`Outcome`]: a
//! [`Finish`] to record, a release at shutdown, a POST whose id is committed), and `Err` only
//! with a [`Failure`] (the API failed, a local step failed, or the task cannot be delivered as
//! it stands), which [`Delivery::attempt`] classifies into retry, dead or failed. This module
//! calls [`super::recover`]; recover knows nothing of delivery. The tenant's client is resolved
//! once per attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};
use superoffice::Client;
use superoffice::entity::EntityKind;
use superoffice::odata::Query;
use tokio_util::sync::CancellationToken;

use super::commit::Committer;
use super::foreign::ForeignKeys;
use super::ledger::{Echo, Finish};
use super::recover::{self, Orphan};
use super::task::{Action, Task};
use super::write::WriteOp;
use super::{OutboxShared, failpoint};
use crate::config::ConflictPolicy;
use crate::hash;
use crate::store::tasks;
use crate::{Error, Runtime};

/// What the claim-time batch lookup learnt about a create's record key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// Not looked up (or the lookup failed): look it up now.
    Unknown,
    /// No record carries the key.
    Absent,
    /// This record carries it.
    Found(i64),
}

/// How an attempt ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Record this.
    Finish(Box<Finish>),
    /// Shutting down before any write was sent: give the task back unchanged.
    Release,
    /// A create's POST answered and its id is committed; storing the key is left to
    /// `Delivery::store_key`, outside the delivery slot (the task stays `in_flight`).
    Posted {
        /// The new record.
        record: i64,
        /// What the POST answered.
        answer: Box<Value>,
    },
}

impl From<Finish> for Outcome {
    fn from(finish: Finish) -> Self {
        Outcome::Finish(Box::new(finish))
    }
}

/// Why an attempt could not go on (what it decided is an `Ok`).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The API failed; `sent`: a non-idempotent write may have reached the server.
    Api {
        error: superoffice::Error,
        sent: bool,
    },
    /// The ledger (or another local step) failed.
    Local(Error),
    /// The task cannot be delivered as it stands (an invalid payload, an unknown tenant, an
    /// answer that leaves it in doubt): it fails, for an operator, and is not retried.
    Permanent(String),
}

impl Failure {
    /// A write that may have reached the server failed.
    fn sent(error: superoffice::Error) -> Failure {
        Failure::Api { error, sent: true }
    }
}

impl From<superoffice::Error> for Failure {
    fn from(error: superoffice::Error) -> Self {
        Failure::Api { error, sent: false }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::Api(error) => Failure::Api { error, sent: false },
            other => Failure::Local(other),
        }
    }
}

type Step<T> = Result<T, Failure>;

/// Everything a delivery needs.
pub(crate) struct Delivery<'a> {
    pub runtime: &'a Arc<Runtime>,
    pub shared: &'a OutboxShared,
    pub shutdown: &'a CancellationToken,
    pub committer: &'a Committer,
    /// The worker's delivery slot this attempt holds, given back as soon as a create's POST
    /// has answered (`None`: the attempt holds no slot).
    pub slot: Option<&'a Slot>,
}

/// A delivery slot of the worker, given back once: by the delivery when its entity write has
/// answered (the id commit and the key are then no longer counted against the tenant's
/// concurrency), or by the worker when the delivery ends, whichever comes first.
#[derive(Debug)]
pub(crate) struct Slot {
    tenant: String,
    given_back: std::sync::atomic::AtomicBool,
    freed: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Slot {
    /// A slot of `tenant`; `freed` tells the worker when the delivery gives it back early.
    pub(crate) fn new(tenant: String, freed: tokio::sync::mpsc::UnboundedSender<String>) -> Slot {
        Slot {
            tenant,
            given_back: std::sync::atomic::AtomicBool::new(false),
            freed,
        }
    }

    /// The tenant whose slot it is.
    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Marks the slot given back; true for the first call only.
    pub(crate) fn take_back(&self) -> bool {
        !self
            .given_back
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// The delivery gives the slot back before it ends.
    fn give_back(&self) {
        if self.take_back() {
            let _ = self.freed.send(self.tenant.clone());
        }
    }
}

/// One attempt's task with its entity and its tenant's client, resolved once.
struct Job<'t> {
    task: &'t Task,
    kind: EntityKind,
    client: &'t Client,
}

/// The retry delay after `attempts` attempts: `backoff × 2^(attempts-1)`, capped, with jitter
/// (between half and all of it).
pub fn backoff(config: &crate::config::Outbox, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let ceiling = config
        .backoff
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(config.max_backoff);
    let half = ceiling / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

/// The last-modified instant an entity JSON shows (max of updated and created).
pub fn last_modified(entity: &Value) -> Option<DateTime<Utc>> {
    ["UpdatedDate", "LastChanged", "CreatedDate", "CreatedAt"]
        .iter()
        .filter_map(|field| entity.get(*field).and_then(Value::as_str))
        .filter_map(|text| text.parse::<superoffice::SoDateTime>().ok())
        .filter(|t| !t.is_unset())
        .map(|t| t.to_utc())
        .max()
}

fn echo(kind: EntityKind, id: i64, entity: Option<&Value>) -> Echo {
    Echo {
        entity: kind,
        id,
        hash: entity.map(hash::entity_hash),
    }
}

fn record_id_of(kind: EntityKind, entity: &Value) -> Option<i64> {
    entity
        .get(kind.id_field())
        .and_then(Value::as_i64)
        .filter(|id| *id > 0)
}

/// A record id as the REST API addresses it.
fn rest_id(record: i64) -> Step<i32> {
    i32::try_from(record)
        .map_err(|_| Failure::Permanent(format!("record id {record} is out of range")))
}

impl Delivery<'_> {
    fn keys(&self) -> &ForeignKeys {
        &self.shared.keys
    }

    /// Runs one attempt of `task` and classifies how it ended.
    pub async fn attempt(&self, task: &Task, prefetch: Prefetch) -> Outcome {
        if self.shutdown.is_cancelled() {
            return Outcome::Release;
        }
        match self.run(task, prefetch).await {
            Ok(outcome) => outcome,
            Err(failure) => self.fail(task, failure).into(),
        }
    }

    /// What a failure means for the task.
    fn fail(&self, task: &Task, failure: Failure) -> Finish {
        match failure {
            Failure::Api { error, sent } => self.classify(task, error, sent),
            Failure::Local(error) => {
                tracing::error!(task = task.id.0, %error, "outbox: local failure during delivery");
                self.retry_or_dead(task, format!("local: {error}"), true, None)
            }
            Failure::Permanent(error) => Finish::Failed { error },
        }
    }

    fn retry_or_dead(
        &self,
        task: &Task,
        error: String,
        maybe_sent: bool,
        retry_after: Option<Duration>,
    ) -> Finish {
        let config = &self.runtime.config.outbox;
        if task.attempts >= i64::from(config.max_attempts) {
            return Finish::Dead {
                error: format!("{error} (after {} attempts)", task.attempts),
                maybe_sent,
            };
        }
        let delay = backoff(config, task.attempts).max(retry_after.unwrap_or_default());
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        Finish::Retry {
            error,
            maybe_sent,
            at,
        }
    }

    /// Turns an API failure into an outcome.
    fn classify(&self, task: &Task, error: superoffice::Error, sent: bool) -> Finish {
        use superoffice::Error as E;
        let text = error.to_string();
        match &error {
            E::RateLimited { retry_after, .. } => {
                self.retry_or_dead(task, text, false, *retry_after)
            }
            E::Transport(_) | E::Timeout(_) | E::Decode { .. } => {
                self.retry_or_dead(task, text, sent, None)
            }
            E::Api(api) if api.status.is_server_error() => {
                let maybe = sent && api.status.as_u16() != 503;
                self.retry_or_dead(task, text, maybe, None)
            }
            E::Unauthorized(_)
            | E::Misdirected(_)
            | E::TenantNotRunning { .. }
            | E::Auth(_)
            | E::TokenStore { .. }
            // Refused before anything was sent: an endpoint outside the environment's domain,
            // or an id_token whose keys could not be fetched.
            | E::UntrustedEndpoint { .. }
            | E::JwksUnavailable { .. } => self.retry_or_dead(task, text, false, None),
            // A 3xx (never followed) reached the server: like any answer that may have been
            // preceded by a write, so recovery looks the record up before sending again.
            E::Redirect { .. } => self.retry_or_dead(task, text, sent, None),
            _ => self.retry_or_dead(task, text, sent, None),
        }
    }

    async fn run(&self, task: &Task, prefetch: Prefetch) -> Step<Outcome> {
        let action = task
            .action()
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let kind = task
            .entity()
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let client = self.client(task)?;
        let job = Job { task, kind, client };
        match action {
            Action::Create => self.create(&job, prefetch).await,
            Action::Upsert => self.upsert(&job, prefetch).await,
            Action::Update | Action::Patch => self.modify(&job, action).await,
            Action::Delete => self.delete(&job).await,
        }
    }

    fn client(&self, task: &Task) -> Step<&Client> {
        self.runtime
            .clients
            .get(&task.tenant)
            .map_err(|e| Failure::Permanent(format!("tenant {:?}: {e}", task.tenant)))
    }

    fn payload(task: &Task) -> Step<Value> {
        task.payload
            .clone()
            .ok_or_else(|| Failure::Permanent("payload: missing".into()))
    }

    async fn ensure_foreign_app(&self, client: &Client) -> Step<()> {
        if !self.shared.foreign_app_ready() {
            self.keys().ensure(client).await?;
            self.shared.set_foreign_app_ready();
        }
        Ok(())
    }

    /// Reads a record back (for adoption and conflicts); `None` when it is gone or unreadable.
    async fn read(&self, job: &Job<'_>, id: i64) -> Step<Option<Value>> {
        if !job.kind.supports_get() {
            return Ok(None);
        }
        let Ok(id) = i32::try_from(id) else {
            return Ok(None);
        };
        match job.client.entities(job.kind).get(id).await {
            Ok(entity) => Ok(Some(entity)),
            Err(superoffice::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The record exists already (its key was found, or its POST answered earlier): done.
    async fn adopt(&self, job: &Job<'_>, id: i64) -> Step<Finish> {
        let entity = self.read(job, id).await?;
        Ok(Finish::Done {
            result_id: Some(id),
            echo: Some(echo(job.kind, id, entity.as_ref())).filter(|e| e.hash.is_some()),
            result: entity,
            conflict: None,
        })
    }

    async fn record_posted(&self, task: &Task, record: i64) -> Step<()> {
        let id = task.id;
        self.committer
            .write(move |tx| tasks::record_posted(tx, id, record, Utc::now()))
            .await?;
        Ok(())
    }

    /// POSTs `body` and commits the new id: [`Outcome::Posted`] (the key is stored next).
    /// `exclusive`: the caller holds the entity lock exclusively already.
    async fn post_new(&self, job: &Job<'_>, body: Value, exclusive: bool) -> Step<Outcome> {
        let (task, kind) = (job.task, job.kind);
        self.ensure_foreign_app(job.client).await?;
        let lock = self.shared.entity_lock(kind);
        let shared_guard = if exclusive {
            None
        } else {
            Some(lock.read_owned().await)
        };
        if self.shutdown.is_cancelled() {
            return Ok(Outcome::Release);
        }
        let query = task.query_pairs();
        let answer = WriteOp::Post(body)
            .send(job.client, kind, &query, None)
            .await
            .map_err(Failure::sent)?
            .unwrap_or(Value::Null);
        failpoint("outbox.after_post");
        // The entity write has answered: the slot goes to the next task while this one
        // commits its id (the entity lock stays held until then) and stores its key.
        if let Some(slot) = self.slot {
            slot.give_back();
        }
        let Some(record) = record_id_of(kind, &answer) else {
            return Err(Failure::Permanent(format!(
                "the POST answered without {}; the record may exist (check the tenant, then skip or retry)",
                kind.id_field()
            )));
        };
        self.record_posted(task, record).await?;
        drop(shared_guard);
        failpoint("outbox.after_record");
        Ok(Outcome::Posted {
            record,
            answer: Box::new(answer),
        })
    }

    /// The second half of a create whose id is committed: stores the record key on the
    /// record, then the task is done (with the echo of what the POST answered). A failure
    /// leaves `result_id` in place, so the next attempt only completes the key.
    pub async fn store_key(&self, task: &Task, record: i64, answer: Value) -> Outcome {
        let stored = async {
            let kind = task
                .entity()
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            let client = self.client(task)?;
            self.keys()
                .store(client, kind, &task.record_key(), record)
                .await?;
            Ok::<_, Failure>(kind)
        };
        let finish = match stored.await {
            Ok(kind) => {
                failpoint("outbox.after_key");
                Finish::Done {
                    result_id: Some(record),
                    echo: Some(echo(kind, record, Some(&answer))),
                    result: Some(answer),
                    conflict: None,
                }
            }
            Err(Failure::Permanent(error)) => Finish::Failed { error },
            Err(Failure::Api { error, .. }) => self.classify(task, error, false),
            Err(Failure::Local(error)) => {
                tracing::error!(task = task.id.0, record, %error, "outbox: storing the key failed locally");
                self.retry_or_dead(task, format!("storing the key: {error}"), false, None)
            }
        };
        finish.into()
    }

    /// The record key's record, from the prefetch or a lookup.
    async fn find_by_key(&self, job: &Job<'_>, prefetch: Prefetch) -> Step<Option<i64>> {
        match prefetch {
            Prefetch::Found(id) => Ok(Some(id)),
            Prefetch::Absent if !job.task.maybe_sent => Ok(None),
            _ => Ok(self
                .keys()
                .lookup(job.client, job.kind, &job.task.record_key())
                .await?),
        }
    }

    /// A POST of this task answered before: make sure the key is there, read the record.
    async fn complete_posted(&self, job: &Job<'_>, record: i64) -> Step<Finish> {
        self.ensure_foreign_app(job.client).await?;
        self.keys()
            .ensure_stored(job.client, job.kind, &job.task.record_key(), record)
            .await?;
        self.adopt(job, record).await
    }

    /// Creates through the exactly-once steps; `body` is what to POST, `compare` what the
    /// orphan search compares records with.
    async fn create_once(&self, job: &Job<'_>, body: Value, compare: &Value) -> Step<Outcome> {
        let (task, kind, client) = (job.task, job.kind, job.client);
        if !task.maybe_sent {
            return self.post_new(job, body, false).await;
        }
        let lock = self.shared.entity_lock(kind);
        let _exclusive = lock.write_owned().await;
        let principal = self.shared.principal(client).await;
        let orphan = recover::find_orphan(
            self.runtime,
            self.keys(),
            client,
            task,
            kind,
            compare,
            principal,
        )
        .await?;
        match orphan {
            Orphan::Found(record) => {
                tracing::info!(
                    task = task.id.0,
                    record,
                    "outbox: adopting the record an interrupted POST created"
                );
                self.record_posted(task, record).await?;
                self.ensure_foreign_app(client).await?;
                self.keys()
                    .store(client, kind, &task.record_key(), record)
                    .await?;
                Ok(self.adopt(job, record).await?.into())
            }
            Orphan::InDoubt(reason) => Err(Failure::Permanent(format!(
                "in doubt: an earlier POST may have created the record ({reason}); check the tenant, then `syncd tasks skip` or `syncd tasks retry`"
            ))),
            Orphan::Absent => self.post_new(job, body, true).await,
        }
    }

    async fn create(&self, job: &Job<'_>, prefetch: Prefetch) -> Step<Outcome> {
        if let Some(record) = job.task.result_id {
            return Ok(self.complete_posted(job, record).await?.into());
        }
        if let Some(record) = self.find_by_key(job, prefetch).await? {
            return Ok(self.adopt(job, record).await?.into());
        }
        let payload = Self::payload(job.task)?;
        self.create_once(job, payload.clone(), &payload).await
    }

    /// The route's lookup filter with `{Field}` placeholders filled from the payload.
    fn lookup_filter(template: &str, payload: &Value) -> Step<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').map(|e| start + e).ok_or_else(|| {
                Failure::Permanent(format!("route lookup_filter {template:?}: unclosed {{"))
            })?;
            let field = &rest[start + 1..end];
            let value = payload.as_object().and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v)
            });
            let literal = match value {
                Some(Value::String(s)) => superoffice::odata::Literal::Str(s.clone()).to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => superoffice::odata::Literal::Bool(*b).to_string(),
                _ => {
                    return Err(Failure::Permanent(format!(
                        "payload.{field}: the route's lookup_filter needs it (a string, number or boolean)"
                    )));
                }
            };
            out.push_str(&literal);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn find_by_filter(&self, job: &Job<'_>, template: &str) -> Step<Option<i64>> {
        let kind = job.kind;
        let payload = Self::payload(job.task)?;
        let filter = Self::lookup_filter(template, &payload)?;
        let query = Query::new()
            .select([kind.primary_key()])
            .filter(superoffice::odata::Filter::raw(filter.clone()))
            .top(2);
        let page = superoffice::paginate::fetch(
            job.client,
            &superoffice::paginate::Source::List(kind.name().into()),
            &query,
        )
        .await?;
        // A row without its id is an answer of unexpected shape: an error (retried), never
        // "no match", which would create a duplicate.
        let ids: Vec<i64> = page
            .into_iter()
            .map(|row| {
                row.int(kind.primary_key())
                    .or_else(|| row.primary_key())
                    .ok_or_else(|| {
                        let excerpt: String = Value::Object(row.into_map())
                            .to_string()
                            .chars()
                            .take(512)
                            .collect();
                        Failure::from(superoffice::Error::Decode {
                            message: format!(
                                "upsert lookup {filter:?}: a {kind} row without `{}`",
                                kind.primary_key()
                            ),
                            excerpt,
                        })
                    })
            })
            .collect::<Step<_>>()?;
        match ids.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(Failure::Permanent(format!(
                "upsert: the lookup filter {filter:?} matches several records ({many:?}); make it unique"
            ))),
        }
    }

    async fn upsert(&self, job: &Job<'_>, prefetch: Prefetch) -> Step<Outcome> {
        let (task, kind, client) = (job.task, job.kind, job.client);
        if let Some(record) = task.result_id.filter(|_| task.maybe_sent) {
            return Ok(self.complete_posted(job, record).await?.into());
        }
        let payload = Self::payload(task)?;
        let route = self.runtime.config.route(kind);
        let mut keyed = true;
        let mut found = self.find_by_key(job, prefetch).await?;
        if found.is_none()
            && let Some(template) = &route.lookup_filter
        {
            found = self.find_by_filter(job, template).await?;
            keyed = false;
        }
        if let Some(record) = found {
            let id = rest_id(record)?;
            let outcome = self
                .write_with_policy(job, WriteOp::MergePatch(id, payload), record)
                .await?;
            if !keyed
                && let Outcome::Finish(finish) = &outcome
                && matches!(**finish, Finish::Done { .. })
            {
                self.ensure_foreign_app(client).await?;
                self.keys()
                    .store(client, kind, &task.record_key(), record)
                    .await?;
            }
            return Ok(outcome);
        }
        let mut body = client.entities(kind).default().await?;
        superoffice::entity::merge(&mut body, &payload);
        if route.lookup_filter.is_some() && task.maybe_sent {
            // The filter found nothing, so an earlier POST of this task left no record it
            // would match: nothing to adopt.
            return self.post_new(job, body, false).await;
        }
        self.create_once(job, body, &payload).await
    }

    /// The id a task addresses: given, produced by an earlier task of its lane, or found by its
    /// external key.
    async fn resolve_id(&self, job: &Job<'_>) -> Step<Option<i64>> {
        let task = job.task;
        if let Some(id) = task.record_id {
            return Ok(Some(id));
        }
        let lane = task.lane.clone();
        let before = task.id;
        if let Some(id) = self
            .runtime
            .store
            .read(move |conn| tasks::lane_result(conn, &lane, before))
            .await?
        {
            return Ok(Some(id));
        }
        Ok(self
            .keys()
            .lookup(job.client, job.kind, &task.record_key())
            .await?)
    }

    /// The `If-Unmodified-Since` to send: explicit as given; one captured from the synced
    /// record moves forward past our own later writes of that record (they are not conflicts).
    async fn effective_ius(&self, task: &Task, record: i64) -> Step<Option<DateTime<Utc>>> {
        let ius = task.ius();
        if task.ius_source != Some(super::task::IusSource::Synced) {
            return Ok(ius);
        }
        let entity = task.entity()?;
        let before = task.id;
        let own = self
            .runtime
            .store
            .read(move |conn| tasks::own_last_write(conn, entity, record, before))
            .await?;
        Ok(match (ius, own.as_ref().and_then(last_modified)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }

    async fn modify(&self, job: &Job<'_>, action: Action) -> Step<Outcome> {
        let Some(record) = self.resolve_id(job).await? else {
            return Ok(Finish::Failed {
                error: format!(
                    "external_key {:?}: no {} carries it",
                    job.task.external_key.as_deref().unwrap_or_default(),
                    job.kind
                ),
            }
            .into());
        };
        let id = rest_id(record)?;
        let payload = Self::payload(job.task)?;
        let op = match action {
            Action::Update => WriteOp::Put(id, payload),
            _ => WriteOp::patch(id, payload),
        };
        self.write_with_policy(job, op, record).await
    }

    async fn delete(&self, job: &Job<'_>) -> Step<Outcome> {
        let Some(record) = self.resolve_id(job).await? else {
            return Ok(Finish::Done {
                result_id: None,
                result: Some(
                    json!({ "note": "no record carries the external key; nothing to delete" }),
                ),
                conflict: None,
                echo: None,
            }
            .into());
        };
        let id = rest_id(record)?;
        self.write_with_policy(job, WriteOp::Delete(id), record)
            .await
    }

    /// Sends a write to an existing record with `If-Unmodified-Since` and applies the route's
    /// policy to a 412; a 409 (failed JSON Patch `test`) is always a conflict.
    async fn write_with_policy(&self, job: &Job<'_>, op: WriteOp, record: i64) -> Step<Outcome> {
        let (task, kind, client) = (job.task, job.kind, job.client);
        let policy = self.runtime.config.route(kind).conflict;
        let query = task.query_pairs();
        let mut ius = self.effective_ius(task, record).await?;
        let mut reapplied: Vec<Value> = Vec::new();
        for round in 0..4 {
            if self.shutdown.is_cancelled() && round == 0 {
                return Ok(Outcome::Release);
            }
            match op.send(client, kind, &query, ius).await {
                Ok(answer) => {
                    let conflict = (!reapplied.is_empty()).then(|| {
                        json!({
                            "policy": policy_name(policy),
                            "resolution": if matches!(op, WriteOp::Delete(_)) || policy == ConflictPolicy::Overwrite { "overwrote" } else { "reapplied" },
                            "ours": task.payload,
                            "theirs": reapplied,
                        })
                    });
                    return Ok(Finish::Done {
                        result_id: Some(record),
                        echo: Some(echo(kind, record, answer.as_ref())),
                        result: answer,
                        conflict,
                    }
                    .into());
                }
                Err(superoffice::Error::NotFound(_)) if matches!(op, WriteOp::Delete(_)) => {
                    return Ok(Finish::Done {
                        result_id: Some(record),
                        result: Some(json!({ "note": "404: already deleted" })),
                        conflict: None,
                        echo: None,
                    }
                    .into());
                }
                Err(superoffice::Error::NotFound(e)) => {
                    return Ok(Finish::Failed {
                        error: format!("{kind} {record} not found: {e}"),
                    }
                    .into());
                }
                Err(superoffice::Error::Conflict(e)) => {
                    let theirs = self.read(job, record).await?;
                    return Ok(Finish::Conflict {
                        error: format!("409 (a JSON Patch test failed): {e}"),
                        conflict: json!({
                            "status": 409,
                            "policy": policy_name(policy),
                            "if_unmodified_since": ius.map(super::task::ts),
                            "ours": task.payload,
                            "theirs": theirs,
                        }),
                    }
                    .into());
                }
                Err(superoffice::Error::PreconditionFailed(e)) => {
                    let theirs = self.read(job, record).await?;
                    let patch = matches!(op, WriteOp::JsonPatch(..) | WriteOp::MergePatch(..));
                    match policy {
                        ConflictPolicy::Overwrite => {
                            reapplied.push(theirs.unwrap_or(Value::Null));
                            ius = None;
                        }
                        ConflictPolicy::RefetchAndReapply if patch && round < 3 => {
                            let Some(current) = theirs else {
                                return Ok(Finish::Failed {
                                    error: format!("{kind} {record} disappeared during a conflict"),
                                }
                                .into());
                            };
                            ius = last_modified(&current).or(Some(Utc::now()));
                            reapplied.push(current);
                        }
                        _ => {
                            return Ok(Finish::Conflict {
                                error: format!(
                                    "412: the record changed after {}: {e}",
                                    ius.map(super::task::ts).unwrap_or_default()
                                ),
                                conflict: json!({
                                    "status": 412,
                                    "policy": policy_name(policy),
                                    "if_unmodified_since": ius.map(super::task::ts),
                                    "ours": task.payload,
                                    "theirs": theirs,
                                }),
                            }
                            .into());
                        }
                    }
                }
                Err(e) => return Err(Failure::sent(e)),
            }
        }
        Ok(Finish::Conflict {
            error: "412 again after refetching three times".into(),
            conflict: json!({ "policy": policy_name(policy), "ours": task.payload, "theirs": reapplied }),
        }
        .into())
    }
}

fn policy_name(policy: ConflictPolicy) -> &'static str {
    match policy {
        ConflictPolicy::Fail => "fail",
        ConflictPolicy::Overwrite => "overwrite",
        ConflictPolicy::RefetchAndReapply => "refetch-and-reapply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_filters_fill_placeholders_as_literals() {
        let payload = json!({ "Email": "o'brien@example.com", "Age": 4 });
        assert_eq!(
            Delivery::lookup_filter("email eq {email} and age eq {Age}", &payload).unwrap(),
            "email eq 'o''brien@example.com' and age eq 4"
        );
        assert!(Delivery::lookup_filter("email eq {Missing}", &payload).is_err());
    }

    #[test]
    fn last_modified_takes_the_later_of_updated_and_created() {
        let entity =
            json!({ "UpdatedDate": "0001-01-01T00:00:00", "CreatedDate": "2026-03-05T14:22:10" });
        assert_eq!(
            last_modified(&entity)
                .map(super::super::task::ts)
                .as_deref(),
            Some("2026-03-05T14:22:10.000Z")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut config = crate::config::Outbox {
            foreign_app: String::new(),
            device: String::new(),
            key_name: String::new(),
            max_attempts: 3,
            concurrency: 1,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            echo_suppression: true,
            tenant: None,
        };
        let third = backoff(&config, 3);
        assert!(third >= Duration::from_millis(175) && third <= Duration::from_millis(350));
        let first = backoff(&config, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        config.backoff = Duration::ZERO;
        assert_eq!(backoff(&config, 5), Duration::ZERO);
    }
}
