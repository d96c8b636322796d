//! Group commit (used by the outbox's task ledger): the state changes of concurrent deliveries
//! that arrive while a transaction is being written are applied together in the next one,
//! each inside its own savepoint (one failing change does not undo the others). A delivery
//! still waits for its own change to be committed before it makes its next API call; only the
//! number of transactions (and writer-lock hand-offs) goes down.

use std::sync::Arc;

use rusqlite::Transaction;
use tokio::sync::{mpsc, oneshot};

use super::sql;
use crate::{Error, Result, Store};

/// Changes applied in one transaction at most.
const MAX_BATCH: usize = 128;

type Change = Box<dyn FnOnce(&Transaction<'_>) -> Result<()> + Send>;

struct Job {
    change: Change,
    done: oneshot::Sender<Result<()>>,
}

fn savepoint(tx: &Transaction<'_>, statement: &str) -> Result<()> {
    tx.prepare_cached(statement)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(sql)
}

/// The committer thread: takes what has queued up (at most [`MAX_BATCH`] changes), applies it
/// in one transaction on the store's writer connection, answers every change, and waits for
/// the next. It runs on its own thread rather than as a task that hands each transaction to
/// the blocking pool: a change then waits for one thread wake-up on each side of its commit
/// instead of three, which on a busy machine is most of a commit's latency.
fn run(store: &Store, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (changes, replies): (Vec<Change>, Vec<oneshot::Sender<Result<()>>>) =
            batch.into_iter().map(|j| (j.change, j.done)).unzip();
        let results = store.write_blocking(move |tx| {
            let mut results = Vec::with_capacity(changes.len());
            let alone = changes.len() == 1;
            for change in changes {
                if alone {
                    // Its own transaction: a failure rolls it back.
                    change(tx)?;
                    results.push(Ok(()));
                    continue;
                }
                savepoint(tx, "SAVEPOINT outbox_change")?;
                let result = change(tx);
                if result.is_err() {
                    savepoint(tx, "ROLLBACK TO outbox_change")?;
                }
                savepoint(tx, "RELEASE outbox_change")?;
                results.push(result);
            }
            Ok(results)
        });
        match results {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) if replies.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(Error::GroupCommit(error.clone())));
                }
            }
        }
    }
}

/// A handle to the committer thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Committer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Committer {
    /// Starts the committer thread for `store`. If the thread cannot be started, every
    /// [`Committer::write`] fails with [`Error::CommitterStopped`].
    pub fn start(store: Store) -> Committer {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("syncd-commit".into())
            .spawn(move || run(&store, queue));
        if let Err(error) = spawned {
            tracing::error!(%error, "starting the ledger's committer thread failed");
        }
        Committer { jobs }
    }

    /// Applies `change` in the next transaction and waits until it is committed.
    pub async fn write(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job {
                change: Box::new(change),
                done,
            })
            .map_err(|_| Error::CommitterStopped)?;
        committed.await.map_err(|_| Error::CommitterStopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_commit_together_but_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("syncd.db")).unwrap();
        let committer = Committer::start(store.clone());
        let insert = |name: &'static str| {
            let committer = committer.clone();
            async move {
                committer
                    .write(move |tx| {
                        tx.execute(
                            "INSERT INTO subscriptions (name, entity, created_at) VALUES (?1, 'contact', 'now')",
                            [name],
                        )
                        .map_err(sql)?;
                        if name == "bad" {
                            return Err(Error::invalid("name", "refused"));
                        }
                        Ok(())
                    })
                    .await
            }
        };
        let (a, b, c) = tokio::join!(insert("a"), insert("bad"), insert("c"));
        assert!(a.is_ok() && c.is_ok());
        assert!(b.is_err());
        let names: Vec<String> = store
            .read_blocking(|conn| {
                let mut s = conn
                    .prepare("SELECT name FROM subscriptions ORDER BY name")
                    .map_err(sql)?;
                let rows = s
                    .query_map([], |r| r.get(0))
                    .map_err(sql)?
                    .collect::<rusqlite::Result<Vec<String>>>()
                    .map_err(sql)?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(names, ["a", "c"]);
    }
}
