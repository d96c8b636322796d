//! Registering syncd's webhook (FACTS §4.2): one webhook per tenant, named
//! `syncd-{customer_id}`, listening to the events of every subscription of that tenant with
//! `webhooks = true`, posting to `control.public_url`.
//!
//! [`ensure`] is idempotent: it creates the webhook when none has the name, updates events,
//! target URL and secret when they differ, and sets `State` back to `Active` when SuperOffice
//! stopped it (`TooManyErrors` after nine failed deliveries, or `Stopped`). An up-to-date
//! webhook is left untouched. (SuperOffice may not return `Secret` on reads; then it is sent
//! again, which changes nothing.) Other webhooks with the same name are reported, not touched.
//!
//! `public_url = "auto"` means `http://{control plane address}/webhooks/superoffice` (the
//! demo and tests, against the emulator); a URL without a path gets `/webhooks/superoffice`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use reqwest::Method;
use serde_json::{Value, json};
use superoffice::{Client, RawRequest};

use crate::config::Config;
use crate::{Clients, Error, Result};

/// The receiver's path on the control plane.
pub const RECEIVER_PATH: &str = "/webhooks/superoffice";

/// What [`ensure`] did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// Tenant name.
    pub tenant: String,
    /// Webhook name.
    pub name: String,
    /// `WebhookId`.
    pub id: Option<i64>,
    /// `created`, `updated`, `reactivated` or `unchanged`.
    pub action: &'static str,
    /// Events registered.
    pub events: Vec<String>,
    /// Where SuperOffice posts.
    pub target_url: String,
    /// Other webhooks with the same name (left alone).
    pub duplicates: Vec<i64>,
}

/// The webhook name for a tenant.
pub fn webhook_name(customer_id: &str) -> String {
    format!("syncd-{customer_id}")
}

/// The URL SuperOffice should post to, from `control.public_url` (`None`: not configured).
/// `auto` needs the control plane's bound address.
pub fn target_url(config: &Config, control_addr: Option<SocketAddr>) -> Result<Option<String>> {
    let Some(public) = config.control.public_url.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if public.eq_ignore_ascii_case("auto") {
        let addr = control_addr.unwrap_or(config.control.listen);
        if addr.port() == 0 {
            return Err(Error::Config(
                "control.public_url = \"auto\" needs the control plane's port; with listen port 0 only the running daemon knows it".into(),
            ));
        }
        return Ok(Some(format!("http://{addr}{RECEIVER_PATH}")));
    }
    let url = url::Url::parse(public)
        .map_err(|e| Error::Config(format!("control.public_url {public:?}: {e}")))?;
    if url.path().is_empty() || url.path() == "/" {
        return Ok(Some(format!(
            "{}{RECEIVER_PATH}",
            public.trim_end_matches('/')
        )));
    }
    Ok(Some(public.to_string()))
}

/// The events each tenant's webhook should carry.
pub fn wanted_events(config: &Config) -> Vec<(String, Vec<String>)> {
    config
        .tenants
        .iter()
        .filter_map(|tenant| {
            let events: BTreeSet<String> = config
                .subscriptions
                .iter()
                .filter(|s| s.tenant == tenant.name && s.webhooks)
                .flat_map(|s| s.entity.webhook_events().iter().map(|e| e.to_string()))
                .collect();
            (!events.is_empty()).then(|| (tenant.name.clone(), events.into_iter().collect()))
        })
        .collect()
}

async fn json_of(response: reqwest::Response) -> Result<Value> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::Api(superoffice::Error::Transport(e)))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Api(superoffice::Error::Decode {
            message: e.to_string(),
            excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        })
    })
}

/// The tenant's webhooks, optionally those whose name contains `name`.
pub async fn list(client: &Client, name: Option<&str>) -> Result<Vec<Value>> {
    let path = match name {
        Some(name) => format!(
            "/api/v1/Webhook?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("nameFilter", name)
                .finish()
        ),
        None => "/api/v1/Webhook".to_string(),
    };
    let response = client
        .send_raw("webhook_get_all", RawRequest::new(Method::GET, path))
        .await?;
    match json_of(response).await? {
        Value::Array(items) => Ok(items),
        other => Err(Error::Invalid(format!(
            "GET /api/v1/Webhook answered {} instead of a list",
            other
        ))),
    }
}

fn text<'a>(hook: &'a Value, name: &str) -> Option<&'a str> {
    hook.get(name).and_then(Value::as_str)
}

fn webhook_id(hook: &Value) -> Option<i64> {
    hook.get("WebhookId").and_then(Value::as_i64)
}

/// Creates, updates or re-activates syncd's webhook on every tenant that has webhook
/// subscriptions.
pub async fn ensure(config: &Config, clients: &Clients, target: &str) -> Result<Vec<Ensured>> {
    let secret = config
        .control
        .webhook_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (tenant_name, events) in wanted_events(config) {
        let tenant = config
            .tenant(&tenant_name)
            .ok_or_else(|| Error::Config(format!("no tenant {tenant_name:?}")))?;
        let client = clients.get(&tenant_name)?;
        let name = webhook_name(&tenant.customer_id);
        let mut found: Vec<Value> = list(client, Some(&name))
            .await?
            .into_iter()
            .filter(|h| text(h, "Name") == Some(name.as_str()))
            .collect();
        found.sort_by_key(|h| webhook_id(h).unwrap_or(i64::MAX));
        let duplicates: Vec<i64> = found.iter().skip(1).filter_map(webhook_id).collect();
        if !duplicates.is_empty() {
            tracing::warn!(tenant = %tenant_name, webhook = %name, ?duplicates, "several webhooks carry syncd's name; only the first is managed");
        }
        let mut ensured = Ensured {
            tenant: tenant_name.clone(),
            name: name.clone(),
            id: None,
            action: "unchanged",
            events: events.clone(),
            target_url: target.to_string(),
            duplicates,
        };
        match found.first() {
            None => {
                let body = json!({
                    "Name": name,
                    "Events": events,
                    "TargetUrl": target,
                    "Secret": secret,
                    "State": "Active",
                    "Type": "webhook",
                });
                let request = RawRequest::new(Method::POST, "/api/v1/Webhook")
                    .json("application/json", &body)?;
                let created = json_of(client.send_raw("webhook_post", request).await?).await?;
                ensured.id = webhook_id(&created);
                ensured.action = "created";
            }
            Some(hook) => {
                ensured.id = webhook_id(hook);
                let id = ensured
                    .id
                    .ok_or_else(|| Error::Invalid(format!("webhook {name:?} has no WebhookId")))?;
                let current_events: BTreeSet<String> = hook
                    .get("Events")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let wanted: BTreeSet<String> = events.iter().cloned().collect();
                let state = text(hook, "State").unwrap_or("");
                let mut patch = serde_json::Map::new();
                if current_events != wanted {
                    patch.insert("Events".into(), json!(events));
                }
                if text(hook, "TargetUrl") != Some(target) {
                    patch.insert("TargetUrl".into(), json!(target));
                }
                let secret_known = text(hook, "Secret").is_some_and(|s| !s.is_empty());
                if (secret_known && text(hook, "Secret") != Some(secret.as_str()))
                    || (!secret_known && !secret.is_empty())
                {
                    patch.insert("Secret".into(), json!(secret));
                }
                let inactive = !state.eq_ignore_ascii_case("Active") && state != "1";
                if inactive {
                    patch.insert("State".into(), json!("Active"));
                }
                if !patch.is_empty() {
                    let request = RawRequest::new(Method::PATCH, format!("/api/v1/Webhook/{id}"))
                        .json(
                        "application/merge-patch+json",
                        &Value::Object(patch.clone()),
                    )?;
                    client.send_raw("webhook_patch", request).await?;
                    ensured.action = if inactive && patch.len() == 1 {
                        "reactivated"
                    } else {
                        "updated"
                    };
                }
            }
        }
        out.push(ensured);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(control: &str) -> Config {
        let text = format!(
            "[control]\nlisten = \"127.0.0.1:9464\"\n{control}\n\n[[tenant]]\nname = \"t\"\nenvironment = \"http://127.0.0.1:9\"\ncustomer_id = \"Cust7\"\nauth = \"static\"\ntoken = {{ value = \"x\" }}\n\n[[subscription]]\nname = \"a\"\nentity = \"appointment\"\n\n[[subscription]]\nname = \"c\"\nentity = \"contact\"\n\n[[subscription]]\nname = \"s\"\nentity = \"sale\"\nwebhooks = false\n"
        );
        Config::parse(&text, "t.toml", &BTreeMap::new()).unwrap()
    }

    #[test]
    fn target_urls() {
        assert_eq!(target_url(&config(""), None).unwrap(), None);
        assert_eq!(
            target_url(&config("public_url = \"auto\""), None).unwrap(),
            Some("http://127.0.0.1:9464/webhooks/superoffice".into())
        );
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            target_url(&config("public_url = \"auto\""), Some(addr)).unwrap(),
            Some("http://127.0.0.1:4321/webhooks/superoffice".into())
        );
        assert_eq!(
            target_url(&config("public_url = \"https://sync.example.com/\""), None).unwrap(),
            Some("https://sync.example.com/webhooks/superoffice".into())
        );
        assert_eq!(
            target_url(&config("public_url = \"https://x.example/hooks/so\""), None).unwrap(),
            Some("https://x.example/hooks/so".into())
        );
        assert!(target_url(&config("public_url = \"not a url\""), None).is_err());
    }

    #[test]
    fn events_are_the_union_of_webhook_subscriptions() {
        let wanted = wanted_events(&config(""));
        assert_eq!(wanted.len(), 1);
        assert_eq!(
            wanted[0].1,
            [
                "activity.changed",
                "activity.created",
                "activity.deleted",
                "contact.changed",
                "contact.created",
                "contact.deleted",
                "contact.softdeleted"
            ]
        );
        assert_eq!(webhook_name("Cust7"), "syncd-Cust7");
    }
}
