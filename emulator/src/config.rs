//! Configuration: every knob of the emulator, with defaults that match the real service where
//! it is known and a documented choice where FACTS.md says UNVERIFIED.
//!
//! Build a [`Config`] with struct-update syntax:
//! `Config { seed: 7, counts: SeedCounts::contacts_only(1000), ..Config::default() }`.

use std::net::SocketAddr;

use crate::clock::Ts;
use crate::test_keys;

/// How many records of each entity are seeded at start (and the unit of `POST /__admin/seed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedCounts {
    /// Contacts (companies).
    pub contacts: u32,
    /// Persons.
    pub persons: u32,
    /// Sales.
    pub sales: u32,
    /// Projects.
    pub projects: u32,
    /// Appointments.
    pub appointments: u32,
    /// Documents.
    pub documents: u32,
    /// Tickets (requests).
    pub tickets: u32,
    /// Selections.
    pub selections: u32,
}

impl Default for SeedCounts {
    fn default() -> Self {
        SeedCounts {
            contacts: 100,
            persons: 200,
            sales: 50,
            projects: 20,
            appointments: 100,
            documents: 50,
            tickets: 50,
            selections: 10,
        }
    }
}

impl SeedCounts {
    /// No records at all.
    pub const NONE: SeedCounts = SeedCounts {
        contacts: 0,
        persons: 0,
        sales: 0,
        projects: 0,
        appointments: 0,
        documents: 0,
        tickets: 0,
        selections: 0,
    };

    /// Only `n` contacts.
    pub fn contacts_only(n: u32) -> Self {
        SeedCounts {
            contacts: n,
            ..Self::NONE
        }
    }
}

/// The simulated tenant.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// The context identifier, e.g. `Cust12345`.
    pub context_identifier: String,
    /// Prefix of the host labels; the tenant starts on `{prefix}1` and each move adds one.
    pub host_prefix: String,
    /// `Version` in the State API answer.
    pub version: String,
    /// How long a State API answer is valid (`ValidUntil` = now + this), in seconds.
    pub state_valid_for_secs: i64,
    /// The database serial (`serial` claim, `aud = spn:{serial}` of system-user JWTs).
    pub serial: String,
    /// `company_name` claim.
    pub company_name: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            context_identifier: "Cust12345".into(),
            host_prefix: "app".into(),
            version: "Release_10.5.0_emulator".into(),
            state_valid_for_secs: 3600,
            serial: "1234567890".into(),
            company_name: "Emulated Tenant AS".into(),
        }
    }
}

/// Login service and credentials.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// When false, data calls need no credentials at all.
    pub require_auth: bool,
    /// The registered client id.
    pub client_id: String,
    /// The client secret; also the `SO-AppToken` for system-user calls.
    pub client_secret: String,
    /// The tenant+app `system_token` (`system_token` claim of the id_token).
    pub system_token: String,
    /// Access-token lifetime in seconds (SuperOffice: 3600).
    pub access_token_ttl_secs: i64,
    /// id_token lifetime in seconds (the documented example shows 300).
    pub id_token_ttl_secs: i64,
    /// Authorization-code lifetime in seconds (SuperOffice: 600).
    pub code_ttl_secs: i64,
    /// System-user ticket lifetime in seconds, sliding (SuperOffice: 6 h).
    pub ticket_ttl_secs: i64,
    /// Redirect URIs registered besides any loopback URI (which always counts as registered).
    pub redirect_uris: Vec<String>,
    /// PEM (SPKI or PKCS#1) public key that verifies signed system tokens.
    pub system_user_public_key_pem: String,
    /// Allowed distance between the timestamp inside a signed system token and now, in
    /// seconds. UNVERIFIED in FACTS.md; default five minutes.
    pub system_user_max_skew_secs: i64,
    /// Whether the system-user JWT carries `webapi_url`. UNVERIFIED in FACTS.md; default true.
    pub system_user_jwt_has_webapi_url: bool,
    /// Whether the id_token's `webapi_url` names the tenant's current host. The documented
    /// tokens name the un-numbered host, which answers 421 nowadays; default false (faithful).
    pub webapi_url_uses_current_host: bool,
    /// Associate id of the interactive user behind OAuth tokens.
    pub user_associate_id: i32,
    /// Associate id of the system user behind tickets.
    pub system_user_associate_id: i32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            require_auth: true,
            client_id: "emulator-client".into(),
            client_secret: "emulator-secret".into(),
            system_token: "EmulatorApp-7f3c2a9e41d84b6c".into(),
            access_token_ttl_secs: 3600,
            id_token_ttl_secs: 300,
            code_ttl_secs: 600,
            ticket_ttl_secs: 6 * 3600,
            redirect_uris: Vec::new(),
            system_user_public_key_pem: test_keys::SYSTEM_USER_PUBLIC_KEY_PEM.to_string(),
            system_user_max_skew_secs: 300,
            system_user_jwt_has_webapi_url: true,
            webapi_url_uses_current_host: false,
            user_associate_id: 1,
            system_user_associate_id: 2,
        }
    }
}

/// How `afterTime`/`beforeTime`/`dateTime` treat a date-typed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOpsOnDateColumns {
    /// The column's restriction type wins: only the day is compared (default).
    DayPrecision,
    /// The operator wins: full timestamps are compared.
    FullPrecision,
}

/// OData / archive behaviour.
#[derive(Debug, Clone)]
pub struct ODataConfig {
    /// Rows returned when `$top` is absent. UNVERIFIED in FACTS.md; default 1000.
    pub default_top: u32,
    /// Largest `$top` honoured; larger values are clamped. UNVERIFIED; default 1000.
    pub max_top: u32,
    /// Whether `after 'D'` includes day D. UNVERIFIED; default false (exclusive).
    pub after_is_inclusive: bool,
    /// Whether `before 'D'` includes day D. Default false (exclusive).
    pub before_is_inclusive: bool,
    /// Precision of the datetime operators on date columns. UNVERIFIED; default day.
    pub time_ops_on_date_columns: TimeOpsOnDateColumns,
    /// Fill `odata.nextLink` when a page is full. The real server sends null in every
    /// documented example; default false.
    pub next_link: bool,
}

impl Default for ODataConfig {
    fn default() -> Self {
        ODataConfig {
            default_top: 1000,
            max_top: 1000,
            after_is_inclusive: false,
            before_is_inclusive: false,
            time_ops_on_date_columns: TimeOpsOnDateColumns::DayPrecision,
            next_link: false,
        }
    }
}

/// Webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Delays before the second and third attempt (SuperOffice: 1 s and 4 s).
    pub retry_delays_ms: Vec<u64>,
    /// Multiplier for the retry delays; tests use e.g. 0.01.
    pub retry_scale: f64,
    /// Consecutive failed attempts that set the state to `TooManyErrors` (SuperOffice: 9).
    pub max_consecutive_errors: u32,
    /// Accept plain-http target URLs (the real service requires HTTPS); default true.
    pub allow_http: bool,
    /// Accept targets that are not loopback addresses; default false.
    pub allow_non_loopback: bool,
    /// Per-attempt timeout in milliseconds. The real receiver timeout is UNVERIFIED.
    pub timeout_ms: u64,
    /// Send the `test` event on save and refuse the save unless it gets 200; default true.
    pub test_on_save: bool,
    /// Whether document changes also fire `activity.*` (FACTS §4.3: activity events "fire for
    /// appointment/document rows"); default true.
    pub documents_fire_activity_events: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            retry_delays_ms: vec![1000, 4000],
            retry_scale: 1.0,
            max_consecutive_errors: 9,
            allow_http: true,
            allow_non_loopback: false,
            timeout_ms: 5000,
            test_on_save: true,
            documents_fire_activity_events: true,
        }
    }
}

/// Everything the emulator can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address; default `127.0.0.1:0` (an ephemeral port).
    pub bind: SocketAddr,
    /// Seed of every random choice (data, activity, faults, ids of events).
    pub seed: u64,
    /// Records seeded at start.
    pub counts: SeedCounts,
    /// Seeded timestamps lie in the three years before this instant; default 2025-01-01.
    pub anchor: Ts,
    /// Fraction of seeded rows whose `updated` is `0001-01-01T00:00:00` (never edited).
    pub never_updated_fraction: f64,
    /// The tenant.
    pub tenant: TenantConfig,
    /// Login service.
    pub auth: AuthConfig,
    /// Archives.
    pub odata: ODataConfig,
    /// Webhooks.
    pub webhooks: WebhookConfig,
    /// Days a soft-deleted contact/person stays in the recycle bin (SuperOffice default 14).
    pub purge_after_days: i64,
    /// Whether a save that changes only child rows (phones, e-mails, UDFs, …) bumps `updated`
    /// and fires `*.changed`. UNVERIFIED in FACTS.md; default false.
    pub child_only_change_touches_root: bool,
    /// Append `Z` to entity and archive timestamps. The real server sends none; default false.
    pub utc_suffix: bool,
    /// Whether a newly created row gets `UpdatedDate`/`UpdatedBy` at once. FACTS §3.1 shows
    /// never-edited rows with `updated` = `0001-01-01T00:00:00`; default false (new rows carry
    /// that minimum date until their first edit). Tickets always set `LastChanged`.
    pub created_rows_have_updated: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 42,
            counts: SeedCounts::default(),
            anchor: Ts::from_parts(2025, 1, 1, 0, 0, 0),
            never_updated_fraction: 0.02,
            tenant: TenantConfig::default(),
            auth: AuthConfig::default(),
            odata: ODataConfig::default(),
            webhooks: WebhookConfig::default(),
            purge_after_days: 14,
            child_only_change_touches_root: false,
            utc_suffix: false,
            created_rows_have_updated: false,
        }
    }
}

impl Config {
    /// Checks the values that would otherwise fail later in confusing ways.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::Config(m.to_string()));
        if !self.bind.ip().is_loopback() {
            return bad("bind must be a loopback address");
        }
        if self.odata.max_top == 0 || self.odata.default_top == 0 {
            return bad("odata.default_top and odata.max_top must be positive");
        }
        if !(0.0..=1.0).contains(&self.never_updated_fraction) {
            return bad("never_updated_fraction must be within 0..=1");
        }
        if self.tenant.context_identifier.is_empty() || self.tenant.context_identifier.contains('/')
        {
            return bad("tenant.context_identifier must be a non-empty path segment");
        }
        if self.webhooks.retry_scale < 0.0 {
            return bad("webhooks.retry_scale must not be negative");
        }
        Ok(())
    }
}
