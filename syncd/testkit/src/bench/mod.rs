//! Measurement cores of syncd's benchmarks, callable from any bench binary
//! (`syncd/benches/`): each returns a report with public fields and a `Display` that prints
//! the bench's lines.

pub mod outbox;
