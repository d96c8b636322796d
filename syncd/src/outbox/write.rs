//! The write calls a task makes, in one place: sent through the SDK's uniform entity API (or,
//! when the task carries query parameters, through `send_raw` with the same paths, headers and
//! bodies), and rendered as text for `syncd publish --dry-run`.

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use superoffice::entity::EntityKind;
use superoffice::{Client, RawRequest};

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

    fn method(&self) -> Method {
        match self {
            WriteOp::Post(_) => Method::POST,
            WriteOp::Put(..) => Method::PUT,
            WriteOp::JsonPatch(..) | WriteOp::MergePatch(..) => Method::PATCH,
            WriteOp::Delete(_) => Method::DELETE,
        }
    }

    fn content_type(&self) -> Option<&'static str> {
        match self {
            WriteOp::Post(_) | WriteOp::Put(..) => Some("application/json"),
            WriteOp::JsonPatch(..) => Some("application/json-patch+json"),
            WriteOp::MergePatch(..) => Some("application/merge-patch+json"),
            WriteOp::Delete(_) => None,
        }
    }

    fn body(&self) -> Option<&Value> {
        match self {
            WriteOp::Post(b) | WriteOp::Put(_, b) | WriteOp::JsonPatch(_, b) => Some(b),
            WriteOp::MergePatch(_, b) => Some(b),
            WriteOp::Delete(_) => None,
        }
    }

    fn path(&self, kind: EntityKind, query: &[(String, String)]) -> String {
        let base = match self {
            WriteOp::Post(_) => format!("/api/v1/{}", kind.name()),
            WriteOp::Put(id, _)
            | WriteOp::JsonPatch(id, _)
            | WriteOp::MergePatch(id, _)
            | WriteOp::Delete(id) => format!("/api/v1/{}/{id}", kind.name()),
        };
        if query.is_empty() {
            return base;
        }
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("{base}?{encoded}")
    }

    /// The request as text: method, path, headers, body.
    pub fn render(
        &self,
        kind: EntityKind,
        query: &[(String, String)],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> String {
        let mut text = format!("{} {}", self.method(), self.path(kind, query));
        if let Some(at) = if_unmodified_since {
            text.push_str(&format!("\nIf-Unmodified-Since: {}", http_date(at)));
        }
        if let (Some(content_type), Some(body)) = (self.content_type(), self.body()) {
            text.push_str(&format!(
                "\nContent-Type: {content_type}\n\n{}",
                serde_json::to_string_pretty(body).unwrap_or_default()
            ));
        }
        text
    }

    /// Sends the write; answers the entity (`None` for a delete).
    pub async fn send(
        &self,
        client: &Client,
        kind: EntityKind,
        query: &[(String, String)],
        if_unmodified_since: Option<DateTime<Utc>>,
    ) -> superoffice::Result<Option<Value>> {
        let ius = if_unmodified_since;
        if query.is_empty() {
            let entities = client.entities(kind);
            return match self {
                WriteOp::Post(body) => entities.create(body).await.map(Some),
                WriteOp::Put(id, body) => entities.update(*id, body, ius).await.map(Some),
                WriteOp::JsonPatch(id, ops) => entities.patch(*id, ops, ius).await.map(Some),
                WriteOp::MergePatch(id, patch) => {
                    entities.merge_patch(*id, patch, ius).await.map(Some)
                }
                WriteOp::Delete(id) => entities.delete(*id, ius).await.map(|()| None),
            };
        }
        let mut request = RawRequest::new(self.method(), self.path(kind, query));
        if let Some(at) = ius {
            let value = HeaderValue::from_str(&http_date(at)).map_err(|e| {
                superoffice::Error::InvalidRequest(format!("If-Unmodified-Since: {e}"))
            })?;
            request = request.header(HeaderName::from_static("if-unmodified-since"), value);
        }
        if let (Some(content_type), Some(body)) = (self.content_type(), self.body()) {
            request = request.json(content_type, body)?;
        }
        let operation = match self {
            WriteOp::Post(_) => "outbox_post",
            WriteOp::Put(..) => "outbox_put",
            WriteOp::JsonPatch(..) | WriteOp::MergePatch(..) => "outbox_patch",
            WriteOp::Delete(_) => "outbox_delete",
        };
        let response = client.send_raw(operation, request).await?;
        if matches!(self, WriteOp::Delete(_)) {
            return Ok(None);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(superoffice::Error::Transport)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| superoffice::Error::Decode {
                message: e.to_string(),
                excerpt: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            })
    }
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
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
    }
}
