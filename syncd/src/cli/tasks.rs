//! `syncd tasks …`: the task view (list, show, retry, skip, purge).

use chrono::Utc;

use super::Context;
use crate::config::parse_duration;
use crate::outbox::task::{self, Task, TaskId, TaskState};
use crate::store::tasks as ledger;
use crate::{Error, Result, store};

/// `syncd tasks …`.
#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first, with a count per state.
    List {
        /// Only this state (pending, in_flight, done, failed, conflict, dead, skipped).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object: `{"tasks": […], "counts": {state: n}}`.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one task, as JSON.
    Show {
        /// Task id.
        id: i64,
    },
    /// Queue a failed, conflicting, dead or skipped task again (fresh attempt budget).
    Retry {
        /// Task id.
        id: i64,
        /// Drop its If-Unmodified-Since (ours wins a conflict).
        #[arg(long)]
        overwrite: bool,
    },
    /// Do not deliver a task; later tasks of its record may go ahead.
    Skip {
        /// Task id.
        id: i64,
    },
    /// Delete done and skipped tasks older than a duration (e.g. 30d).
    Purge {
        /// Age, e.g. 7d, 12h.
        #[arg(long)]
        older_than: String,
    },
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn print_list(tasks: &[Task]) {
    println!(
        "{:>7} {:<9} {:<7} {:<11} {:>9} {:>4} {:<24} {:<24} ERROR",
        "ID", "STATE", "ACTION", "ENTITY", "RECORD", "TRY", "UPDATED", "KEY"
    );
    for t in tasks {
        let record = t
            .result_id
            .or(t.record_id)
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>7} {:<9} {:<7} {:<11} {:>9} {:>4} {:<24} {:<24} {}",
            t.id,
            t.state.as_str(),
            shorten(&t.action.to_string(), 7),
            shorten(&t.entity.to_string(), 11),
            record,
            t.attempts,
            t.updated_at.to_string(),
            shorten(&t.key, 24),
            shorten(t.last_error.as_deref().unwrap_or(""), 60)
        );
    }
}

/// Runs a `tasks` command.
pub async fn tasks(context: &Context, command: TasksCommand) -> Result<()> {
    let config = context.config()?;
    // Listing and showing never write: they open the database read-only.
    let store = match command {
        TasksCommand::List { .. } | TasksCommand::Show { .. } => {
            store::open_read_only(&config.store)?
        }
        _ => store::open_existing(&config.store)?,
    };
    match command {
        TasksCommand::List { state, limit, json } => {
            let state = state.as_deref().map(str::parse::<TaskState>).transpose()?;
            let (tasks, counts) = store
                .read(move |conn| Ok((ledger::list(conn, state, limit)?, ledger::counts(conn)?)))
                .await?;
            if json {
                let counts: serde_json::Map<String, serde_json::Value> = counts
                    .iter()
                    .map(|(state, n)| (state.to_string(), serde_json::Value::from(*n)))
                    .collect();
                let out = serde_json::json!({ "tasks": tasks, "counts": counts });
                println!("{out}");
                return Ok(());
            }
            print_list(&tasks);
            let summary: Vec<String> = counts
                .iter()
                .map(|(state, n)| format!("{state} {n}"))
                .collect();
            println!("\n{}", summary.join(", "));
        }
        TasksCommand::Show { id } => {
            let task = store
                .read(move |conn| ledger::get(conn, TaskId(id)))
                .await?
                .ok_or_else(|| Error::NoTask(TaskId(id)))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&task).map_err(|source| Error::Encode {
                    what: "a task".into(),
                    source,
                })?
            );
        }
        TasksCommand::Retry { id, overwrite } => {
            let task = store
                .write(move |tx| ledger::retry(tx, TaskId(id), overwrite, Utc::now()))
                .await?;
            println!("task {} is pending again", task.id);
        }
        TasksCommand::Skip { id } => {
            let task = store
                .write(move |tx| ledger::skip(tx, TaskId(id), Utc::now()))
                .await?;
            println!("task {} is skipped", task.id);
        }
        TasksCommand::Purge { older_than } => {
            let age = parse_duration(&older_than)
                .map_err(|e| Error::invalid("--older-than", e.to_string()))?;
            let before = Utc::now()
                - chrono::Duration::from_std(age)
                    .map_err(|e| Error::invalid("--older-than", e.to_string()))?;
            let purged = store.write(move |tx| ledger::purge(tx, before)).await?;
            println!(
                "purged {purged} done/skipped tasks last changed before {}; failed, conflict and dead tasks are kept until retried or skipped",
                task::ts(before)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_on_characters_with_an_ellipsis() {
        assert_eq!(shorten("update", 7), "update");
        assert_eq!(shorten("appointment", 11), "appointment");
        assert_eq!(shorten("appointments", 11), "appointmen…");
        assert_eq!(shorten("äöüäöüäöü", 4), "äöü…");
        assert_eq!(shorten("", 0), "");
    }
}
