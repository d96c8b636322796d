//! The file as written: one serde-derived struct per section, every key that can be wrong
//! kept [`Spanned`] so its error names the line. Unknown keys are refused
//! (`deny_unknown_fields`) in every section. The sections' modules turn these into the typed
//! [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::secret::{PathOrSource, SecretSource, TextOrSource};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) store: Option<PathBuf>,
    #[serde(default)]
    pub(super) control: RawControl,
    #[serde(default, rename = "tenant")]
    pub(super) tenants: Vec<Spanned<RawTenant>>,
    #[serde(default, rename = "subscription")]
    pub(super) subscriptions: Vec<Spanned<RawSubscription>>,
    #[serde(default)]
    pub(super) outbox: RawOutbox,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) supervisor: RawSupervisor,
    pub(super) instance: Option<Spanned<String>>,
    #[serde(default, rename = "sink")]
    pub(super) sinks: Vec<Spanned<RawSink>>,
    #[serde(default, rename = "source")]
    pub(super) sources: Vec<Spanned<RawSource>>,
}

/// `[control]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) webhook_secret: Option<Spanned<SecretSource>>,
    pub(super) public_url: Option<String>,
    pub(super) token: Option<Spanned<SecretSource>>,
    pub(super) allowed_origins: Option<Vec<Spanned<String>>>,
    pub(super) metrics_auth: Option<Spanned<bool>>,
    pub(super) listen_unix: Option<PathBuf>,
    pub(super) header_read_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) publish_body_limit: Option<Spanned<i64>>,
    pub(super) webhook_body_limit: Option<Spanned<i64>>,
}

/// One `[[tenant]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: String,
    pub(super) environment: Option<Spanned<String>>,
    pub(super) base_url: Option<String>,
    pub(super) customer_id: String,
    #[serde(default)]
    pub(super) client_id: String,
    pub(super) client_secret: Option<Spanned<SecretSource>>,
    pub(super) auth: Spanned<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) redirect_uri: Option<String>,
    pub(super) system_token: Option<Spanned<TextOrSource>>,
    pub(super) private_key: Option<Spanned<PathOrSource>>,
    pub(super) token: Option<Spanned<SecretSource>>,
    pub(super) max_concurrency: Option<Spanned<i64>>,
    pub(super) language: Option<String>,
}

/// One `[[subscription]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubscription {
    pub(super) name: String,
    pub(super) tenant: Option<Spanned<String>>,
    pub(super) entity: Spanned<String>,
    pub(super) shape: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) columns: Vec<String>,
    pub(super) filter: Option<String>,
    #[serde(default)]
    pub(super) path: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    pub(super) parent: Option<Spanned<String>>,
    pub(super) transform: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<String>>,
    pub(super) poll_interval_max: Option<Spanned<String>>,
    pub(super) webhooks: Option<bool>,
    pub(super) reconcile_interval: Option<Spanned<String>>,
    pub(super) mass_delete_percent: Option<Spanned<f64>>,
    pub(super) mass_delete_absolute: Option<Spanned<i64>>,
    pub(super) page_size: Option<Spanned<i64>>,
    pub(super) overlap_days: Option<Spanned<i64>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) transform_timeout: Option<Spanned<String>>,
    pub(super) transform_max_output: Option<Spanned<i64>>,
}

/// `[outbox]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    pub(super) foreign_app: Option<String>,
    pub(super) device: Option<String>,
    pub(super) key_name: Option<String>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) backoff: Option<Spanned<String>>,
    pub(super) max_backoff: Option<Spanned<String>>,
    pub(super) echo_suppression: Option<bool>,
    pub(super) tenant: Option<Spanned<String>>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) entity: Spanned<String>,
    pub(super) conflict: Option<Spanned<String>>,
    pub(super) lookup_filter: Option<String>,
    pub(super) use_synced_last_modified: Option<bool>,
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) webhook_events: Option<Spanned<String>>,
    pub(super) runs: Option<Spanned<String>>,
    pub(super) changes: Option<Spanned<String>>,
}

/// `[supervisor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervisor {
    pub(super) restart_backoff: Option<Spanned<String>>,
    pub(super) restart_max_backoff: Option<Spanned<String>>,
    pub(super) healthy_after: Option<Spanned<String>>,
}

/// The keys a `[[sink]]` and a `[[source]]` share: the connection and its credentials.
pub(super) trait RawNats {
    /// `token`, `password`, `nkey`, `creds`, in that order.
    fn secrets(&self) -> [&Option<Spanned<SecretSource>>; 4];
    /// `user`.
    fn user(&self) -> Option<&Spanned<String>>;
}

/// One `[[sink]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) name: String,
    pub(super) kind: Spanned<String>,
    pub(super) url: Spanned<String>,
    pub(super) token: Option<Spanned<SecretSource>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password: Option<Spanned<SecretSource>>,
    pub(super) nkey: Option<Spanned<SecretSource>>,
    pub(super) creds: Option<Spanned<SecretSource>>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_required: Option<bool>,
    pub(super) stream: Option<Spanned<String>>,
    pub(super) subject: Option<Spanned<String>>,
    pub(super) stream_subjects: Option<Vec<Spanned<String>>>,
    pub(super) retention: Option<Spanned<String>>,
    pub(super) replicas: Option<Spanned<i64>>,
    pub(super) max_age: Option<Spanned<String>>,
    pub(super) duplicate_window: Option<Spanned<String>>,
    pub(super) max_lag: Option<Spanned<i64>>,
    pub(super) batch: Option<Spanned<i64>>,
}

impl RawNats for RawSink {
    fn secrets(&self) -> [&Option<Spanned<SecretSource>>; 4] {
        [&self.token, &self.password, &self.nkey, &self.creds]
    }
    fn user(&self) -> Option<&Spanned<String>> {
        self.user.as_ref()
    }
}

/// One `[[source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: String,
    pub(super) kind: Spanned<String>,
    pub(super) url: Spanned<String>,
    pub(super) token: Option<Spanned<SecretSource>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password: Option<Spanned<SecretSource>>,
    pub(super) nkey: Option<Spanned<SecretSource>>,
    pub(super) creds: Option<Spanned<SecretSource>>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_required: Option<bool>,
    pub(super) stream: Option<Spanned<String>>,
    pub(super) subject: Option<Spanned<String>>,
    pub(super) durable: Option<Spanned<String>>,
    pub(super) ack_wait: Option<Spanned<String>>,
}

impl RawNats for RawSource {
    fn secrets(&self) -> [&Option<Spanned<SecretSource>>; 4] {
        [&self.token, &self.password, &self.nkey, &self.creds]
    }
    fn user(&self) -> Option<&Spanned<String>> {
        self.user.as_ref()
    }
}
