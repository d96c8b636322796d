//! Webhook events (`webhook_events`) and the targeted refetches they queue (`refetch_queue`).
//! The receiver ([`crate::sync::webhook`]) stores an event and queues its refetches in one
//! transaction ([`record_event`]); the subscription loops read the queue ([`queued`]) and
//! remove what they applied in the page's transaction ([`super::records::apply`]).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sql;
use super::types::UtcTime;
use crate::Result;

/// A queued refetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Record id.
    pub id: i64,
    /// The event that queued it last.
    pub event_id: String,
    /// When (our clock).
    pub queued_at: UtcTime,
}

/// Up to `limit` queued refetches of a subscription, oldest first.
pub fn queued(conn: &Connection, name: &str, limit: usize) -> Result<Vec<Queued>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, event_id, queued_at FROM refetch_queue WHERE subscription = ?1 ORDER BY queued_at, id LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map(params![name, limit as i64], |r| {
            Ok(Queued {
                id: r.get(0)?,
                event_id: r.get(1)?,
                queued_at: r.get(2)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Every queued refetch of every subscription: (subscription, entry), oldest first.
pub fn queue(conn: &Connection) -> Result<Vec<(String, Queued)>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT subscription, id, event_id, queued_at FROM refetch_queue ORDER BY queued_at, subscription, id",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Queued {
                    id: r.get(1)?,
                    event_id: r.get(2)?,
                    queued_at: r.get(3)?,
                },
            ))
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// A webhook delivery to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// `EventId` (deduplicates redeliveries).
    pub event_id: String,
    /// `Event` (`contact.changed`).
    pub event: String,
    /// `Entity` as sent (stored lower-case).
    pub entity: String,
    /// `PrimaryKey`.
    pub primary_key: i64,
    /// The raw body.
    pub body: String,
    /// The subscriptions that refetch the record.
    pub targets: Vec<String>,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The `EventId` was stored before: nothing changed.
    Duplicate,
    /// Stored, and a refetch queued for each target (an older queued event of the same record
    /// is marked `coalesced`).
    Queued,
}

/// Stores a delivery (`outcome = 'queued'`) and queues a refetch of its record for every
/// target, in `tx`.
pub fn record_event(tx: &Transaction<'_>, event: &NewEvent, now: UtcTime) -> Result<Recorded> {
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO webhook_events (event_id, received_at, event, entity, primary_key, body, processed_at, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 'queued')",
            params![
                event.event_id,
                now,
                event.event,
                event.entity.to_ascii_lowercase(),
                event.primary_key,
                event.body,
            ],
        )
        .map_err(sql)?;
    if inserted == 0 {
        return Ok(Recorded::Duplicate);
    }
    for subscription in &event.targets {
        let previous: Option<String> = tx
            .query_row(
                "SELECT event_id FROM refetch_queue WHERE subscription = ?1 AND id = ?2",
                params![subscription, event.primary_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if let Some(previous) = previous {
            tx.execute(
                "UPDATE webhook_events SET processed_at = ?2, outcome = 'coalesced' WHERE event_id = ?1 AND processed_at IS NULL",
                params![previous, now],
            )
            .map_err(sql)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO refetch_queue (subscription, id, event_id, event, queued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![subscription, event.primary_key, event.event_id, event.event, now],
        )
        .map_err(sql)?;
    }
    Ok(Recorded::Queued)
}

/// One stored webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `EventId`.
    pub event_id: String,
    /// When it arrived (our clock).
    pub received_at: UtcTime,
    /// `Event`.
    pub event: String,
    /// `Entity`, lower-case.
    pub entity: Option<String>,
    /// `PrimaryKey`.
    pub primary_key: Option<i64>,
    /// When its refetch was applied (or it was coalesced).
    pub processed_at: Option<UtcTime>,
    /// `queued` or `coalesced`.
    pub outcome: Option<String>,
}

/// Every stored webhook event, oldest first.
pub fn events(conn: &Connection) -> Result<Vec<Event>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT event_id, received_at, event, entity, primary_key, processed_at, outcome
             FROM webhook_events ORDER BY received_at, event_id",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([], |r| {
            Ok(Event {
                event_id: r.get(0)?,
                received_at: r.get(1)?,
                event: r.get(2)?,
                entity: r.get(3)?,
                primary_key: r.get(4)?,
                processed_at: r.get(5)?,
                outcome: r.get(6)?,
            })
        })
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::{Registration, register};
    use superoffice::entity::EntityKind;

    fn event(id: &str, key: i64) -> NewEvent {
        NewEvent {
            event_id: id.to_string(),
            event: "contact.changed".to_string(),
            entity: "Contact".to_string(),
            primary_key: key,
            body: "{}".to_string(),
            targets: vec!["contacts".to_string()],
        }
    }

    #[test]
    fn events_deduplicate_and_coalesce_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let t0: UtcTime = "2026-12-04T10:00:00.000Z".parse().unwrap();
        let t1: UtcTime = "2026-12-04T10:00:01.000Z".parse().unwrap();
        let outcomes = store
            .write_blocking(|tx| {
                register(
                    tx,
                    Registration {
                        name: "contacts",
                        kind: EntityKind::Contact,
                        fingerprint: "f",
                    },
                    t0,
                )?;
                Ok(vec![
                    record_event(tx, &event("a", 7), t0)?,
                    record_event(tx, &event("a", 7), t0)?,
                    record_event(tx, &event("b", 7), t1)?,
                ])
            })
            .unwrap();
        assert_eq!(
            outcomes,
            [Recorded::Queued, Recorded::Duplicate, Recorded::Queued]
        );
        let events = store.read_blocking(events).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].entity.as_deref(), Some("contact"));
        assert_eq!(
            (events[0].outcome.as_deref(), events[0].processed_at),
            (Some("coalesced"), Some(t1))
        );
        assert_eq!(
            (events[1].outcome.as_deref(), events[1].processed_at),
            (Some("queued"), None)
        );
        let queued = store.read_blocking(|c| queued(c, "contacts", 10)).unwrap();
        assert_eq!(
            queued,
            [Queued {
                id: 7,
                event_id: "b".into(),
                queued_at: t1
            }]
        );
        assert_eq!(store.read_blocking(queue).unwrap().len(), 1);
    }
}
