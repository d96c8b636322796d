//! Conformance: every operation the emulator serves exists in the official spec, and every 200
//! answer validates against the operation's response schema.
//!
//! The spec is found the way the SDK build finds it (`superoffice_codegen::spec::locate`). The validator is
//! structural: types, `$ref`, properties (closed: the emulator must not invent properties),
//! `additionalProperties`, arrays, string enums, `int32` ranges and ISO date-times. `null` is
//! accepted anywhere, as the real server sends nulls for unset carriers. A schema of bare
//! `type: object` (.NET `System.Object`) accepts any value.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Env, Receiver};
use emulator::EntityType;
use emulator::server::data::ROUTES;
use reqwest::Method;
use serde_json::{Value, json};

struct Spec {
    json: Value,
}

impl Spec {
    fn load() -> Spec {
        let located =
            superoffice_codegen::spec::locate(&superoffice_codegen::spec::workspace_root())
                .expect("the SuperOffice spec is needed for this test");
        Spec {
            json: superoffice_codegen::spec::load(&located.path)
                .expect("spec loads")
                .json,
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/definitions/").expect("local refs only");
                &self.json["definitions"][name]
            }
            None => schema,
        }
    }

    /// The operation matching a concrete path: (template, operation). Literal segments score
    /// 2, integer parameters taking a number 1, other parameters 0.
    fn operation(&self, method: &Method, path: &str) -> Option<(String, &Value)> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(i32, String, &Value)> = None;
        for (template, ops) in self.json["paths"].as_object().unwrap() {
            let Some(op) = ops.get(method.as_str().to_ascii_lowercase()) else {
                continue;
            };
            let tsegs: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
            if tsegs.len() != segs.len() {
                continue;
            }
            let mut score = 0;
            let mut ok = true;
            for (t, s) in tsegs.iter().zip(&segs) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    let ty = op["parameters"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["name"] == name && p["in"] == "path"))
                        .and_then(|p| p["type"].as_str())
                        .unwrap_or("string");
                    let numeric = s.parse::<i64>().is_ok();
                    if ty == "integer" {
                        if !numeric {
                            ok = false;
                            break;
                        }
                        score += 1;
                    }
                } else if t.eq_ignore_ascii_case(s) {
                    score += 2;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, template.clone(), op));
            }
        }
        best.map(|(_, t, op)| (t, op))
    }

    fn validate(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        if v.is_null() {
            return;
        }
        let schema = self.resolve(schema);
        let ty = schema.get("type").and_then(Value::as_str);
        match ty {
            Some("object")
                if schema.get("properties").is_none()
                    && schema.get("additionalProperties").is_none() =>
            {
                // .NET `System.Object`: any value.
            }
            Some("object") => {
                let Some(obj) = v.as_object() else {
                    errors.push(format!("{at}: expected object, got {v}"));
                    return;
                };
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                for (k, x) in obj {
                    match (props.and_then(|p| p.get(k)), additional) {
                        (Some(p), _) => self.validate(p, x, &format!("{at}.{k}"), errors),
                        (None, Some(a)) => self.validate(a, x, &format!("{at}[{k}]"), errors),
                        (None, None) if props.is_some() => {
                            errors.push(format!("{at}: property '{k}' is not in the spec"))
                        }
                        (None, None) => {}
                    }
                }
            }
            Some("array") => {
                let Some(items) = v.as_array() else {
                    errors.push(format!("{at}: expected array, got {v}"));
                    return;
                };
                for (i, x) in items.iter().enumerate() {
                    self.validate(&schema["items"], x, &format!("{at}[{i}]"), errors);
                }
            }
            Some("string") => {
                let Some(s) = v.as_str() else {
                    errors.push(format!("{at}: expected string, got {v}"));
                    return;
                };
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                    && !allowed.iter().any(|a| a == v)
                {
                    errors.push(format!("{at}: '{s}' is not one of {allowed:?}"));
                }
                if schema.get("format").and_then(Value::as_str) == Some("date-time")
                    && emulator::Ts::parse_literal(s).is_none_or(|(_, has_time)| !has_time)
                {
                    errors.push(format!("{at}: '{s}' is not an ISO date-time"));
                }
            }
            Some("integer") => match v.as_i64() {
                None => errors.push(format!("{at}: expected integer, got {v}")),
                Some(i)
                    if schema.get("format").and_then(Value::as_str) == Some("int32")
                        && i32::try_from(i).is_err() =>
                {
                    errors.push(format!("{at}: {i} does not fit int32"));
                }
                Some(_) => {}
            },
            Some("number") if !v.is_number() => {
                errors.push(format!("{at}: expected number, got {v}"))
            }
            Some("boolean") if !v.is_boolean() => {
                errors.push(format!("{at}: expected boolean, got {v}"))
            }
            _ => {}
        }
    }
}

/// One call of the plan.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    form: Option<Vec<(&'static str, String)>>,
}

fn call(method: Method, path: impl Into<String>) -> Call {
    Call {
        method,
        path: path.into(),
        body: None,
        form: None,
    }
}

fn with(mut c: Call, body: Value) -> Call {
    c.body = Some(body);
    c
}

struct Checker {
    spec: Spec,
    env: Env,
    errors: Vec<String>,
    /// ROUTES entries exercised with a 2xx answer.
    covered: BTreeSet<(String, String)>,
    validated: usize,
}

fn route_of(method: &Method, path: &str) -> Option<(String, String)> {
    let segs: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    let mut best: Option<(i32, (String, String))> = None;
    for (m, template) in ROUTES {
        if *m != method.as_str() {
            continue;
        }
        let tsegs: Vec<&str> = template.trim_start_matches("/api/v1/").split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut score = 0;
        let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
            if *t == "{Entity}" {
                EntityType::parse(s).is_some()
            } else if ["{id}", "{webhookId}", "{recordId}", "{primaryKey}"].contains(t) {
                score += 1;
                s.parse::<i64>().is_ok()
            } else if t.starts_with('{') {
                true
            } else {
                score += 2;
                t.eq_ignore_ascii_case(s)
            }
        });
        if ok && best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, (m.to_string(), template.to_string())));
        }
    }
    best.map(|(_, r)| r)
}

impl Checker {
    async fn run(&mut self, c: Call) -> Value {
        let url = format!("{}{}", self.env.emu.tenant_url(), c.path);
        let mut req = self
            .env
            .http
            .request(c.method.clone(), &url)
            .bearer_auth(&self.env.token);
        if let Some(b) = &c.body {
            req = req.json(b);
        }
        if let Some(f) = &c.form {
            req = req.form(f);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let path_only = c.path.split('?').next().unwrap().to_string();
        if !(200..300).contains(&status) {
            self.errors
                .push(format!("{} {}: HTTP {status}: {text}", c.method, c.path));
            return Value::Null;
        }
        match self.spec.operation(&c.method, &path_only) {
            None => self.errors.push(format!(
                "{} {path_only}: the emulator serves an operation the spec lacks",
                c.method
            )),
            Some((template, op)) => {
                let declared = op["responses"].get(status.to_string());
                if declared.is_none() {
                    self.errors.push(format!(
                        "{} {template}: status {status} is not declared",
                        c.method
                    ));
                }
                if status == 200 {
                    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("{} {}: not JSON ({e}): {text}", c.method, c.path)
                    });
                    match declared.and_then(|d| d.get("schema")) {
                        Some(schema) => {
                            let before = self.errors.len();
                            self.spec.validate(
                                schema,
                                &body,
                                &format!("{} {}", c.method, template),
                                &mut self.errors,
                            );
                            if self.errors.len() == before {
                                self.validated += 1;
                            }
                        }
                        None => self
                            .errors
                            .push(format!("{} {template}: 200 has no schema", c.method)),
                    }
                }
            }
        }
        match route_of(&c.method, &path_only) {
            Some(r) => {
                self.covered.insert(r);
            }
            None => self
                .errors
                .push(format!("{} {path_only}: not listed in ROUTES", c.method)),
        }
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn expect_status(&mut self, c: Call, want: u16) {
        let url = format!("{}{}", self.env.emu.tenant_url(), c.path);
        let r = self
            .env
            .http
            .request(c.method.clone(), &url)
            .bearer_auth(&self.env.token)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != want {
            self.errors.push(format!(
                "{} {}: expected {want}, got {}",
                c.method,
                c.path,
                r.status()
            ));
        }
    }
}

fn create_body(ty: EntityType) -> Value {
    match ty {
        EntityType::Contact => {
            json!({"Name": "Conformance AS", "Category": {"Id": 1}, "Country": {"CountryId": 578}})
        }
        EntityType::Person => {
            json!({"Firstname": "Con", "Lastname": "Formance", "Contact": {"ContactId": 1}})
        }
        EntityType::Sale => {
            json!({"Heading": "Deal", "Amount": 10.5, "Contact": {"ContactId": 1}, "Person": {"PersonId": 1}, "Project": {"ProjectId": 1}})
        }
        EntityType::Project => json!({"Name": "Project", "ProjectStatus": {"Id": 1}}),
        EntityType::Appointment => {
            json!({"Title": "Meeting", "Contact": {"ContactId": 1}, "Sale": {"SaleId": 1}, "Task": {"TaskListItemId": 1}})
        }
        EntityType::Document => {
            json!({"Header": "Doc", "DocumentTemplate": {"DocumentTemplateId": 1}, "Person": {"PersonId": 1}})
        }
        EntityType::Ticket => {
            json!({"Title": "Ticket", "Person": {"PersonId": 1}, "Category": {"TicketCategoryId": 1}, "Priority": {"TicketPriorityId": 1}})
        }
        EntityType::Selection => json!({"Name": "Selection", "SelectionCategory": {"Id": 1}}),
    }
}

#[tokio::test]
async fn every_served_operation_conforms_to_the_spec() {
    let spec = Spec::load();
    let env = Env::default().await;
    let rx = Receiver::start().await;
    let mut ck = Checker {
        spec,
        env,
        errors: Vec::new(),
        covered: BTreeSet::new(),
        validated: 0,
    };

    for ty in EntityType::ALL {
        let e = ty.name();
        let pk = ty.pk_column();
        ck.run(call(
            Method::GET,
            format!("/api/v1/{e}?$select={pk}&$top=5"),
        ))
        .await;
        ck.run(call(Method::GET, format!("/api/v1/{e}"))).await;
        ck.run(call(Method::GET, format!("/api/v1/{e}/default")))
            .await;
        ck.run(call(Method::GET, format!("/api/v1/{e}/2"))).await;
        let created = ck
            .run(with(
                call(Method::POST, format!("/api/v1/{e}")),
                create_body(ty),
            ))
            .await;
        let id = created[ty.pk_property()].as_i64().expect("created id");
        let mut doc = ck
            .run(call(Method::GET, format!("/api/v1/{e}/{id}?fk=true")))
            .await;
        if let Value::Object(m) = &mut doc {
            m.remove("_Links");
        }
        ck.run(with(call(Method::PUT, format!("/api/v1/{e}/{id}")), doc))
            .await;
        let (patch, merge) = if ty == EntityType::Selection {
            (
                json!([{"op": "replace", "path": "/Description", "value": "d"}]),
                json!({"Postit": "p"}),
            )
        } else {
            (
                json!([{"op": "add", "path": "/ExtraFields/x_conformance", "value": "1"}]),
                json!({"CustomFields": {"SuperOffice:1": "x"}}),
            )
        };
        ck.run(with(
            call(Method::PATCH, format!("/api/v1/{e}/{id}")),
            patch,
        ))
        .await;
        ck.run(with(
            call(Method::PATCH, format!("/api/v1/{e}/{id}")),
            merge,
        ))
        .await;
        if ty == EntityType::Selection {
            ck.expect_status(
                call(Method::GET, format!("/api/v1/{e}/{id}/ForeignKey")),
                404,
            )
            .await;
        } else {
            ck.run(call(Method::GET, format!("/api/v1/{e}/{id}/ForeignKey")))
                .await;
        }
        ck.run(call(Method::DELETE, format!("/api/v1/{e}/{id}")))
            .await;
    }

    ck.run(call(Method::GET, "/api/v1/Archive")).await;
    for p in emulator::odata::PROVIDERS {
        let cols: Vec<&str> = p.columns().iter().map(|c| c.name).collect();
        ck.run(call(
            Method::GET,
            format!("/api/v1/Archive/{}?$select={}", p.name, cols.join(",")),
        ))
        .await;
        ck.run(call(
            Method::GET,
            format!("/api/v1/Archive/{}/$metadata", p.name),
        ))
        .await;
    }
    ck.run(Call {
        method: Method::POST,
        path: "/api/v1/Archive/SimpleContact".into(),
        body: None,
        form: Some(vec![
            ("$select", "contactId,name".into()),
            ("$top", "3".into()),
        ]),
    })
    .await;

    // Webhooks.
    let hook = ck
        .run(with(
            call(Method::POST, "/api/v1/Webhook"),
            json!({"Name": "conf", "Events": ["contact.changed"], "TargetUrl": rx.url, "Secret": "s", "Headers": {"X-Extra": "1"}, "Properties": {"a": 1}}),
        ))
        .await;
    let hid = hook["WebhookId"].as_i64().expect("webhook id");
    ck.run(call(Method::GET, "/api/v1/Webhook")).await;
    ck.run(call(
        Method::GET,
        "/api/v1/Webhook?nameFilter=conf&statusFilter=Active",
    ))
    .await;
    ck.run(call(Method::GET, "/api/v1/Webhook/default")).await;
    ck.run(with(
        call(Method::POST, "/api/v1/Webhook/Test"),
        json!({"Name": "t", "Events": ["x"], "TargetUrl": rx.url}),
    ))
    .await;
    ck.run(call(Method::GET, format!("/api/v1/Webhook/{hid}")))
        .await;
    ck.run(with(
        call(Method::PUT, format!("/api/v1/Webhook/{hid}")),
        json!({"Name": "conf2", "Events": ["contact.*"], "TargetUrl": rx.url}),
    ))
    .await;
    ck.run(with(
        call(Method::PATCH, format!("/api/v1/Webhook/{hid}")),
        json!([{"op": "replace", "path": "/Description", "value": "d"}]),
    ))
    .await;
    ck.run(call(
        Method::GET,
        format!("/api/v1/Webhook/{hid}/LastError"),
    ))
    .await;
    ck.run(call(Method::POST, "/api/v1/Webhook/custom.event/5"))
        .await;
    ck.run(call(Method::DELETE, format!("/api/v1/Webhook/{hid}")))
        .await;

    // Foreign keys.
    let app = ck
        .run(with(
            call(Method::POST, "/api/v1/ForeignApp"),
            json!({"Name": "conf-app"}),
        ))
        .await;
    let aid = app["ForeignAppId"].as_i64().expect("app id");
    ck.run(call(Method::GET, "/api/v1/ForeignApp/default"))
        .await;
    ck.run(call(Method::GET, format!("/api/v1/ForeignApp/{aid}")))
        .await;
    ck.run(with(
        call(Method::PUT, format!("/api/v1/ForeignApp/{aid}")),
        json!({"Name": "conf-app"}),
    ))
    .await;
    ck.run(with(
        call(Method::PATCH, format!("/api/v1/ForeignApp/{aid}")),
        json!({"Name": "conf-app"}),
    ))
    .await;
    ck.run(call(Method::GET, "/api/v1/ForeignApp/conf-app"))
        .await;
    ck.run(call(Method::POST, "/api/v1/ForeignApp/other-app"))
        .await;
    ck.run(call(Method::PUT, "/api/v1/ForeignApp/third-app"))
        .await;
    ck.run(call(Method::POST, "/api/v1/ForeignApp/conf-app/dev/host1"))
        .await;
    ck.run(with(
        call(Method::PUT, "/api/v1/ForeignApp/conf-app/dev/host1"),
        json!({"Name": "dev"}),
    ))
    .await;
    ck.run(call(Method::GET, "/api/v1/ForeignApp/conf-app/dev/host1"))
        .await;
    ck.run(call(Method::GET, "/api/v1/ForeignApp/conf-app/Devices"))
        .await;
    let key = json!({"Key": "ext", "Value": "E-1", "TableName": "contact", "RecordId": 3});
    ck.run(with(
        call(Method::POST, "/api/v1/ForeignApp/conf-app/dev/host1/Key"),
        key.clone(),
    ))
    .await;
    ck.run(with(
        call(Method::PUT, "/api/v1/ForeignApp/conf-app/dev/host1/Key"),
        key,
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp?$select=appName,deviceName,keyName,keyValue,tableId,recordId",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/Key/ext/contact?keyValue=E-1",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/Key/ext/contact/3",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/Key/ext/contact/3/Value",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/host1/Key/ext/contact?Value=E-1",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/host1/Key/ext/contact/3",
    ))
    .await;
    ck.run(call(
        Method::GET,
        "/api/v1/ForeignApp/conf-app/dev/host1/Key/ext/contact/3/Value",
    ))
    .await;
    ck.run(call(
        Method::DELETE,
        "/api/v1/ForeignApp/conf-app/dev/host1/Key/ext/contact/3",
    ))
    .await;
    ck.run(call(
        Method::DELETE,
        "/api/v1/ForeignApp/conf-app/dev/host1",
    ))
    .await;
    ck.run(call(Method::DELETE, format!("/api/v1/ForeignApp/{aid}")))
        .await;

    ck.run(call(Method::GET, "/api/v1/User/currentPrincipal"))
        .await;

    let all: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .collect();
    let missing: Vec<_> = all.difference(&ck.covered).collect();
    assert!(
        missing.is_empty(),
        "routes never exercised with success: {missing:?}"
    );
    // Group errors by their shape (array indexes removed) so a failure report stays short.
    let mut grouped: BTreeMap<String, usize> = BTreeMap::new();
    for e in &ck.errors {
        let shape: String = e
            .split('[')
            .map(|p| p.split_once(']').map(|(_, r)| r).unwrap_or(p))
            .collect::<Vec<_>>()
            .join("[]");
        *grouped.entry(shape).or_default() += 1;
    }
    let report: Vec<String> = grouped
        .iter()
        .map(|(e, n)| format!("{n:>5} × {e}"))
        .collect();
    assert!(
        ck.errors.is_empty(),
        "{} conformance errors:\n{}",
        ck.errors.len(),
        report.join("\n")
    );
    assert!(ck.validated > 100, "only {} bodies validated", ck.validated);
}

#[test]
fn the_validator_rejects_what_it_should() {
    let spec = Spec::load();
    let schema = json!({"$ref": "#/definitions/SuperOffice.CRM.Services.ContactEntity"});
    let mut errors = Vec::new();
    spec.validate(
        &schema,
        &json!({"ContactId": 1, "Name": "x", "Category": null, "Emails": []}),
        "ok",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let bad = json!({
        "ContactId": "one",
        "Invented": 1,
        "Category": {"CategoryGroup": "NotAGroup"},
        "UpdatedDate": "yesterday",
        "Emails": {},
        "ActiveInterests": 5_000_000_000i64,
    });
    spec.validate(&schema, &bad, "bad", &mut errors);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    let (template, _) = spec
        .operation(&Method::GET, "/api/v1/ForeignApp/42")
        .unwrap();
    assert_eq!(template, "/api/v1/ForeignApp/{id}");
    let (template, _) = spec
        .operation(&Method::GET, "/api/v1/ForeignApp/acme")
        .unwrap();
    assert_eq!(template, "/api/v1/ForeignApp/{applicationName}");
    let (template, _) = spec
        .operation(&Method::GET, "/api/v1/Contact/default")
        .unwrap();
    assert_eq!(template, "/api/v1/Contact/default");
    assert!(
        spec.operation(&Method::GET, "/api/v1/Selection/5/ForeignKey")
            .is_none()
    );
}
