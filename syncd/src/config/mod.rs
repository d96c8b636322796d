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
//! token = { credential = "control_token" }  # bearer token for /publish; without it /publish is off
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
use std::ops::RangeInclusive;
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

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);
/// `poll_interval`: zero would be a hot loop.
const POLL_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(30 * 86_400);
/// `reconcile_interval`.
const RECONCILE_INTERVAL: RangeInclusive<Duration> = SECOND..=Duration::from_secs(365 * 86_400);
/// `outbox.backoff` and `outbox.max_backoff`.
const BACKOFF: RangeInclusive<Duration> = Duration::from_millis(1)..=DAY;

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
    /// How long history rows are kept.
    pub retention: Retention,
    /// The file the config came from (for messages), if any.
    pub source: Option<PathBuf>,
    /// Restarts of failed loops (`[supervisor]`).
    pub supervisor: crate::supervise::Policy,
    /// `[[sink]]`s the change feed is published to, in file order.
    pub sinks: Vec<Sink>,
    /// `instance = "…"`: a readable prefix of the `{instance}` of sink message ids, which is
    /// `NAME-ID` (or just `ID`), ID being generated with the database and stored in it (see
    /// [`crate::store::sinks::instance_id`]), so a new database never reuses msg ids.
    pub instance: Option<String>,
    /// `[[source]]`s publish requests arrive from, in file order.
    pub sources: Vec<Source>,
}

/// One `[[source]]` (only `kind = "nats"`: a durable pull consumer on a JetStream stream
/// whose messages are publish requests, see [`crate::source`]).
#[derive(Debug, Clone)]
pub struct Source {
    /// Name (the loop `source:NAME`, logs, metrics).
    pub name: String,
    /// Server URL(s).
    pub url: String,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// PEM file of the CA that signs the server's certificate (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// The stream holding the requests (created with `subject` when missing; default
    /// `SUPEROFFICE_PUBLISH`).
    pub stream: String,
    /// The consumer's filter subject (default `superoffice.publish.>`).
    pub subject: String,
    /// The durable consumer's name (default `syncd-NAME`).
    pub durable: String,
    /// How long the server waits for an ack before it delivers a message again.
    pub ack_wait: Duration,
}

/// The default source subject.
pub const DEFAULT_SOURCE_SUBJECT: &str = "superoffice.publish.>";
/// The default source stream.
pub const DEFAULT_SOURCE_STREAM: &str = "SUPEROFFICE_PUBLISH";

/// One `[[sink]]` (only `kind = "nats"`: a NATS JetStream stream).
#[derive(Debug, Clone)]
pub struct Sink {
    /// Name (`sink_cursors`, metrics, the loop `sink:NAME`).
    pub name: String,
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`, `tls://…`).
    pub url: String,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// PEM file of the CA that signs the server's certificate (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// The JetStream stream (default `SUPEROFFICE`).
    pub stream: String,
    /// Subject template: `{tenant}`, `{subscription}`, `{entity}`, `{op}` are replaced by the
    /// change's (sanitised) values. Default `superoffice.{tenant}.{entity}.{op}`.
    pub subject: String,
    /// The stream's subjects when syncd creates it (default: the template with each
    /// placeholder as `*`).
    pub stream_subjects: Vec<String>,
    /// Stream retention policy when syncd creates it.
    pub retention: StreamRetention,
    /// Stream replicas when syncd creates it (1–5).
    pub replicas: usize,
    /// Stream `max_age` when syncd creates it (`None`: unlimited).
    pub max_age: Option<Duration>,
    /// Stream de-duplication window when syncd creates it (at least 2 minutes).
    pub duplicate_window: Duration,
    /// `/readyz` is not ready while the sink is more than this many changes behind (`None`:
    /// off).
    pub max_lag: Option<u64>,
    /// Changes published before their acks are awaited.
    pub batch: usize,
}

/// How a NATS sink or source authenticates (each secret from a secret source).
#[derive(Debug, Clone)]
pub enum NatsAuth {
    /// No credentials.
    None,
    /// `token = {…}`.
    Token(SecretRef),
    /// `user = "…"`, `password = {…}`.
    UserPassword(String, SecretRef),
    /// `nkey = {…}`: the seed (`SU…`).
    Nkey(SecretRef),
    /// `creds = {…}`: the text of a `.creds` file (JWT and seed).
    Creds(SecretRef),
}

/// The retention policy of a stream syncd creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRetention {
    /// Kept until the stream's limits (`max_age`) remove them.
    Limits,
    /// Kept while a consumer is interested.
    Interest,
    /// Removed once a consumer acknowledged them.
    WorkQueue,
}

/// The default sink subject template.
pub const DEFAULT_SUBJECT: &str = "superoffice.{tenant}.{entity}.{op}";
/// The default stream.
pub const DEFAULT_STREAM: &str = "SUPEROFFICE";
/// `duplicate_window`: at least 2 minutes (a re-send after a crash and restart must fall
/// inside it), at most 7 days.
const DUPLICATE_WINDOW: RangeInclusive<Duration> =
    Duration::from_secs(120)..=Duration::from_secs(7 * 86_400);

/// Control-plane settings.
#[derive(Debug, Clone)]
pub struct Control {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// Shared secret for `X-SuperOffice-Signature`; without it the one in the state directory
    /// is used (generated when needed, see [`crate::sync::secret`]). Webhooks are always signed.
    pub webhook_secret: Option<SecretRef>,
    /// Public URL SuperOffice should post webhooks to (`syncd webhooks ensure`).
    pub public_url: Option<String>,
    /// Bearer token required on `/publish` and every route that reads the feed or changes
    /// state (see [`crate::control::auth`]); without it those routes are not served.
    pub token: Option<SecretRef>,
    /// Origins (`https://host[:port]`) allowed on the authenticated JSON routes; any other
    /// `Origin` header is refused (403). Default: none.
    pub allowed_origins: Vec<String>,
    /// `/metrics` requires the token too.
    pub metrics_auth: bool,
    /// A second listener on this Unix socket (mode 0660) serving the same routes.
    pub listen_unix: Option<PathBuf>,
    /// Server limits (timeouts, body sizes, connections).
    pub limits: ControlLimits,
}

/// Limits of the control-plane HTTP server (`[control]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// A connection that has not sent a complete request head within this time is closed
    /// (also the idle keep-alive limit).
    pub header_read_timeout: Duration,
    /// A request (body and handler) that takes longer is answered 408.
    pub request_timeout: Duration,
    /// Connections served at once (both listeners together); further ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Largest `/publish` body, in bytes (413 beyond).
    pub publish_body_limit: usize,
    /// Largest webhook body, in bytes (413 beyond).
    pub webhook_body_limit: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            publish_body_limit: 1024 * 1024,
            webhook_body_limit: 64 * 1024,
        }
    }
}

/// How a tenant authenticates.
#[derive(Debug, Clone)]
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
        system_token: SecretRef,
        /// The PEM or RSA-XML private key (a file path in the config reads that file).
        private_key: SecretRef,
    },
    /// A fixed bearer token.
    Static {
        /// The token.
        token: SecretRef,
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
    pub client_secret: Option<SecretRef>,
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

/// `[retention]`: how long history rows are kept before the daemon deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `webhook_events` rows (by `received_at`; only events whose refetch is done).
    pub webhook_events: Duration,
    /// `runs` rows (by `started_at`; only ended runs).
    pub runs: Duration,
    /// `changes` rows (by `at`), only once every `[[sink]]` acknowledged them, never the
    /// newest row (`None`, the default: the feed is kept).
    pub changes: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            webhook_events: Duration::from_secs(7 * 86400),
            runs: Duration::from_secs(30 * 86400),
            changes: None,
        }
    }
}

/// `[retention]` durations: longer than zero (rows would be deleted at once), at most 100 years.
const RETENTION: RangeInclusive<Duration> = SECOND..=Duration::from_secs(36_500 * 86400);

/// A secret given as `{ env = "VAR" }`, `{ file = "path" }`, `{ credential = "name" }`
/// (`$CREDENTIALS_DIRECTORY/name`, systemd `LoadCredential=`) or `{ value = "…" }`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSource {
    env: Option<String>,
    file: Option<PathBuf>,
    credential: Option<String>,
    value: Option<String>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("credential", &self.credential)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `private_key = "/path"` (a key file, as before) or a secret source whose text is the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PathOrSource {
    Path(PathBuf),
    Source(SecretSource),
}

/// `system_token = "…"` (the token itself) or a secret source.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TextOrSource {
    Text(String),
    Source(SecretSource),
}

/// A secret of the configuration, read only when a command needs it ([`SecretRef::resolve`]):
/// `syncd status` works beside the service without the service's credentials, and
/// `syncd config check` lists the secrets it cannot read here instead of failing on the first.
#[derive(Debug, Clone)]
pub struct SecretRef {
    key: String,
    /// `file:line` of the key, for messages.
    at: String,
    source: SecretSource,
}

impl SecretRef {
    /// A secret given in the program (tests, the demo); `key` names it in messages.
    pub fn value(key: &str, secret: &str) -> SecretRef {
        SecretRef {
            key: key.to_string(),
            at: "(given)".to_string(),
            source: SecretSource {
                env: None,
                file: None,
                credential: None,
                value: Some(secret.to_string()),
            },
        }
    }

    /// A secret read from a file given in the program (`syncd auth system-user --key`).
    pub fn file(key: &str, path: &Path) -> SecretRef {
        SecretRef {
            key: key.to_string(),
            at: "(given)".to_string(),
            source: SecretSource {
                env: None,
                file: Some(path.to_path_buf()),
                credential: None,
                value: None,
            },
        }
    }

    /// The config key (`tenant[0].client_secret`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the secret now; the error names the file, line and key.
    pub fn resolve(&self) -> Result<Secret> {
        self.source
            .read()
            .map_err(|e| Error::Config(format!("{}: {}: {e}", self.at, self.key)))
    }
}

impl SecretSource {
    /// Reads the secret; the error says what is wrong (without the key).
    fn read(&self) -> std::result::Result<Secret, String> {
        let sources = [
            self.env.is_some(),
            self.file.is_some(),
            self.credential.is_some(),
            self.value.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err("give exactly one of env, file, credential, value".into());
        }
        if let Some(var) = &self.env {
            return std::env::var(var)
                .map(Secret::new)
                .map_err(|_| format!("environment variable {var} is not set"));
        }
        let path = match (&self.file, &self.credential) {
            (Some(file), _) => file.clone(),
            (_, Some(name)) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {name:?} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
                    )
                })?;
                Path::new(&dir).join(name)
            }
            _ => return Ok(Secret::new(self.value.clone().unwrap_or_default())),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
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
    retention: RawRetention,
    #[serde(default)]
    supervisor: RawSupervisor,
    instance: Option<Spanned<String>>,
    #[serde(default, rename = "sink")]
    sinks: Vec<Spanned<RawSink>>,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<RawSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    kind: Spanned<String>,
    url: Spanned<String>,
    token: Option<Spanned<SecretSource>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<SecretSource>>,
    nkey: Option<Spanned<SecretSource>>,
    creds: Option<Spanned<SecretSource>>,
    tls_ca: Option<PathBuf>,
    tls_required: Option<bool>,
    stream: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    durable: Option<Spanned<String>>,
    ack_wait: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    kind: Spanned<String>,
    url: Spanned<String>,
    token: Option<Spanned<SecretSource>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<SecretSource>>,
    nkey: Option<Spanned<SecretSource>>,
    creds: Option<Spanned<SecretSource>>,
    tls_ca: Option<PathBuf>,
    tls_required: Option<bool>,
    stream: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    stream_subjects: Option<Vec<Spanned<String>>>,
    retention: Option<Spanned<String>>,
    replicas: Option<Spanned<i64>>,
    max_age: Option<Spanned<String>>,
    duplicate_window: Option<Spanned<String>>,
    max_lag: Option<Spanned<i64>>,
    batch: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    webhook_events: Option<Spanned<String>>,
    runs: Option<Spanned<String>>,
    changes: Option<Spanned<String>>,
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
    webhook_secret: Option<Spanned<SecretSource>>,
    public_url: Option<String>,
    token: Option<Spanned<SecretSource>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    metrics_auth: Option<Spanned<bool>>,
    listen_unix: Option<PathBuf>,
    header_read_timeout: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    publish_body_limit: Option<Spanned<i64>>,
    webhook_body_limit: Option<Spanned<i64>>,
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
    client_secret: Option<Spanned<SecretSource>>,
    auth: Spanned<String>,
    token_file: Option<PathBuf>,
    redirect_uri: Option<String>,
    system_token: Option<Spanned<TextOrSource>>,
    private_key: Option<Spanned<PathOrSource>>,
    token: Option<Spanned<SecretSource>>,
    max_concurrency: Option<Spanned<i64>>,
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
    mass_delete_percent: Option<Spanned<f64>>,
    mass_delete_absolute: Option<Spanned<i64>>,
    page_size: Option<Spanned<i64>>,
    overlap_days: Option<Spanned<i64>>,
    concurrency: Option<Spanned<i64>>,
    transform_timeout: Option<Spanned<String>>,
    transform_max_output: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    foreign_app: Option<String>,
    device: Option<String>,
    key_name: Option<String>,
    max_attempts: Option<Spanned<i64>>,
    concurrency: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    echo_suppression: Option<bool>,
    tenant: Option<Spanned<String>>,
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
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long"))
}

/// The shortest accepted `control.token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// A control token travels in a header: visible ASCII, at least [`MIN_TOKEN_LEN`] long.
fn check_token(token: &str) -> std::result::Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "too short ({} characters); use at least {MIN_TOKEN_LEN}, e.g. `openssl rand -hex 32`",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces (it is sent as a bearer token)".into());
    }
    Ok(())
}

/// An allowed origin is written exactly as browsers send it: `scheme://host[:port]`.
fn check_origin(text: &str) -> std::result::Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    let origin = url.origin().ascii_serialization();
    if origin != text {
        return Err(format!(
            "{text:?} is not an origin as browsers send it; write {origin:?}"
        ));
    }
    Ok(())
}

/// `[control]` limits: durations and counts, each non-zero.
fn control_limits(ctx: &Ctx<'_>, raw: &RawControl) -> Result<ControlLimits> {
    let defaults = ControlLimits::default();
    let duration = |value: Option<&Spanned<String>>, key: &str, default: Duration| {
        ctx.duration(
            value,
            key,
            default,
            Duration::from_millis(100)..=Duration::from_secs(3600),
        )
    };
    let count = |value: Option<&Spanned<i64>>, key: &str, default: usize, max: i64| {
        ctx.count(value, key, default, 1..=max)
    };
    Ok(ControlLimits {
        header_read_timeout: duration(
            raw.header_read_timeout.as_ref(),
            "control.header_read_timeout",
            defaults.header_read_timeout,
        )?,
        request_timeout: duration(
            raw.request_timeout.as_ref(),
            "control.request_timeout",
            defaults.request_timeout,
        )?,
        max_connections: count(
            raw.max_connections.as_ref(),
            "control.max_connections",
            defaults.max_connections,
            65_536,
        )?,
        publish_body_limit: count(
            raw.publish_body_limit.as_ref(),
            "control.publish_body_limit",
            defaults.publish_body_limit,
            64 << 20,
        )?,
        webhook_body_limit: count(
            raw.webhook_body_limit.as_ref(),
            "control.webhook_body_limit",
            defaults.webhook_body_limit,
            16 << 20,
        )?,
    })
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

    /// A duration key within `range` (the default when absent).
    fn duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration> {
        let Some(v) = value else {
            return Ok(default);
        };
        let duration = parse_duration(v.get_ref()).map_err(|e| self.at(v, key, e))?;
        if !range.contains(&duration) {
            return Err(self.at(
                v,
                key,
                format!(
                    "{:?} is out of range: give {} to {}",
                    v.get_ref(),
                    format_duration(*range.start()),
                    format_duration(*range.end())
                ),
            ));
        }
        Ok(duration)
    }

    /// A secret key, kept to be read when needed ([`SecretRef::resolve`]). Only its form is
    /// checked now: exactly one source.
    fn secret(
        &self,
        value: Option<&Spanned<SecretSource>>,
        key: &str,
    ) -> Result<Option<SecretRef>> {
        value
            .map(|v| self.secret_ref(v, key, v.get_ref().clone()))
            .transpose()
    }

    fn secret_ref<T>(
        &self,
        span: &Spanned<T>,
        key: &str,
        source: SecretSource,
    ) -> Result<SecretRef> {
        let given = [
            source.env.is_some(),
            source.file.is_some(),
            source.credential.is_some(),
            source.value.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(self.at(
                span,
                key,
                "give exactly one of env, file, credential, value",
            ));
        }
        Ok(SecretRef {
            key: key.to_string(),
            at: format!("{}:{}", self.file, line_of(self.text, span.span().start)),
            source,
        })
    }

    /// An integer key within `range` (the default when absent), as the type it is used as.
    fn count<T: TryFrom<i64>>(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: T,
        range: RangeInclusive<i64>,
    ) -> Result<T> {
        let Some(v) = value else {
            return Ok(default);
        };
        let n = self.number(Some(v), key, 0, range)?;
        T::try_from(n).map_err(|_| self.at(v, key, format!("{n} is too large")))
    }

    /// A numeric key within `range` (the default when absent).
    fn number<T>(
        &self,
        value: Option<&Spanned<T>>,
        key: &str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T>
    where
        T: PartialOrd + Copy + std::fmt::Display,
    {
        let Some(v) = value else {
            return Ok(default);
        };
        let number = *v.get_ref();
        // `contains` is false for NaN, so a NaN percentage is refused too.
        if !range.contains(&number) {
            return Err(self.at(
                v,
                key,
                format!(
                    "{number} is out of range: give {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(number)
    }
}

/// Whether `text` can be one token of a NATS subject (and of a msg id prefix).
fn valid_token(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | ':') || c.is_whitespace())
}

fn sink(ctx: &Ctx<'_>, index: usize, spanned: &Spanned<RawSink>) -> Result<Sink> {
    let r = spanned.get_ref();
    let key = |k: &str| format!("sink[{index}].{k}");
    if r.kind.get_ref() != "nats" {
        return Err(ctx.at(
            &r.kind,
            &key("kind"),
            format!("{:?} is not a sink kind (give \"nats\")", r.kind.get_ref()),
        ));
    }
    if !r
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || r.name.is_empty()
    {
        return Err(ctx.at(
            spanned,
            &key("name"),
            format!("{:?}: use letters, digits, '-' and '_'", r.name),
        ));
    }
    if r.url.get_ref().trim().is_empty() {
        return Err(ctx.at(&r.url, &key("url"), "is empty"));
    }
    let auth = nats_auth(
        ctx,
        &key,
        spanned,
        [&r.token, &r.password, &r.nkey, &r.creds],
        r.user.as_ref(),
    )?;
    let stream = r
        .stream
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_STREAM.to_string());
    if stream.is_empty()
        || stream
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
    {
        let span = r.stream.as_ref().expect("the default is valid");
        return Err(ctx.at(
            span,
            &key("stream"),
            format!("{stream:?} is not a valid stream name"),
        ));
    }
    let subject = r
        .subject
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
    if let Err(e) = crate::sink::Template::parse(&subject) {
        let span = r.subject.as_ref().expect("the default is valid");
        return Err(ctx.at(span, &key("subject"), e));
    }
    let stream_subjects = match &r.stream_subjects {
        Some(list) => {
            if list.is_empty() {
                return Err(ctx.at(spanned, &key("stream_subjects"), "is empty"));
            }
            for s in list {
                if s.get_ref()
                    .split('.')
                    .any(|t| t.is_empty() || t.chars().any(char::is_whitespace))
                {
                    return Err(ctx.at(
                        s,
                        &key("stream_subjects"),
                        format!("{:?} is not a subject", s.get_ref()),
                    ));
                }
            }
            list.iter().map(|s| s.get_ref().clone()).collect()
        }
        None => vec![
            crate::sink::Template::parse(&subject)
                .expect("checked")
                .wildcard(),
        ],
    };
    let retention = match r.retention.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("limits") => StreamRetention::Limits,
        Some("interest") => StreamRetention::Interest,
        Some("workqueue") => StreamRetention::WorkQueue,
        Some(other) => {
            return Err(ctx.at(
                r.retention.as_ref().expect("some"),
                &key("retention"),
                format!("{other:?} is not limits, interest or workqueue"),
            ));
        }
    };
    let max_age = match &r.max_age {
        None => None,
        Some(v) => Some(ctx.duration(Some(v), &key("max_age"), SECOND, RETENTION)?),
    };
    let max_lag = match &r.max_lag {
        None => None,
        Some(v) => Some(ctx.count::<u64>(Some(v), &key("max_lag"), 0, 1..=i64::MAX)?),
    };
    Ok(Sink {
        name: r.name.clone(),
        url: r.url.get_ref().clone(),
        auth,
        tls_ca: r.tls_ca.clone(),
        tls_required: r.tls_required.unwrap_or(false),
        stream,
        subject,
        stream_subjects,
        retention,
        replicas: ctx.count(r.replicas.as_ref(), &key("replicas"), 1, 1..=5)?,
        max_age,
        duplicate_window: ctx.duration(
            r.duplicate_window.as_ref(),
            &key("duplicate_window"),
            Duration::from_secs(120),
            DUPLICATE_WINDOW,
        )?,
        max_lag,
        batch: ctx.count(r.batch.as_ref(), &key("batch"), 256, 1..=10_000)?,
    })
}

fn source(ctx: &Ctx<'_>, index: usize, spanned: &Spanned<RawSource>) -> Result<Source> {
    let r = spanned.get_ref();
    let key = |k: &str| format!("source[{index}].{k}");
    if r.kind.get_ref() != "nats" {
        return Err(ctx.at(
            &r.kind,
            &key("kind"),
            format!(
                "{:?} is not a source kind (give \"nats\")",
                r.kind.get_ref()
            ),
        ));
    }
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !name_ok(&r.name) {
        return Err(ctx.at(
            spanned,
            &key("name"),
            format!("{:?}: use letters, digits, '-' and '_'", r.name),
        ));
    }
    if r.url.get_ref().trim().is_empty() {
        return Err(ctx.at(&r.url, &key("url"), "is empty"));
    }
    let auth = nats_auth(
        ctx,
        &key,
        spanned,
        [&r.token, &r.password, &r.nkey, &r.creds],
        r.user.as_ref(),
    )?;
    let text = |v: &Option<Spanned<String>>, default: String| {
        v.as_ref().map(|s| s.get_ref().clone()).unwrap_or(default)
    };
    let stream = text(&r.stream, DEFAULT_SOURCE_STREAM.to_string());
    if let Some(span) = &r.stream
        && !name_ok(&stream)
    {
        return Err(ctx.at(
            span,
            &key("stream"),
            format!("{stream:?} is not a valid stream name"),
        ));
    }
    let durable = text(&r.durable, format!("syncd-{}", r.name));
    if let Some(span) = &r.durable
        && !name_ok(&durable)
    {
        return Err(ctx.at(
            span,
            &key("durable"),
            format!("{durable:?}: use letters, digits, '-' and '_'"),
        ));
    }
    let subject = text(&r.subject, DEFAULT_SOURCE_SUBJECT.to_string());
    let tokens: Vec<&str> = subject.split('.').collect();
    if let Some(span) = &r.subject
        && tokens.iter().enumerate().any(|(i, t)| {
            t.is_empty()
                || t.chars().any(char::is_whitespace)
                || (*t == ">" && i + 1 != tokens.len())
                || (t.len() > 1 && t.contains(['*', '>']))
        })
    {
        return Err(ctx.at(
            span,
            &key("subject"),
            format!("{subject:?} is not a subject filter"),
        ));
    }
    Ok(Source {
        name: r.name.clone(),
        url: r.url.get_ref().clone(),
        auth,
        tls_ca: r.tls_ca.clone(),
        tls_required: r.tls_required.unwrap_or(false),
        stream,
        subject,
        durable,
        ack_wait: ctx.duration(
            r.ack_wait.as_ref(),
            &key("ack_wait"),
            Duration::from_secs(30),
            SECOND..=DAY,
        )?,
    })
}

/// `token`, `user` + `password`, `nkey` or `creds`: at most one way (`secrets` in that order).
fn nats_auth<T>(
    ctx: &Ctx<'_>,
    key: &dyn Fn(&str) -> String,
    at: &Spanned<T>,
    secrets: [&Option<Spanned<SecretSource>>; 4],
    user: Option<&Spanned<String>>,
) -> Result<NatsAuth> {
    let [token, password, nkey, creds] = secrets;
    let given = [
        token.is_some(),
        password.is_some() || user.is_some(),
        nkey.is_some(),
        creds.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ctx.at(
            at,
            &key("token"),
            "give at most one of token, user/password, nkey, creds",
        ));
    }
    Ok(match (token, password, nkey, creds, user) {
        (Some(t), ..) => NatsAuth::Token(ctx.secret_ref(t, &key("token"), t.get_ref().clone())?),
        (_, Some(p), _, _, Some(u)) => NatsAuth::UserPassword(
            u.get_ref().clone(),
            ctx.secret_ref(p, &key("password"), p.get_ref().clone())?,
        ),
        (_, Some(p), _, _, None) => return Err(ctx.at(p, &key("user"), "password without user")),
        (_, None, _, _, Some(u)) => {
            return Err(ctx.at(u, &key("password"), "user without password"));
        }
        (_, _, Some(n), ..) => {
            NatsAuth::Nkey(ctx.secret_ref(n, &key("nkey"), n.get_ref().clone())?)
        }
        (_, _, _, Some(c), _) => {
            NatsAuth::Creds(ctx.secret_ref(c, &key("creds"), c.get_ref().clone())?)
        }
        _ => NatsAuth::None,
    })
}

/// Formats a duration the way the config writes them (`250ms`, `30s`, `5m`, `6h`, `1d`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
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
            webhook_secret: ctx.secret(
                raw.control.webhook_secret.as_ref(),
                "control.webhook_secret",
            )?,
            public_url: raw.control.public_url.clone(),
            token: ctx.secret(raw.control.token.as_ref(), "control.token")?,
            allowed_origins: raw
                .control
                .allowed_origins
                .iter()
                .flatten()
                .map(|o| {
                    check_origin(o.get_ref())
                        .map(|()| o.get_ref().clone())
                        .map_err(|e| ctx.at(o, "control.allowed_origins", e))
                })
                .collect::<Result<_>>()?,
            metrics_auth: raw
                .control
                .metrics_auth
                .as_ref()
                .is_some_and(|m| *m.get_ref()),
            listen_unix: raw.control.listen_unix.clone(),
            limits: control_limits(&ctx, &raw.control)?,
        };
        // A token written inline is checked now; one from elsewhere when it is read.
        if let Some(span) = &raw.control.token
            && let Some(value) = &span.get_ref().value
        {
            check_token(value).map_err(|e| ctx.at(span, "control.token", e))?;
        }
        if let Some(span) = &raw.control.metrics_auth
            && control.metrics_auth
            && control.token.is_none()
        {
            return Err(ctx.at(
                span,
                "control.metrics_auth",
                "needs control.token (the token /metrics then requires)",
            ));
        }

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
            let client_secret = ctx.secret(t.client_secret.as_ref(), &key("client_secret"))?;
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
                "system-user" => {
                    let required =
                        |k: &str| ctx.at(&t.auth, &key(k), "required with auth = \"system-user\"");
                    let token = t
                        .system_token
                        .as_ref()
                        .ok_or_else(|| required("system_token"))?;
                    let system_token = match token.get_ref() {
                        TextOrSource::Text(text) => SecretSource {
                            env: None,
                            file: None,
                            credential: None,
                            value: Some(text.clone()),
                        },
                        TextOrSource::Source(source) => source.clone(),
                    };
                    let private = t
                        .private_key
                        .as_ref()
                        .ok_or_else(|| required("private_key"))?;
                    let private_key = match private.get_ref() {
                        PathOrSource::Path(path) => SecretSource {
                            env: None,
                            file: Some(path.clone()),
                            credential: None,
                            value: None,
                        },
                        PathOrSource::Source(source) => source.clone(),
                    };
                    AuthMode::SystemUser {
                        system_token: ctx.secret_ref(token, &key("system_token"), system_token)?,
                        private_key: ctx.secret_ref(private, &key("private_key"), private_key)?,
                    }
                }
                "static" => AuthMode::Static {
                    token: ctx
                        .secret(t.token.as_ref(), &key("token"))?
                        .ok_or_else(|| {
                            ctx.at(&t.auth, &key("token"), "required with auth = \"static\"")
                        })?,
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
                max_concurrency: ctx.count(
                    t.max_concurrency.as_ref(),
                    &key("max_concurrency"),
                    8,
                    1..=256,
                )?,
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
                POLL_INTERVAL,
            )?;
            let reconcile_interval = ctx.duration(
                s.reconcile_interval.as_ref(),
                &key("reconcile_interval"),
                Duration::from_secs(6 * 3600),
                RECONCILE_INTERVAL,
            )?;
            let transform_timeout = ctx.duration(
                s.transform_timeout.as_ref(),
                &key("transform_timeout"),
                crate::transform::DEFAULT_TIMEOUT,
                Duration::from_millis(1)..=Duration::from_secs(60),
            )?;
            let transform_max_output = ctx.count(
                s.transform_max_output.as_ref(),
                &key("transform_max_output"),
                crate::transform::DEFAULT_MAX_OUTPUT,
                1..=(256 << 20),
            )?;
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
                    percent: ctx.number(
                        s.mass_delete_percent.as_ref(),
                        &key("mass_delete_percent"),
                        10.0,
                        0.0..=100.0,
                    )?,
                    absolute: ctx.count(
                        s.mass_delete_absolute.as_ref(),
                        &key("mass_delete_absolute"),
                        1000,
                        0..=i64::MAX,
                    )?,
                },
                // SuperOffice serves at most 1000 rows a page.
                page_size: ctx.count(s.page_size.as_ref(), &key("page_size"), 1000, 1..=1000)?,
                overlap_days: ctx.count(
                    s.overlap_days.as_ref(),
                    &key("overlap_days"),
                    1,
                    0..=365,
                )?,
                concurrency: ctx.count(s.concurrency.as_ref(), &key("concurrency"), 4, 1..=64)?,
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
            max_attempts: ctx.count(o.max_attempts.as_ref(), "outbox.max_attempts", 8, 1..=1000)?,
            concurrency: ctx.count(o.concurrency.as_ref(), "outbox.concurrency", 8, 1..=256)?,
            backoff: ctx.duration(
                o.backoff.as_ref(),
                "outbox.backoff",
                Duration::from_secs(1),
                BACKOFF,
            )?,
            max_backoff: ctx.duration(
                o.max_backoff.as_ref(),
                "outbox.max_backoff",
                Duration::from_secs(300),
                BACKOFF,
            )?,
            echo_suppression: o.echo_suppression.unwrap_or(true),
            tenant: o.tenant.as_ref().map(|t| t.get_ref().clone()),
        };
        if let (Some(span), true) = (
            o.max_backoff.as_ref().or(o.backoff.as_ref()),
            outbox.max_backoff < outbox.backoff,
        ) {
            return Err(ctx.at(
                span,
                "outbox.max_backoff",
                format!(
                    "{} is shorter than outbox.backoff ({})",
                    format_duration(outbox.max_backoff),
                    format_duration(outbox.backoff)
                ),
            ));
        }
        if let Some(t) = &o.tenant
            && !tenants.iter().any(|x| x.name == *t.get_ref())
        {
            return Err(ctx.at(
                t,
                "outbox.tenant",
                format!("no [[tenant]] is named {:?}", t.get_ref()),
            ));
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

        let defaults = Retention::default();
        let retention = Retention {
            webhook_events: ctx.duration(
                raw.retention.webhook_events.as_ref(),
                "retention.webhook_events",
                defaults.webhook_events,
                RETENTION,
            )?,
            runs: ctx.duration(
                raw.retention.runs.as_ref(),
                "retention.runs",
                defaults.runs,
                RETENTION,
            )?,
            changes: match &raw.retention.changes {
                None => None,
                Some(v) => Some(ctx.duration(Some(v), "retention.changes", DAY, RETENTION)?),
            },
        };
        let sv = &raw.supervisor;
        let defaults = crate::supervise::Policy::default();
        let supervisor = crate::supervise::Policy {
            initial: ctx.duration(
                sv.restart_backoff.as_ref(),
                "supervisor.restart_backoff",
                defaults.initial,
                BACKOFF,
            )?,
            max: ctx.duration(
                sv.restart_max_backoff.as_ref(),
                "supervisor.restart_max_backoff",
                defaults.max,
                BACKOFF,
            )?,
            healthy_after: ctx.duration(
                sv.healthy_after.as_ref(),
                "supervisor.healthy_after",
                defaults.healthy_after,
                BACKOFF,
            )?,
        };
        if let (Some(span), true) = (
            sv.restart_max_backoff
                .as_ref()
                .or(sv.restart_backoff.as_ref()),
            supervisor.max < supervisor.initial,
        ) {
            return Err(ctx.at(
                span,
                "supervisor.restart_max_backoff",
                "must not be shorter than supervisor.restart_backoff",
            ));
        }

        let instance = match &raw.instance {
            Some(i) if !valid_token(i.get_ref()) => {
                return Err(ctx.at(
                    i,
                    "instance",
                    "must be non-empty without '.', '*', '>', ':' or whitespace",
                ));
            }
            i => i.as_ref().map(|i| i.get_ref().clone()),
        };
        let mut sinks: Vec<Sink> = Vec::new();
        for (index, spanned) in raw.sinks.iter().enumerate() {
            sinks.push(sink(&ctx, index, spanned)?);
            let last = sinks.last().expect("pushed");
            if sinks[..sinks.len() - 1].iter().any(|s| s.name == last.name) {
                return Err(ctx.at(
                    spanned,
                    &format!("sink[{index}].name"),
                    format!("{:?} is used by another [[sink]]", last.name),
                ));
            }
        }

        let mut sources: Vec<Source> = Vec::new();
        for (index, spanned) in raw.sources.iter().enumerate() {
            let new = source(&ctx, index, spanned)?;
            if sources.iter().any(|s| s.name == new.name) {
                return Err(ctx.at(
                    spanned,
                    &format!("source[{index}].name"),
                    format!("{:?} is used by another [[source]]", new.name),
                ));
            }
            sources.push(new);
        }

        Ok(Config {
            sources,
            sinks,
            instance,
            supervisor,
            store,
            control,
            tenants,
            subscriptions,
            outbox,
            routes,
            retention,
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

    /// Every secret of the configuration, in file order.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        let mut all: Vec<&SecretRef> = Vec::new();
        all.extend(&self.control.token);
        all.extend(&self.control.webhook_secret);
        for tenant in &self.tenants {
            all.extend(&tenant.client_secret);
            match &tenant.auth {
                AuthMode::Static { token } => all.push(token),
                AuthMode::SystemUser {
                    system_token,
                    private_key,
                } => all.extend([system_token, private_key]),
                AuthMode::OAuth { .. } => {}
            }
        }
        for auth in self
            .sinks
            .iter()
            .map(|s| &s.auth)
            .chain(self.sources.iter().map(|s| &s.auth))
        {
            match auth {
                NatsAuth::None => {}
                NatsAuth::Token(s)
                | NatsAuth::UserPassword(_, s)
                | NatsAuth::Nkey(s)
                | NatsAuth::Creds(s) => all.push(s),
            }
        }
        all
    }

    /// Offline checks beyond parsing (`syncd config check`): at least one tenant, every secret
    /// readable here and well-formed, a usable webhook secret. Returns notes; a secret that
    /// cannot be read in this environment (e.g. a credential outside the unit) is a note, or an
    /// error with `strict`.
    pub fn check(&self, strict: bool) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut unreadable = Vec::new();
        if self.tenants.is_empty() {
            return Err(Error::Config("no [[tenant]] is configured".into()));
        }
        for secret in self.secrets() {
            match secret.resolve() {
                Ok(_) => {}
                Err(Error::Config(why)) => {
                    unreadable.push(format!("cannot read {} here: {why}", secret.key()));
                }
                Err(other) => {
                    unreadable.push(format!("cannot read {} here: {other}", secret.key()));
                }
            }
        }
        if let Some(token) = &self.control.token
            && let Ok(value) = token.resolve()
        {
            check_token(value.expose())
                .map_err(|e| Error::Config(format!("{}: {e}", token.key())))?;
        }
        for tenant in &self.tenants {
            match &tenant.auth {
                AuthMode::SystemUser { private_key, .. } => {
                    if let Ok(text) = private_key.resolve() {
                        superoffice::auth::SystemUserKey::parse(text.expose()).map_err(|e| {
                            Error::Config(format!("{}: {e}", private_key.key()))
                        })?;
                    }
                }
                AuthMode::OAuth { token_file, .. } if !token_file.is_file() => notes.push(format!(
                    "tenant {:?}: no token file at {} yet (or not readable here); run `syncd auth login --tenant {}`",
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
        if self.control.token.is_none() {
            notes.push("control.token is not set: the HTTP intake (POST /publish) is off".into());
        }
        // The webhook secret: an empty one or a secret file others can read is an error; none
        // at all means every webhook is refused. A configured one that cannot be read here is
        // already listed as unreadable.
        let configured_unreadable = self
            .control
            .webhook_secret
            .as_ref()
            .is_some_and(|s| s.resolve().is_err());
        if !configured_unreadable {
            let secret = crate::sync::secret::resolve(self, crate::sync::secret::Generate::Never)?;
            if secret.is_none()
                && self.control.public_url.is_none()
                && self.subscriptions.iter().any(|s| s.webhooks)
            {
                notes.push(format!(
                    "no webhook secret (control.webhook_secret is not set, no {}): webhooks will be refused with 401; set control.public_url or run `syncd webhooks ensure` to generate one",
                    crate::sync::secret::secret_path(self).display()
                ));
            }
        }
        if strict && !unreadable.is_empty() {
            return Err(Error::Config(unreadable.join("; ")));
        }
        notes.extend(unreadable);
        Ok(notes)
    }
}

impl Control {
    /// Reads the control token (if one is configured) and checks its form.
    pub fn resolve_token(&self) -> Result<Option<Secret>> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let value = token.resolve()?;
        check_token(value.expose()).map_err(|e| Error::Config(format!("{}: {e}", token.key())))?;
        Ok(Some(value))
    }
}

/// Where the packaged service keeps its database (`StateDirectory=syncd`).
pub const SERVICE_STORE: &str = "/var/lib/syncd/syncd.db";

/// The database when `store` is not set: `$STATE_DIRECTORY/syncd.db` under systemd; else the
/// service's database when it exists, so that `syncd status` or `syncd publish` run from a
/// shell beside the service use the service's data; else `./syncd.db` (which only `syncd run`
/// creates: every other command refuses a missing database).
pub fn default_store() -> PathBuf {
    if std::env::var_os("STATE_DIRECTORY").is_none() && Path::new(SERVICE_STORE).is_file() {
        return PathBuf::from(SERVICE_STORE);
    }
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
            matches!(&config.tenants[0].auth, AuthMode::Static { token } if token.resolve().unwrap().expose() == "s3cret")
        );

        // A secret is read when it is needed, not when the config is parsed: a command that
        // does not need it works without it, and the error names the file, line and key.
        let text = MINIMAL.replace(
            "token = { value = \"t\" }",
            "token = { env = \"SYNCD_TEST_UNSET_VARIABLE\" }",
        );
        let config = parse(&text).unwrap();
        let AuthMode::Static { token } = &config.tenants[0].auth else {
            panic!("static auth")
        };
        let err = token.resolve().unwrap_err().to_string();
        assert!(
            err.contains("syncd.toml:7: tenant[0].token")
                && err.contains("SYNCD_TEST_UNSET_VARIABLE"),
            "{err}"
        );
        let notes = config.check(false).unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("cannot read tenant[0].token here")),
            "{notes:?}"
        );
        let err = config.check(true).unwrap_err().to_string();
        assert!(err.contains("SYNCD_TEST_UNSET_VARIABLE"), "{err}");
        let both = MINIMAL.replace(
            "token = { value = \"t\" }",
            "token = { value = \"t\", env = \"X\" }",
        );
        let err = parse(&both).unwrap_err().to_string();
        assert!(
            err.contains("syncd.toml:7:") && err.contains("exactly one"),
            "{err}"
        );

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

    fn with_control(lines: &str) -> String {
        format!("[control]\n{lines}\n{MINIMAL}")
    }

    #[test]
    fn control_defaults_are_closed_and_limited() {
        let config = parse(MINIMAL).unwrap();
        let c = &config.control;
        assert!(c.token.is_none());
        assert!(c.allowed_origins.is_empty());
        assert!(!c.metrics_auth);
        assert!(c.listen_unix.is_none());
        assert_eq!(c.limits, ControlLimits::default());
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.max_connections, 256);
        assert_eq!(c.limits.publish_body_limit, 1 << 20);
        assert_eq!(c.limits.webhook_body_limit, 64 << 10);
    }

    #[test]
    fn control_keys_parse() {
        let text = with_control(
            r#"token = { value = "0123456789abcdef0123" }
allowed_origins = ["https://app.example.com", "http://127.0.0.1:3000"]
metrics_auth = true
listen_unix = "/run/syncd/control.sock"
header_read_timeout = "1s"
request_timeout = "5s"
max_connections = 4
publish_body_limit = 2048
webhook_body_limit = 1024"#,
        );
        let config = parse(&text).unwrap();
        let c = &config.control;
        assert_eq!(
            c.resolve_token().unwrap().unwrap().expose(),
            "0123456789abcdef0123"
        );
        assert_eq!(
            c.allowed_origins,
            ["https://app.example.com", "http://127.0.0.1:3000"]
        );
        assert!(c.metrics_auth);
        assert_eq!(
            c.listen_unix.as_deref(),
            Some(Path::new("/run/syncd/control.sock"))
        );
        assert_eq!(
            c.limits,
            ControlLimits {
                header_read_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(5),
                max_connections: 4,
                publish_body_limit: 2048,
                webhook_body_limit: 1024,
            }
        );
    }

    #[test]
    fn bad_control_keys_name_the_key_and_line() {
        let cases = [
            (
                "max_connections = 0",
                "syncd.toml:2: control.max_connections",
            ),
            (
                "publish_body_limit = 0",
                "syncd.toml:2: control.publish_body_limit",
            ),
            (
                "webhook_body_limit = 0",
                "syncd.toml:2: control.webhook_body_limit",
            ),
            ("max_connections = -1", "syncd.toml:2"),
            (
                "header_read_timeout = \"0s\"",
                "syncd.toml:2: control.header_read_timeout",
            ),
            (
                "request_timeout = \"soon\"",
                "syncd.toml:2: control.request_timeout",
            ),
            (
                "allowed_origins = [\"https://a.example.com/\"]",
                "syncd.toml:2: control.allowed_origins",
            ),
            (
                "allowed_origins = [\"ftp://a.example.com\"]",
                "syncd.toml:2: control.allowed_origins",
            ),
            ("token = { value = \"short\" }", "control.token: too short"),
            (
                "token = { value = \"has a space in it, long enough\" }",
                "control.token: must be visible ASCII",
            ),
            (
                "metrics_auth = true",
                "control.metrics_auth: needs control.token",
            ),
            ("tokn = { value = \"x\" }", "syncd.toml:2"),
        ];
        for (line, expected) in cases {
            let err = parse(&with_control(line)).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
        // A trailing slash is not how a browser sends an origin: the error says what to write.
        let err = parse(&with_control(
            "allowed_origins = [\"https://a.example.com/\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"https://a.example.com\""), "{err}");
    }

    #[test]
    fn sinks_parse_with_defaults_and_bad_keys_name_key_and_line() {
        let text = format!(
            "{MINIMAL}\n[[sink]]\nname = \"js\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\ntoken = {{ env = \"NATS_TOKEN\" }}\n"
        );
        let config = parse(&text).unwrap();
        let sink = &config.sinks[0];
        assert_eq!(sink.name, "js");
        assert_eq!(sink.stream, DEFAULT_STREAM);
        assert_eq!(sink.subject, DEFAULT_SUBJECT);
        assert_eq!(sink.stream_subjects, vec!["superoffice.*.*.*".to_string()]);
        assert_eq!(sink.duplicate_window, Duration::from_secs(120));
        assert_eq!((sink.replicas, sink.max_lag, sink.max_age), (1, None, None));
        assert!(matches!(&sink.auth, NatsAuth::Token(s) if s.key() == "sink[0].token"));
        assert!(config.secrets().iter().any(|s| s.key() == "sink[0].token"));
        assert_eq!(config.instance, None);

        let base =
            format!("{MINIMAL}\n[[sink]]\nname = \"js\"\nkind = \"nats\"\nurl = \"nats://x\"\n");
        let line = base.lines().count() + 1;
        for (extra, key, says) in [
            (
                "duplicate_window = \"1m\"",
                "sink[0].duplicate_window",
                "2m",
            ),
            (
                "subject = \"a.{{tenant}}x\"",
                "sink[0].subject",
                "neither a literal",
            ),
            (
                "retention = \"forever\"",
                "sink[0].retention",
                "limits, interest or workqueue",
            ),
            ("replicas = 7", "sink[0].replicas", "1 to 5"),
            ("max_lag = 0", "sink[0].max_lag", "out of range"),
            ("user = \"u\"", "sink[0].password", "user without password"),
            (
                "stream = \"A.B\"",
                "sink[0].stream",
                "not a valid stream name",
            ),
        ] {
            let err = parse(&format!("{base}{extra}\n")).unwrap_err().to_string();
            assert!(
                err.contains(&format!("syncd.toml:{line}:"))
                    && err.contains(key)
                    && err.contains(says),
                "{extra}: {err}"
            );
        }
        let err = parse(&format!(
            "{base}token = {{ value = \"t\" }}\nnkey = {{ value = \"n\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("at most one of token"), "{err}");
        let err = parse(&base.replace("\"nats\"", "\"kafka\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink[0].kind"), "{err}");
        let err = parse(&format!(
            "{base}\n[[sink]]\nname = \"js\"\nkind = \"nats\"\nurl = \"nats://y\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sink[1].name") && err.contains("another"),
            "{err}"
        );
        let err = parse(&format!("instance = \"a.b\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("instance"), "{err}");
        assert_eq!(
            parse(&format!("instance = \"eu-1\"\n{MINIMAL}"))
                .unwrap()
                .instance
                .as_deref(),
            Some("eu-1")
        );
    }

    #[test]
    fn sources_parse_with_defaults_and_bad_keys_name_key_and_line() {
        let base = format!(
            "{MINIMAL}\n[[source]]\nname = \"orders\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n"
        );
        let config = parse(&base).unwrap();
        let source = &config.sources[0];
        assert_eq!(source.stream, DEFAULT_SOURCE_STREAM);
        assert_eq!(source.subject, DEFAULT_SOURCE_SUBJECT);
        assert_eq!(source.durable, "syncd-orders");
        assert_eq!(source.ack_wait, Duration::from_secs(30));
        let line = base.lines().count() + 1;
        for (extra, key) in [
            ("ack_wait = \"0s\"", "source[0].ack_wait"),
            ("subject = \"a.>.b\"", "source[0].subject"),
            ("durable = \"a.b\"", "source[0].durable"),
            ("creds = { env = \"X\", file = \"/y\" }", "source[0].creds"),
        ] {
            let err = parse(&format!("{base}{extra}\n")).unwrap_err().to_string();
            assert!(
                err.contains(&format!("syncd.toml:{line}:")) && err.contains(key),
                "{extra}: {err}"
            );
        }
    }

    #[test]
    fn retention_has_defaults_and_refuses_zero_naming_key_and_line() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.retention, Retention::default());
        assert_eq!(
            config.retention.webhook_events,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(config.retention.runs, Duration::from_secs(30 * 86400));

        let text = format!("{MINIMAL}\n[retention]\nwebhook_events = \"36h\"\nruns = \"90d\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(
            config.retention.webhook_events,
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(config.retention.runs, Duration::from_secs(90 * 86400));

        let line = MINIMAL.lines().count() + 3;
        let zero = format!("{MINIMAL}\n[retention]\nwebhook_events = \"0s\"\n");
        let err = parse(&zero).unwrap_err().to_string();
        assert!(
            err.contains(&format!("syncd.toml:{line}:"))
                && err.contains("retention.webhook_events")
                && err.contains("out of range: give 1s to 36500d"),
            "{err}"
        );
        let bad = format!("{MINIMAL}\n[retention]\nruns = \"forever\"\n");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains(&format!("syncd.toml:{line}:")) && err.contains("retention.runs"),
            "{err}"
        );
        let huge = format!("{MINIMAL}\n[retention]\nruns = \"40000d\"\n");
        let err = parse(&huge).unwrap_err().to_string();
        assert!(
            err.contains("retention.runs") && err.contains("36500d"),
            "{err}"
        );
        let unknown = format!("{MINIMAL}\n[retention]\nrecords = \"1d\"\n");
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("records"), "{err}");
        assert_eq!(config.retention.changes, None);
        let changes = format!("{MINIMAL}\n[retention]\nchanges = \"90d\"\n");
        assert_eq!(
            parse(&changes).unwrap().retention.changes,
            Some(Duration::from_secs(90 * 86400))
        );
        let zero = format!("{MINIMAL}\n[retention]\nchanges = \"0s\"\n");
        assert!(
            parse(&zero)
                .unwrap_err()
                .to_string()
                .contains("retention.changes")
        );
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
