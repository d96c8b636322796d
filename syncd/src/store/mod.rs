//! The SQLite store: the only module that opens the database.
//!
//! [`open`] sets the pragmas outside any transaction (WAL, `synchronous=FULL`, foreign keys,
//! busy timeout), then applies the append-only migrations keyed on `user_version` in one
//! IMMEDIATE transaction, and refuses a database written by a newer syncd. The returned
//! [`Store`] owns one writer connection (behind a mutex) and opens reader connections on
//! demand, so readers never block the writer; every call runs on tokio's blocking pool, never
//! on the async workers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::{Error, Result};

pub mod commit;
pub mod feed;
pub mod ledger;
pub mod loops;
pub mod outbox_rows;
pub mod quarantine;
pub mod records;
pub mod retention;
pub mod runs;
pub mod sinks;
pub mod status;
pub mod tasks;
pub mod types;
pub mod webhooks;

/// SQLite's error type, which [`Error::Store`] carries (only `store` names the driver).
pub use rusqlite::Error as SqliteError;

/// Migrations, in order. Append only: never edit or reorder a released entry.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_page_cap_requests.sql"),
    include_str!("migrations/0003_quarantine.sql"),
    include_str!("migrations/0004_retention.sql"),
    include_str!("migrations/0006_change_content.sql"),
    include_str!("migrations/0007_sinks.sql"),
    include_str!("migrations/0008_poll_interval.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    /// `None` for a store opened with [`open_read_only`].
    writer: Option<Arc<Mutex<Connection>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.to_path_buf(),
        source: e,
    }
}

fn problem(path: &Path, problem: DatabaseProblem) -> Error {
    Error::Database {
        path: path.to_path_buf(),
        problem,
    }
}

impl DatabaseProblem {
    /// The problem with the file named: `no database at PATH: …`, else `PATH: problem`.
    pub fn at(&self, path: &Path) -> String {
        match self {
            DatabaseProblem::Missing => format!(
                "no database at {}: start the daemon first, or set `store`",
                path.display()
            ),
            other => format!("{}: {other}", path.display()),
        }
    }
}

/// Why a database file cannot be used as it is ([`Error::Database`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseProblem {
    /// Its directory could not be created.
    #[error("creating its directory: {0}")]
    CreateDir(#[source] std::io::Error),
    /// There is no file (commands never create one: only `syncd run` does).
    #[error("no database: start the daemon first, or set `store`")]
    Missing,
    /// SQLite refused WAL mode.
    #[error("could not switch to WAL (journal_mode is {0})")]
    NotWal(String),
    /// Written by a newer syncd: refused untouched.
    #[error(
        "schema version {found} is newer than this syncd understands ({supported}); refusing \
         to touch it (upgrade syncd)"
    )]
    NewerSchema {
        /// The file's `user_version`.
        found: u32,
        /// This binary's.
        supported: u32,
    },
    /// Older than this binary's schema, seen by a command (only `syncd run` migrates).
    #[error(
        "schema version {found} is older than this syncd's ({supported}); the daemon upgrades \
         it when this version of `syncd run` starts, and commands leave it as it is"
    )]
    OlderSchema {
        /// The file's `user_version`.
        found: u32,
        /// This binary's.
        supported: u32,
    },
    /// A migration failed (and was rolled back).
    #[error("migration {index} failed: {source}")]
    Migration {
        /// The migration's number (1-based).
        index: usize,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Opened read-only: the command cannot change it.
    #[error("opened read-only; this command cannot change it")]
    ReadOnly,
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| db_error(path, e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| db_error(path, e))?;
    // FULL: every commit is on disk before it returns. With NORMAL a power loss may undo the
    // last commits, and change-feed sequence numbers a consumer already read (or a task id a
    // publisher was given) would be handed out again for other changes. The price is one
    // fsync of the WAL per commit (a page, a webhook event, an outbox batch).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| db_error(path, e))?;
    Ok(())
}

/// Opens (creating if needed) and migrates the database at `path`.
pub fn open(path: &Path) -> Result<Store> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| problem(path, DatabaseProblem::CreateDir(e)))?;
    }
    let mut conn = Connection::open(path).map_err(|e| db_error(path, e))?;
    // Pragmas first, outside any transaction (journal_mode is ignored inside one).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| db_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(problem(path, DatabaseProblem::NotWal(mode)));
    }
    configure(&conn, path)?;
    migrate(&mut conn, path)?;
    Ok(Store::new(path, Some(conn)))
}

/// Opens the daemon's database for a CLI command that changes it (`publish`, `resync`,
/// `tasks retry`, …). It must exist (a command never creates one: only `syncd run` does) and
/// have exactly this binary's schema: a command never migrates, so a newer CLI cannot upgrade
/// the schema under a running older daemon.
pub fn open_existing(path: &Path) -> Result<Store> {
    must_exist(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_error(path, e))?;
    configure(&conn, path)?;
    same_schema(&conn, path)?;
    Ok(Store::new(path, Some(conn)))
}

/// Opens the daemon's database read-only for `status`, `changes` and `tasks list|show`: no
/// write, no migration, no file created; a schema other than this binary's is a clear error.
pub fn open_read_only(path: &Path) -> Result<Store> {
    must_exist(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_error(path, e))?;
    configure(&conn, path)?;
    same_schema(&conn, path)?;
    let store = Store::new(path, None);
    store
        .readers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(conn);
    Ok(store)
}

/// The schema version (`user_version`) of the database at `path`, read without migrating or
/// checking it and without writing anything.
pub fn schema_version(path: &Path) -> Result<u32> {
    must_exist(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_error(path, e))?;
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| db_error(path, e))
}

fn must_exist(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(problem(path, DatabaseProblem::Missing))
    }
}

/// The database's schema must be the one this binary writes.
fn same_schema(conn: &Connection, path: &Path) -> Result<()> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| db_error(path, e))?;
    match version {
        v if v == SCHEMA_VERSION => Ok(()),
        v if v > SCHEMA_VERSION => Err(newer_schema(path, v)),
        v => Err(problem(
            path,
            DatabaseProblem::OlderSchema {
                found: v,
                supported: SCHEMA_VERSION,
            },
        )),
    }
}

fn newer_schema(path: &Path, version: u32) -> Error {
    problem(
        path,
        DatabaseProblem::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        },
    )
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_error(path, e))?;
    let version: u32 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| db_error(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(newer_schema(path, version));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|source| {
            problem(
                path,
                DatabaseProblem::Migration {
                    index: index + 1,
                    source,
                },
            )
        })?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| db_error(path, e))?;
    tx.commit().map_err(|e| db_error(path, e))
}

impl Store {
    fn new(path: &Path, writer: Option<Connection>) -> Store {
        Store {
            path: path.to_path_buf(),
            writer: writer.map(|conn| Arc::new(Mutex::new(conn))),
            readers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn writer(&self) -> Result<Arc<Mutex<Connection>>> {
        self.writer
            .clone()
            .ok_or_else(|| problem(&self.path, DatabaseProblem::ReadOnly))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one IMMEDIATE write transaction on the blocking pool; commits when `f`
    /// returns `Ok`, rolls back otherwise (also when the task is dropped mid-way).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let writer = self.writer()?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| db_error(&path, e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| db_error(&path, e))?;
            Ok(value)
        })
        .await
        .map_err(|source| Error::Task {
            what: "a store call",
            source,
        })?
    }

    /// Runs `f` on a reader connection on the blocking pool (WAL: never blocks the writer).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|source| Error::Task {
                what: "a store call",
                source,
            })?
    }

    /// [`Store::read`] for code already on a blocking thread (CLI commands).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < 4 {
            readers.push(conn);
        }
        result
    }

    /// A new reader connection. A store with a writer opens its readers read-write with
    /// `query_only`: a read-only connection to a WAL database fails with "unable to open
    /// database file" when it finds the `-shm`/`-wal` files missing or being recreated, which
    /// a reader beside a live writer must never do. A store from [`open_read_only`] (a CLI
    /// command that must not write) opens read-only.
    fn open_reader(&self) -> Result<Connection> {
        let flags = if self.writer.is_some() {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let conn = Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| db_error(&self.path, e))?;
        configure(&conn, &self.path)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| db_error(&self.path, e))?;
        Ok(conn)
    }

    /// [`Store::write`] for code already on a blocking thread (CLI commands).
    pub fn write_blocking<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let writer = self.writer()?;
        let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&self.path, e))?;
        let value = f(&tx)?;
        tx.commit().map_err(|e| db_error(&self.path, e))?;
        Ok(value)
    }
}

/// Maps a rusqlite error from inside a transaction closure.
pub fn sql(e: rusqlite::Error) -> Error {
    Error::Store(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_migrates_sets_wal_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/syncd.db");
        let store = open(&path).unwrap();
        let (mode, fk, version): (String, i64, u32) = store
            .read_blocking(|c| {
                let synchronous: i64 = c
                    .query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(sql)?;
                assert_eq!(synchronous, 2, "readers run with synchronous=FULL");
                let mode = c
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(sql)?;
                let fk = c
                    .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                    .map_err(sql)?;
                let v = c
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(sql)?;
                Ok((mode, fk, v))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(fk, 1);
        assert_eq!(version, SCHEMA_VERSION);
        let synchronous: i64 = store
            .write_blocking(|tx| {
                tx.query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(sql)
            })
            .unwrap();
        assert_eq!(synchronous, 2, "the writer commits with synchronous=FULL");
        let refused = store
            .read_blocking(|c| c.execute("DELETE FROM subscriptions", []).map_err(sql))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("readonly"),
            "a reader cannot write: {refused}"
        );
        drop(store);
        open(&path).expect("reopening an up-to-date database is a no-op");
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syncd.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO subscriptions (name, entity, created_at) VALUES ('s', 'contact', 'then');
                 INSERT INTO cursors (subscription) VALUES ('s');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = open(&path).unwrap();
        let (version, cap, name): (u32, Option<i64>, String) = store
            .read_blocking(|c| {
                let v = c
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(sql)?;
                let (cap, name) = c
                    .query_row("SELECT page_cap, subscription FROM cursors", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(sql)?;
                Ok((v, cap, name))
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!((cap, name.as_str()), (None, "s"));
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syncd.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
        assert_eq!(schema_version(&path).unwrap(), SCHEMA_VERSION + 1);
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("syncd.db")).unwrap();
        let result: Result<()> = store.write_blocking(|tx| {
            tx.execute("INSERT INTO subscriptions (name, entity, created_at) VALUES ('s', 'contact', 'now')", [])
                .map_err(sql)?;
            Err(Error::invalid("test", "boom"))
        });
        assert!(result.is_err());
        let count: i64 = store
            .read_blocking(|c| {
                c.query_row("SELECT count(*) FROM subscriptions", [], |r| r.get(0))
                    .map_err(sql)
            })
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("syncd.db");
        std::fs::write(&path, "this is not sqlite, and nothing here must be lost").unwrap();
        let err = open(&path).unwrap_err().to_string();
        assert!(err.contains("syncd.db"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "this is not sqlite, and nothing here must be lost"
        );
    }
}
