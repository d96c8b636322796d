//! The write calls a task makes, in one place: each becomes one SDK
//! [`WriteRequest`] (operation, the task's query parameters, `If-Unmodified-Since`) that is
//! sent through [`superoffice::entity::Entities::write`] or rendered as text for
//! `syncd publish --dry-run`. Paths, headers, encoding and decoding are the SDK's.

use chrono::{DateTime, Utc};
use serde_json::Value;
use superoffice::Client;
use superoffice::entity::{EntityKind, WriteRequest};

/// One entity write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// `POST /api/v1/{Entity}`.
    Post(Value),
    /// `PUT /api/v1/{Entity}/{id}`.
    Put(i32, Value),
    /// `PATCH` with `application/json-patch+json`.
    JsonPatch(i32, Value),
    /// `PATCH` with `application/merge-patch+json`.
    MergePatch(i32, Value),
    /// `DELETE /api/v1/{Entity}/{id}`.
    Delete(i32),
}

impl WriteOp {
    /// A patch: JSON Patch for an array, merge patch otherwise.
    pub fn patch(id: i32, payload: Value) -> WriteOp {
        if payload.is_array() {
            WriteOp::JsonPatch(id, payload)
        } else {
            WriteOp::MergePatch(id, payload)
        }
    }

    /// The SDK request with the task's query parameters and precondition.
    pub fn request(
        &self,
        query: &[(String, String)],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> WriteRequest {
        let request = match self {
            WriteOp::Post(body) => WriteRequest::post(body.clone()),
            WriteOp::Put(id, body) => WriteRequest::put(*id, body.clone()),
            WriteOp::JsonPatch(id, ops) => WriteRequest::json_patch(*id, ops.clone()),
            WriteOp::MergePatch(id, patch) => WriteRequest::merge_patch(*id, patch.clone()),
            WriteOp::Delete(id) => WriteRequest::delete(*id),
        };
        request
            .queries(query.iter().cloned())
            .if_unmodified_since(if_unmodified_since)
    }

    /// The request as text: method, path, headers, body.
    pub fn render(
        &self,
        kind: EntityKind,
        query: &[(String, String)],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> String {
        self.request(query, if_unmodified_since).render(kind)
    }

    /// Sends the write; answers the entity (`None` for a delete).
    pub async fn send(
        &self,
        client: &Client,
        kind: EntityKind,
        query: &[(String, String)],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> superoffice::Result<Option<Value>> {
        client
            .entities(kind)
            .write(&self.request(query, if_unmodified_since))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_requests_with_query_and_condition() {
        let at = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = WriteOp::patch(
            5,
            json!([{ "op": "replace", "path": "/Name", "value": "B" }]),
        )
        .render(
            EntityKind::Contact,
            &[("$select".into(), "Name,Department".into())],
            Some(at),
        );
        assert!(
            text.starts_with("PATCH /api/v1/Contact/5?%24select=Name%2CDepartment\n"),
            "{text}"
        );
        assert!(text.contains("If-Unmodified-Since: Wed, 21 Oct 2015 07:28:00 GMT"));
        assert!(text.contains("application/json-patch+json"));
        assert_eq!(
            WriteOp::Delete(3).render(EntityKind::Sale, &[], None),
            "DELETE /api/v1/Sale/3"
        );
        assert!(
            WriteOp::patch(2, json!({ "Name": "A" }))
                .render(EntityKind::Person, &[], None)
                .starts_with(
                    "PATCH /api/v1/Person/2\nContent-Type: application/merge-patch+json\n"
                ),
        );
    }

    #[test]
    fn requests_carry_the_tasks_query_and_precondition() {
        let at = Utc::now();
        let query = [("a".to_string(), "1".to_string())];
        let request = WriteOp::Put(7, json!({ "Name": "A" })).request(&query, Some(at));
        assert_eq!(request.id(), Some(7));
        assert_eq!(request.precondition(), Some(at));
        assert_eq!(
            request.path_and_query(EntityKind::Project),
            "/api/v1/Project/7?a=1"
        );
        assert_eq!(request.body(), Some(&json!({ "Name": "A" })));
        assert_eq!(WriteOp::Post(json!({})).request(&[], None).id(), None);
    }
}
