//! The daemon's configuration: TOML (`--config FILE`), overridden by `SYNCD_*` environment
//! variables, secrets from the environment or files (never required in the TOML).
//!
//! Errors name the key and, when it comes from the file, the line. [`Config::check`] validates
//! everything that can be validated without the network (`syncd config check`).
//!
//! ```toml
//! store = "/var/lib/syncd/syncd.db"   # default: $STATE_DIRECTORY/syncd.db, else ./syncd.db
//!
//! [control]
//! listen = "127.0.0.1:9464"
//! webhook_secret = { env = "SYNCD_WEBHOOK_SECRET" }
//!
//! [[tenant]]
//! name = "main"
//! environment = "online"            # sod | qaonline | online | http://127.0.0.1:8080
//! customer_id = "Cust12345"
//! client_id = "…"
//! client_secret = { credential = "client_secret" }   # or { env = "…" } / { file = "…" }
//! auth = "oauth"                    # oauth | system-user | static
//!
//! [[subscription]]
//! name = "contacts"
//! tenant = "main"
//! entity = "contact"
//! columns = ["contactId", "name", "department", "updatedDate"]
//! poll_interval = "5m"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use superoffice::Environment;
use superoffice::auth::Secret;
use superoffice::entity::EntityKind;
use toml::Spanned;

use crate::{Error, Result};

/// The default control-plane address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// SQLite database file.
    pub store: PathBuf,
    /// Control plane (health, metrics, webhook receiver, publish intake).
    pub control: Control,
    /// Tenants by name, in file order.
    pub tenants: Vec<Tenant>,
    /// Subscriptions, in file order.
    pub subscriptions: Vec<Subscription>,
    /// Publishing (outbox) settings.
    pub outbox: Outbox,
    /// Per-entity publish routes.
    pub routes: Vec<Route>,
    /// The file the config came from (for messages), if any.
    pub source: Option<PathBuf>,
    /// Restarts of failed loops (`[supervisor]`).
    pub supervisor: crate::supervise::Policy,
}

/// Control-plane settings.
#[derive(Debug, Clone)]
pub struct Control {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// Shared secret for `X-SuperOffice-Signature`; without it webhooks are accepted unsigned.
    pub webhook_secret: Option<Secret>,
    /// Public URL SuperOffice should post webhooks to (`syncd webhooks ensure`).
    pub public_url: Option<String>,
}

/// How a tenant authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// OAuth tokens from `syncd auth login`, kept in `token_file` and refreshed.
    OAuth {
        /// The token file (mode 0600).
        token_file: PathBuf,
        /// The loopback redirect URI registered for the app.
        redirect_uri: String,
    },
    /// The system user: signs `system_token` with the private key.
    SystemUser {
        /// The system token (from the admin's id_token).
        system_token: String,
        /// PEM or RSA-XML private key file.
        private_key: PathBuf,
    },
    /// A fixed bearer token.
    Static {
        /// The token.
        token: Secret,
    },
}

/// One SuperOffice tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Name used by subscriptions.
    pub name: String,
    /// Login host.
    pub environment: Environment,
    /// Explicit data base URL (skips the State API).
    pub base_url: Option<String>,
    /// Context identifier.
    pub customer_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// Client secret / application token.
    pub client_secret: Option<Secret>,
    /// Authentication.
    pub auth: AuthMode,
    /// Concurrent requests to this tenant.
    pub max_concurrency: usize,
    /// `SO-Language`.
    pub language: Option<String>,
}

/// What is stored per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Archive columns, one request per page.
    Row,
    /// The full entity, fetched by id for each changed row.
    Entity,
}

/// Mass-delete breaker: more than `percent`% of the rows or more than `absolute` rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassDelete {
    /// Percentage of stored rows.
    pub percent: f64,
    /// Absolute number of rows.
    pub absolute: u64,
}

/// One `[[subscription]]`.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Unique name.
    pub name: String,
    /// Tenant name.
    pub tenant: String,
    /// Entity.
    pub entity: EntityKind,
    /// Row or full entity.
    pub shape: Shape,
    /// Archive columns (row shape; the primary key and last-modified columns are always added).
    pub columns: Vec<String>,
    /// Extra `$filter`, ANDed with the sync filter.
    pub filter: Option<String>,
    /// Path parameters; a value `{parent.column}` is taken from the parent's rows.
    pub path: BTreeMap<String, String>,
    /// Extra query parameters.
    pub query: BTreeMap<String, String>,
    /// Parent subscription whose rows provide path values.
    pub parent: Option<String>,
    /// jq program applied to each record before storing.
    pub transform: Option<String>,
    /// Time between incremental polls.
    pub poll_interval: Duration,
    /// Use webhooks (when the tenant has them) for faster change detection.
    pub webhooks: bool,
    /// Time between delete reconciliations.
    pub reconcile_interval: Duration,
    /// Mass-delete breaker.
    pub mass_delete: MassDelete,
    /// Rows per page.
    pub page_size: u32,
    /// Days the incremental window overlaps the watermark day.
    pub overlap_days: u32,
    /// Concurrent entity fetches (entity shape).
    pub concurrency: usize,
    /// Time budget of the transform per record (`transform_timeout`, default 100 ms, > 0).
    pub transform_timeout: Duration,
    /// Largest transform output per record, bytes of JSON (`transform_max_output`, default
    /// 1 MiB, > 0).
    pub transform_max_output: usize,
}

/// Outbox (publish) settings.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// ForeignApp application name that holds idempotency keys.
    pub foreign_app: String,
    /// ForeignApp device name.
    pub device: String,
    /// ForeignApp key name.
    pub key_name: String,
    /// Attempts before a task is `dead`.
    pub max_attempts: u32,
    /// Concurrent deliveries.
    pub concurrency: usize,
    /// First retry delay; doubles per attempt.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Suppress subscription changes our own publishes caused.
    pub echo_suppression: bool,
    /// Tenant publishes go to (default: the first).
    pub tenant: Option<String>,
}

/// What to do when a conditional write answers 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Keep the task in `conflict` with both versions.
    Fail,
    /// Send again without the condition.
    Overwrite,
    /// Re-read the record and apply the patch to it (patches only).
    RefetchAndReapply,
}

/// Per-entity publish settings.
#[derive(Debug, Clone)]
pub struct Route {
    /// Entity.
    pub entity: EntityKind,
    /// 412 policy.
    pub conflict: ConflictPolicy,
    /// Upsert lookup: `$filter` template with `{Field}` placeholders from the payload.
    pub lookup_filter: Option<String>,
    /// Use the synced record's last-modified as `If-Unmodified-Since` when the task gives none.
    pub use_synced_last_modified: bool,
}

/// A secret given as `{ env = "VAR" }`, `{ file = "path" }`, `{ credential = "name" }`
/// (`$CREDENTIALS_DIRECTORY/name`, systemd `LoadCredential=`) or `{ value = "…" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSource {
    env: Option<String>,
    file: Option<PathBuf>,
    credential: Option<String>,
    value: Option<String>,
}

impl SecretSource {
    fn resolve(&self, key: &str) -> Result<Secret> {
        let sources = [
            self.env.is_some(),
            self.file.is_some(),
            self.credential.is_some(),
            self.value.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(Error::Config(format!(
                "{key}: give exactly one of env, file, credential, value"
            )));
        }
        if let Some(var) = &self.env {
            return std::env::var(var).map(Secret::new).map_err(|_| {
                Error::Config(format!("{key}: environment variable {var} is not set"))
            });
        }
        let path = match (&self.file, &self.credential) {
            (Some(file), _) => file.clone(),
            (_, Some(name)) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    Error::Config(format!("{key}: credential {name:?} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"))
                })?;
                Path::new(&dir).join(name)
            }
            _ => return Ok(Secret::new(self.value.clone().unwrap_or_default())),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(format!("{key}: reading {}: {e}", path.display())))?;
        Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

// ---- raw (file) representation -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: Option<PathBuf>,
    #[serde(default)]
    control: RawControl,
    #[serde(default, rename = "tenant")]
    tenants: Vec<Spanned<RawTenant>>,
    #[serde(default, rename = "subscription")]
    subscriptions: Vec<Spanned<RawSubscription>>,
    #[serde(default)]
    outbox: RawOutbox,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    supervisor: RawSupervisor,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    restart_backoff: Option<Spanned<String>>,
    restart_max_backoff: Option<Spanned<String>>,
    healthy_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    listen: Option<Spanned<String>>,
    webhook_secret: Option<SecretSource>,
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    environment: Option<Spanned<String>>,
    base_url: Option<String>,
    customer_id: String,
    #[serde(default)]
    client_id: String,
    client_secret: Option<SecretSource>,
    auth: Spanned<String>,
    token_file: Option<PathBuf>,
    redirect_uri: Option<String>,
    system_token: Option<String>,
    private_key: Option<PathBuf>,
    token: Option<SecretSource>,
    max_concurrency: Option<usize>,
    language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    name: String,
    tenant: Option<Spanned<String>>,
    entity: Spanned<String>,
    shape: Option<Spanned<String>>,
    #[serde(default)]
    columns: Vec<String>,
    filter: Option<String>,
    #[serde(default)]
    path: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    parent: Option<Spanned<String>>,
    transform: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    webhooks: Option<bool>,
    reconcile_interval: Option<Spanned<String>>,
    mass_delete_percent: Option<f64>,
    mass_delete_absolute: Option<u64>,
    page_size: Option<u32>,
    overlap_days: Option<u32>,
    concurrency: Option<usize>,
    transform_timeout: Option<Spanned<String>>,
    transform_max_output: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    foreign_app: Option<String>,
    device: Option<String>,
    key_name: Option<String>,
    max_attempts: Option<u32>,
    concurrency: Option<usize>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    echo_suppression: Option<bool>,
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    entity: Spanned<String>,
    conflict: Option<Spanned<String>>,
    lookup_filter: Option<String>,
    use_synced_last_modified: Option<bool>,
}

/// Parses durations like `30s`, `5m`, `6h`, `1d`, `250ms`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 5m, 6h or 1d"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Turns a byte offset into a 1-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

struct Ctx<'a> {
    text: &'a str,
    file: String,
}

impl Ctx<'_> {
    fn at<T>(&self, span: &Spanned<T>, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config(format!(
            "{}:{}: {key}: {message}",
            self.file,
            line_of(self.text, span.span().start)
        ))
    }

    fn plain(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config(format!("{}: {key}: {message}", self.file))
    }

    fn duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration> {
        match value {
            Some(v) => parse_duration(v.get_ref()).map_err(|e| self.at(v, key, e)),
            None => Ok(default),
        }
    }
}

impl Config {
    /// Reads and validates a config file, then applies `SYNCD_*` overrides from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let vars: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SYNCD_"))
            .collect();
        let mut config = Config::parse(&text, &path.display().to_string(), &vars)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text with explicit `SYNCD_*` overrides (for tests).
    ///
    /// Overrides: `SYNCD_STORE`, `SYNCD_CONTROL_LISTEN`, and per tenant
    /// `SYNCD_TENANT_<NAME>_{ENVIRONMENT,BASE_URL,CUSTOMER_ID,CLIENT_ID}` (name upper-cased,
    /// `-` → `_`).
    pub fn parse(text: &str, file: &str, env: &BTreeMap<String, String>) -> Result<Config> {
        let ctx = Ctx {
            text,
            file: file.to_string(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", line_of(text, s.start)))
                .unwrap_or_default();
            Error::Config(format!("{file}{line}: {}", e.message()))
        })?;

        let store = env
            .get("SYNCD_STORE")
            .map(PathBuf::from)
            .or(raw.store)
            .unwrap_or_else(default_store);

        let listen_text = env.get("SYNCD_CONTROL_LISTEN").cloned();
        let listen = match (&listen_text, &raw.control.listen) {
            (Some(text), _) => text
                .parse()
                .map_err(|e| ctx.plain("SYNCD_CONTROL_LISTEN", e))?,
            (None, Some(spanned)) => spanned
                .get_ref()
                .parse()
                .map_err(|e| ctx.at(spanned, "control.listen", e))?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
        };
        let control = Control {
            listen,
            webhook_secret: raw
                .control
                .webhook_secret
                .as_ref()
                .map(|s| s.resolve("control.webhook_secret"))
                .transpose()?,
            public_url: raw.control.public_url.clone(),
        };

        let mut tenants = Vec::new();
        for (index, spanned) in raw.tenants.iter().enumerate() {
            let t = spanned.get_ref();
            let key = |k: &str| format!("tenant[{index}].{k}");
            let upper = t.name.to_ascii_uppercase().replace('-', "_");
            let var = |k: &str| env.get(&format!("SYNCD_TENANT_{upper}_{k}")).cloned();
            if tenants.iter().any(|x: &Tenant| x.name == t.name) {
                return Err(ctx.at(
                    spanned,
                    &key("name"),
                    format!("tenant {:?} is defined twice", t.name),
                ));
            }
            let environment = match (var("ENVIRONMENT"), &t.environment) {
                (Some(v), _) => v.parse().map_err(|e| ctx.plain(&key("environment"), e))?,
                (None, Some(v)) => v
                    .get_ref()
                    .parse()
                    .map_err(|e| ctx.at(v, &key("environment"), e))?,
                (None, None) => Environment::Online,
            };
            let base_url = var("BASE_URL").or_else(|| t.base_url.clone());
            let customer_id = var("CUSTOMER_ID").unwrap_or_else(|| t.customer_id.clone());
            let client_id = var("CLIENT_ID").unwrap_or_else(|| t.client_id.clone());
            let client_secret = t
                .client_secret
                .as_ref()
                .map(|s| s.resolve(&key("client_secret")))
                .transpose()?;
            let auth = match t.auth.get_ref().as_str() {
                "oauth" => AuthMode::OAuth {
                    token_file: t
                        .token_file
                        .clone()
                        .unwrap_or_else(|| default_state_file(&format!("tokens-{}.json", t.name))),
                    redirect_uri: t
                        .redirect_uri
                        .clone()
                        .unwrap_or_else(|| "http://127.0.0.1:8765/callback".into()),
                },
                "system-user" => AuthMode::SystemUser {
                    system_token: t.system_token.clone().ok_or_else(|| {
                        ctx.at(
                            &t.auth,
                            &key("system_token"),
                            "required with auth = \"system-user\"",
                        )
                    })?,
                    private_key: t.private_key.clone().ok_or_else(|| {
                        ctx.at(
                            &t.auth,
                            &key("private_key"),
                            "required with auth = \"system-user\"",
                        )
                    })?,
                },
                "static" => AuthMode::Static {
                    token: t
                        .token
                        .as_ref()
                        .ok_or_else(|| {
                            ctx.at(&t.auth, &key("token"), "required with auth = \"static\"")
                        })?
                        .resolve(&key("token"))?,
                },
                other => {
                    return Err(ctx.at(
                        &t.auth,
                        &key("auth"),
                        format!("{other:?} is not one of oauth, system-user, static"),
                    ));
                }
            };
            if matches!(auth, AuthMode::SystemUser { .. }) && client_secret.is_none() {
                return Err(ctx.at(
                    &t.auth,
                    &key("client_secret"),
                    "the system user needs the client secret (application token)",
                ));
            }
            tenants.push(Tenant {
                name: t.name.clone(),
                environment,
                base_url,
                customer_id,
                client_id,
                client_secret,
                auth,
                max_concurrency: t.max_concurrency.unwrap_or(8).max(1),
                language: t.language.clone(),
            });
        }

        let mut subscriptions: Vec<Subscription> = Vec::new();
        for (index, spanned) in raw.subscriptions.iter().enumerate() {
            let s = spanned.get_ref();
            let key = |k: &str| format!("subscription[{index}].{k}");
            if subscriptions.iter().any(|x| x.name == s.name) {
                return Err(ctx.at(
                    spanned,
                    &key("name"),
                    format!("subscription {:?} is defined twice", s.name),
                ));
            }
            let tenant = match &s.tenant {
                Some(t) if tenants.iter().any(|x| x.name == *t.get_ref()) => t.get_ref().clone(),
                Some(t) => {
                    return Err(ctx.at(
                        t,
                        &key("tenant"),
                        format!("no [[tenant]] is named {:?}", t.get_ref()),
                    ));
                }
                None if tenants.len() == 1 => tenants[0].name.clone(),
                None => {
                    return Err(ctx.at(
                        spanned,
                        &key("tenant"),
                        "required when there is not exactly one tenant",
                    ));
                }
            };
            let entity: EntityKind = s
                .entity
                .get_ref()
                .parse()
                .map_err(|e| ctx.at(&s.entity, &key("entity"), e))?;
            let shape = match s.shape.as_ref().map(|v| v.get_ref().as_str()) {
                None | Some("row") => Shape::Row,
                Some("entity") => Shape::Entity,
                Some(other) => {
                    return Err(ctx.at(
                        s.shape.as_ref().expect("some"),
                        &key("shape"),
                        format!("{other:?} is not row or entity"),
                    ));
                }
            };
            if shape == Shape::Entity && !entity.supports_get() {
                return Err(ctx.at(
                    &s.entity,
                    &key("shape"),
                    format!("{entity} has no GET by id; use shape = \"row\""),
                ));
            }
            if let Some(parent) = &s.parent
                && !subscriptions.iter().any(|x| x.name == *parent.get_ref())
            {
                return Err(ctx.at(
                    parent,
                    &key("parent"),
                    format!("no earlier subscription is named {:?}", parent.get_ref()),
                ));
            }
            if let Some(program) = &s.transform {
                crate::transform::Transform::compile(program.get_ref())
                    .map_err(|e| ctx.at(program, &key("transform"), e))?;
            }
            let poll_interval = ctx.duration(
                s.poll_interval.as_ref(),
                &key("poll_interval"),
                Duration::from_secs(300),
            )?;
            let reconcile_interval = ctx.duration(
                s.reconcile_interval.as_ref(),
                &key("reconcile_interval"),
                Duration::from_secs(6 * 3600),
            )?;
            let transform_timeout = ctx.duration(
                s.transform_timeout.as_ref(),
                &key("transform_timeout"),
                crate::transform::DEFAULT_TIMEOUT,
            )?;
            if let Some(v) = &s.transform_timeout
                && transform_timeout.is_zero()
            {
                return Err(ctx.at(v, &key("transform_timeout"), "must be more than 0"));
            }
            let transform_max_output = match &s.transform_max_output {
                None => crate::transform::DEFAULT_MAX_OUTPUT,
                Some(v) => usize::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ctx.at(
                            v,
                            &key("transform_max_output"),
                            format!("{} is not a positive number of bytes", v.get_ref()),
                        )
                    })?,
            };
            subscriptions.push(Subscription {
                name: s.name.clone(),
                tenant,
                entity,
                shape,
                columns: s.columns.clone(),
                filter: s.filter.clone(),
                path: s.path.clone(),
                query: s.query.clone(),
                parent: s.parent.as_ref().map(|p| p.get_ref().clone()),
                transform: s.transform.as_ref().map(|t| t.get_ref().clone()),
                poll_interval,
                webhooks: s.webhooks.unwrap_or(true),
                reconcile_interval,
                mass_delete: MassDelete {
                    percent: s.mass_delete_percent.unwrap_or(10.0),
                    absolute: s.mass_delete_absolute.unwrap_or(1000),
                },
                page_size: s.page_size.unwrap_or(1000).clamp(1, 1000),
                overlap_days: s.overlap_days.unwrap_or(1),
                concurrency: s.concurrency.unwrap_or(4).max(1),
                transform_timeout,
                transform_max_output,
            });
        }

        let o = &raw.outbox;
        let outbox = Outbox {
            foreign_app: o.foreign_app.clone().unwrap_or_else(|| "syncd".into()),
            device: o.device.clone().unwrap_or_else(|| "syncd".into()),
            key_name: o
                .key_name
                .clone()
                .unwrap_or_else(|| "idempotency_key".into()),
            max_attempts: o.max_attempts.unwrap_or(8).max(1),
            concurrency: o.concurrency.unwrap_or(8).max(1),
            backoff: ctx.duration(o.backoff.as_ref(), "outbox.backoff", Duration::from_secs(1))?,
            max_backoff: ctx.duration(
                o.max_backoff.as_ref(),
                "outbox.max_backoff",
                Duration::from_secs(300),
            )?,
            echo_suppression: o.echo_suppression.unwrap_or(true),
            tenant: o.tenant.clone(),
        };
        if let Some(t) = &outbox.tenant
            && !tenants.iter().any(|x| x.name == *t)
        {
            return Err(ctx.plain("outbox.tenant", format!("no [[tenant]] is named {t:?}")));
        }

        let mut routes = Vec::new();
        for (index, spanned) in raw.routes.iter().enumerate() {
            let r = spanned.get_ref();
            let key = |k: &str| format!("route[{index}].{k}");
            let entity: EntityKind = r
                .entity
                .get_ref()
                .parse()
                .map_err(|e| ctx.at(&r.entity, &key("entity"), e))?;
            let conflict = match r.conflict.as_ref().map(|c| c.get_ref().as_str()) {
                None | Some("fail") => ConflictPolicy::Fail,
                Some("overwrite") => ConflictPolicy::Overwrite,
                Some("refetch-and-reapply") => ConflictPolicy::RefetchAndReapply,
                Some(other) => {
                    return Err(ctx.at(
                        r.conflict.as_ref().expect("some"),
                        &key("conflict"),
                        format!("{other:?} is not fail, overwrite or refetch-and-reapply"),
                    ));
                }
            };
            routes.push(Route {
                entity,
                conflict,
                lookup_filter: r.lookup_filter.clone(),
                use_synced_last_modified: r.use_synced_last_modified.unwrap_or(true),
            });
        }

        let sv = &raw.supervisor;
        let defaults = crate::supervise::Policy::default();
        let positive = |value: Option<&Spanned<String>>, key: &str, default: Duration| {
            let d = ctx.duration(value, key, default)?;
            match value {
                Some(v) if d.is_zero() => Err(ctx.at(v, key, "must be more than 0")),
                _ => Ok(d),
            }
        };
        let supervisor = crate::supervise::Policy {
            initial: positive(
                sv.restart_backoff.as_ref(),
                "supervisor.restart_backoff",
                defaults.initial,
            )?,
            max: positive(
                sv.restart_max_backoff.as_ref(),
                "supervisor.restart_max_backoff",
                defaults.max,
            )?,
            healthy_after: positive(
                sv.healthy_after.as_ref(),
                "supervisor.healthy_after",
                defaults.healthy_after,
            )?,
        };
        if supervisor.max < supervisor.initial {
            return Err(ctx.plain(
                "supervisor.restart_max_backoff",
                "must not be shorter than supervisor.restart_backoff",
            ));
        }

        Ok(Config {
            supervisor,
            store,
            control,
            tenants,
            subscriptions,
            outbox,
            routes,
            source: None,
        })
    }

    /// The tenant a subscription or the outbox uses.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.name == name)
    }

    /// The route for an entity, or the default one.
    pub fn route(&self, entity: EntityKind) -> Route {
        self.routes
            .iter()
            .find(|r| r.entity == entity)
            .cloned()
            .unwrap_or(Route {
                entity,
                conflict: ConflictPolicy::Fail,
                lookup_filter: None,
                use_synced_last_modified: true,
            })
    }

    /// Offline checks beyond parsing: files that must exist, at least one tenant.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        if self.tenants.is_empty() {
            return Err(Error::Config("no [[tenant]] is configured".into()));
        }
        for tenant in &self.tenants {
            match &tenant.auth {
                AuthMode::SystemUser { private_key, .. } if !private_key.is_file() => {
                    return Err(Error::Config(format!(
                        "tenant {:?}: private_key {} does not exist",
                        tenant.name,
                        private_key.display()
                    )));
                }
                AuthMode::OAuth { token_file, .. } if !token_file.is_file() => notes.push(format!(
                    "tenant {:?}: no token file at {} yet; run `syncd auth login --tenant {}`",
                    tenant.name,
                    token_file.display(),
                    tenant.name
                )),
                _ => {}
            }
        }
        if self.subscriptions.is_empty() {
            notes.push("no [[subscription]] is configured: the daemon will only publish".into());
        }
        Ok(notes)
    }
}

/// `$STATE_DIRECTORY/syncd.db` under systemd, else `./syncd.db`.
pub fn default_store() -> PathBuf {
    default_state_file("syncd.db")
}

fn default_state_file(name: &str) -> PathBuf {
    in_systemd_directory("STATE_DIRECTORY", name)
}

/// `name` inside the first directory systemd passes in `variable` (`STATE_DIRECTORY`,
/// `CONFIGURATION_DIRECTORY`, …), else `name` in the working directory.
pub fn in_systemd_directory(variable: &str, name: &str) -> PathBuf {
    match std::env::var_os(variable) {
        // systemd may pass several colon-separated directories; the first is ours.
        Some(dirs) => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or(".")
                .to_string();
            Path::new(&first).join(name)
        }
        None => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[tenant]]
name = "main"
environment = "http://127.0.0.1:9"
customer_id = "Cust1"
auth = "static"
token = { value = "t" }

[[subscription]]
name = "contacts"
entity = "contact"
columns = ["contactId", "name"]
poll_interval = "30s"
"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, "syncd.toml", &BTreeMap::new())
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.control.listen.to_string(), DEFAULT_LISTEN);
        let sub = &config.subscriptions[0];
        assert_eq!(sub.tenant, "main");
        assert_eq!(sub.entity, EntityKind::Contact);
        assert_eq!(sub.shape, Shape::Row);
        assert_eq!(sub.poll_interval, Duration::from_secs(30));
        assert_eq!(
            sub.mass_delete,
            MassDelete {
                percent: 10.0,
                absolute: 1000
            }
        );
        assert_eq!(config.outbox.max_attempts, 8);
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let bad_entity = MINIMAL.replace("entity = \"contact\"", "entity = \"widget\"");
        let err = parse(&bad_entity).unwrap_err().to_string();
        assert!(
            err.contains("syncd.toml:11:") && err.contains("subscription[0].entity"),
            "{err}"
        );

        let bad_duration = MINIMAL.replace("\"30s\"", "\"soon\"");
        let err = parse(&bad_duration).unwrap_err().to_string();
        assert!(
            err.contains(":13:") && err.contains("poll_interval"),
            "{err}"
        );

        let unknown_key = MINIMAL.replace("columns", "colums");
        let err = parse(&unknown_key).unwrap_err().to_string();
        assert!(
            err.contains("syncd.toml:12") && err.contains("colums"),
            "{err}"
        );

        let wrong_type = MINIMAL.replace("\"30s\"", "30");
        let err = parse(&wrong_type).unwrap_err().to_string();
        assert!(err.contains(":13"), "{err}");

        let unknown_tenant = MINIMAL.replace(
            "entity = \"contact\"",
            "entity = \"contact\"\ntenant = \"other\"",
        );
        let err = parse(&unknown_tenant).unwrap_err().to_string();
        assert!(
            err.contains("subscription[0].tenant") && err.contains("other"),
            "{err}"
        );

        let bad_transform =
            MINIMAL.replace("poll_interval", "transform = \".name |=\"\npoll_interval");
        let err = parse(&bad_transform).unwrap_err().to_string();
        assert!(err.contains("subscription[0].transform"), "{err}");
    }

    #[test]
    fn secrets_come_from_env_or_files_and_overrides_apply() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "s3cret\n").unwrap();
        let text = MINIMAL.replace(
            "token = { value = \"t\" }",
            &format!("token = {{ file = {:?} }}", secret_file),
        );
        let config = parse(&text).unwrap();
        assert!(
            matches!(&config.tenants[0].auth, AuthMode::Static { token } if token.expose() == "s3cret")
        );

        let text = MINIMAL.replace(
            "token = { value = \"t\" }",
            "token = { env = \"SYNCD_TEST_UNSET_VARIABLE\" }",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("SYNCD_TEST_UNSET_VARIABLE"), "{err}");

        let env = BTreeMap::from([
            ("SYNCD_STORE".to_string(), "/tmp/x.db".to_string()),
            (
                "SYNCD_TENANT_MAIN_CUSTOMER_ID".to_string(),
                "Cust99".to_string(),
            ),
            (
                "SYNCD_CONTROL_LISTEN".to_string(),
                "127.0.0.1:1234".to_string(),
            ),
        ]);
        let config = Config::parse(MINIMAL, "syncd.toml", &env).unwrap();
        assert_eq!(config.store, PathBuf::from("/tmp/x.db"));
        assert_eq!(config.tenants[0].customer_id, "Cust99");
        assert_eq!(config.control.listen.port(), 1234);
    }

    #[test]
    fn transform_budget_and_supervisor_settings() {
        let config = parse(MINIMAL).unwrap();
        let sub = &config.subscriptions[0];
        assert_eq!(sub.transform_timeout, Duration::from_millis(100));
        assert_eq!(sub.transform_max_output, 1 << 20);
        assert_eq!(config.supervisor, crate::supervise::Policy::default());
        let set = MINIMAL.replace(
            "poll_interval",
            "transform_timeout = \"250ms\"\ntransform_max_output = 4096\npoll_interval",
        ) + "\n[supervisor]\nrestart_backoff = \"2s\"\nrestart_max_backoff = \"1m\"\nhealthy_after = \"30s\"\n";
        let config = parse(&set).unwrap();
        let sub = &config.subscriptions[0];
        assert_eq!(sub.transform_timeout, Duration::from_millis(250));
        assert_eq!(sub.transform_max_output, 4096);
        assert_eq!(
            config.supervisor,
            crate::supervise::Policy {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(60),
                healthy_after: Duration::from_secs(30),
            }
        );
        for (bad, key) in [
            (
                "transform_timeout = \"0s\"",
                "subscription[0].transform_timeout",
            ),
            (
                "transform_max_output = 0",
                "subscription[0].transform_max_output",
            ),
            (
                "transform_max_output = -5",
                "subscription[0].transform_max_output",
            ),
        ] {
            let text = MINIMAL.replace("poll_interval", &format!("{bad}\npoll_interval"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let err = parse(&(MINIMAL.to_string() + "\n[supervisor]\nrestart_backoff = \"0ms\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("supervisor.restart_backoff"), "{err}");
        let err = parse(
            &(MINIMAL.to_string()
                + "\n[supervisor]\nrestart_backoff = \"10m\"\nrestart_max_backoff = \"1m\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("supervisor.restart_max_backoff"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(21600));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 fortnights").is_err());
    }
}
