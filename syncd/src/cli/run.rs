//! `syncd run`: the daemon under systemd, with SIGHUP reloads.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::Config;
use crate::{Error, Result};

/// `syncd run`: until SIGTERM/SIGINT; SIGHUP reloads the config (a config that fails to load
/// keeps the running one). Signal handlers are installed once, so a SIGTERM that arrives while
/// a reload is under way is not lost.
pub async fn run(context: &Context) -> Result<()> {
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
        let io = |e: std::io::Error| Error::io("installing signal handlers", e);
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
