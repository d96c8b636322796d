//! The tenant's data API: `/{host_label}/{ctx}/api/v1/…`, routed by hand so entity and
//! provider names are case-insensitive like the real server's.
//!
//! Before a handler runs, the request must name the tenant's current host label (421
//! otherwise, also for URLs without a host label), the tenant must be in a running state (503
//! with `Retry-After: 60` otherwise) and carry a valid credential (401). [`ROUTES`] lists every
//! operation served here, in the spec's path syntax; the conformance test checks each one.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Shared, json_response, raw_json};
use crate::auth::{Check, Principal, secret_eq};
use crate::clock::Ts;
use crate::error::SoError;
use crate::foreign::{self, DeviceRef};
use crate::json::{apply_json_patch, apply_merge_patch};
use crate::model::{Entity, EntityType, apply_doc, lists, render};
use crate::odata::{self, Query, RunCx};
use crate::store::{self, Change, ChangeKind, Stored};
use crate::webhook::{self, Attempt, Hook, HookState};
use crate::with_entity;

/// Every data operation the emulator serves: (method, spec path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/{Entity}"),
    ("POST", "/api/v1/{Entity}"),
    ("GET", "/api/v1/{Entity}/default"),
    ("GET", "/api/v1/{Entity}/{id}"),
    ("PUT", "/api/v1/{Entity}/{id}"),
    ("PATCH", "/api/v1/{Entity}/{id}"),
    ("DELETE", "/api/v1/{Entity}/{id}"),
    ("GET", "/api/v1/{Entity}/{id}/ForeignKey"),
    ("GET", "/api/v1/Archive"),
    ("GET", "/api/v1/Archive/{archiveProviderName}"),
    ("POST", "/api/v1/Archive/{archiveProviderName}"),
    ("GET", "/api/v1/Archive/{archiveProviderName}/$metadata"),
    ("GET", "/api/v1/Webhook"),
    ("POST", "/api/v1/Webhook"),
    ("GET", "/api/v1/Webhook/default"),
    ("POST", "/api/v1/Webhook/Test"),
    ("GET", "/api/v1/Webhook/{id}"),
    ("PUT", "/api/v1/Webhook/{id}"),
    ("PATCH", "/api/v1/Webhook/{id}"),
    ("DELETE", "/api/v1/Webhook/{id}"),
    ("GET", "/api/v1/Webhook/{webhookId}/LastError"),
    ("POST", "/api/v1/Webhook/{eventName}/{primaryKey}"),
    ("GET", "/api/v1/ForeignApp"),
    ("POST", "/api/v1/ForeignApp"),
    ("GET", "/api/v1/ForeignApp/default"),
    ("GET", "/api/v1/ForeignApp/{id}"),
    ("PUT", "/api/v1/ForeignApp/{id}"),
    ("PATCH", "/api/v1/ForeignApp/{id}"),
    ("DELETE", "/api/v1/ForeignApp/{id}"),
    ("GET", "/api/v1/ForeignApp/{applicationName}"),
    ("POST", "/api/v1/ForeignApp/{appName}"),
    ("PUT", "/api/v1/ForeignApp/{appName}"),
    ("GET", "/api/v1/ForeignApp/{applicationName}/Devices"),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}",
    ),
    (
        "POST",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}",
    ),
    (
        "PUT",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}",
    ),
    (
        "DELETE",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}",
    ),
    (
        "POST",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key",
    ),
    (
        "PUT",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/Key/{keyName}/{tableName}",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/Key/{keyName}/{tableName}/{recordId}",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/Key/{keyName}/{tableName}/{recordId}/Value",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key/{keyName}/{tableName}",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key/{keyName}/{tableName}/{recordId}",
    ),
    (
        "GET",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key/{keyName}/{tableName}/{recordId}/Value",
    ),
    (
        "DELETE",
        "/api/v1/ForeignApp/{applicationName}/{deviceName}/{deviceIdentifier}/Key/{keyName}/{tableName}/{recordId}",
    ),
    ("GET", "/api/v1/User/currentPrincipal"),
];

/// One parsed data request.
#[derive(Debug)]
struct Req {
    method: Method,
    rest: Vec<String>,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    principal: Principal,
    tenant_url: String,
    uri: String,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn seg(&self, i: usize, name: &str) -> bool {
        self.rest
            .get(i)
            .is_some_and(|s| s.eq_ignore_ascii_case(name))
    }

    fn by(&self) -> i32 {
        self.principal.associate()
    }

    fn json_body(&self) -> Result<Value, SoError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(SoError::bad_request("A request body is required"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| SoError::bad_request(format!("Body is not valid JSON: {e}")))
    }

    fn object_body(&self) -> Result<Map<String, Value>, SoError> {
        match self.json_body()? {
            Value::Object(m) => Ok(m),
            _ => Err(SoError::bad_request("Body must be a JSON object")),
        }
    }

    fn header_time(&self, name: header::HeaderName) -> Option<Ts> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(Ts::parse_http_date)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(h) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fallback handler: everything under `/{host}/{ctx}/api`.
pub async fn handle(State(s): State<Arc<Shared>>, req: Request<Body>) -> Response {
    match route(s, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(s: Arc<Shared>, req: Request<Body>) -> Result<Response, SoError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|x| !x.is_empty())
        .map(percent_decode)
        .collect();
    let api = segs.iter().position(|x| x.eq_ignore_ascii_case("api"));
    let (label, ctx) = match api {
        Some(2) => (Some(segs[0].as_str()), segs[1].as_str()),
        Some(1) => (None, segs[0].as_str()),
        _ => return Err(SoError::not_found(format!("No route for {path}"))),
    };
    let api = api.unwrap_or_default();
    let cfg = &s.config;
    if !ctx.eq_ignore_ascii_case(&cfg.tenant.context_identifier) {
        return Err(SoError::not_found(format!("Unknown tenant '{ctx}'")));
    }
    let (current, state) = {
        let t = s.tenant();
        (t.host_label(), t.state)
    };
    if label.is_none_or(|l| !l.eq_ignore_ascii_case(&current)) {
        return Err(SoError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "MisdirectedRequest",
            "Wrong subdomain used to access tenant; look up the current endpoint with the State API",
        ));
    }
    if !state.is_running() {
        return Err(SoError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TenantNotRunning",
            format!(
                "Tenant {} is not running (state {state:?})",
                cfg.tenant.context_identifier
            ),
        )
        .with_header(header::RETRY_AFTER, "60"));
    }
    let principal = authenticate(&s, &parts.headers)?;
    s.maybe_purge();
    let tenant_url = format!("{}/{current}/{}", s.base_url, cfg.tenant.context_identifier);
    let rest: Vec<String> = segs[api + 1..].to_vec();
    if rest.is_empty() {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"v1": format!("{tenant_url}/api/v1"), "NetServerVersion": cfg.tenant.version}),
        ));
    }
    if !rest[0].eq_ignore_ascii_case("v1") {
        return Err(SoError::not_found(format!("No route for {path}")));
    }
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .map_err(|e| SoError::bad_request(format!("Cannot read body: {e}")))?;
    let params: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        rest: rest[1..].to_vec(),
        params,
        headers: parts.headers,
        body,
        principal,
        tenant_url,
        uri: parts.uri.to_string(),
    };
    dispatch(s, req).await
}

fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<Principal, SoError> {
    let cfg = &s.config.auth;
    if !cfg.require_auth {
        return Ok(Principal::User(cfg.user_associate_id));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SoError::unauthorized("Authorization header required"))?;
    let (scheme, cred) = auth.split_once(' ').unwrap_or((auth, ""));
    let now = s.clock.now();
    let check = if scheme.eq_ignore_ascii_case("Bearer") {
        s.creds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check_access(cred.trim(), now)
    } else if scheme.eq_ignore_ascii_case("SOTicket") {
        let app = headers
            .get("SO-AppToken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !secret_eq(app, &cfg.client_secret) {
            return Err(SoError::unauthorized(
                "SOTicket requires a valid SO-AppToken header",
            ));
        }
        s.creds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .use_ticket(cred.trim(), now, cfg.ticket_ttl_secs)
    } else {
        return Err(SoError::unauthorized(format!(
            "Unsupported authorization scheme '{scheme}'"
        )));
    };
    match check {
        Check::Ok(p) => Ok(p),
        Check::Expired => Err(SoError::unauthorized("The credential has expired")),
        Check::Unknown => Err(SoError::unauthorized("Unknown credential")),
    }
}

async fn dispatch(s: Arc<Shared>, req: Req) -> Result<Response, SoError> {
    let Some(first) = req.rest.first().cloned() else {
        return Err(SoError::not_found("No route"));
    };
    if first.eq_ignore_ascii_case("Archive") {
        return archive(s, req).await;
    }
    if first.eq_ignore_ascii_case("Webhook") {
        return webhooks(s, req).await;
    }
    if first.eq_ignore_ascii_case("ForeignApp") {
        return foreign_app(s, req).await;
    }
    if first.eq_ignore_ascii_case("User") && req.seg(1, "currentPrincipal") && req.rest.len() == 2 {
        return Ok(current_principal(&s, &req));
    }
    let Some(ty) = EntityType::parse(&first) else {
        return Err(SoError::not_found(format!(
            "No route for /api/v1/{}",
            req.rest.join("/")
        )));
    };
    with_entity!(ty, T => entity_route::<T>(s, req).await)
}

fn method_not_allowed(req: &Req) -> SoError {
    SoError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} is not supported on /api/v1/{}",
            req.method,
            req.rest.join("/")
        ),
    )
}

fn parse_id(s: &str) -> Option<i32> {
    s.parse::<i32>().ok()
}

async fn entity_route<T: Stored>(s: Arc<Shared>, req: Req) -> Result<Response, SoError> {
    let m = req.method.clone();
    match req.rest.len() {
        1 if m == Method::GET => {
            let p = odata::provider(T::TYPE.list_provider())
                .ok_or_else(|| SoError::not_found("provider"))?;
            run_archive(s, &req, p, req.params.clone()).await
        }
        1 if m == Method::POST => create::<T>(&s, &req),
        2 if req.seg(1, "default") && m == Method::GET => Ok(default_entity::<T>(&s, &req)),
        2 => {
            let id = parse_id(&req.rest[1])
                .ok_or_else(|| SoError::not_found(format!("No route for {}", req.uri)))?;
            match m {
                Method::GET => get_one::<T>(&s, &req, id),
                Method::PUT => put::<T>(&s, &req, id),
                Method::PATCH => patch::<T>(&s, &req, id),
                Method::DELETE => delete::<T>(&s, &req, id),
                _ => Err(method_not_allowed(&req)),
            }
        }
        // `GET /Contact|Person|Project/{id}/Image`: the record's picture (a 1×1 PNG).
        3 if req.seg(2, "Image")
            && m == Method::GET
            && matches!(
                T::TYPE,
                EntityType::Contact | EntityType::Person | EntityType::Project
            ) =>
        {
            let id = parse_id(&req.rest[1]).ok_or_else(|| SoError::not_found("Bad id"))?;
            T::table(&s.read())
                .live(id)
                .ok_or_else(|| not_found::<T>(id))?;
            image_response(&req)
        }
        // The spec has no `/Selection/{id}/ForeignKey`.
        3 if req.seg(2, "ForeignKey") && m == Method::GET && T::TYPE != EntityType::Selection => {
            let id = parse_id(&req.rest[1]).ok_or_else(|| SoError::not_found("Bad id"))?;
            let db = s.read();
            T::table(&db).live(id).ok_or_else(|| not_found::<T>(id))?;
            Ok(json_response(
                StatusCode::OK,
                &Value::Object(db.foreign.keys_on_record(T::TYPE.table(), id)),
            ))
        }
        _ => Err(SoError::not_found(format!("No route for {}", req.uri))),
    }
}

/// A 1×1 transparent PNG: the emulator's picture of every record.
pub const IMAGE_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00,
    0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

/// The image answer, honouring `Accept` like the real server's content negotiation: an
/// `Accept` that admits no image type (e.g. only `application/json`) is `406 Not Acceptable`.
fn image_response(req: &Req) -> Result<Response, SoError> {
    let accept = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let admits_png = accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t == "image/png" || t == "image/*" || t == "*/*"
    });
    if !admits_png {
        return Err(SoError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            format!("the image is image/png; Accept was {accept:?}"),
        ));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from(IMAGE_PNG))
        .map_err(|e| SoError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()))
}

fn not_found<T: Entity>(id: i32) -> SoError {
    SoError::not_found(format!("{} id {id} not found", T::TYPE))
}

/// Whether the response schema of this operation is the `…WithLinks` carrier.
fn with_links<T: Entity>(method: &Method) -> bool {
    !(T::TYPE == EntityType::Ticket && (method == Method::POST || method == Method::PUT))
}

fn finish(mut doc: Map<String, Value>, req: &Req, links: Option<String>) -> Value {
    if let Some(select) = req.param("$select").filter(|s| !s.trim().is_empty()) {
        let wanted: Vec<String> = select
            .split(',')
            .map(|x| x.trim().to_ascii_lowercase())
            .collect();
        for (k, v) in doc.iter_mut() {
            if !wanted.contains(&k.to_ascii_lowercase()) {
                *v = Value::Null;
            }
        }
    }
    if let Some(self_url) = links {
        let archive = self_url
            .rsplit_once('/')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        doc.insert(
            "_Links".into(),
            json!({"Self": self_url, "Archive": archive}),
        );
    }
    Value::Object(doc)
}

fn entity_response<T: Stored>(s: &Shared, req: &Req, id: i32) -> Result<Response, SoError> {
    let db = s.read();
    let row = T::table(&db).get(id).ok_or_else(|| not_found::<T>(id))?;
    let doc = render(row, &db.cx());
    let links = with_links::<T>(&req.method)
        .then(|| format!("{}/api/v1/{}/{id}", req.tenant_url, T::TYPE.name()));
    Ok(json_response(StatusCode::OK, &finish(doc, req, links)))
}

fn get_one<T: Stored>(s: &Shared, req: &Req, id: i32) -> Result<Response, SoError> {
    let db = s.read();
    let row = T::table(&db).live(id).ok_or_else(|| not_found::<T>(id))?;
    if let Some(since) = req.header_time(header::IF_MODIFIED_SINCE)
        && row.audit().last_change() <= since
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let mut doc = render(row, &db.cx());
    if req
        .param("fk")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let keys = db.foreign.keys_on_record(T::TYPE.table(), id);
        if let Some(Value::Object(extra)) = doc.get_mut("ExtraFields") {
            extra.extend(keys);
        }
    }
    let links = Some(format!("{}/api/v1/{}/{id}", req.tenant_url, T::TYPE.name()));
    Ok(json_response(StatusCode::OK, &finish(doc, req, links)))
}

fn check_unmodified<T: Entity>(row: &T, req: &Req) -> Result<(), SoError> {
    if let Some(since) = req.header_time(header::IF_UNMODIFIED_SINCE)
        && row.audit().last_change() > since
    {
        return Err(SoError::precondition_failed(format!(
            "{} id {} has changed since {}",
            T::TYPE,
            row.id(),
            since.http_date()
        )));
    }
    Ok(())
}

fn commit(s: &Shared, changes: &[Change]) {
    for c in changes {
        if c.kind == ChangeKind::SoftDeleted {
            s.note_soft_delete(s.clock.now());
        }
    }
    s.publish(changes);
}

fn create<T: Stored>(s: &Shared, req: &Req) -> Result<Response, SoError> {
    let doc = if req.body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        req.object_body()?
    };
    let now = s.clock.now();
    let pk = T::TYPE.pk_property();
    let existing = doc
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(pk))
        .and_then(|(_, v)| v.as_i64())
        .filter(|id| *id > 0)
        .map(|id| id as i32);
    let (id, change) = {
        let mut db = s.write();
        match existing.and_then(|id| T::table(&db).live(id).cloned()) {
            Some(mut row) => {
                let id = row.id();
                apply_doc(&mut row, &doc)?;
                (
                    id,
                    store::save::<T>(&mut db, row, req.by(), now, s.write_options())?,
                )
            }
            None => {
                let (id, c) = store::create::<T>(&mut db, &doc, req.by(), now, s.write_options())?;
                (id, Some(c))
            }
        }
    };
    commit(s, change.as_slice());
    entity_response::<T>(s, req, id)
}

fn put<T: Stored>(s: &Shared, req: &Req, id: i32) -> Result<Response, SoError> {
    let doc = req.object_body()?;
    let now = s.clock.now();
    let change = {
        let mut db = s.write();
        let row = T::table(&db).live(id).ok_or_else(|| not_found::<T>(id))?;
        check_unmodified(row, req)?;
        let mut new = T::blank();
        new.set_id(id);
        *new.audit_mut() = *row.audit();
        apply_doc(&mut new, &doc)?;
        store::save::<T>(&mut db, new, req.by(), now, s.write_options())?
    };
    commit(s, change.as_slice());
    entity_response::<T>(s, req, id)
}

fn patch<T: Stored>(s: &Shared, req: &Req, id: i32) -> Result<Response, SoError> {
    let body = req.json_body()?;
    let now = s.clock.now();
    let change = {
        let mut db = s.write();
        let row = T::table(&db).live(id).ok_or_else(|| not_found::<T>(id))?;
        check_unmodified(row, req)?;
        let mut doc = Value::Object(render(row, &db.cx()));
        match &body {
            Value::Array(_) => apply_json_patch(&mut doc, &body)?,
            Value::Object(_) => apply_merge_patch(&mut doc, &body),
            _ => {
                return Err(SoError::bad_request(
                    "PATCH body must be a JSON Patch array or a merge-patch object",
                ));
            }
        }
        let mut new = row.clone();
        let Value::Object(doc) = doc else {
            return Err(SoError::bad_request(
                "The patched document is not an object",
            ));
        };
        apply_doc(&mut new, &doc)?;
        store::save::<T>(&mut db, new, req.by(), now, s.write_options())?
    };
    commit(s, change.as_slice());
    entity_response::<T>(s, req, id)
}

fn delete<T: Stored>(s: &Shared, req: &Req, id: i32) -> Result<Response, SoError> {
    let now = s.clock.now();
    let change = {
        let mut db = s.write();
        let row = T::table(&db).live(id).ok_or_else(|| not_found::<T>(id))?;
        check_unmodified(row, req)?;
        store::delete::<T>(&mut db, id, req.by(), now, s.write_options())?
    };
    commit(s, &[change]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn default_entity<T: Stored>(s: &Shared, req: &Req) -> Response {
    let mut row = T::blank();
    let mut doc = Map::new();
    let owner = json!({"AssociateId": req.by()});
    if T::TYPED.contains(&"associate") {
        doc.insert("Associate".into(), owner.clone());
    }
    if T::TYPED.contains(&"ownedby") {
        doc.insert("OwnedBy".into(), owner);
    }
    // The document holds only known typed properties, so applying it cannot fail.
    let _ = apply_doc(&mut row, &doc);
    let db = s.read();
    json_response(StatusCode::OK, &Value::Object(render(&row, &db.cx())))
}

// ----- archives -----

async fn archive(s: Arc<Shared>, req: Req) -> Result<Response, SoError> {
    match (req.rest.len(), &req.method) {
        (1, &Method::GET) => {
            let mut m = Map::new();
            for p in odata::PROVIDERS {
                m.insert(p.name.into(), json!(p.name));
            }
            Ok(json_response(StatusCode::OK, &Value::Object(m)))
        }
        (2, &Method::GET) | (2, &Method::POST) => {
            let p = odata::provider(&req.rest[1]).ok_or_else(|| {
                SoError::not_found(format!("Unknown archive provider '{}'", req.rest[1]))
            })?;
            let mut params = req.params.clone();
            if req.method == Method::POST {
                params.extend(url::form_urlencoded::parse(&req.body).into_owned());
            }
            run_archive(s, &req, p, params).await
        }
        (3, &Method::GET) if req.seg(2, "$metadata") => {
            let p = odata::provider(&req.rest[1]).ok_or_else(|| {
                SoError::not_found(format!("Unknown archive provider '{}'", req.rest[1]))
            })?;
            let rows: Vec<Value> = p
                .columns()
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "CanOrderBy": true,
                        "CanRestrictBy": true,
                        "RestrictionType": format!("{:?}", c.ty).to_ascii_lowercase(),
                    })
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "odata.metadata": format!("{}/api/v1/archive/$metadata", req.tenant_url),
                    "odata.nextLink": null,
                    "value": rows,
                }),
            ))
        }
        _ => Err(SoError::not_found(format!("No route for {}", req.uri))),
    }
}

async fn run_archive(
    s: Arc<Shared>,
    req: &Req,
    p: odata::Provider,
    params: Vec<(String, String)>,
) -> Result<Response, SoError> {
    let q = Query::parse(&p, &params, &s.config.odata)?;
    let tenant_url = req.tenant_url.clone();
    let uri = req.uri.clone();
    let associate = req.by();
    let shared = s.clone();
    let (body, rows) = tokio::task::spawn_blocking(move || {
        let now = shared.clock.now();
        let rcx = RunCx {
            eval: odata::eval_cx(&shared.config.odata, now, associate),
            cache: &shared.sort_cache,
            tenant_url: &tenant_url,
            request_url: &uri,
        };
        let db = shared.read();
        odata::run(&db, &p, &q, &rcx)
    })
    .await
    .map_err(|e| SoError::new(StatusCode::INTERNAL_SERVER_ERROR, "Panic", e.to_string()))?;
    s.stats.archive_rows(rows as u64);
    Ok(raw_json(StatusCode::OK, body))
}

// ----- webhooks -----

async fn webhooks(s: Arc<Shared>, req: Req) -> Result<Response, SoError> {
    let m = req.method.clone();
    let n = req.rest.len();
    let links = |id: i32| Some(format!("{}/api/v1/Webhook/{id}", req.tenant_url));
    match n {
        1 if m == Method::GET => {
            let name = req.param("nameFilter").unwrap_or("").to_lowercase();
            let event = req.param("eventFilter").unwrap_or("").to_lowercase();
            let status = req.param("statusFilter").unwrap_or("").to_lowercase();
            let db = s.read();
            let cx = db.cx();
            let reg = s.webhooks.lock().unwrap_or_else(|e| e.into_inner());
            let list: Vec<Value> = reg
                .all()
                .filter(|h| name.is_empty() || h.name.to_lowercase().contains(&name))
                .filter(|h| event.is_empty() || h.events.iter().any(|e| e.to_lowercase() == event))
                .filter(|h| {
                    status.is_empty()
                        || h.to_json(&cx)["State"]
                            .as_str()
                            .unwrap_or("")
                            .to_lowercase()
                            == status
                })
                .map(|h| h.to_json(&cx))
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        1 if m == Method::POST => {
            let mut hook = Hook::blank();
            hook.apply(&req.object_body()?)?;
            let now = s.clock.now();
            hook.registered = now;
            hook.registered_by = req.by();
            validate_and_test(&s, &hook, req.by()).await?;
            let (id, rx) = s
                .webhooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(hook);
            s.spawn_queue(id, rx);
            webhook_response(&s, id, links(id))
        }
        2 if req.seg(1, "default") && m == Method::GET => {
            let db = s.read();
            Ok(json_response(
                StatusCode::OK,
                &Hook::blank().to_json(&db.cx()),
            ))
        }
        2 if req.seg(1, "Test") && m == Method::POST => {
            let mut hook = Hook::blank();
            hook.apply(&req.object_body()?)?;
            let (ok, msg) = match test_hook(&s, &hook, req.by()).await {
                Ok(()) => (true, "OK".to_string()),
                Err(e) => (false, e),
            };
            Ok(json_response(
                StatusCode::OK,
                &json!({"Success": ok, "Message": msg, "TableRight": null, "FieldProperties": {}}),
            ))
        }
        2 => {
            let id = parse_id(&req.rest[1])
                .ok_or_else(|| SoError::not_found(format!("No route for {}", req.uri)))?;
            let current = s
                .webhooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
                .ok_or_else(|| SoError::not_found(format!("Webhook id {id} not found")))?;
            match m {
                Method::GET => webhook_response(&s, id, links(id)),
                Method::PUT | Method::PATCH => {
                    let mut hook = if m == Method::PUT {
                        // PUT replaces every settable property; missing ones get their defaults.
                        let mut fresh = Hook::blank();
                        fresh.apply(&req.object_body()?)?;
                        fresh.id = current.id;
                        fresh.registered = current.registered;
                        fresh.registered_by = current.registered_by;
                        fresh.total_calls = current.total_calls;
                        fresh.total_errors = current.total_errors;
                        fresh.last_error = current.last_error.clone();
                        if fresh.state != HookState::Active || current.state == HookState::Active {
                            fresh.consecutive_errors = current.consecutive_errors;
                        }
                        fresh
                    } else {
                        let mut doc = {
                            let db = s.read();
                            current.to_json(&db.cx())
                        };
                        let body = req.json_body()?;
                        match &body {
                            Value::Array(_) => apply_json_patch(&mut doc, &body)?,
                            Value::Object(_) => apply_merge_patch(&mut doc, &body),
                            _ => {
                                return Err(SoError::bad_request(
                                    "PATCH body must be an array or an object",
                                ));
                            }
                        }
                        let mut hook = current.clone();
                        if let Value::Object(d) = &doc {
                            let settable: Map<String, Value> = d
                                .iter()
                                .filter(|(k, _)| SETTABLE.iter().any(|x| x.eq_ignore_ascii_case(k)))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            hook.apply(&settable)?;
                        }
                        hook
                    };
                    hook.updated = s.clock.now();
                    hook.updated_by = req.by();
                    validate_and_test(&s, &hook, req.by()).await?;
                    {
                        let mut reg = s.webhooks.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(live) = reg.get(id) {
                            // Deliveries may have counted calls while the test event ran.
                            hook.total_calls = hook.total_calls.max(live.total_calls);
                            hook.total_errors = hook.total_errors.max(live.total_errors);
                        }
                        reg.put(hook);
                    }
                    webhook_response(&s, id, links(id))
                }
                Method::DELETE => {
                    s.webhooks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(id);
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(method_not_allowed(&req)),
            }
        }
        3 if req.seg(2, "LastError") && m == Method::GET => {
            let id = parse_id(&req.rest[1]).ok_or_else(|| SoError::not_found("Bad id"))?;
            let reg = s.webhooks.lock().unwrap_or_else(|e| e.into_inner());
            let hook = reg
                .get(id)
                .ok_or_else(|| SoError::not_found(format!("Webhook id {id} not found")))?;
            Ok(json_response(StatusCode::OK, &json!(hook.last_error)))
        }
        3 if m == Method::POST => {
            let event = req.rest[1].clone();
            let pk = parse_id(&req.rest[2])
                .ok_or_else(|| SoError::bad_request("primaryKey must be an integer"))?;
            let change = Change {
                entity: EntityType::Contact,
                id: pk,
                kind: ChangeKind::Changed,
                by: req.by(),
                columns: Vec::new(),
                field_values: None,
                values: None,
                extra_events: Vec::new(),
            };
            let data = webhook::EventData::of(
                &change,
                &s.config.tenant.context_identifier,
                s.clock.now_precise(),
            );
            let n = s
                .webhooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .publish(&event, &data);
            s.stats.queued(n as u64);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(SoError::not_found(format!("No route for {}", req.uri))),
    }
}

/// Webhook properties a client can set.
const SETTABLE: &[&str] = &[
    "Name",
    "Events",
    "TargetUrl",
    "Secret",
    "State",
    "Type",
    "Headers",
    "Properties",
    "Description",
    "ErrorEmails",
    "NotifyVia",
    "NotifyWhen",
];

fn webhook_response(s: &Shared, id: i32, links: Option<String>) -> Result<Response, SoError> {
    let db = s.read();
    let reg = s.webhooks.lock().unwrap_or_else(|e| e.into_inner());
    let hook = reg
        .get(id)
        .ok_or_else(|| SoError::not_found(format!("Webhook id {id} not found")))?;
    let mut doc = hook.to_json(&db.cx());
    if let (Some(l), Value::Object(m)) = (links, &mut doc) {
        m.insert("_Links".into(), json!({"Self": l}));
    }
    Ok(json_response(StatusCode::OK, &doc))
}

async fn validate_and_test(s: &Shared, hook: &Hook, by: i32) -> Result<(), SoError> {
    if hook.name.trim().is_empty() {
        return Err(SoError::bad_request("Webhook.Name is required"));
    }
    if hook.events.is_empty() {
        return Err(SoError::bad_request(
            "Webhook.Events must name at least one event",
        ));
    }
    webhook::check_target(&hook.target_url, &s.config.webhooks)?;
    if s.config.webhooks.test_on_save {
        test_hook(s, hook, by)
            .await
            .map_err(|e| SoError::bad_request(format!("Webhook test event failed: {e}")))?;
    }
    Ok(())
}

async fn test_hook(s: &Shared, hook: &Hook, by: i32) -> Result<(), String> {
    webhook::check_target(&hook.target_url, &s.config.webhooks).map_err(|e| e.message)?;
    let change = Change {
        entity: EntityType::Contact,
        id: 0,
        kind: ChangeKind::Changed,
        by,
        columns: Vec::new(),
        field_values: None,
        values: None,
        extra_events: Vec::new(),
    };
    let data = webhook::EventData::of(
        &change,
        &s.config.tenant.context_identifier,
        s.clock.now_precise(),
    );
    // The payload's `Entity` is the event's prefix, so the test event names entity "test".
    let delivery = s
        .webhooks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .payload(hook, "test", &data);
    let timeout = std::time::Duration::from_millis(s.config.webhooks.timeout_ms);
    match webhook::post(&s.http, hook, &delivery, 0, true, timeout).await {
        Attempt::Delivered => Ok(()),
        Attempt::Failed(e) => Err(e),
    }
}

// ----- foreign keys -----

async fn foreign_app(s: Arc<Shared>, req: Req) -> Result<Response, SoError> {
    let m = req.method.clone();
    let r = &req.rest;
    let n = r.len();
    let now = s.clock.now();
    let by = req.by();
    let app_json = |s: &Shared, id: i32, links: bool| -> Result<Response, SoError> {
        let db = s.read();
        let app = db
            .foreign
            .app(id)
            .ok_or_else(|| SoError::not_found(format!("ForeignApp id {id} not found")))?;
        let mut doc = foreign::app_json(app, &db.cx());
        if links && let Value::Object(m) = &mut doc {
            m.insert(
                "_Links".into(),
                json!({"Self": format!("{}/api/v1/ForeignApp/{id}", req.tenant_url)}),
            );
        }
        Ok(json_response(StatusCode::OK, &doc))
    };
    let body_name = |req: &Req| -> Result<String, SoError> {
        let body = req.object_body()?;
        Ok(body
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Name"))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string())
    };
    match n {
        1 if m == Method::GET => {
            let p = odata::provider("ForeignKeys").ok_or_else(|| SoError::not_found("provider"))?;
            run_archive(s, &req, p, req.params.clone()).await
        }
        1 if m == Method::POST => {
            let name = body_name(&req)?;
            let id = s.write().foreign.create_app(&name, by, now)?;
            app_json(&s, id, true)
        }
        2 if req.seg(1, "default") && m == Method::GET => {
            let db = s.read();
            Ok(json_response(
                StatusCode::OK,
                &foreign::default_app_json(&db.cx()),
            ))
        }
        2 => {
            let key = &r[1];
            let numeric = parse_id(key);
            match (m, numeric) {
                (Method::GET, Some(id)) => app_json(&s, id, true),
                (Method::GET, None) => {
                    let id = s
                        .read()
                        .foreign
                        .app_by_name(key)
                        .map(|a| a.id)
                        .ok_or_else(|| {
                            SoError::not_found(format!("ForeignApp '{key}' not found"))
                        })?;
                    app_json(&s, id, false)
                }
                (Method::PUT, Some(id)) => {
                    let name = body_name(&req)?;
                    s.write().foreign.rename_app(id, &name, by, now)?;
                    app_json(&s, id, true)
                }
                (Method::PATCH, Some(id)) => {
                    let doc = {
                        let db = s.read();
                        let app = db.foreign.app(id).ok_or_else(|| {
                            SoError::not_found(format!("ForeignApp id {id} not found"))
                        })?;
                        foreign::app_json(app, &db.cx())
                    };
                    let mut doc = doc;
                    let body = req.json_body()?;
                    match &body {
                        Value::Array(_) => apply_json_patch(&mut doc, &body)?,
                        _ => apply_merge_patch(&mut doc, &body),
                    }
                    let name = doc
                        .get("Name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    s.write().foreign.rename_app(id, &name, by, now)?;
                    app_json(&s, id, true)
                }
                (Method::DELETE, Some(id)) => {
                    s.write().foreign.delete_app(id)?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                (Method::POST | Method::PUT, None) => {
                    let id = s.write().foreign.create_app(key, by, now)?;
                    app_json(&s, id, false)
                }
                _ => Err(method_not_allowed(&req)),
            }
        }
        3 if req.seg(2, "Devices") && m == Method::GET => {
            let db = s.read();
            let app = db
                .foreign
                .app_by_name(&r[1])
                .ok_or_else(|| SoError::not_found(format!("ForeignApp '{}' not found", r[1])))?;
            let cx = db.cx();
            let list: Vec<Value> = app
                .devices
                .iter()
                .map(|d| foreign::device_json(app, d, &cx))
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        4 => {
            let dev = DeviceRef {
                app: &r[1],
                device: &r[2],
                identifier: Some(&r[3]),
            };
            match m {
                Method::POST => {
                    s.write().foreign.add_device(&r[1], &r[2], &r[3], by, now)?;
                    device_response(&s, dev)
                }
                Method::PUT => {
                    s.write().foreign.add_device(&r[1], &r[2], &r[3], by, now)?;
                    device_response(&s, dev)
                }
                Method::GET => device_response(&s, dev),
                Method::DELETE => {
                    s.write().foreign.delete_device(dev)?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(method_not_allowed(&req)),
            }
        }
        5 if req.seg(4, "Key") && (m == Method::POST || m == Method::PUT) => {
            let dev = DeviceRef {
                app: &r[1],
                device: &r[2],
                identifier: Some(&r[3]),
            };
            let body = req.object_body()?;
            let key = s
                .write()
                .foreign
                .put_key(dev, &body, m == Method::PUT, by, now)?;
            let db = s.read();
            Ok(json_response(
                StatusCode::OK,
                &foreign::key_json(&key, &db.cx()),
            ))
        }
        6..=9 => foreign_key_lookup(&s, &req),
        _ => Err(SoError::not_found(format!("No route for {}", req.uri))),
    }
}

fn device_response(s: &Shared, dev: DeviceRef<'_>) -> Result<Response, SoError> {
    let db = s.read();
    let (app, d) = db
        .foreign
        .device(dev)
        .ok_or_else(|| SoError::not_found(format!("ForeignDevice '{}' not found", dev.device)))?;
    Ok(json_response(
        StatusCode::OK,
        &foreign::device_json(app, d, &db.cx()),
    ))
}

/// `…/{app}/{device}[/{identifier}]/Key/{keyName}/{table}[/{recordId}[/Value]]`.
fn foreign_key_lookup(s: &Shared, req: &Req) -> Result<Response, SoError> {
    let r = &req.rest;
    let (identifier, key_at) = if req.seg(3, "Key") {
        (None, 4)
    } else if req.seg(4, "Key") {
        (Some(r[3].as_str()), 5)
    } else {
        return Err(SoError::not_found(format!("No route for {}", req.uri)));
    };
    let dev = DeviceRef {
        app: &r[1],
        device: &r[2],
        identifier,
    };
    let key = r
        .get(key_at)
        .ok_or_else(|| SoError::not_found("Missing key name"))?;
    let table = foreign::check_table(r.get(key_at + 1).map(String::as_str).unwrap_or(""))?;
    let record = r.get(key_at + 2);
    let value_only = r
        .get(key_at + 3)
        .is_some_and(|v| v.eq_ignore_ascii_case("Value"));
    if r.len() > key_at + 4 || (r.len() == key_at + 4 && !value_only) {
        return Err(SoError::not_found(format!("No route for {}", req.uri)));
    }
    if req.method == Method::DELETE {
        let (Some(identifier), Some(record)) = (identifier, record) else {
            return Err(method_not_allowed(req));
        };
        let record =
            parse_id(record).ok_or_else(|| SoError::bad_request("recordId must be an integer"))?;
        let dev = DeviceRef {
            identifier: Some(identifier),
            ..dev
        };
        s.write().foreign.delete_keys(dev, key, &table, record)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let db = s.read();
    let found = match record {
        Some(rid) => {
            let rid =
                parse_id(rid).ok_or_else(|| SoError::bad_request("recordId must be an integer"))?;
            db.foreign.find_by_record(dev, key, &table, rid)
        }
        None => {
            let value = req
                .param("keyValue")
                .or_else(|| req.param("Value"))
                .ok_or_else(|| SoError::bad_request("keyValue is required"))?;
            db.foreign.find_by_value(dev, key, &table, value)
        }
    };
    let k = found.ok_or_else(|| SoError::not_found(format!("No foreign key '{key}' matches")))?;
    if value_only {
        return Ok(json_response(StatusCode::OK, &json!(k.value)));
    }
    Ok(json_response(
        StatusCode::OK,
        &foreign::key_json(k, &db.cx()),
    ))
}

fn current_principal(s: &Shared, req: &Req) -> Response {
    let a = lists::associate(req.by());
    let (user_type, role_type) = match req.principal {
        Principal::System(_) => ("SystemAssociate", "System"),
        Principal::User(_) => (a.map(|a| a.kind).unwrap_or("InternalAssociate"), "Employee"),
    };
    let email = a
        .map(|a| format!("{}.{}@example.com", a.first, a.last).to_lowercase())
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "UserType": user_type,
            "Associate": a.map(|a| a.name).unwrap_or(""),
            "AssociateId": req.by(),
            "IsPerson": true,
            "PersonId": 1000 + req.by(),
            "CountryId": 578,
            "HomeCountryId": 578,
            "ContactId": 1,
            "GroupId": 1,
            "BusinessId": 0,
            "CategoryId": 0,
            "ContactOwner": 0,
            "RoleId": 1,
            "RoleName": "Administrator",
            "RoleDescription": "",
            "RoleType": role_type,
            "Licenses": [],
            "FullName": a.map(|a| a.full_name()).unwrap_or_default(),
            "EMailAddress": email,
            "FunctionRights": [],
            "EjUserId": 0,
            "EjAccessLevel": 0,
            "EjUserStatus": "StatusNormal",
            "ProvidedCredentials": [],
            "SecondaryGroups": [],
            "DatabaseContextIdentifier": s.config.tenant.context_identifier,
            "UserName": a.map(|a| a.name).unwrap_or(""),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
