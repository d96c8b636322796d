//! The HTTP side: shared state, the accept loop and the outer service that counts requests and
//! injects faults before the axum router sees them.
//!
//! The accept loop is hand-rolled on hyper-util (instead of `axum::serve`) so a fault can close
//! a connection without answering: the outer service returns an error and hyper drops the
//! connection, which clients see as a transport error.

pub mod admin;
pub mod data;
pub mod login;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::{Credentials, Keys, Principal};
use crate::clock::{Clock, Ts};
use crate::config::Config;
use crate::error::SoError;
use crate::faults::{FaultRule, Faults, RouteClass};
use crate::model::EntityType;
use crate::odata::SortCache;
use crate::stats::{Stats, StatsSnapshot};
use crate::store::{self, ActivityReport, Change, Db, TruthRow, WriteOptions};
use crate::tenant::{Tenant, TenantInfo, TenantUpdate};
use crate::webhook::{self, DeliveryHost, EventData, Webhooks};
use crate::with_entity;

/// A JSON response with `application/json; charset=utf-8`.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> axum::response::Response {
    raw_json(status, v.to_string())
}

/// A response whose body is already JSON text.
pub fn raw_json(status: StatusCode, body: String) -> axum::response::Response {
    let mut r = axum::response::Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// The emulator clock.
    pub clock: Clock,
    /// The database.
    pub db: RwLock<Db>,
    /// Sorted-key cache of archive queries.
    pub sort_cache: SortCache,
    /// Issued credentials.
    pub creds: Mutex<Credentials>,
    /// Signing keys.
    pub keys: Keys,
    /// Tenant host and state.
    pub tenant: Mutex<Tenant>,
    /// Fault rules.
    pub faults: Mutex<Faults>,
    /// Webhook registrations.
    pub webhooks: Mutex<Webhooks>,
    /// Counters.
    pub stats: Stats,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Client for webhook deliveries.
    pub http: reqwest::Client,
    /// Background tasks (webhook queues, connections).
    pub tasks: TaskTracker,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    next_purge: AtomicI64,
}

impl Shared {
    /// Builds the state (seeding the database) for a bound base URL.
    pub fn new(config: Config, base_url: String) -> crate::Result<Shared> {
        let keys = Keys::load(
            crate::test_keys::SIGNING_PRIVATE_KEY_PEM,
            &config.auth.system_user_public_key_pem,
        )?;
        let mut db = Db::new(config.seed);
        db.utc = config.utc_suffix;
        let c = &config.counts;
        for (ty, n) in [
            (EntityType::Contact, c.contacts),
            (EntityType::Person, c.persons),
            (EntityType::Project, c.projects),
            (EntityType::Sale, c.sales),
            (EntityType::Appointment, c.appointments),
            (EntityType::Document, c.documents),
            (EntityType::Ticket, c.tickets),
            (EntityType::Selection, c.selections),
        ] {
            db.seed(ty, n, config.anchor, config.never_updated_fraction);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(tls_config()?)
            .build()
            .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))?;
        Ok(Shared {
            clock: Clock::default(),
            db: RwLock::new(db),
            sort_cache: SortCache::default(),
            creds: Mutex::new(Credentials::new(config.seed)),
            keys,
            tenant: Mutex::new(Tenant::new(&config.tenant.host_prefix)),
            faults: Mutex::new(Faults::new(config.seed)),
            webhooks: Mutex::new(Webhooks::new(config.seed)),
            stats: Stats::default(),
            base_url,
            http,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            next_purge: AtomicI64::new(i64::MAX),
            config,
        })
    }

    /// Reads the database (a poisoned lock is recovered: writes are applied atomically).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Db> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the database.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Db> {
        self.db.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant state.
    pub fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.tenant.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write settings derived from the configuration.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            child_touches_root: self.config.child_only_change_touches_root,
            new_rows_set_updated: self.config.created_rows_have_updated,
        }
    }

    /// `{base}/{host_label}/{ctx}`.
    pub fn tenant_url(&self) -> String {
        let label = self.tenant().host_label();
        format!(
            "{}/{label}/{}",
            self.base_url, self.config.tenant.context_identifier
        )
    }

    /// Host, URL and state of the tenant.
    pub fn tenant_info(&self) -> TenantInfo {
        let t = self.tenant().clone();
        TenantInfo {
            host_label: t.host_label(),
            tenant_url: format!(
                "{}/{}/{}",
                self.base_url,
                t.host_label(),
                self.config.tenant.context_identifier
            ),
            state: t.state,
        }
    }

    /// Turns committed changes into webhook deliveries.
    pub fn publish(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut reg = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        let ctx = self.config.tenant.context_identifier.as_str();
        let mut queued = 0;
        for c in changes {
            let data = EventData::of(c, ctx, self.clock.now_precise());
            for name in webhook::event_names(c, self.config.webhooks.documents_fire_activity_events)
            {
                queued += reg.publish(&name, &data);
            }
        }
        self.stats.queued(queued as u64);
    }

    /// Schedules the next purge check after a soft delete.
    pub fn note_soft_delete(&self, at: Ts) {
        let due = at.0 + self.config.purge_after_days * crate::clock::DAY;
        self.next_purge.fetch_min(due, Ordering::Relaxed);
    }

    /// Hard-deletes recycle-bin rows whose retention has passed (cheap when none are due).
    pub fn maybe_purge(&self) {
        let now = self.clock.now();
        if now.0 < self.next_purge.load(Ordering::Relaxed) {
            return;
        }
        let changes = {
            let mut db = self.write();
            let changes = store::purge(&mut db, now, self.config.purge_after_days);
            let next = store::oldest_soft_delete(&db)
                .map(|t| t.0 + self.config.purge_after_days * crate::clock::DAY)
                .unwrap_or(i64::MAX);
            self.next_purge.store(next, Ordering::Relaxed);
            changes
        };
        self.publish(&changes);
    }

    // ----- admin operations (shared by `/__admin` and the library handle) -----

    /// Seeds more rows of an entity.
    pub fn seed(&self, entity: EntityType, count: u32) -> usize {
        let mut db = self.write();
        db.seed(
            entity,
            count,
            self.config.anchor,
            self.config.never_updated_fraction,
        );
        db.count(entity)
    }

    /// Simulates other users' edits.
    pub fn activity(
        &self,
        creates: u32,
        updates: u32,
        deletes: u32,
        entity: Option<EntityType>,
    ) -> ActivityReport {
        let now = self.clock.now();
        let (report, changes) = {
            let mut db = self.write();
            store::activity(
                &mut db,
                creates,
                updates,
                deletes,
                entity,
                now,
                self.write_options(),
            )
        };
        if changes
            .iter()
            .any(|c| c.kind == store::ChangeKind::SoftDeleted)
        {
            self.note_soft_delete(now);
        }
        self.publish(&changes);
        report
    }

    /// The ground truth of an entity.
    pub fn truth(&self, entity: EntityType) -> Vec<TruthRow> {
        self.maybe_purge();
        self.read().truth(entity)
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), SoError> {
        rule.validate().map_err(SoError::bad_request)?;
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(rule);
        Ok(())
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Moves the tenant and/or changes its state.
    pub fn update_tenant(&self, u: &TenantUpdate) -> TenantInfo {
        {
            let mut t = self.tenant();
            if u.moved {
                t.move_host();
            }
            if let Some(s) = u.state {
                t.state = s;
            }
        }
        self.tenant_info()
    }

    /// Expires every access token and ticket.
    pub fn expire_tokens(&self) -> usize {
        let now = self.clock.now();
        self.creds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expire_all(now)
    }

    /// Restores a soft-deleted contact or person.
    pub fn restore(&self, entity: EntityType, id: i32) -> Result<(), SoError> {
        if !entity.soft_deletes() {
            return Err(SoError::bad_request(format!(
                "{entity} rows are not soft-deleted"
            )));
        }
        let now = self.clock.now();
        let by = self.config.auth.user_associate_id;
        let change = {
            let mut db = self.write();
            with_entity!(entity, T => store::restore::<T>(&mut db, id, by, now, self.write_options()))?
        };
        self.publish(&[change]);
        Ok(())
    }

    /// Moves the clock forward and runs the purge.
    pub fn advance_clock(&self, secs: i64) -> Ts {
        let now = self.clock.advance(secs);
        self.maybe_purge();
        now
    }

    /// Issues an access token for the interactive user without the OAuth dance.
    pub fn issue_access_token(&self) -> String {
        let now = self.clock.now();
        let exp = now.plus(self.config.auth.access_token_ttl_secs);
        self.creds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .new_access(
                &self.config.tenant.context_identifier,
                Principal::User(self.config.auth.user_associate_id),
                exp,
            )
    }

    /// Issues a system-user ticket without the signed-token exchange.
    pub fn issue_ticket(&self) -> String {
        let now = self.clock.now();
        let exp = now.plus(self.config.auth.ticket_ttl_secs);
        self.creds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .new_ticket(self.config.auth.system_user_associate_id, exp)
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Creates `count` rows through the same code path as `POST /api/v1/{Entity}` (including
    /// webhook publishing) and reports the rate.
    pub fn measure_create_rate(&self, entity: EntityType, count: u32) -> CreateRate {
        let by = self.config.auth.user_associate_id;
        let start = std::time::Instant::now();
        for i in 0..count {
            let mut doc = serde_json::Map::new();
            let name = format!("Bench {i}");
            for key in ["Name", "Heading", "Title", "Lastname", "Header"] {
                doc.insert(key.into(), serde_json::Value::String(name.clone()));
            }
            let now = self.clock.now();
            let result = {
                let mut db = self.write();
                with_entity!(entity, T => store::create::<T>(&mut db, &doc, by, now, self.write_options()))
            };
            if let Ok((_, change)) = result {
                self.publish(&[change]);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        CreateRate {
            entity: entity.table().to_string(),
            count,
            seconds: secs,
            per_second: if secs > 0.0 {
                f64::from(count) / secs
            } else {
                f64::INFINITY
            },
        }
    }

    /// Starts the delivery task of a new webhook registration.
    pub fn spawn_queue(
        self: &Arc<Self>,
        id: i32,
        rx: tokio::sync::mpsc::UnboundedReceiver<webhook::Delivery>,
    ) {
        let host = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = webhook::run_queue(host, id, rx) => {}
            }
        });
    }
}

/// What `POST /__admin/bench/create` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CreateRate {
    /// Entity.
    pub entity: String,
    /// Rows created.
    pub count: u32,
    /// Wall time.
    pub seconds: f64,
    /// Rows per second.
    pub per_second: f64,
}

impl DeliveryHost for Shared {
    fn webhooks(&self) -> &Mutex<Webhooks> {
        &self.webhooks
    }
    fn http(&self) -> &reqwest::Client {
        &self.http
    }
    fn webhook_config(&self) -> &crate::config::WebhookConfig {
        &self.config.webhooks
    }
    fn webhook_fault(&self) -> (Option<Duration>, Option<String>) {
        let action = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide(&[RouteClass::Webhook]);
        let Some(a) = action else { return (None, None) };
        self.stats.fault(a.drop_connection);
        let failure = if a.drop_connection {
            Some("injected fault: connection dropped".to_string())
        } else {
            a.status.map(|s| format!("injected fault: HTTP {s}"))
        };
        (a.latency_ms.map(Duration::from_millis), failure)
    }
    fn record_attempt(&self, ok: bool) {
        self.stats.attempt(ok);
    }
    fn record_dropped(&self) {
        self.stats.dropped();
    }
    fn now(&self) -> Ts {
        self.clock.now()
    }
}

/// The route classes a request belongs to (empty for `/__admin`).
pub fn classify(method: &Method, path: &str) -> Vec<RouteClass> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(first) = segs.first() else {
        return vec![RouteClass::All];
    };
    if first.eq_ignore_ascii_case("__admin") {
        return Vec::new();
    }
    if first.eq_ignore_ascii_case("login") {
        return vec![RouteClass::All, RouteClass::Auth];
    }
    if first.eq_ignore_ascii_case("api")
        && segs.get(1).is_some_and(|s| s.eq_ignore_ascii_case("state"))
    {
        return vec![RouteClass::All, RouteClass::State];
    }
    let api = segs.iter().position(|s| s.eq_ignore_ascii_case("api"));
    match api {
        Some(i @ 1..=2) => {
            let rest: Vec<&str> = segs[i + 1..].iter().skip(1).copied().collect();
            let odata = match rest.as_slice() {
                [first, ..] if first.eq_ignore_ascii_case("archive") => true,
                [_] => method == Method::GET,
                _ => false,
            };
            let kind = if odata {
                RouteClass::Odata
            } else {
                RouteClass::Entity
            };
            vec![RouteClass::All, RouteClass::Data, kind]
        }
        _ => vec![RouteClass::All],
    }
}

/// The error the outer service returns to make hyper close a connection unanswered.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

async fn outer(
    shared: Arc<Shared>,
    router: Router,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let classes = classify(req.method(), req.uri().path());
    if !classes.is_empty() {
        let target = crate::faults::request_target(req.uri().path(), req.uri().query());
        let action = shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide_request(&classes, Some(&target));
        if let Some(a) = action {
            shared.stats.fault(a.drop_connection);
            if let Some(ms) = a.latency_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if a.drop_connection {
                return Err(DropConnection);
            }
            if let Some(body) = a.body {
                let status = a.status.unwrap_or(200);
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                shared.stats.request(status, &classes);
                let mut resp = Response::new(Body::from(body));
                *resp.status_mut() = code;
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                return Ok(resp);
            }
            if let Some(status) = a.status {
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut err = SoError::new(
                    code,
                    "InjectedFault",
                    format!("Injected fault: HTTP {status}"),
                );
                if let Some(ra) = a.retry_after {
                    err = err.with_header(header::RETRY_AFTER, &ra.to_string());
                }
                shared.stats.request(status, &classes);
                return Ok(axum::response::IntoResponse::into_response(err));
            }
        }
    }
    let resp = match router.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if !classes.is_empty() {
        shared.stats.request(resp.status().as_u16(), &classes);
    }
    Ok(resp)
}

/// Builds the router: login service, State API, admin API and the data fallback.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(login::routes())
        .merge(admin::routes())
        .fallback(data::handle)
        .with_state(shared)
}

/// Serves connections until `shared.cancel` fires.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let router = router(shared.clone());
    loop {
        let (stream, _) = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let router = router.clone();
        let cancel = shared.cancel.clone();
        shared.tasks.clone().spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| outer(shared.clone(), router.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

/// Installs ring as the process-wide rustls provider if none is installed yet, for test
/// clients built with plain `reqwest::Client::new()` next to the emulator. The emulator is a
/// test tool; the SDK itself never installs a provider (see `superoffice::http`).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS for HTTPS webhook targets: rustls with ring and the platform verifier, passed to the
/// client explicitly (no process-wide provider is installed, so the SDK's tests see the same
/// process state a user's application does).
fn tls_config() -> crate::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = |e: rustls::Error| crate::Error::Config(format!("TLS client config: {e}"));
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(tls)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .dangerous() // rustls' name for "custom verifier"; this one is the platform's
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_routes() {
        let get = Method::GET;
        assert!(classify(&get, "/__admin/stats").is_empty());
        assert_eq!(
            classify(&get, "/login/common/oauth/tokens"),
            [RouteClass::All, RouteClass::Auth]
        );
        assert_eq!(
            classify(&Method::POST, "/Login/api/PartnerSystemUser/Authenticate"),
            [RouteClass::All, RouteClass::Auth]
        );
        assert_eq!(
            classify(&get, "/api/state/Cust1"),
            [RouteClass::All, RouteClass::State]
        );
        assert_eq!(
            classify(&get, "/app1/Cust1/api/v1/Contact"),
            [RouteClass::All, RouteClass::Data, RouteClass::Odata]
        );
        assert_eq!(
            classify(&get, "/app1/Cust1/api/v1/Archive/SimpleContact"),
            [RouteClass::All, RouteClass::Data, RouteClass::Odata]
        );
        assert_eq!(
            classify(&Method::POST, "/app1/Cust1/api/v1/Contact"),
            [RouteClass::All, RouteClass::Data, RouteClass::Entity]
        );
        assert_eq!(
            classify(&get, "/app1/Cust1/api/v1/Contact/5"),
            [RouteClass::All, RouteClass::Data, RouteClass::Entity]
        );
        assert_eq!(
            classify(&get, "/Cust1/api/v1/Contact/5"),
            [RouteClass::All, RouteClass::Data, RouteClass::Entity]
        );
    }
}
