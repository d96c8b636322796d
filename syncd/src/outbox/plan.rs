//! `--dry-run`: the HTTP requests a task would send, in order, with the branches the delivery
//! takes depending on what the server answers. Nothing is sent and nothing is queued.

use serde_json::{Value, json};

use super::foreign::ForeignKeys;
use super::task::{Action, NewTask, record_key};
use super::write::WriteOp;
use crate::Config;

/// The requests, as text blocks.
pub fn plan(config: &Config, task: &NewTask) -> Vec<String> {
    let keys = ForeignKeys::new(&config.outbox);
    let kind = task.entity;
    let query: Vec<(String, String)> = task
        .query
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ius = task.if_unmodified_since;
    let ius_note = if ius.is_none()
        && task.record_id.is_some()
        && config.route(kind).use_synced_last_modified
    {
        "\n(plus If-Unmodified-Since from the synced copy of the record, if a subscription holds it)"
    } else {
        ""
    };
    let value = record_key(&task.key, task.external_key.as_deref());
    let lookup = format!(
        "GET {}\n(a hit means the record exists: it is read back with GET /api/v1/{}/{{id}} and nothing else is sent)",
        keys.lookup_path(kind, &value),
        kind.name()
    );
    let store_key = |record: &str| {
        format!(
            "POST {}\nContent-Type: application/json\n\n{}",
            keys.store_path(),
            serde_json::to_string_pretty(&keys.store_body(kind, &value, json!(record)))
                .unwrap_or_default()
        )
    };
    let payload = task.payload.clone().unwrap_or(Value::Null);
    let id_or = |id: Option<i32>| id.unwrap_or(0);
    let resolve = || match (task.record_id, &task.external_key) {
        (Some(_), _) => None,
        (None, _) => Some(format!(
            "GET {}\n(resolves the record id from the external key, unless an earlier task of this record produced it)",
            keys.lookup_path(kind, &value)
        )),
    };
    let mut requests = Vec::new();
    match task.action {
        Action::Create => {
            requests.push(lookup);
            requests.push(WriteOp::Post(payload).render(kind, &query, None));
            requests.push(store_key(&format!("<{} from the answer>", kind.id_field())));
        }
        Action::Upsert => {
            requests.push(format!(
                "{lookup}\n(a hit is merge-patched: PATCH /api/v1/{}/{{id}} with the payload)",
                kind.name()
            ));
            if let Some(filter) = &config.route(kind).lookup_filter {
                requests.push(format!(
                    "GET /api/v1/{}?$select={}&$filter={filter}&$top=2\n(placeholders filled from the payload; one hit is merge-patched and gets the key)",
                    kind.name(),
                    kind.primary_key()
                ));
            }
            requests.push(format!("GET /api/v1/{}/default", kind.name()));
            requests.push(format!(
                "{}\n(the /default template with the payload merged in)",
                WriteOp::Post(payload).render(kind, &query, None)
            ));
            requests.push(store_key(&format!("<{} from the answer>", kind.id_field())));
        }
        Action::Update | Action::Patch | Action::Delete => {
            requests.extend(resolve());
            let id = id_or(task.record_id);
            let op = match task.action {
                Action::Update => WriteOp::Put(id, payload),
                Action::Patch => WriteOp::patch(id, payload),
                _ => WriteOp::Delete(id),
            };
            let mut text = op.render(kind, &query, ius);
            if task.record_id.is_none() {
                text = text.replace(
                    &format!("/{}/0", kind.name()),
                    &format!("/{}/{{id}}", kind.name()),
                );
            }
            text.push_str(ius_note);
            requests.push(text);
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::outbox::task::{PublishRequest, validate};

    #[test]
    fn a_create_plans_lookup_post_and_key() {
        let config = Config::parse(
            "[[tenant]]\nname = \"main\"\nenvironment = \"http://127.0.0.1:9\"\ncustomer_id = \"C\"\nauth = \"static\"\ntoken = { value = \"t\" }\n",
            "syncd.toml",
            &BTreeMap::new(),
        )
        .unwrap();
        let task = validate(
            &config,
            &PublishRequest {
                action: "create".into(),
                entity: "contact".into(),
                payload: Some(r#"{"Name":"A"}"#.into()),
                key: Some("k-1".into()),
                ..PublishRequest::default()
            },
        )
        .unwrap();
        let requests = plan(&config, &task);
        assert_eq!(requests.len(), 3);
        assert!(requests[0].starts_with(
            "GET /api/v1/ForeignApp/syncd/syncd/Key/idempotency_key/contact?keyValue=k-1"
        ));
        assert!(requests[1].starts_with("POST /api/v1/Contact\n"));
        assert!(requests[2].contains("\"Value\": \"k-1\""));
    }
}
