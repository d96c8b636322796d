//! The command line: `syncd run`, `auth`, `status`, `changes`, `resync`, `reconcile`,
//! `webhooks`, `quarantine`, `publish`, `tasks`, `config check`, `demo`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMode, Config};
use crate::logging::LogFormat;
use crate::store;
use crate::{Error, Result};

/// syncd: SuperOffice → SQLite sync with a change feed, and idempotent publishes back.
#[derive(Debug, Parser)]
#[command(name = "syncd", version, about)]
pub struct Cli {
    /// Config file (default: $CONFIGURATION_DIRECTORY/syncd.toml under systemd, else ./syncd.toml).
    #[arg(long, global = true, env = "SYNCD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (systemd `Type=notify`).
    Run,
    /// Sign in (OAuth) or check the system user.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// One line per subscription: state, rows, last sync, lag, errors.
    Status {
        /// One JSON object: `{"subscriptions": [{subscription, state, rows, last_sync,
        /// lag_seconds, newest_change_age_seconds, errors}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print the change feed as JSON lines.
    Changes {
        /// Print changes after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Keep printing new changes.
        #[arg(long)]
        follow: bool,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Start a subscription over from scratch (the next pass is a full load; unchanged records
    /// emit nothing).
    Resync {
        /// The subscription.
        subscription: String,
    },
    /// Reconcile deletes of a subscription on its next pass.
    Reconcile {
        /// The subscription.
        subscription: String,
    },
    /// Manage the tenant's webhooks.
    #[command(subcommand)]
    Webhooks(crate::sync::cli::WebhooksCommand),
    /// Records whose transform failed or ran out of budget: list them, or fetch them again.
    #[command(subcommand)]
    Quarantine(crate::sync::quarantine::QuarantineCommand),
    /// Queue a publish (create, update, patch, delete, upsert).
    Publish(crate::outbox::cli::PublishArgs),
    /// The publish task ledger.
    #[command(subcommand)]
    Tasks(crate::outbox::cli::TasksCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start the built-in emulator with data and live activity, sync it, and show progress.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Sign in with the OAuth code flow + PKCE: prints the URL to open, waits for the redirect
    /// on the loopback URI, stores the tokens (mode 0600) in the tenant's `token_file` (default
    /// `$STATE_DIRECTORY/tokens-<tenant>.json`).
    ///
    /// For the systemd service the file must be in its state directory and owned by its
    /// (dynamic) user: run this through `systemd-run -p DynamicUser=yes -p User=syncd
    /// -p StateDirectory=syncd -p ConfigurationDirectory=syncd -p LoadCredential=…` as
    /// dist/INSTALL.md shows, or as root with `STATE_DIRECTORY=/var/lib/syncd` and then
    /// `chown --reference=/var/lib/private/syncd` on the file.
    Login {
        /// The tenant (default: the only one).
        #[arg(long)]
        tenant: Option<String>,
        /// Seconds to wait for the browser.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Check the system-user login with a private key (PEM or RSA-XML).
    SystemUser {
        /// The private key file (default: the tenant's `private_key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The tenant (default: the only one).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration without network access. Secrets that cannot be read here
    /// (e.g. systemd credentials outside the unit) are listed as notes.
    Check {
        /// Secrets that cannot be read are errors.
        #[arg(long)]
        strict: bool,
    },
}

/// What every command gets.
#[derive(Debug)]
pub struct Context {
    /// The config file path (may not exist for `demo`).
    pub config_path: PathBuf,
    /// The log format chosen.
    pub log_format: LogFormat,
}

impl Context {
    /// Loads and validates the config file.
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.config_path)
    }
}

fn default_config_path() -> PathBuf {
    crate::config::in_systemd_directory("CONFIGURATION_DIRECTORY", "syncd.toml")
}

/// Entry point of the `syncd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = Context {
        config_path: cli.config.clone().unwrap_or_else(default_config_path),
        log_format: cli.log_format,
    };
    let quiet = matches!(
        cli.command,
        Command::Changes { .. }
            | Command::Status { .. }
            | Command::Config(_)
            | Command::Quarantine(_)
    );
    if !quiet {
        crate::logging::init(cli.log_format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&context, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(context: &Context, command: Command) -> Result<()> {
    match command {
        Command::Run => run(context).await,
        Command::Auth(AuthCommand::Login { tenant, timeout }) => {
            auth_login(context, tenant, timeout).await
        }
        Command::Auth(AuthCommand::SystemUser { key, tenant }) => {
            auth_system_user(context, key, tenant).await
        }
        Command::Status { json } => status(context, json).await,
        Command::Changes {
            since,
            follow,
            subscription,
        } => changes(context, since, follow, subscription).await,
        Command::Resync { subscription } => {
            request(context, &subscription, store::status::Request::Resync).await
        }
        Command::Reconcile { subscription } => {
            request(context, &subscription, store::status::Request::Reconcile).await
        }
        Command::Webhooks(command) => crate::sync::cli::webhooks(context, command).await,
        Command::Quarantine(command) => crate::sync::quarantine::quarantine(context, command).await,
        Command::Publish(args) => crate::outbox::cli::publish(context, args).await,
        Command::Tasks(command) => crate::outbox::cli::tasks(context, command).await,
        Command::Config(ConfigCommand::Check { strict }) => config_check(context, strict),
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::demo::run(context, args).await,
    }
}

/// `syncd run`: until SIGTERM/SIGINT; SIGHUP reloads the config (a config that fails to load
/// keeps the running one). Signal handlers are installed once, so a SIGTERM that arrives while
/// a reload is under way is not lost.
async fn run(context: &Context) -> Result<()> {
    let mut signals = Signals::install()?;
    let mut config = context.config()?;
    let (mut daemon, mut shutdown) = start_daemon(&config).await?;
    loop {
        let reload = signals.next().await;
        if !reload || signals.stop_pending() {
            shutdown.cancel();
            daemon.wait().await?;
            tracing::info!("stopped");
            return Ok(());
        }
        // A new configuration whose file or secrets fail never replaces the running one.
        let new = match context
            .config()
            .and_then(|new| preflight(&new).map(|()| new))
        {
            Ok(new) => new,
            Err(error) => {
                tracing::error!(%error, "reload failed; keeping the running configuration");
                continue;
            }
        };
        shutdown.cancel();
        daemon.wait().await?;
        match start_daemon(&new).await {
            Ok(started) => {
                tracing::info!("configuration reloaded");
                (daemon, shutdown) = started;
                config = new;
            }
            Err(error) => {
                tracing::error!(%error, "the reloaded configuration did not start; starting the previous one again");
                (daemon, shutdown) = start_daemon(&config).await?;
            }
        }
    }
}

async fn start_daemon(config: &Config) -> Result<(crate::Daemon, CancellationToken)> {
    let shutdown = CancellationToken::new();
    let notifier = Arc::new(crate::systemd::Notifier::from_env());
    let (daemon, _) =
        crate::Daemon::open_and_start(config.clone(), notifier, shutdown.clone()).await?;
    Ok((daemon, shutdown))
}

/// What a reload checks before it stops the running daemon: every secret can be read and
/// every tenant's client can be built.
fn preflight(config: &Config) -> Result<()> {
    for secret in config.secrets() {
        secret.resolve()?;
    }
    config.control.resolve_token()?;
    for tenant in &config.tenants {
        crate::clients::auth_for(tenant)?;
    }
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP, for the life of the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let io = |e: std::io::Error| Error::Io(format!("installing signal handlers: {e}"));
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(io)?,
            int: signal(SignalKind::interrupt()).map_err(io)?,
            hup: signal(SignalKind::hangup()).map_err(io)?,
        })
    }

    /// Waits for the next signal: `true` for SIGHUP (reload), `false` for SIGTERM/SIGINT.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!("SIGTERM: stopping"); false }
            _ = self.int.recv() => { tracing::info!("SIGINT: stopping"); false }
            _ = self.hup.recv() => { tracing::info!("SIGHUP: reloading the configuration"); true }
        }
    }

    /// Whether SIGTERM or SIGINT arrived meanwhile (e.g. during a reload).
    fn stop_pending(&mut self) -> bool {
        use futures::FutureExt as _;
        self.term.recv().now_or_never().is_some() || self.int.recv().now_or_never().is_some()
    }
}

fn pick_tenant<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a crate::config::Tenant> {
    match name {
        Some(name) => config
            .tenant(name)
            .ok_or_else(|| Error::Invalid(format!("--tenant: no tenant named {name:?}"))),
        None if config.tenants.len() == 1 => Ok(&config.tenants[0]),
        None => Err(Error::Invalid(
            "--tenant is required when several tenants are configured".into(),
        )),
    }
}

async fn auth_login(context: &Context, tenant: Option<String>, timeout: u64) -> Result<()> {
    let config = context.config()?;
    let tenant = pick_tenant(&config, tenant.as_deref())?;
    let AuthMode::OAuth {
        token_file,
        redirect_uri,
    } = &tenant.auth
    else {
        return Err(Error::Invalid(format!(
            "tenant {:?} does not use auth = \"oauth\"",
            tenant.name
        )));
    };
    let oauth = superoffice::auth::OAuth::new(crate::clients::oauth_config(
        tenant,
        token_file,
        redirect_uri,
    )?)?;
    let claims = oauth
        .login_with_loopback(Duration::from_secs(timeout), |url| {
            println!("Open this URL in a browser to grant access:\n\n  {url}\n");
            let _ = std::io::stdout().flush();
        })
        .await?;
    println!(
        "Signed in; tokens stored in {} (mode 0600).",
        token_file.display()
    );
    if let Some(context) = oauth.context_identifier() {
        println!("Tenant: {context}");
    }
    if claims.is_some_and(|c| !c.verified) {
        println!("Note: the ID token's signature could not be verified (JWKS unreachable).");
    }
    Ok(())
}

async fn auth_system_user(
    context: &Context,
    key: Option<PathBuf>,
    tenant: Option<String>,
) -> Result<()> {
    let mut config = context.config()?;
    let name = pick_tenant(&config, tenant.as_deref())?.name.clone();
    let tenant = config
        .tenants
        .iter_mut()
        .find(|t| t.name == name)
        .expect("picked above");
    let AuthMode::SystemUser { private_key, .. } = &mut tenant.auth else {
        return Err(Error::Invalid(format!(
            "tenant {:?} does not use auth = \"system-user\"",
            tenant.name
        )));
    };
    if let Some(key) = key {
        *private_key = crate::config::SecretRef::file("--key", &key);
    }
    let auth = crate::clients::auth_for(tenant)?;
    auth.credential().await?;
    println!(
        "System user login for {} works: a ticket was issued.",
        tenant.customer_id
    );
    Ok(())
}

fn config_check(context: &Context, strict: bool) -> Result<()> {
    let config = context.config()?;
    let notes = config.check(strict)?;
    println!(
        "{}: ok ({} tenants, {} subscriptions, store {})",
        context.config_path.display(),
        config.tenants.len(),
        config.subscriptions.len(),
        config.store.display()
    );
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

/// One row of `syncd status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusRow {
    /// Subscription.
    pub subscription: String,
    /// `active` or `degraded` (with the reason).
    pub state: String,
    /// Live records.
    pub rows: i64,
    /// When the last successful pass ended (UTC).
    pub last_sync: Option<String>,
    /// Seconds since the last successful pass ended: how far behind the local copy may be.
    pub lag_seconds: Option<i64>,
    /// Seconds since the newest source change the copy holds (its `updated` timestamp): on a
    /// quiet tenant this grows although the copy is current.
    pub newest_change_age_seconds: Option<i64>,
    /// Failed passes in the last 24 hours.
    pub errors: i64,
    /// Records in quarantine (their transform failed; `syncd quarantine list`).
    pub quarantined: i64,
}

/// Reads the status of every subscription from the store.
pub fn status_rows(store: &store::Store) -> Result<Vec<StatusRow>> {
    store.read_blocking(|conn| {
        let now = chrono::Utc::now();
        let since = |at: chrono::DateTime<chrono::Utc>| (now - at).num_seconds().max(0);
        let rows: Vec<StatusRow> = store::status::subscriptions(conn)?
            .into_iter()
            .map(|s| {
                // `last_success` is syncd's own UTC text; the watermark is SuperOffice's.
                let lag = s
                    .last_success
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| since(t.to_utc()));
                let newest = s
                    .watermark
                    .as_deref()
                    .and_then(|t| t.parse::<superoffice::SoDateTime>().ok())
                    .map(|t| since(t.to_utc()));
                StatusRow {
                    subscription: s.name,
                    state: if s.reason.is_empty() {
                        s.state
                    } else {
                        format!("{} ({})", s.state, s.reason)
                    },
                    rows: s.rows,
                    lag_seconds: lag,
                    newest_change_age_seconds: newest,
                    last_sync: s.last_success,
                    errors: s.failed_last_day,
                    quarantined: 0,
                }
            })
            .collect();
        let quarantined = store::quarantine::counts(conn)?;
        Ok(rows
            .into_iter()
            .map(|mut row: StatusRow| {
                row.quarantined = quarantined.get(&row.subscription).copied().unwrap_or(0);
                row
            })
            .collect())
    })
}

/// The supervised loops as the daemon last recorded them (see [`crate::supervise`]).
pub fn loop_rows(store: &store::Store) -> Result<Vec<store::loops::LoopRow>> {
    store.read_blocking(store::loops::all)
}

/// How `syncd status` describes a loop, e.g. `loop sync:contacts: restarting (3 restarts, 2
/// failures in a row, last error at …: …)`.
pub fn loop_line(row: &store::loops::LoopRow) -> String {
    use store::loops::LoopState;
    let what = match (row.state, row.failing) {
        (LoopState::Stopped, _) => "stopped",
        (_, 0) => "running",
        (LoopState::Backoff, _) => "restarting (waiting out its backoff)",
        (LoopState::Running, _) => "restarting (started again, not yet healthy)",
    };
    let mut details = vec![format!("{} restarts", row.restarts)];
    if row.failing > 0 {
        details.push(format!("{} failures in a row", row.failing));
    }
    if let Some(error) = &row.last_error {
        details.push(format!(
            "last error at {}: {error}",
            row.last_error_at.as_deref().unwrap_or("?")
        ));
    }
    format!(
        "loop {}: {what} ({}) [as of {}]",
        row.name,
        details.join(", "),
        row.updated_at
    )
}

async fn status(context: &Context, json: bool) -> Result<()> {
    let config = context.config()?;
    let store = store::open_read_only(&config.store)?;
    let names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let (rows, loops, sinks) = tokio::task::spawn_blocking(move || {
        Ok::<_, Error>((
            status_rows(&store)?,
            loop_rows(&store)?,
            sink_rows(&store, &names)?,
        ))
    })
    .await
    .map_err(|e| Error::Io(e.to_string()))??;
    if json {
        println!(
            "{}",
            serde_json::json!({ "subscriptions": rows, "loops": loops, "sinks": sinks })
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<28} {:>10} {:<22} {:>9} {:>9} {:>6} {:>11}",
        "SUBSCRIPTION", "STATE", "ROWS", "LAST SYNC", "LAG", "NEWEST", "ERRORS", "QUARANTINED"
    );
    let human = |seconds: Option<i64>| seconds.map(human_seconds).unwrap_or_else(|| "-".into());
    for row in rows {
        println!(
            "{:<20} {:<28} {:>10} {:<22} {:>9} {:>9} {:>6} {:>11}",
            row.subscription,
            row.state,
            row.rows,
            row.last_sync.as_deref().unwrap_or("never"),
            human(row.lag_seconds),
            human(row.newest_change_age_seconds),
            row.errors,
            row.quarantined
        );
    }
    for row in &loops {
        println!("{}", loop_line(row));
    }
    if !sinks.is_empty() {
        println!(
            "{:<20} {:>12} {:>10}  LAST ERROR",
            "SINK", "ACKED SEQ", "LAG"
        );
        for sink in &sinks {
            println!(
                "{:<20} {:>12} {:>10}  {}",
                sink.sink,
                sink.acked_seq,
                sink.lag,
                match (&sink.last_error, &sink.last_error_at) {
                    (Some(e), Some(at)) => format!("{at}: {e}"),
                    (Some(e), None) => e.clone(),
                    _ => "-".into(),
                }
            );
        }
    }
    Ok(())
}

/// One row of the sinks section of `syncd status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkRow {
    /// The sink.
    pub sink: String,
    /// Every change up to this seq was acknowledged.
    pub acked_seq: i64,
    /// Changes committed after it.
    pub lag: i64,
    /// The last failure since the cursor last moved.
    pub last_error: Option<String>,
    /// When.
    pub last_error_at: Option<String>,
}

/// The configured sinks (`names`) with their cursors and lag.
pub fn sink_rows(store: &store::Store, names: &[String]) -> Result<Vec<SinkRow>> {
    store.read_blocking(|conn| {
        let last = store::feed::last_seq(conn)?;
        let cursors = store::sinks::all(conn)?;
        Ok(names
            .iter()
            .map(|name| {
                let cursor = cursors.iter().find(|c| &c.sink == name);
                let acked_seq = cursor.map(|c| c.acked_seq).unwrap_or(0);
                SinkRow {
                    sink: name.clone(),
                    acked_seq,
                    lag: (last - acked_seq).max(0),
                    last_error: cursor.and_then(|c| c.last_error.clone()),
                    last_error_at: cursor.and_then(|c| c.last_error_at.clone()),
                }
            })
            .collect())
    })
}

fn human_seconds(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Changes after `since`, oldest first (at most `limit`), in the shape `syncd changes` prints
/// ([`crate::feed::ChangeEvent`], `syncd/docs/change-event.schema.json`); an error when
/// retention already deleted changes after `since` (never a silent skip).
pub fn changes_after(
    store: &store::Store,
    tenants: &crate::feed::Tenants,
    since: i64,
    subscription: Option<&str>,
    limit: usize,
) -> Result<Vec<crate::feed::ChangeEvent>> {
    match store
        .read_blocking(|conn| store::feed::page_after(conn, since, subscription, limit, tenants))?
    {
        store::feed::FeedPage::Changes(events) => Ok(events),
        store::feed::FeedPage::Gone { since, oldest } => Err(Error::Invalid(format!(
            "--since {since}: changes after it were deleted by retention (the oldest kept is {oldest})"
        ))),
    }
}

async fn changes(
    context: &Context,
    since: i64,
    follow: bool,
    subscription: Option<String>,
) -> Result<()> {
    let config = context.config()?;
    let store = store::open_read_only(&config.store)?;
    let tenants = crate::feed::Tenants::from_config(&config);
    let mut last = since;
    loop {
        let batch = {
            let store = store.clone();
            let subscription = subscription.clone();
            let tenants = tenants.clone();
            tokio::task::spawn_blocking(move || {
                changes_after(&store, &tenants, last, subscription.as_deref(), 10_000)
            })
            .await
            .map_err(|e| Error::Io(e.to_string()))??
        };
        let mut out = std::io::stdout().lock();
        for change in &batch {
            let line = serde_json::to_string(change).map_err(|e| Error::Io(e.to_string()))?;
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // the reader went away (e.g. `| head`)
            }
            last = change.seq;
        }
        let _ = out.flush();
        drop(out);
        if batch.len() < 10_000 {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Sets a request flag the subscription's loop picks up on its next pass.
async fn request(
    context: &Context,
    subscription: &str,
    what: store::status::Request,
) -> Result<()> {
    let config = context.config()?;
    if !config.subscriptions.iter().any(|s| s.name == subscription) {
        return Err(Error::Invalid(format!(
            "no subscription named {subscription:?} in {}",
            context.config_path.display()
        )));
    }
    let store = store::open_existing(&config.store)?;
    let name = subscription.to_string();
    let updated = store
        .write(move |tx| store::status::request(tx, &name, what))
        .await?;
    if !updated {
        return Err(Error::Invalid(format!(
            "subscription {subscription:?} has not run yet"
        )));
    }
    println!(
        "{subscription}: {} requested; the running daemon picks it up on its next pass.",
        what.as_str()
    );
    Ok(())
}
