//! Quarantined records: those whose transform failed or ran out of its budget (see
//! [`crate::transform`] and [`crate::store::quarantine`]); `syncd quarantine list|retry` shows
//! and retries them.
//!
//! [`retry`] queues a targeted refetch of the selected records (`refetch_queue`, like a
//! webhook does); the running daemon fetches them within seconds, runs the transform again and
//! removes a record from quarantine once it stores fine. With an unchanged transform a record
//! that failed fails again: it stays quarantined with one more attempt counted.

use crate::Result;
use crate::store::Store;
use crate::store::quarantine::{self, Quarantined};
use crate::store::types::UtcTime;

/// The quarantined records of one subscription or all, in the store's order.
pub async fn list(store: &Store, subscription: Option<String>) -> Result<Vec<Quarantined>> {
    store
        .read(move |conn| quarantine::list(conn, subscription.as_deref(), &[]))
        .await
}

/// What [`retry`] queued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    /// The records queued for a refetch: (subscription, id).
    pub queued: Vec<(String, i64)>,
    /// Requested ids that are not quarantined (nothing was queued for them).
    pub missing: Vec<i64>,
}

/// Queues a refetch of the quarantined records selected by `subscription` and `ids` (no ids:
/// every quarantined record of the selection).
pub async fn retry(store: &Store, subscription: Option<String>, ids: Vec<i64>) -> Result<Retried> {
    let wanted = ids.clone();
    let queued = store
        .write(move |tx| quarantine::requeue(tx, subscription.as_deref(), &wanted, UtcTime::now()))
        .await?;
    let missing = ids
        .into_iter()
        .filter(|id| !queued.iter().any(|(_, q)| q == id))
        .collect();
    Ok(Retried { queued, missing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use superoffice::entity::EntityKind;

    use crate::store::runs::{self, Registration};

    #[tokio::test]
    async fn retry_queues_what_is_quarantined_and_names_what_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        store
            .write_blocking(|tx| {
                let registration = Registration {
                    name: "contacts",
                    kind: EntityKind::Contact,
                    fingerprint: "f",
                };
                runs::register(tx, registration, UtcTime::now())?;
                quarantine::put(tx, "contacts", 7, "{}", "jq: x", UtcTime::now())?;
                quarantine::put(tx, "contacts", 9, "{}", "jq: y", UtcTime::now())
            })
            .unwrap();
        assert_eq!(
            list(&store, Some("contacts".into()))
                .await
                .unwrap()
                .iter()
                .map(|q| q.id)
                .collect::<Vec<_>>(),
            [7, 9]
        );
        let retried = retry(&store, None, vec![9, 1234]).await.unwrap();
        assert_eq!(
            retried,
            Retried {
                queued: vec![("contacts".into(), 9)],
                missing: vec![1234],
            }
        );
        let all = retry(&store, Some("contacts".into()), vec![])
            .await
            .unwrap();
        assert_eq!(all.queued.len(), 2, "{all:?}");
        assert!(all.missing.is_empty());
    }
}
