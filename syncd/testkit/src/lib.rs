//! Test support shared by syncd's integration tests (`syncd/tests/`) and benchmarks
//! (`syncd/benches/`), a dev-dependency of syncd only (the production build,
//! `cargo tree -p syncd --no-default-features -e normal`, never sees it):
//! - [`sync`]: an emulator and a daemon against it, checks of the local copy and the change feed
//!   against the emulator's ground truth; [`sync::kill`] the SIGKILL scenario;
//! - [`outbox`]: the same for the outbox and publish tests (the ledger, ForeignApp keys);
//! - [`lateday`]: one simulated day of edits, measuring the rows read per row changed;
//! - [`process`]: the `syncd` binary as a child process that is killed on drop;
//! - [`bench`]: the measurement cores of the benchmarks ([`bench::outbox::measure`]);
//! - [`nats`]: a real `nats-server` with JetStream;
//! - [`notify`]: a fake systemd `NOTIFY_SOCKET`.

pub mod bench;
pub mod lateday;
pub mod nats;
pub mod notify;
pub mod outbox;
pub mod process;
pub mod sync;
