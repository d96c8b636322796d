//! Tenant health: each tenant's credentials are verified at start-up with one cheap
//! authenticated call (`GET /api/v1/User/currentPrincipal`). A tenant that fails is *degraded*
//! (`/readyz`, `syncd_tenant_up{tenant} 0`, a log line with the reason) and re-verified with
//! backoff by the supervised `tenants` loop; the other tenants run meanwhile, and the
//! subscriptions of a degraded tenant fail their passes (visible as failed runs) until it is
//! back. Start-up fails only when no tenant can work at all: every tenant's client could not
//! be built or its credentials were rejected (a SuperOffice outage is never a reason to stop).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Error, Result, Runtime};

/// The re-verification loop's name (supervisor, watchdog, `syncd status`).
pub const LOOP: &str = "tenants";

/// First wait before a degraded tenant is verified again; doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What one verification found.
#[derive(Debug)]
enum Verdict {
    Up,
    /// The credentials or the configuration are wrong: retrying will not help by itself.
    Rejected(String),
    /// SuperOffice could not be asked (outage, rate limit, tenant not running).
    Unreachable(String),
}

async fn verify(runtime: &Runtime, tenant: &str) -> Verdict {
    use superoffice::Error as E;
    use superoffice::prelude::ClientUserExt;
    let client = match runtime.clients.get(tenant) {
        Ok(client) => client,
        Err(error) => return Verdict::Rejected(error.to_string()),
    };
    let principal = client.user_get_current_principal().send().await;
    match principal.map_err(E::from) {
        Ok(_) => Verdict::Up,
        Err(
            error @ (E::Unauthorized(_)
            | E::Auth(_)
            | E::Config(_)
            | E::TokenStore { .. }
            | E::UntrustedEndpoint { .. }
            | E::Redirect { .. }),
        ) => Verdict::Rejected(format!("credentials rejected: {error}")),
        Err(error) => Verdict::Unreachable(format!("verifying credentials failed: {error}")),
    }
}

/// Records a verdict in `/readyz`, the metric and the log; whether the tenant is up.
fn record(runtime: &Runtime, tenant: &str, verdict: &Verdict) -> bool {
    let (up, reason) = match verdict {
        Verdict::Up => (true, None),
        Verdict::Rejected(reason) | Verdict::Unreachable(reason) => (false, Some(reason)),
    };
    runtime.metrics.set(
        "syncd_tenant_up",
        &[("tenant", tenant)],
        if up { 1.0 } else { 0.0 },
    );
    match reason {
        None => runtime.health.set_tenant(tenant, Ok(())),
        Some(reason) => {
            tracing::error!(%tenant, %reason, "tenant degraded; it is verified again with backoff, the other tenants run");
            runtime.health.set_tenant(tenant, Err(reason.clone()));
        }
    }
    up
}

/// Verifies every tenant at start-up. Fails only when no tenant can work: each one's client
/// could not be built or its credentials were rejected.
pub(crate) async fn verify_all(runtime: &Runtime) -> Result<()> {
    let mut rejected = Vec::new();
    let mut usable = 0;
    for tenant in &runtime.config.tenants {
        let verdict = verify(runtime, &tenant.name).await;
        match &verdict {
            Verdict::Rejected(reason) => {
                rejected.push(format!("tenant {:?}: {reason}", tenant.name))
            }
            Verdict::Up | Verdict::Unreachable(_) => usable += 1,
        }
        record(runtime, &tenant.name, &verdict);
    }
    if usable == 0 && !rejected.is_empty() {
        return Err(Error::config(rejected.join("; ")));
    }
    Ok(())
}

/// Re-verifies degraded tenants with backoff until `shutdown`; reports to the watchdog while it
/// waits. Never returns an error.
pub(crate) async fn run(runtime: Arc<Runtime>, shutdown: CancellationToken) -> Result<()> {
    let mut backoff = BACKOFF;
    loop {
        runtime.notifier.alive(LOOP);
        let down = runtime.health.tenants_down();
        let mut still_down = false;
        for tenant in &down {
            let verdict = verify(&runtime, tenant).await;
            if record(&runtime, tenant, &verdict) {
                tracing::info!(%tenant, "tenant verified again; no longer degraded");
            } else {
                still_down = true;
            }
        }
        let wait = if still_down {
            let wait = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            wait
        } else {
            backoff = BACKOFF;
            // Nothing is down: nothing to do until the next look.
            MAX_BACKOFF
        };
        let beat = runtime.notifier.heartbeat_interval().unwrap_or(wait);
        let clock = &runtime.clock;
        let until = clock.now() + wait;
        while clock.now() < until {
            tokio::select! {
                _ = clock.sleep_until(until.min(clock.now() + beat)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            runtime.notifier.alive(LOOP);
        }
    }
}
