//! The task ledger's values, below the outbox that fills it and the store that keeps it: what
//! a task is ([`Task`], [`NewTask`], [`TaskId`], [`TaskState`], [`Action`], [`IusSource`],
//! [`Named`]) and what happens to one ([`Intake`], [`Finish`], [`Echo`]). The outbox
//! re-exports them (`outbox::task`, `outbox::ledger`), validates requests into [`NewTask`]s and
//! decides outcomes; [`super::tasks`] reads and writes them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use superoffice::entity::EntityKind;

use super::types::UtcTime;
use crate::{Error, Result};

/// The key prefix of the `dead` tasks that record rejected `outbox` rows
/// (`rejected:outbox row 17`); reserved, so such a task's key never collides with a user's.
pub const REJECTED_PREFIX: &str = "rejected:";

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `POST /api/v1/{Entity}`, exactly once per key (ForeignApp key on the new record).
    Create,
    /// `PUT /api/v1/{Entity}/{id}` (replaces the entity).
    Update,
    /// `PATCH /api/v1/{Entity}/{id}`: JSON Patch (array) or JSON merge patch (object).
    Patch,
    /// `DELETE /api/v1/{Entity}/{id}`; 404 counts as done.
    Delete,
    /// Find by external key or the route's lookup filter and merge-patch it, else create it
    /// from `/default`.
    Upsert,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [
        Action::Create,
        Action::Update,
        Action::Patch,
        Action::Delete,
        Action::Upsert,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Patch => "patch",
            Action::Delete => "delete",
            Action::Upsert => "upsert",
        }
    }

    /// Whether this action may create a record (and so needs the exactly-once machinery).
    pub fn creates(self) -> bool {
        matches!(self, Action::Create | Action::Upsert)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(
                    "action",
                    format!("{s:?} is not one of create, update, patch, delete, upsert"),
                )
            })
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its turn (new, or after a retryable failure until `next_attempt_at`).
    Pending,
    /// Claimed by the delivery worker; an API call may be under way. Found at start-up, it is
    /// resolved (creates by the ForeignApp lookup), never blindly re-sent.
    InFlight,
    /// Delivered; `result_id`/`result` hold the answer.
    Done,
    /// A permanent error (the server refused the request, or a create is in doubt); waits for
    /// `tasks retry` or `tasks skip`.
    Failed,
    /// 412 (or a failed JSON Patch `test`) under the `fail` policy; both versions are kept.
    Conflict,
    /// Retryable failures used up `max_attempts`.
    Dead,
    /// An operator skipped it.
    Skipped,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::InFlight,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Conflict,
        TaskState::Dead,
        TaskState::Skipped,
    ];

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::InFlight => "in_flight",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Conflict => "conflict",
            TaskState::Dead => "dead",
            TaskState::Skipped => "skipped",
        }
    }

    /// Whether later tasks of the same record may go ahead (only `done` and `skipped`).
    pub fn releases_lane(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Skipped)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change a command asks of a task ([`Error::TaskState`] when its state refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChange {
    /// `tasks retry`: back to `pending`.
    Retry,
    /// `tasks skip`: to `skipped`.
    Skip,
}

/// Why the change is refused, as [`Error::TaskState`] ends.
impl fmt::Display for TaskChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskChange::Retry => "nothing to retry",
            TaskChange::Skip => "it cannot be skipped",
        })
    }
}

impl FromStr for TaskState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid("state", format!("{s:?} is not one of {}", names.join(", ")))
            })
    }
}

/// A ledger row's id: the delivery order within a lane and the id `POST /publish` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        s.trim()
            .parse()
            .map(TaskId)
            .map_err(|_| Error::invalid("task id", format!("{s:?} is not an integer")))
    }
}

/// Where a task's `If-Unmodified-Since` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IusSource {
    /// Given with the request.
    Explicit,
    /// The synced copy's last-modified time, captured at intake; it moves forward past our
    /// own later writes of the record (they are not conflicts).
    Synced,
}

impl IusSource {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            IusSource::Explicit => "explicit",
            IusSource::Synced => "synced",
        }
    }
}

/// A ledger column that names a known value (an [`Action`], an [`EntityKind`]), or, in the
/// `dead` task of a request rejected at intake only, the text the request held instead: the
/// ledger keeps what arrived, and reading a rejected task never fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Named<T> {
    /// A value of the type.
    Known(T),
    /// Text that names no value of the type (only on rejected requests).
    Other(String),
}

impl<T: fmt::Display> Named<T> {
    /// The known value, or an error naming `field` and the text.
    pub fn known(&self, field: &str) -> Result<&T> {
        match self {
            Named::Known(value) => Ok(value),
            Named::Other(text) => Err(Error::invalid(
                field,
                format!("{text:?} is not a known {field}"),
            )),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Known(value) => value.fmt(f),
            Named::Other(text) => f.write_str(text),
        }
    }
}

impl<T: fmt::Display> Serialize for Named<T> {
    fn serialize<Z: serde::Serializer>(
        &self,
        serializer: Z,
    ) -> std::result::Result<Z::Ok, Z::Error> {
        serializer.collect_str(self)
    }
}

impl<T: FromStr + fmt::Display> From<&str> for Named<T> {
    /// The value the text names in its canonical spelling (what the ledger writes for it),
    /// else the text as it is, so nothing read back differs from what was stored.
    fn from(text: &str) -> Self {
        match text.parse::<T>() {
            Ok(value) if value.to_string() == text => Named::Known(value),
            _ => Named::Other(text.to_string()),
        }
    }
}

/// A validated publish, ready for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Idempotency key.
    pub key: String,
    /// Tenant it goes to.
    pub tenant: String,
    /// What to do.
    pub action: Action,
    /// Which entity.
    pub entity: EntityKind,
    /// Record id, if given.
    pub record_id: Option<i32>,
    /// External key, if given.
    pub external_key: Option<String>,
    /// Path parameters (only `id` is known; it is folded into `record_id`).
    pub path: BTreeMap<String, String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Parsed body.
    pub payload: Option<Value>,
    /// Explicit `If-Unmodified-Since`.
    pub if_unmodified_since: Option<DateTime<Utc>>,
    /// sha256 of the canonical request: equal hashes are replays, different ones mismatches.
    pub payload_hash: String,
}

impl NewTask {
    /// The FIFO lane: tasks of one lane are delivered in id order.
    pub fn lane(&self) -> String {
        lane(
            self.entity,
            self.record_id,
            &record_key(&self.key, self.external_key.as_deref()),
        )
    }
}

/// The ForeignApp value that identifies a task's record: the external key, else the
/// idempotency key.
pub fn record_key(key: &str, external_key: Option<&str>) -> String {
    external_key.unwrap_or(key).to_string()
}

/// `Contact/id/5` or `Contact/key/EXT-42`.
pub fn lane(entity: EntityKind, record_id: Option<i32>, record_key: &str) -> String {
    match record_id {
        Some(id) => format!("{}/id/{id}", entity.name()),
        None => format!("{}/key/{record_key}", entity.name()),
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// Row id (delivery order within a lane).
    pub id: TaskId,
    /// Idempotency key (unique).
    pub key: String,
    /// Tenant.
    pub tenant: String,
    /// Action (always known for tasks that were accepted).
    pub action: Named<Action>,
    /// Entity (`Contact`; always known for tasks that were accepted).
    pub entity: Named<EntityKind>,
    /// Record id given at intake.
    pub record_id: Option<i64>,
    /// External key given at intake.
    pub external_key: Option<String>,
    /// FIFO lane.
    pub lane: String,
    /// Path parameters.
    pub path: Value,
    /// Query parameters.
    pub query: Value,
    /// Body (JSON; raw text for rejected outbox rows).
    pub payload: Option<Value>,
    /// Hash of the canonical request.
    pub payload_hash: String,
    /// `If-Unmodified-Since` in force (explicit, or the synced record's last-modified).
    pub if_unmodified_since: Option<UtcTime>,
    /// Where `if_unmodified_since` came from.
    pub ius_source: Option<IusSource>,
    /// Where it came from: `cli`, `http`, `outbox`, `api`.
    pub source: String,
    /// State.
    pub state: TaskState,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// A previous attempt may have reached the server without us learning the outcome.
    pub maybe_sent: bool,
    /// Not before this time.
    pub next_attempt_at: UtcTime,
    /// When the last attempt started.
    pub last_attempt_at: Option<UtcTime>,
    /// The record the task produced or touched.
    pub result_id: Option<i64>,
    /// The entity the last write answered.
    pub result: Option<Value>,
    /// On a conflict: `{ours, theirs, …}`.
    pub conflict: Option<Value>,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: UtcTime,
    /// Last change.
    pub updated_at: UtcTime,
}

impl Task {
    /// The action (accepted tasks always have one).
    pub fn action(&self) -> Result<Action> {
        self.action.known("action").copied()
    }

    /// The entity (accepted tasks always have one).
    pub fn entity(&self) -> Result<EntityKind> {
        self.entity.known("entity").copied()
    }

    /// Whether `tasks retry` may put it back to `pending`: a failed, conflicting, dead or
    /// skipped task, unless it records a request rejected at intake.
    pub fn check_retry(&self) -> Result<()> {
        let rejected = self.key.starts_with(REJECTED_PREFIX);
        if matches!(
            self.state,
            TaskState::Pending | TaskState::InFlight | TaskState::Done
        ) || rejected
        {
            return Err(Error::TaskState {
                id: self.id,
                state: self.state,
                rejected,
                change: TaskChange::Retry,
            });
        }
        Ok(())
    }

    /// Whether `tasks skip` may skip it: anything not in flight, done or already skipped.
    pub fn check_skip(&self) -> Result<()> {
        if matches!(
            self.state,
            TaskState::InFlight | TaskState::Done | TaskState::Skipped
        ) {
            return Err(Error::TaskState {
                id: self.id,
                state: self.state,
                rejected: false,
                change: TaskChange::Skip,
            });
        }
        Ok(())
    }

    /// The ForeignApp value of the task's record.
    pub fn record_key(&self) -> String {
        record_key(&self.key, self.external_key.as_deref())
    }

    /// Query parameters as pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        match &self.query {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The explicit or captured `If-Unmodified-Since`.
    pub fn ius(&self) -> Option<DateTime<Utc>> {
        self.if_unmodified_since.map(UtcTime::at)
    }

    /// The short form `POST /publish` answers with.
    pub fn summary(&self) -> Value {
        json!({ "task_id": self.id, "key": self.key, "state": self.state })
    }
}

/// What intake did with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// A new task.
    Queued(Task),
    /// The key exists with the same request: the stored task.
    Replay(Task),
    /// The key exists with a different request: the stored task (nothing was queued).
    Mismatch(Task),
}

impl Intake {
    /// The task concerned.
    pub fn task(&self) -> &Task {
        match self {
            Intake::Queued(t) | Intake::Replay(t) | Intake::Mismatch(t) => t,
        }
    }
}

/// An echo row: what our write left on a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// The entity (stored as its table name, `contact`, as the subscriptions read it).
    pub entity: EntityKind,
    /// Record id.
    pub id: i64,
    /// Entity hash (`None`: deleted).
    pub hash: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Delivered.
    Done {
        /// Record created or touched.
        result_id: Option<i64>,
        /// What the write answered.
        result: Option<Value>,
        /// Conflict details when a policy resolved a 412.
        conflict: Option<Value>,
        /// The echo row to upsert in the same transaction.
        echo: Option<Echo>,
    },
    /// Try again at `at`.
    Retry {
        /// Why.
        error: String,
        /// The attempt may have reached the server.
        maybe_sent: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Retryable, but the attempts are used up.
    Dead {
        /// Why.
        error: String,
        /// The attempt may have reached the server.
        maybe_sent: bool,
    },
    /// Permanent failure.
    Failed {
        /// Why.
        error: String,
    },
    /// Unresolved conflict; both versions kept.
    Conflict {
        /// Why.
        error: String,
        /// `{ours, theirs, …}`.
        conflict: Value,
    },
}

impl Finish {
    /// The state it leads to.
    pub fn state(&self) -> TaskState {
        match self {
            Finish::Done { .. } => TaskState::Done,
            Finish::Retry { .. } => TaskState::Pending,
            Finish::Dead { .. } => TaskState::Dead,
            Finish::Failed { .. } => TaskState::Failed,
            Finish::Conflict { .. } => TaskState::Conflict,
        }
    }
}
