//! The tenant's current endpoint, from the State API (FACTS §1.2).
//!
//! Tokens come from the login host, but data calls must go to the host the tenant lives on
//! now (`https://online2.superoffice.com/Cust12345`), which changes for load balancing and
//! incidents; the wrong host answers 421. [`TenantResolver`] asks
//! `GET {login}/api/state/{ctx}`, caches the answer until its `ValidUntil`, re-resolves when a
//! request is misdirected, and refuses to send anything while the tenant is not running.
//!
//! The endpoint decides where credentials go, so it is checked before it is used
//! ([`Environment::check_endpoint`]): for SuperOffice's environments it must be https under
//! `.superoffice.com`; a custom environment (the emulator) trusts only its own origin. An
//! endpoint that fails the check is [`Error::UntrustedEndpoint`] and is never cached or used.
//! The State API call itself does not follow redirects: a 3xx is [`Error::Redirect`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::{Environment, Error, Result, SoDateTime};

/// How long an answer without a usable `ValidUntil` is trusted.
const FALLBACK_VALIDITY: Duration = Duration::from_secs(60);

/// What the State API said about a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantState {
    /// `Cust12345`.
    pub context_identifier: String,
    /// Base URL for data calls, without a trailing slash (`…/Cust12345`).
    pub endpoint: String,
    /// `Running`, `OnlineMaintenance`, `Suspended`, …
    pub state: String,
    /// Whether the API is usable (true in `Running` and `OnlineMaintenance`).
    pub is_running: bool,
    /// Until when the answer may be cached.
    pub valid_until: DateTime<Utc>,
    /// The server version, when reported.
    pub version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateBody {
    context_identifier: Option<String>,
    endpoint: Option<String>,
    state: Option<serde_json::Value>,
    is_running: Option<bool>,
    valid_until: Option<String>,
    version: Option<String>,
}

/// Resolves and caches a tenant's endpoint. Shared by every clone of a client; concurrent
/// callers that find the cache stale share one State API call.
#[derive(Debug)]
pub struct TenantResolver {
    environment: Environment,
    state_url: Url,
    context: String,
    http: reqwest::Client,
    cache: Mutex<Option<TenantState>>,
}

impl TenantResolver {
    /// A resolver for `context` using the State API of `environment`, which also decides
    /// which endpoints are trusted ([`Environment::check_endpoint`]). `http` should not follow
    /// redirects (see [`crate::http`]).
    pub fn new(
        environment: &Environment,
        context: impl Into<String>,
        http: reqwest::Client,
    ) -> Self {
        let context = context.into();
        TenantResolver {
            environment: environment.clone(),
            state_url: environment.state_url(&context),
            context,
            http,
            cache: Mutex::new(None),
        }
    }

    /// The context identifier this resolver serves.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The current endpoint (cached until `ValidUntil`), or an error if the tenant is not
    /// running.
    pub async fn endpoint(&self) -> Result<String> {
        let mut cache = self.cache.lock().await;
        if let Some(state) = cache.as_ref().filter(|s| Utc::now() < s.valid_until) {
            return running(state);
        }
        let state = self.fetch().await?;
        let result = running(&state);
        *cache = Some(state);
        result
    }

    /// Re-resolves after a 421 from `stale`: asks the State API again unless another caller
    /// already replaced that endpoint.
    pub async fn re_resolve(&self, stale: &str) -> Result<String> {
        let mut cache = self.cache.lock().await;
        if let Some(state) = cache
            .as_ref()
            .filter(|s| s.endpoint != stale && Utc::now() < s.valid_until)
        {
            return running(state);
        }
        let state = self.fetch().await?;
        let result = running(&state);
        *cache = Some(state);
        result
    }

    /// The last answer, if any (for status displays).
    pub async fn last_known(&self) -> Option<TenantState> {
        self.cache.lock().await.clone()
    }

    async fn fetch(&self) -> Result<TenantState> {
        let response = self
            .http
            .get(self.state_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(Error::Transport)?;
        crate::http::refuse_redirect("state api", &self.state_url, &response)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        if !status.is_success() {
            return Err(Error::Config(format!(
                "State API {} answered {status} for tenant {}",
                self.state_url, self.context
            )));
        }
        let body: StateBody = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            message: format!("State API: {e}"),
            excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        })?;
        let endpoint = body.endpoint.filter(|e| !e.is_empty()).ok_or_else(|| {
            Error::Config(format!(
                "State API gave no Endpoint for tenant {}",
                self.context
            ))
        })?;
        let endpoint = self
            .environment
            .check_endpoint(&self.context, &endpoint)
            .inspect_err(|e| {
                tracing::error!(
                    context = %self.context,
                    state_api = %self.state_url,
                    endpoint = %endpoint,
                    error = %e,
                    "refused the tenant endpoint the State API reported"
                );
            })?;
        let state = match body.state {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => state_name(n.as_i64().unwrap_or(0)).to_string(),
            _ => "Unknown".to_string(),
        };
        let is_running = body
            .is_running
            .unwrap_or(matches!(state.as_str(), "Running" | "OnlineMaintenance"));
        let now = Utc::now();
        let valid_until = body
            .valid_until
            .and_then(|v| v.parse::<SoDateTime>().ok())
            .map(|v| v.to_utc())
            .filter(|v| *v > now)
            .unwrap_or_else(|| {
                now + chrono::Duration::from_std(FALLBACK_VALIDITY).unwrap_or_default()
            });
        Ok(TenantState {
            context_identifier: body
                .context_identifier
                .unwrap_or_else(|| self.context.clone()),
            endpoint: endpoint.as_str().trim_end_matches('/').to_string(),
            state,
            is_running,
            valid_until,
            version: body.version,
        })
    }
}

fn running(state: &TenantState) -> Result<String> {
    if state.is_running {
        Ok(state.endpoint.clone())
    } else {
        Err(Error::TenantNotRunning {
            context: state.context_identifier.clone(),
            state: state.state.clone(),
        })
    }
}

/// The documented numeric tenant states.
fn state_name(code: i64) -> &'static str {
    match code {
        1 => "Provisioning",
        2 => "Running",
        3 => "Deleted",
        4 => "Suspended",
        5 => "OnlineMaintenance",
        6 => "OfflineMaintenance",
        8 => "ProvisioningFailed",
        10 => "Deleting",
        11 => "DeleteFailed",
        12 => "MigrationPending",
        _ => "Unknown",
    }
}
