//! `cargo xtask`: workspace chores. This file only parses arguments and dispatches; each task
//! is a module in `tasks/`.

mod tasks;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "SuperOffice SDK workspace chores")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write exactly what `sdk/build.rs` generates (Rust and the normalised OpenAPI) to a folder.
    Codegen(tasks::codegen::Args),
    /// Print per tag the operations in the spec, generated and excluded (with reasons).
    Coverage(tasks::coverage::Args),
    /// Manage the pinned upstream spec (`spec/superoffice.lock`).
    Spec(tasks::spec::Args),
    /// Measure the build budget: codegen time, clean debug build time and peak rustc memory.
    Budget(tasks::budget::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Codegen(args) => tasks::codegen::run(args),
        Task::Coverage(args) => tasks::coverage::run(args),
        Task::Spec(args) => tasks::spec::run(args),
        Task::Budget(args) => tasks::budget::run(args),
    }
}
