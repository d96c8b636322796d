//! One SDK client per configured tenant, with its credential provider.

use std::collections::BTreeMap;
use std::sync::Arc;

use superoffice::Client;
use superoffice::auth::{
    Auth, FileTokenStore, OAuth, OAuthConfig, StaticAuth, SystemUser, SystemUserConfig,
    SystemUserKey,
};

use crate::config::{AuthMode, Config, Tenant};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// The SDK clients by tenant name, and the metrics registry their requests count into.
///
/// A tenant whose client cannot be built (a secret that cannot be read, a bad key) does not
/// stop the others: it is *unavailable*, [`Clients::get`] says why, and its subscriptions fail
/// (and are retried by the supervisor) while the other tenants run.
#[derive(Clone, Debug)]
pub struct Clients {
    clients: BTreeMap<String, Client>,
    unavailable: BTreeMap<String, String>,
    metrics: Arc<Metrics>,
}

impl Clients {
    /// Builds a client for every tenant of `config` (reads key and token files; no network).
    /// Fails only when no tenant's client can be built.
    pub fn build(config: &Config) -> Result<Clients> {
        let metrics = Metrics::new();
        let mut clients = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        for tenant in &config.tenants {
            match build_one(tenant, &metrics) {
                Ok(client) => {
                    clients.insert(tenant.name.clone(), client);
                }
                Err(error) => {
                    tracing::error!(tenant = %tenant.name, %error, "tenant unavailable: its client cannot be built");
                    unavailable.insert(tenant.name.clone(), error.to_string());
                }
            }
        }
        if clients.is_empty() && !unavailable.is_empty() {
            let reasons: Vec<&str> = unavailable.values().map(String::as_str).collect();
            return Err(Error::config(reasons.join("; ")));
        }
        Ok(Clients {
            clients,
            unavailable,
            metrics,
        })
    }

    /// Clients built elsewhere (tests), counting into `metrics` if they were built with
    /// [`Metrics::observer`].
    pub fn from_map(clients: BTreeMap<String, Client>, metrics: Arc<Metrics>) -> Clients {
        Clients {
            clients,
            unavailable: BTreeMap::new(),
            metrics,
        }
    }

    /// The client of a tenant; an unavailable tenant's error says why.
    pub fn get(&self, tenant: &str) -> Result<&Client> {
        if let Some(reason) = self.unavailable.get(tenant) {
            return Err(Error::config(format!(
                "tenant {tenant:?} is unavailable: {reason}"
            )));
        }
        self.clients
            .get(tenant)
            .ok_or_else(|| Error::config(format!("no client for tenant {tenant:?}")))
    }

    /// Whether the configuration has this tenant (available or not).
    pub fn knows(&self, tenant: &str) -> bool {
        self.clients.contains_key(tenant) || self.unavailable.contains_key(tenant)
    }

    /// Tenants whose client could not be built, with the reason.
    pub fn unavailable(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    /// All clients by tenant name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Client)> {
        self.clients.iter()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// The credential provider a tenant's config asks for.
pub fn auth_for(tenant: &Tenant) -> Result<Arc<dyn Auth>> {
    let sdk = |e: superoffice::Error| Error::config(format!("tenant {:?}: {e}", tenant.name));
    Ok(match &tenant.auth {
        AuthMode::Static { token } => Arc::new(StaticAuth::bearer(token.resolve()?)),
        AuthMode::SystemUser {
            system_token,
            private_key,
        } => {
            let key_text = private_key.resolve()?;
            let key = SystemUserKey::parse(key_text.expose()).map_err(|e| {
                Error::config_key(private_key.key(), format!("tenant {:?}: {e}", tenant.name))
            })?;
            let app_token = tenant
                .client_secret
                .as_ref()
                .ok_or_else(|| {
                    Error::config(format!(
                        "tenant {:?}: the system user needs client_secret",
                        tenant.name
                    ))
                })?
                .resolve()?;
            let config = SystemUserConfig::new(
                tenant.environment.clone(),
                tenant.customer_id.clone(),
                system_token.resolve()?,
                app_token,
                key,
            );
            Arc::new(SystemUser::new(config).map_err(sdk)?)
        }
        AuthMode::OAuth {
            token_file,
            redirect_uri,
        } => Arc::new(
            OAuth::from_store(oauth_config(tenant, token_file, redirect_uri)?).map_err(sdk)?,
        ),
    })
}

/// The OAuth settings of a tenant (also used by `syncd auth login`).
pub fn oauth_config(
    tenant: &Tenant,
    token_file: &std::path::Path,
    redirect_uri: &str,
) -> Result<OAuthConfig> {
    let redirect = url::Url::parse(redirect_uri).map_err(|e| {
        Error::config(format!(
            "tenant {:?}: redirect_uri {redirect_uri:?}: {e}",
            tenant.name
        ))
    })?;
    let mut config = OAuthConfig::new(
        tenant.environment.clone(),
        tenant.client_id.clone(),
        redirect,
    )
    .with_tenant(tenant.customer_id.clone())
    .with_store(Arc::new(FileTokenStore::new(token_file)));
    if let Some(secret) = &tenant.client_secret {
        config = config.with_client_secret(secret.resolve()?);
    }
    Ok(config)
}

fn build_one(tenant: &Tenant, metrics: &Arc<Metrics>) -> Result<Client> {
    let mut builder = Client::builder()
        .auth_arc(auth_for(tenant)?)
        .max_concurrency(tenant.max_concurrency)
        .observer(metrics.observer(&tenant.name))
        .user_agent(format!("syncd/{}", env!("CARGO_PKG_VERSION")));
    builder = match &tenant.base_url {
        Some(base) => builder.base_url(base.clone()),
        None => builder
            .environment(tenant.environment.clone())
            .customer_id(tenant.customer_id.clone()),
    };
    if let Some(language) = &tenant.language {
        builder = builder.language(language.clone());
    }
    builder
        .build()
        .map_err(|e| Error::config(format!("tenant {:?}: {e}", tenant.name)))
}
