//! The change feed leaving the database: [`ChangeEvent`] (the documented, versioned JSON shape
//! of a change, `syncd/docs/change-event.schema.json`), the [`FeedNotifier`] that wakes readers
//! when a page transaction with change rows commits, and the HTTP feed on the control plane
//! ([`http`]: `GET /changes`, `GET /changes/stream`).
//!
//! Rows are read with [`crate::store::feed`]; the tenant of a change comes from its
//! subscription in the configuration ([`Tenants`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Config;

pub mod event;
pub mod http;
pub mod subject;

pub use event::{ChangeEvent, Op};

/// "The last committed seq": bumped by the sync engine right after a page transaction that
/// wrote change rows commits ([`crate::store::records::apply`] returns the seq); feed readers wait on
/// it instead of polling. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedNotifier {
    sender: Arc<watch::Sender<i64>>,
    shutdown: CancellationToken,
}

impl FeedNotifier {
    /// Starts at `last_seq` (what the database holds); streams end when `shutdown` is
    /// cancelled.
    pub fn new(last_seq: i64, shutdown: CancellationToken) -> FeedNotifier {
        FeedNotifier {
            sender: Arc::new(watch::Sender::new(last_seq)),
            shutdown,
        }
    }

    /// Change rows up to `seq` are committed (never moves backwards).
    pub fn committed(&self, seq: i64) {
        self.sender.send_if_modified(|last| {
            if seq > *last {
                *last = seq;
                true
            } else {
                false
            }
        });
    }

    /// The last committed seq this process knows of.
    pub fn last(&self) -> i64 {
        *self.sender.borrow()
    }

    /// A receiver that sees every later [`FeedNotifier::committed`].
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }

    /// Cancelled when the daemon shuts down (open streams end).
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Subscription → tenant, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenants(BTreeMap<String, String>);

impl Tenants {
    /// The tenants of the configured subscriptions.
    pub fn from_config(config: &Config) -> Tenants {
        Tenants(
            config
                .subscriptions
                .iter()
                .map(|s| (s.name.clone(), s.tenant.clone()))
                .collect(),
        )
    }

    /// The tenant of `subscription` (`None`: not configured any more).
    pub fn of(&self, subscription: &str) -> Option<&str> {
        self.0.get(subscription).map(String::as_str)
    }
}

impl FromIterator<(String, String)> for Tenants {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Tenants {
        Tenants(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_notifier_only_moves_forward_and_wakes_receivers() {
        let notifier = FeedNotifier::new(5, CancellationToken::new());
        let mut rx = notifier.subscribe();
        notifier.committed(3);
        assert!(!rx.has_changed().unwrap(), "an older seq is not news");
        notifier.committed(9);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 9);
        assert_eq!(notifier.last(), 9);
    }
}
