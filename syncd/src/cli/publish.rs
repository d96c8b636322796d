//! `syncd publish …`: queue a publish (or, with `--dry-run`, print the requests it would send).

use std::io::Read as _;
use std::path::Path;

use super::Context;
use crate::outbox::ledger::Intake;
use crate::outbox::task::{self, PublishRequest};
use crate::{Error, Result, store};

/// `syncd publish …`: queue a publish (prints the task id).
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// create, update, patch, delete or upsert.
    #[arg(long)]
    pub action: String,
    /// Entity (contact, person, sale, project, appointment, document, ticket, selection, product).
    #[arg(long)]
    pub entity: String,
    /// SuperOffice record id (update, patch, delete; optional for upsert).
    #[arg(long)]
    pub id: Option<i64>,
    /// The record's external key (ForeignApp value): finds the record for upserts, tags created
    /// records, may stand in for --id.
    #[arg(long)]
    pub external_key: Option<String>,
    /// Path parameter `k=v` (repeatable; the entity routes know `id`).
    #[arg(long = "path", value_name = "K=V")]
    pub path: Vec<String>,
    /// Query parameter `k=v` sent with the write (repeatable).
    #[arg(long = "query", value_name = "K=V")]
    pub query: Vec<String>,
    /// JSON body: a file, or `-` for stdin (not for delete).
    #[arg(long, value_name = "FILE|-")]
    pub payload: Option<String>,
    /// `If-Unmodified-Since` (RFC 3339); default: the synced record's last-modified.
    #[arg(long)]
    pub if_unmodified_since: Option<String>,
    /// Idempotency key (default: sha256 of the request).
    #[arg(long)]
    pub key: Option<String>,
    /// Print the HTTP requests it would send; queue nothing, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn read_payload(source: &str) -> Result<String> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::invalid("payload", format!("reading stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(Path::new(source))
        .map_err(|e| Error::invalid("payload", format!("reading {source}: {e}")))
}

/// Builds the request from the flags (reads the payload file).
pub fn request_from_args(args: &PublishArgs) -> Result<PublishRequest> {
    Ok(PublishRequest {
        action: args.action.clone(),
        entity: args.entity.clone(),
        id: args.id,
        external_key: args.external_key.clone(),
        path: task::parse_pairs("path", &args.path)?,
        query: task::parse_pairs("query", &args.query)?,
        payload: args.payload.as_deref().map(read_payload).transpose()?,
        if_unmodified_since: args.if_unmodified_since.clone(),
        key: args.key.clone(),
    })
}

/// Runs `syncd publish`.
pub async fn publish(context: &Context, args: PublishArgs) -> Result<()> {
    let config = context.config()?;
    let request = request_from_args(&args)?;
    if args.dry_run {
        let new = task::validate(&config, &request)?;
        println!("# dry run: nothing is queued or sent (key {})", new.key);
        for (i, text) in crate::outbox::plan::plan(&config, &new).iter().enumerate() {
            println!("\n# {}\n{text}", i + 1);
        }
        return Ok(());
    }
    let store = store::open_existing(&config.store)?;
    match crate::outbox::publish(&store, &config, &request, "cli").await? {
        Intake::Queued(task) => println!("{}", task.id),
        Intake::Replay(task) => {
            eprintln!(
                "key {:?} was queued before as task {} ({}); not queued again",
                task.key, task.id, task.state
            );
            println!("{}", task.id);
        }
        Intake::Mismatch(task) => {
            return Err(Error::invalid(
                "key",
                format!(
                    "{:?} is already used by task {} with a different request",
                    task.key, task.id
                ),
            ));
        }
    }
    Ok(())
}
