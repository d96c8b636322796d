//! Webhooks: registrations (`/api/v1/Webhook`), event payloads, signatures and delivery with
//! retries, as FACTS §4 describes.
//!
//! Every registration gets its own delivery task fed by an unbounded channel, so request
//! handlers never wait for receivers and events reach one receiver in commit order. An event
//! is tried up to three times (again after 1 s and 4 s, times
//! [`crate::config::WebhookConfig::retry_scale`]); only a 200 counts. After the last failure
//! the event is dropped. Nine consecutive failed attempts set the state to `TooManyErrors`,
//! which stops delivery until a client sets `State` back to `Active`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::clock::{Ts, webhook_timestamp};
use crate::config::WebhookConfig;
use crate::error::SoError;
use crate::model::{Cx, EntityType, json_parts as j};
use crate::store::{Change, ChangeKind};

/// `User-Agent` of deliveries.
pub const USER_AGENT: &str = "NetServer-Webhook/10.5.0.0";

/// Webhook state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    /// 0.
    Unknown,
    /// 1: deliveries happen.
    Active,
    /// 2: stopped by a client.
    Stopped,
    /// 3: stopped after too many consecutive errors.
    TooManyErrors,
}

impl HookState {
    fn name(self) -> &'static str {
        match self {
            HookState::Unknown => "Unknown",
            HookState::Active => "Active",
            HookState::Stopped => "Stopped",
            HookState::TooManyErrors => "TooManyErrors",
        }
    }

    fn parse(v: &Value) -> Option<HookState> {
        match v {
            Value::String(s) => [
                HookState::Unknown,
                HookState::Active,
                HookState::Stopped,
                HookState::TooManyErrors,
            ]
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s)),
            Value::Number(n) => match n.as_i64()? {
                0 => Some(HookState::Unknown),
                1 => Some(HookState::Active),
                2 => Some(HookState::Stopped),
                3 => Some(HookState::TooManyErrors),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A webhook registration.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `WebhookId`.
    pub id: i32,
    /// `Name`.
    pub name: String,
    /// `Events`.
    pub events: Vec<String>,
    /// `TargetUrl`.
    pub target_url: String,
    /// `Secret` (empty: no signature header).
    pub secret: String,
    /// `State`.
    pub state: HookState,
    /// `Type`.
    pub kind: String,
    /// `Headers` added to each POST.
    pub headers: Map<String, Value>,
    /// `Properties` added to each payload.
    pub properties: Map<String, Value>,
    /// `Description`.
    pub description: String,
    /// `ErrorEmails`.
    pub error_emails: Vec<String>,
    /// `NotifyVia`.
    pub notify_via: String,
    /// `NotifyWhen`.
    pub notify_when: String,
    /// `Registered`.
    pub registered: Ts,
    /// `RegisteredAssociate`.
    pub registered_by: i32,
    /// `Updated`.
    pub updated: Ts,
    /// `UpdatedAssociate`.
    pub updated_by: i32,
    /// `TotalCalls`.
    pub total_calls: u32,
    /// `TotalErrors`.
    pub total_errors: u32,
    /// `ConsecutiveErrors`.
    pub consecutive_errors: u32,
    /// `LastError`.
    pub last_error: String,
}

impl Hook {
    /// A new, empty registration (the `/default` template).
    pub fn blank() -> Hook {
        Hook {
            id: 0,
            name: String::new(),
            events: Vec::new(),
            target_url: String::new(),
            secret: String::new(),
            state: HookState::Active,
            kind: "webhook".into(),
            headers: Map::new(),
            properties: Map::new(),
            description: String::new(),
            error_emails: Vec::new(),
            notify_via: "None".into(),
            notify_when: "None".into(),
            registered: Ts::MIN,
            registered_by: 0,
            updated: Ts::MIN,
            updated_by: 0,
            total_calls: 0,
            total_errors: 0,
            consecutive_errors: 0,
            last_error: String::new(),
        }
    }

    /// Whether this registration wants an event.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| {
            e == "*"
                || e.eq_ignore_ascii_case(event)
                || e.strip_suffix(".*").is_some_and(|p| {
                    event
                        .split_once('.')
                        .is_some_and(|(entity, _)| entity.eq_ignore_ascii_case(p))
                })
        })
    }

    /// The `Webhook` JSON.
    pub fn to_json(&self, cx: &Cx<'_>) -> Value {
        json!({
            "WebhookId": self.id,
            "Name": self.name,
            "Events": self.events,
            "TargetUrl": self.target_url,
            "Secret": self.secret,
            "State": self.state.name(),
            "Type": self.kind,
            "Headers": self.headers,
            "Properties": self.properties,
            "Registered": cx.ts(self.registered),
            "RegisteredAssociate": j::associate(self.registered_by),
            "Updated": cx.ts(self.updated),
            "UpdatedAssociate": j::associate(self.updated_by),
            "ErrorsEmail": "",
            "ErrorEmails": self.error_emails,
            "ErrorAssociates": [],
            "Description": self.description,
            "NotifyVia": self.notify_via,
            "NotifyWhen": self.notify_when,
            "TotalCalls": self.total_calls,
            "TotalErrors": self.total_errors,
            "ConsecutiveErrors": self.consecutive_errors,
            "LastError": self.last_error,
        })
    }

    /// Applies a client's `Webhook` document (missing properties keep their value).
    pub fn apply(&mut self, doc: &Map<String, Value>) -> Result<(), SoError> {
        let get = |name: &str| {
            doc.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let text = |name: &str| -> Result<Option<String>, SoError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(String::new())),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(SoError::bad_request(format!(
                    "Webhook.{name} must be a string"
                ))),
            }
        };
        let strings = |name: &str| -> Result<Option<Vec<String>>, SoError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(Vec::new())),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| {
                        SoError::bad_request(format!("Webhook.{name} must be an array of strings"))
                    }),
                Some(_) => Err(SoError::bad_request(format!(
                    "Webhook.{name} must be an array of strings"
                ))),
            }
        };
        let object = |name: &str| -> Result<Option<Map<String, Value>>, SoError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(Map::new())),
                Some(Value::Object(o)) => Ok(Some(o.clone())),
                Some(_) => Err(SoError::bad_request(format!(
                    "Webhook.{name} must be an object"
                ))),
            }
        };
        if let Some(v) = text("Name")? {
            self.name = v;
        }
        if let Some(v) = strings("Events")? {
            self.events = v;
        }
        if let Some(v) = text("TargetUrl")? {
            self.target_url = v;
        }
        if let Some(v) = text("Secret")? {
            self.secret = v;
        }
        if let Some(v) = get("State") {
            let state = HookState::parse(v).ok_or_else(|| {
                SoError::bad_request(format!("Webhook.State {v} is not a valid state"))
            })?;
            if state == HookState::Active && self.state != HookState::Active {
                self.consecutive_errors = 0;
            }
            self.state = state;
        }
        if let Some(v) = text("Type")? {
            self.kind = if v.is_empty() { "webhook".into() } else { v };
        }
        if let Some(v) = object("Headers")? {
            if v.values().any(|x| !x.is_string()) {
                return Err(SoError::bad_request(
                    "Webhook.Headers values must be strings",
                ));
            }
            self.headers = v;
        }
        if let Some(v) = object("Properties")? {
            self.properties = v;
        }
        if let Some(v) = text("Description")? {
            self.description = v;
        }
        if let Some(v) = strings("ErrorEmails")? {
            self.error_emails = v;
        }
        if let Some(v) = text("NotifyVia")? {
            self.notify_via = if v.is_empty() { "None".into() } else { v };
        }
        if let Some(v) = text("NotifyWhen")? {
            self.notify_when = if v.is_empty() { "None".into() } else { v };
        }
        Ok(())
    }
}

/// Checks a target URL against the settings (scheme, loopback).
pub fn check_target(url: &str, cfg: &WebhookConfig) -> Result<(), SoError> {
    let u = url::Url::parse(url)
        .map_err(|e| SoError::bad_request(format!("TargetUrl '{url}' is not a URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        s => {
            return Err(SoError::bad_request(format!(
                "TargetUrl must use https (got {s})"
            )));
        }
    }
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback && !cfg.allow_non_loopback {
        return Err(SoError::bad_request(
            "TargetUrl must be a loopback address (webhooks.allow_non_loopback is off)",
        ));
    }
    Ok(())
}

/// `X-SuperOffice-Signature`: base64 of HMAC-SHA256(secret, body).
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A delivery waiting in a registration's queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Event name.
    pub event: String,
    /// `EventId`.
    pub event_id: String,
    /// The exact body bytes (the signature covers them).
    pub body: bytes::Bytes,
}

/// All registrations and their delivery queues.
#[derive(Debug)]
pub struct Webhooks {
    hooks: BTreeMap<i32, Hook>,
    queues: BTreeMap<i32, mpsc::UnboundedSender<Delivery>>,
    next_id: i32,
    rng: ChaCha8Rng,
}

/// The webhook event names a change produces.
pub fn event_names(c: &Change, documents_fire_activity: bool) -> Vec<String> {
    let Some(entity) = c.entity.event_entity() else {
        return Vec::new();
    };
    let suffix = match (c.entity, c.kind) {
        (_, ChangeKind::Created) => "created",
        (_, ChangeKind::Changed) => "changed",
        (_, ChangeKind::SoftDeleted) => "softdeleted",
        (EntityType::Ticket, ChangeKind::Deleted) => return Vec::new(),
        (_, ChangeKind::Deleted) => "deleted",
    };
    let mut out = vec![format!("{entity}.{suffix}")];
    out.extend(c.extra_events.iter().map(|e| format!("{entity}.{e}")));
    if c.entity == EntityType::Document && documents_fire_activity {
        out.push(format!("activity.{suffix}"));
    }
    out
}

impl Webhooks {
    /// An empty registry.
    pub fn new(seed: u64) -> Self {
        Webhooks {
            hooks: BTreeMap::new(),
            queues: BTreeMap::new(),
            next_id: 1,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x000B_400C),
        }
    }

    /// A registration.
    pub fn get(&self, id: i32) -> Option<&Hook> {
        self.hooks.get(&id)
    }

    /// A registration, mutably.
    pub fn get_mut(&mut self, id: i32) -> Option<&mut Hook> {
        self.hooks.get_mut(&id)
    }

    /// All registrations.
    pub fn all(&self) -> impl Iterator<Item = &Hook> {
        self.hooks.values()
    }

    /// Stores a new registration and returns its id and the receiving end of its queue.
    pub fn insert(&mut self, mut hook: Hook) -> (i32, mpsc::UnboundedReceiver<Delivery>) {
        let id = self.next_id;
        self.next_id += 1;
        hook.id = id;
        self.hooks.insert(id, hook);
        let (tx, rx) = mpsc::unbounded_channel();
        self.queues.insert(id, tx);
        (id, rx)
    }

    /// Replaces a registration.
    pub fn put(&mut self, hook: Hook) {
        self.hooks.insert(hook.id, hook);
    }

    /// Removes a registration (its delivery task ends when the queue closes).
    pub fn remove(&mut self, id: i32) -> Option<Hook> {
        self.queues.remove(&id);
        self.hooks.remove(&id)
    }

    /// A random v4 UUID string.
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Builds the payload of an event for a registration.
    pub fn payload(&mut self, hook: &Hook, event: &str, c: &EventData<'_>) -> Delivery {
        let event_id = self.uuid();
        let mut m = Map::new();
        m.insert("EventId".into(), json!(event_id));
        m.insert("Timestamp".into(), json!(c.timestamp));
        m.insert("Changes".into(), json!(c.columns));
        m.insert("Event".into(), json!(event));
        m.insert("PrimaryKey".into(), json!(c.pk));
        m.insert(
            "Entity".into(),
            json!(event.split('.').next().unwrap_or(event)),
        );
        m.insert("ContextIdentifier".into(), json!(c.context));
        m.insert("ChangedByAssociateId".into(), json!(c.by));
        m.insert("WebhookName".into(), json!(hook.name));
        if let Some(v) = c.values {
            m.insert("Values".into(), Value::Object(v.clone()));
        }
        if let Some(fv) = c.field_values {
            m.insert("FieldValues".into(), Value::Object(fv.clone()));
        }
        if !hook.properties.is_empty() {
            m.insert("Properties".into(), Value::Object(hook.properties.clone()));
        }
        let body = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        Delivery {
            event: event.to_string(),
            event_id,
            body: body.into(),
        }
    }

    /// Queues an event for every active registration that wants it. Returns how many
    /// deliveries were queued.
    pub fn publish(&mut self, event: &str, data: &EventData<'_>) -> usize {
        let targets: Vec<Hook> = self
            .hooks
            .values()
            .filter(|h| h.state == HookState::Active && h.wants(event))
            .cloned()
            .collect();
        let mut n = 0;
        for hook in targets {
            let d = self.payload(&hook, event, data);
            if let Some(q) = self.queues.get(&hook.id)
                && q.send(d).is_ok()
            {
                n += 1;
            }
        }
        n
    }
}

/// The parts of a payload that do not depend on the registration.
#[derive(Debug, Clone)]
pub struct EventData<'a> {
    /// `Timestamp`.
    pub timestamp: String,
    /// `Changes`.
    pub columns: &'a [String],
    /// `PrimaryKey`.
    pub pk: i32,
    /// `ContextIdentifier`.
    pub context: &'a str,
    /// `ChangedByAssociateId`.
    pub by: i32,
    /// `FieldValues`.
    pub field_values: Option<&'a Map<String, Value>>,
    /// `Values`.
    pub values: Option<&'a Map<String, Value>>,
}

impl<'a> EventData<'a> {
    /// The payload data of a committed change.
    pub fn of(c: &'a Change, context: &'a str, now: (Ts, u32)) -> Self {
        EventData {
            timestamp: webhook_timestamp(now.0, now.1),
            columns: &c.columns,
            pk: c.id,
            context,
            by: c.by,
            field_values: c.field_values.as_ref(),
            values: c.values.as_ref(),
        }
    }
}

/// Outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 200.
    Delivered,
    /// Anything else, with a description.
    Failed(String),
}

/// Posts a body to a target once.
pub async fn post(
    http: &reqwest::Client,
    hook: &Hook,
    d: &Delivery,
    retry: usize,
    test: bool,
    timeout: Duration,
) -> Attempt {
    let mut req = http
        .post(&hook.target_url)
        .timeout(timeout)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", USER_AGENT)
        .header("X-SuperOffice-Event", &d.event)
        .header("X-SuperOffice-EventId", &d.event_id)
        .header("X-SuperOffice-Retry", retry.to_string());
    if !hook.secret.is_empty() {
        req = req.header("X-SuperOffice-Signature", signature(&hook.secret, &d.body));
    }
    if test {
        req = req.header("X-Hook-Test", "true");
    }
    for (k, v) in &hook.headers {
        if let Some(v) = v.as_str() {
            req = req.header(k.as_str(), v);
        }
    }
    match req.body(d.body.clone()).send().await {
        Ok(r) if r.status().as_u16() == 200 => Attempt::Delivered,
        Ok(r) => Attempt::Failed(format!(
            "{} answered HTTP {}",
            hook.target_url,
            r.status().as_u16()
        )),
        Err(e) => Attempt::Failed(format!("{}: {e}", hook.target_url)),
    }
}

/// What the delivery loop needs from the emulator.
pub trait DeliveryHost: Send + Sync + 'static {
    /// The registry.
    fn webhooks(&self) -> &std::sync::Mutex<Webhooks>;
    /// The HTTP client.
    fn http(&self) -> &reqwest::Client;
    /// Settings.
    fn webhook_config(&self) -> &WebhookConfig;
    /// A fault to apply to an outgoing attempt, if one fires: (latency, fail with message).
    fn webhook_fault(&self) -> (Option<Duration>, Option<String>);
    /// Records the outcome of an attempt for the counters.
    fn record_attempt(&self, ok: bool);
    /// Records an event dropped after its last attempt.
    fn record_dropped(&self);
    /// The current time.
    fn now(&self) -> Ts;
}

/// Delivers a registration's queue until it closes.
pub async fn run_queue<H: DeliveryHost>(
    host: Arc<H>,
    id: i32,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
) {
    while let Some(d) = rx.recv().await {
        let cfg = host.webhook_config().clone();
        let delays = cfg.retry_delays_ms.clone();
        let mut delivered = false;
        for attempt in 0..=delays.len() {
            if attempt > 0 {
                let ms = (delays[attempt - 1] as f64 * cfg.retry_scale).round() as u64;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let Some(hook) = host
                .webhooks()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .filter(|h| h.state == HookState::Active)
                .cloned()
            else {
                break;
            };
            let (latency, forced) = host.webhook_fault();
            if let Some(l) = latency {
                tokio::time::sleep(l).await;
            }
            let outcome = match forced {
                Some(msg) => Attempt::Failed(msg),
                None => {
                    post(
                        host.http(),
                        &hook,
                        &d,
                        attempt,
                        false,
                        Duration::from_millis(cfg.timeout_ms),
                    )
                    .await
                }
            };
            host.record_attempt(outcome == Attempt::Delivered);
            let mut reg = host.webhooks().lock().unwrap_or_else(|e| e.into_inner());
            let Some(h) = reg.get_mut(id) else { break };
            h.total_calls += 1;
            match outcome {
                Attempt::Delivered => {
                    h.consecutive_errors = 0;
                    delivered = true;
                    break;
                }
                Attempt::Failed(msg) => {
                    h.total_errors += 1;
                    h.consecutive_errors += 1;
                    h.last_error = msg;
                    if h.consecutive_errors >= cfg.max_consecutive_errors {
                        h.state = HookState::TooManyErrors;
                        h.updated = host.now();
                        break;
                    }
                }
            }
        }
        if !delivered {
            host.record_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        let raw = STANDARD.decode(sig).unwrap();
        assert_eq!(
            hex::encode(raw),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn event_names_follow_facts() {
        let change = |entity, kind| Change {
            entity,
            id: 1,
            kind,
            by: 3,
            columns: Vec::new(),
            field_values: None,
            values: None,
            extra_events: Vec::new(),
        };
        assert_eq!(
            event_names(&change(EntityType::Appointment, ChangeKind::Created), true),
            ["activity.created"]
        );
        assert_eq!(
            event_names(&change(EntityType::Contact, ChangeKind::SoftDeleted), true),
            ["contact.softdeleted"]
        );
        assert!(event_names(&change(EntityType::Ticket, ChangeKind::Deleted), true).is_empty());
        assert!(event_names(&change(EntityType::Selection, ChangeKind::Changed), true).is_empty());
        assert_eq!(
            event_names(&change(EntityType::Document, ChangeKind::Changed), true),
            ["document.changed", "activity.changed"]
        );
        let mut sold = change(EntityType::Sale, ChangeKind::Changed);
        sold.extra_events.push("sold");
        assert_eq!(event_names(&sold, false), ["sale.changed", "sale.sold"]);
    }

    #[test]
    fn subscriptions_match_names_and_wildcards() {
        let mut h = Hook::blank();
        h.events = vec!["contact.created".into(), "sale.*".into()];
        assert!(h.wants("contact.created"));
        assert!(!h.wants("contact.changed"));
        assert!(h.wants("sale.sold"));
        h.events = vec!["*".into()];
        assert!(h.wants("person.deleted"));
    }

    #[test]
    fn targets_must_be_loopback_and_http_must_be_allowed() {
        let cfg = WebhookConfig::default();
        assert!(check_target("http://127.0.0.1:9/hook", &cfg).is_ok());
        assert!(check_target("http://localhost:9/hook", &cfg).is_ok());
        assert!(check_target("https://example.com/hook", &cfg).is_err());
        let strict = WebhookConfig {
            allow_http: false,
            ..WebhookConfig::default()
        };
        assert!(check_target("http://127.0.0.1:9/hook", &strict).is_err());
        assert!(check_target("not a url", &cfg).is_err());
    }

    #[test]
    fn apply_reads_state_and_resets_errors() {
        let mut h = Hook::blank();
        h.state = HookState::TooManyErrors;
        h.consecutive_errors = 9;
        let doc =
            json!({"State": "Active", "Events": ["contact.changed"], "Headers": {"X-A": "1"}});
        h.apply(doc.as_object().unwrap()).unwrap();
        assert_eq!(h.state, HookState::Active);
        assert_eq!(h.consecutive_errors, 0);
        assert!(
            h.apply(json!({"State": "Sleepy"}).as_object().unwrap())
                .is_err()
        );
    }
}
