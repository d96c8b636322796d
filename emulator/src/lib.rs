//! A local emulator of SuperOffice CRM Online: the REST API of one tenant, its login service
//! (OAuth 2.0 / OpenID Connect, system user), the State API and webhooks — deterministic,
//! fast and able to inject faults. The SDK, `syncd` and the benchmarks are tested against it.
//!
//! ```no_run
//! # async fn demo() -> emulator::Result<()> {
//! use emulator::{Config, Emulator, SeedCounts};
//! let emu = Emulator::start(Config { counts: SeedCounts::contacts_only(1000), ..Config::default() }).await?;
//! let token = emu.issue_access_token();
//! let url = format!("{}/api/v1/Contact?$select=contactId,name,updatedDate&$top=10", emu.tenant_url());
//! let body = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().text().await.unwrap();
//! # Ok(()) }
//! ```
//!
//! # Hosts
//!
//! One listener simulates every host with path prefixes. [`Emulator::base_url`]
//! (`http://127.0.0.1:PORT`) is the login host, like `https://online.superoffice.com`. It serves
//! `/login/common/oauth/{authorize,tokens,revoke,logout}`,
//! `/login/.well-known/{openid-configuration,jwks}`, `/api/state/{ctx}`,
//! `/Login/api/PartnerSystemUser/Authenticate` and `/__admin/…`. The tenant's data lives at
//! [`Emulator::tenant_url`] = `{base}/{host_label}/{ctx}` (e.g. `{base}/app1/Cust12345`), so a
//! contact is `{tenant_url}/api/v1/Contact/5`. Moving the tenant changes the host label
//! (`app1` → `app2` → …); data calls through any other label, or without one
//! (`{base}/{ctx}/api/v1/…`), answer **421**. A tenant whose state is not `Running` or
//! `OnlineMaintenance` answers **503** (`TenantNotRunning`, `Retry-After: 60`) to data calls
//! and the State API reports `IsRunning: false`.
//!
//! # Credentials
//!
//! Data calls need `Authorization: Bearer <access token>` or `Authorization: SOTicket <ticket>`
//! plus `SO-AppToken: <client secret>` (401 otherwise; set
//! [`config::AuthConfig::require_auth`] to false to switch this off). Defaults: tenant
//! `Cust12345`, client id `emulator-client`, client secret `emulator-secret`, system token
//! `EmulatorApp-7f3c2a9e41d84b6c`. Any loopback redirect URI counts as registered.
//! [`Emulator::issue_access_token`] and [`Emulator::issue_ticket`] skip the dances. Access
//! tokens expire after [`config::AuthConfig::access_token_ttl_secs`] (3600) on the emulator
//! clock; tickets slide by [`config::AuthConfig::ticket_ttl_secs`] (6 h) on every use; refresh
//! answers carry no new refresh token and the original keeps working. id_tokens and
//! system-user JWTs are RS256-signed with the committed, test-only key of [`test_keys`]; the
//! system-user flow verifies signatures with [`test_keys::SYSTEM_USER_PUBLIC_KEY_PEM`] unless
//! configured otherwise, and [`sign_system_token`] signs like a partner app does.
//!
//! # Data
//!
//! Contact, Person, Sale, Project, Appointment, Document, Ticket and Selection, shaped like the
//! official `…Entity` definitions; seeded deterministically from [`Config::seed`] with
//! timestamps before [`Config::anchor`]. `GET/POST /api/v1/{Entity}`,
//! `GET/PUT/PATCH/DELETE /api/v1/{Entity}/{id}`, `GET /api/v1/{Entity}/default`,
//! `GET /api/v1/{Entity}/{id}/ForeignKey`, the archives `/api/v1/Archive/{provider}`
//! (SimpleContact, Person, FindSale, FindProject, FindAppointment, FindDocument, Ticket,
//! FindSelection, RecycleContact, RecyclePerson, ForeignKeys), `/api/v1/Webhook…`,
//! `/api/v1/ForeignApp…` and `/api/v1/User/currentPrincipal`; [`server::data::ROUTES`] lists
//! them all. Contacts and persons are soft-deleted (recycle archives, purged after
//! [`Config::purge_after_days`]); a ticket DELETE sets status Deleted; the rest are removed.
//!
//! # Admin API
//!
//! All JSON, no authentication; each endpoint has the same-named method on [`Emulator`].
//!
//! | Endpoint | Body / answer |
//! |---|---|
//! | `POST /__admin/seed` | `{entity, count}` → `{entity, seeded, total}` |
//! | `POST /__admin/activity` | `{creates, updates, deletes, entity?}` → `{created, updated, deleted}` (lists of `{entity, id}`) |
//! | `GET /__admin/truth/{entity}` | `[{id, updated, hash, deleted}]`, every row ever created ([`store::TruthRow`]) |
//! | `POST /__admin/faults` | a [`FaultRule`] → `{rules}`; `GET` lists, `DELETE` clears |
//! | `POST /__admin/tenant` | `{moved?, state?}` → `{host_label, tenant_url, state}`; `GET` reads |
//! | `POST /__admin/tokens/expire` | → `{expired}` (access tokens and tickets; refresh tokens survive) |
//! | `POST /__admin/tokens/access` | → `{access_token, expires_in}` |
//! | `POST /__admin/tokens/ticket` | → `{ticket, app_token}` |
//! | `POST /__admin/restore` | `{entity, id}` → `{restored}` (takes a contact/person out of the recycle bin) |
//! | `POST /__admin/clock` | `{advance_seconds}` → `{now, offset_seconds}` (runs the purge); `GET` reads |
//! | `GET /__admin/stats` | [`StatsSnapshot`]: requests by status and route class, faults, archive rows, webhook deliveries; `POST /__admin/stats/reset` zeroes |
//! | `POST /__admin/bench/create` | `{entity?, count}` → [`CreateRate`]: the emulator's own create rate |
//!
//! # Behaviour FACTS.md leaves UNVERIFIED (settings)
//!
//! Default and maximum `$top` ([`config::ODataConfig`], both 1000; larger values are clamped),
//! whether `after 'D'` includes day D (exclusive), the precision of `afterTime`/`beforeTime` on
//! date columns (day), `odata.nextLink` (null), whether child-only saves touch the root row
//! ([`Config::child_only_change_touches_root`], false), timestamps with a `Z`
//! ([`Config::utc_suffix`], false), whether new rows get an `UpdatedDate` at once
//! ([`Config::created_rows_have_updated`], false), the system-user clock skew (300 s) and whether its JWT carries
//! `webapi_url` (yes), whether document changes also fire `activity.*` (yes), plain-http
//! webhook targets (allowed) and the webhook receiver timeout (5 s).
//!
//! # Choices and simplifications
//!
//! - Archive rows show list columns (`category`, `saleStatus`, …) by label and associate columns
//!   (`associateId`, `updatedBy`) by login name; filters accept ids or labels. Dates are ISO
//!   strings, `0001-01-01T00:00:00` when never set. Unknown columns answer 400.
//! - Only `$mode=Slim` and JSON; no aggregates (`Count(x):Footer`) and no relative date
//!   operators besides `today`, `beforeToday` and `afterToday`.
//! - Without `$orderBy` rows come in primary-key order; every ordering ends with the key.
//! - `ContactEntity.Persons` is always empty and nothing models document content; phones,
//!   e-mails, addresses and user-defined fields start empty and round-trip what clients set.
//! - Data calls on an unknown context answer 404; so does a State API call for one.
//! - A failed system-user exchange answers 200 with `IsSuccessful: false`.
//! - Webhook `Events` match exactly, or by `entity.*` / `*`.
//!
//! # Benchmark
//!
//! `cargo bench -p emulator --bench throughput` seeds 1M contacts, prints the resident memory,
//! then the slim-row rate of keyset paging over loopback and the in-process create rate.
//!
//! # Layout
//!
//! [`config`] settings; [`clock`] time; [`model`] entities and their JSON, archive columns and
//! webhook columns; [`store`] tables and writes; [`odata`] archive queries; [`json`] patching
//! and hashing; [`foreign`] foreign keys; [`auth`] tokens and JWTs; [`webhook`] registrations
//! and delivery; [`faults`] fault rules; [`tenant`] host and state; [`stats`] counters;
//! [`server`] the accept loop and the HTTP handlers.

#![recursion_limit = "256"]

pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod faults;
pub mod foreign;
pub mod json;
pub mod model;
pub mod odata;
pub mod rsa_der;
pub mod server;
pub mod stats;
pub mod store;
pub mod tenant;
pub mod webhook;

/// Test-only RSA keys. **Public knowledge — never trust anything signed with them.**
pub mod test_keys {
    /// The emulator's signing key for id_tokens and system-user JWTs (PKCS#8 PEM).
    pub const SIGNING_PRIVATE_KEY_PEM: &str = include_str!("../keys/signing-test-key.pem");
    /// The private half of the default system-user certificate: sign system tokens with it.
    pub const SYSTEM_USER_PRIVATE_KEY_PEM: &str = include_str!("../keys/system-user-test-key.pem");
    /// The public half the emulator verifies signed system tokens with by default.
    pub const SYSTEM_USER_PUBLIC_KEY_PEM: &str =
        include_str!("../keys/system-user-test-key.pub.pem");
}

use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::sign_system_token;
pub use clock::Ts;
pub use config::{Config, SeedCounts};
pub use error::{Error, Result, SoError};
pub use faults::{FaultRule, RouteClass};
pub use json::entity_hash;
pub use model::EntityType;
pub use server::CreateRate;
pub use stats::StatsSnapshot;
pub use store::{ActivityReport, TruthRow};
pub use tenant::{TenantInfo, TenantState, TenantUpdate};

use server::Shared;

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Emulator {
    /// Seeds the data, binds [`Config::bind`] (default `127.0.0.1:0`) and starts serving.
    pub async fn start(config: Config) -> Result<Emulator> {
        config.validate()?;
        server::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let shared = tokio::task::spawn_blocking(move || Shared::new(config, base_url))
            .await
            .map_err(|e| Error::Config(format!("seeding failed: {e}")))??;
        let shared = Arc::new(shared);
        let serving = shared.clone();
        shared.tasks.spawn(server::serve(serving, listener));
        Ok(Emulator { shared, addr })
    }

    /// The login host, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tenant's current endpoint, `{base}/{host_label}/{ctx}` (no trailing slash).
    pub fn tenant_url(&self) -> String {
        self.shared.tenant_url()
    }

    /// The context identifier (`Cust12345`).
    pub fn context_identifier(&self) -> &str {
        &self.shared.config.tenant.context_identifier
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// An access token for the interactive user (skips the OAuth dance).
    pub fn issue_access_token(&self) -> String {
        self.shared.issue_access_token()
    }

    /// A system-user ticket (send it with `SO-AppToken: <client secret>`).
    pub fn issue_ticket(&self) -> String {
        self.shared.issue_ticket()
    }

    /// Seeds `count` more rows of an entity; returns the stored row count.
    pub fn seed(&self, entity: EntityType, count: u32) -> usize {
        self.shared.seed(entity, count)
    }

    /// Simulates other users' edits (webhooks fire as for API edits).
    pub fn activity(
        &self,
        creates: u32,
        updates: u32,
        deletes: u32,
        entity: Option<EntityType>,
    ) -> ActivityReport {
        self.shared.activity(creates, updates, deletes, entity)
    }

    /// Every row of an entity ever created, with its last change, hash and deleted flag.
    pub fn truth(&self, entity: EntityType) -> Vec<TruthRow> {
        self.shared.truth(entity)
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) -> Result<()> {
        Ok(self.shared.add_fault(rule)?)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Moves the tenant and/or changes its state.
    pub fn set_tenant(&self, update: TenantUpdate) -> TenantInfo {
        self.shared.update_tenant(&update)
    }

    /// Moves the tenant to the next host label.
    pub fn move_tenant(&self) -> TenantInfo {
        self.set_tenant(TenantUpdate {
            moved: true,
            state: None,
        })
    }

    /// Sets the tenant state.
    pub fn set_tenant_state(&self, state: TenantState) -> TenantInfo {
        self.set_tenant(TenantUpdate {
            moved: false,
            state: Some(state),
        })
    }

    /// Host label, URL and state of the tenant.
    pub fn tenant(&self) -> TenantInfo {
        self.shared.tenant_info()
    }

    /// Expires every access token and ticket; returns how many.
    pub fn expire_tokens(&self) -> usize {
        self.shared.expire_tokens()
    }

    /// Restores a soft-deleted contact or person.
    pub fn restore(&self, entity: EntityType, id: i32) -> Result<()> {
        Ok(self.shared.restore(entity, id)?)
    }

    /// Moves the emulator clock forward (runs the recycle-bin purge); returns the new time.
    pub fn advance_clock(&self, secs: i64) -> Ts {
        self.shared.advance_clock(secs)
    }

    /// The emulator's current time.
    pub fn now(&self) -> Ts {
        self.shared.clock.now()
    }

    /// Request and delivery counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// Creates `count` rows through the API's create path and reports the rate.
    pub fn measure_create_rate(&self, entity: EntityType, count: u32) -> CreateRate {
        self.shared.measure_create_rate(entity, count)
    }

    /// Stops serving and waits for background tasks to end.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
