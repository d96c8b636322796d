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
//!
//! How it is read: `toml` deserializes the text into the raw sections of `raw.rs` (every
//! key that can be wrong kept with its span, unknown keys refused); then one small function
//! per section turns its raw form into the typed one, section by section: `control.rs`,
//! `tenant.rs` (with the `SYNCD_TENANT_*` overrides), `subscription.rs`, `outbox.rs` (with
//! `[[route]]`), `retention.rs` (with `[supervisor]`), `nats.rs` (`instance`, `[[sink]]`,
//! `[[source]]`). The first error found is returned as [`Error::Config`], naming the file,
//! line and key (`error.rs`); `values.rs` holds what every section uses (durations, counts,
//! secrets).

mod control;
mod error;
mod nats;
mod outbox;
mod raw;
mod retention;
mod secret;
mod subscription;
mod tenant;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use superoffice::entity::EntityKind;

use crate::{Error, Result};

pub(crate) use error::describe;

pub use control::{Control, ControlLimits, DEFAULT_LISTEN, MIN_TOKEN_LEN};
pub use nats::{
    DEFAULT_SOURCE_STREAM, DEFAULT_SOURCE_SUBJECT, DEFAULT_STREAM, DEFAULT_SUBJECT, NatsAuth, Sink,
    Source, StreamRetention,
};
pub use outbox::{ConflictPolicy, Outbox, Route};
pub use retention::{Policy, Retention};
pub use secret::SecretRef;
pub use subscription::{MassDelete, Shape, Subscription};
pub use tenant::{AuthMode, Tenant};
pub use values::{format_duration, parse_duration};

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
    pub supervisor: Policy,
    /// `[[sink]]`s the change feed is published to, in file order.
    pub sinks: Vec<Sink>,
    /// `instance = "…"`: a readable prefix of the `{instance}` of sink message ids, which is
    /// `NAME-ID` (or just `ID`), ID being generated with the database and stored in it (see
    /// [`crate::store::sinks::instance_id`]), so a new database never reuses msg ids.
    pub instance: Option<String>,
    /// `[[source]]`s publish requests arrive from, in file order.
    pub sources: Vec<Source>,
}

impl Config {
    /// Reads and validates a config file, then applies `SYNCD_*` overrides from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: Some(file.clone()),
            line: None,
            key: None,
            message: e.to_string(),
        })?;
        let vars: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SYNCD_"))
            .collect();
        let mut config = Config::parse(&text, &file, &vars)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text with explicit `SYNCD_*` overrides (for tests).
    ///
    /// Overrides: `SYNCD_STORE`, `SYNCD_CONTROL_LISTEN`, and per tenant
    /// `SYNCD_TENANT_<NAME>_{ENVIRONMENT,BASE_URL,CUSTOMER_ID,CLIENT_ID}` (name upper-cased,
    /// `-` → `_`).
    pub fn parse(text: &str, file: &str, env: &BTreeMap<String, String>) -> Result<Config> {
        let ctx = values::Ctx { text, file };
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| error::from_toml(text, file, &e))?;
        let store = env
            .get("SYNCD_STORE")
            .map(PathBuf::from)
            .or(raw.store)
            .unwrap_or_else(default_store);
        let control = control::control(&ctx, &raw.control, env)?;
        let tenants = tenant::tenants(&ctx, &raw.tenants, env)?;
        let subscriptions = subscription::subscriptions(&ctx, &raw.subscriptions, &tenants)?;
        let outbox = outbox::outbox(&ctx, &raw.outbox, &tenants)?;
        let routes = outbox::routes(&ctx, &raw.routes)?;
        let retention = retention::retention(&ctx, &raw.retention)?;
        let supervisor = retention::supervisor(&ctx, &raw.supervisor)?;
        let instance = nats::instance(&ctx, raw.instance.as_ref())?;
        let sinks = nats::sinks(&ctx, &raw.sinks)?;
        let sources = nats::sources(&ctx, &raw.sources)?;
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
            return Err(Error::config("no [[tenant]] is configured".into()));
        }
        for secret in self.secrets() {
            match secret.resolve() {
                Ok(_) => {}
                Err(Error::Config {
                    file,
                    line,
                    key,
                    message,
                }) => {
                    let why = describe(&file, &line, &key, &message);
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
            control::check_token(value.expose()).map_err(|e| Error::config_key(token.key(), e))?;
        }
        for tenant in &self.tenants {
            match &tenant.auth {
                AuthMode::SystemUser { private_key, .. } => {
                    if let Ok(text) = private_key.resolve() {
                        superoffice::auth::SystemUserKey::parse(text.expose()).map_err(|e| {
                            Error::config_key(private_key.key(), e)
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
            let secret =
                crate::webhook_secret::resolve(self, crate::webhook_secret::Generate::Never)?;
            if secret.is_none()
                && self.control.public_url.is_none()
                && self.subscriptions.iter().any(|s| s.webhooks)
            {
                notes.push(format!(
                    "no webhook secret (control.webhook_secret is not set, no {}): webhooks will be refused with 401; set control.public_url or run `syncd webhooks ensure` to generate one",
                    crate::webhook_secret::secret_path(self).display()
                ));
            }
        }
        if strict && !unreadable.is_empty() {
            return Err(Error::config(unreadable.join("; ")));
        }
        notes.extend(unreadable);
        Ok(notes)
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
    use std::time::Duration;

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
    fn poll_interval_max_defaults_with_webhooks_and_is_at_least_poll_interval() {
        let sub = parse(MINIMAL).unwrap().subscriptions.remove(0);
        assert_eq!(sub.poll_interval_max, Duration::from_secs(7200));
        let off = MINIMAL.replace("poll_interval", "webhooks = false\npoll_interval");
        let sub = parse(&off).unwrap().subscriptions.remove(0);
        assert_eq!(sub.poll_interval_max, Duration::from_secs(30));
        let slow = MINIMAL.replace("\"30s\"", "\"3h\"");
        let sub = parse(&slow).unwrap().subscriptions.remove(0);
        assert_eq!(sub.poll_interval_max, Duration::from_secs(3 * 3600));
        let same = MINIMAL.replace(
            "poll_interval",
            "poll_interval_max = \"30s\"\npoll_interval",
        );
        let sub = parse(&same).unwrap().subscriptions.remove(0);
        assert_eq!(sub.poll_interval_max, sub.poll_interval);
        let short = MINIMAL.replace(
            "poll_interval",
            "poll_interval_max = \"10s\"\npoll_interval",
        );
        let err = parse(&short).unwrap_err().to_string();
        assert!(
            err.contains("syncd.toml:13:")
                && err.contains("subscription[0].poll_interval_max")
                && err.contains("shorter than poll_interval (30s)"),
            "{err}"
        );
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
        assert_eq!(config.supervisor, Policy::default());
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
            Policy {
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
    fn errors_are_typed_with_file_line_and_key() {
        // A value of the wrong type and an unknown key: the deserializer's errors name the
        // key at their place too.
        let wrong_type = MINIMAL.replace("\"30s\"", "30");
        let Err(Error::Config {
            file,
            line,
            key,
            message,
        }) = parse(&wrong_type)
        else {
            panic!("a config error")
        };
        assert_eq!(file.as_deref(), Some("syncd.toml"));
        assert_eq!(line, Some(13));
        assert_eq!(key.as_deref(), Some("subscription[0].poll_interval"));
        assert!(message.contains("invalid type"), "{message}");
        let err = parse(&MINIMAL.replace("columns", "colums"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config: syncd.toml:12: subscription[0].colums: unknown field"),
            "{err}"
        );
        let err = parse(&with_control("tokn = { value = \"x\" }"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("syncd.toml:2: control.tokn: "), "{err}");
        // A missing key names the table it is missing from.
        let err = parse(&MINIMAL.replace("customer_id = \"Cust1\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenant[0]") && err.contains("customer_id"),
            "{err}"
        );
        // Broken syntax: the line, no key.
        let err = parse("[control\n").unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Config {
                    line: Some(1),
                    key: None,
                    ..
                }
            ),
            "{err:?}"
        );

        // A check found by the section's validation.
        let bad_page = MINIMAL.replace("poll_interval", "page_size = 0\npoll_interval");
        let Err(Error::Config {
            file,
            line,
            key,
            message,
        }) = parse(&bad_page)
        else {
            panic!("a config error")
        };
        assert_eq!(
            (file.as_deref(), line, key.as_deref()),
            (
                Some("syncd.toml"),
                Some(13),
                Some("subscription[0].page_size")
            )
        );
        assert_eq!(message, "0 is out of range: give 1 to 1000");

        // An override names the variable, without a line.
        let env = BTreeMap::from([("SYNCD_CONTROL_LISTEN".to_string(), "nowhere".to_string())]);
        let err = Config::parse(MINIMAL, "syncd.toml", &env).unwrap_err();
        assert!(
            matches!(&err, Error::Config { line: None, key: Some(k), .. } if k == "SYNCD_CONTROL_LISTEN"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("config: syncd.toml: SYNCD_CONTROL_LISTEN: "),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(21600));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 fortnights").is_err());
    }
}
