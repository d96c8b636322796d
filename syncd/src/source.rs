//! Sources: publish requests that arrive over NATS JetStream (`[[source]] kind = "nats"`),
//! the supervised loop `source:NAME`.
//!
//! A durable pull consumer (`durable`, explicit acks, `ack_wait`) reads `subject` from
//! `stream` (the stream is created with that subject when missing; an existing one must take
//! it). Each message body is a publish request, the same JSON as `POST /publish`
//! ([`crate::outbox::task::PublishRequest`]), queued through the same intake
//! ([`crate::outbox::publish`], source `nats`); its `Nats-Msg-Id` header is the idempotency
//! key (a `key` in the body must agree). The message is acknowledged only after its task is
//! committed to the ledger, so a crash before the ack means a redelivery, which the key turns
//! into a replay: one task, one write to SuperOffice.
//!
//! A message that cannot become a task (not JSON, an invalid request, no `Nats-Msg-Id` and no
//! `key`, a key already used by a different request) becomes a `dead` task keyed
//! `rejected:nats:STREAM:SEQ` holding the body, and is acknowledged: it is visible in
//! `syncd tasks list --state dead` and never redelivered forever. A store failure leaves the
//! message unacknowledged (the server delivers it again after `ack_wait`) and ends the
//! session; the loop reconnects with backoff. Test hook: `SYNCD_FAILPOINT=source.before_ack`
//! parks the loop between the commit and the ack (see [`crate::outbox`]). Failures are logged with the source and counted
//! in `syncd_source_errors_total{source}`; queued and rejected messages in
//! `syncd_source_messages_total{source,outcome}`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Source;
use crate::outbox::OutboxShared;
use crate::outbox::ledger::Intake;
use crate::outbox::task::PublishRequest;
use crate::sink::covers;
use crate::sink::nats::{INITIAL_BACKOFF, MAX_BACKOFF, TIMEOUT, connect_to};
use crate::store::tasks as ledger;
use crate::{Error, Result, Runtime};

/// The supervised loop's name of a source.
pub fn loop_name(source: &str) -> String {
    format!("source:{source}")
}

const IDLE_BEAT: Duration = Duration::from_secs(5);

fn err(source: &str, message: impl std::fmt::Display) -> Error {
    Error::Source {
        name: source.to_string(),
        message: message.to_string(),
    }
}

/// Runs the source `name` until `shutdown`, queuing into the outbox whose worker `intake`
/// wakes; failed sessions are retried with backoff.
pub async fn run(
    runtime: Arc<Runtime>,
    intake: Arc<OutboxShared>,
    name: String,
    shutdown: CancellationToken,
) -> Result<()> {
    let source = runtime
        .config
        .sources
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| Error::config(format!("no [[source]] is named {name:?}")))?;
    let loop_name = loop_name(&name);
    let mut backoff = INITIAL_BACKOFF;
    loop {
        match session(
            &runtime,
            &intake,
            &source,
            &loop_name,
            &shutdown,
            &mut backoff,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(error) => {
                runtime
                    .metrics
                    .inc("syncd_source_errors_total", &[("source", &name)], 1);
                tracing::warn!(source = %name, url = %source.url, stream = %source.stream, %error, retry_in = ?backoff, "source: session failed; retrying");
            }
        }
        let until = tokio::time::Instant::now() + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let beat = runtime.notifier.heartbeat_interval().unwrap_or(IDLE_BEAT);
        while tokio::time::Instant::now() < until {
            runtime.notifier.alive(&loop_name);
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + beat)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

async fn consumer(js: &jetstream::Context, source: &Source) -> Result<consumer::PullConsumer> {
    let e = |m: String| err(&source.name, m);
    let stream = match js.get_stream(&source.stream).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|x| e(format!("stream {}: {x}", source.stream)))?;
            if !info
                .config
                .subjects
                .iter()
                .any(|s| covers(s, &source.subject))
            {
                return Err(e(format!(
                    "stream {} exists with subjects {:?}, which do not cover {:?}",
                    source.stream, info.config.subjects, source.subject
                )));
            }
            stream
        }
        Err(x)
            if matches!(x.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(stream::Config {
                name: source.stream.clone(),
                subjects: vec![source.subject.clone()],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|x| e(format!("creating stream {}: {x}", source.stream)))?;
            js.get_stream(&source.stream)
                .await
                .map_err(|x| e(format!("stream {}: {x}", source.stream)))?
        }
        Err(x) => return Err(e(format!("stream {}: {x}", source.stream))),
    };
    stream
        .get_or_create_consumer(
            &source.durable,
            consumer::pull::Config {
                durable_name: Some(source.durable.clone()),
                filter_subject: source.subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: source.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(|x| e(format!("consumer {}: {x}", source.durable)))
}

async fn session(
    runtime: &Arc<Runtime>,
    intake: &OutboxShared,
    source: &Source,
    loop_name: &str,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<()> {
    let client = tokio::select! {
        c = connect_to(format!("syncd source {}", source.name), &source.url, &source.auth, source.tls_ca.as_deref(), source.tls_required) => c.map_err(|e| err(&source.name, e))?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(TIMEOUT)
        .build(client);
    let consumer = consumer(&js, source).await?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| err(&source.name, format!("pulling: {e}")))?;
    tracing::info!(source = %source.name, stream = %source.stream, subject = %source.subject, durable = %source.durable, "source: consuming");
    let beat = runtime.notifier.heartbeat_interval().unwrap_or(IDLE_BEAT);
    loop {
        runtime.notifier.alive(loop_name);
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tokio::time::sleep(beat) => continue,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(err(&source.name, format!("pulling: {e}"))),
            None => return Err(err(&source.name, "the message stream ended")),
        };
        let outcome = take(runtime, intake, source, &message).await?;
        // Crash tests: the task is committed, the message not yet acknowledged.
        crate::outbox::failpoint("source.before_ack");
        runtime.metrics.inc(
            "syncd_source_messages_total",
            &[("source", &source.name), ("outcome", outcome)],
            1,
        );
        message
            .double_ack()
            .await
            .map_err(|e| err(&source.name, format!("acknowledging: {e}")))?;
        *backoff = INITIAL_BACKOFF;
    }
}

/// Turns one message into a task (or a dead task); `Err` only when nothing was committed.
async fn take(
    runtime: &Arc<Runtime>,
    intake: &OutboxShared,
    source: &Source,
    message: &jetstream::Message,
) -> Result<&'static str> {
    let reference = match message.info() {
        Ok(info) => format!("nats:{}:{}", info.stream, info.stream_sequence),
        Err(e) => {
            return Err(err(
                &source.name,
                format!("a message without ack info: {e}"),
            ));
        }
    };
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_string());
    let request = parse(&message.payload, msg_id.as_deref());
    let config = &runtime.config;
    let rejected = match request {
        Ok(request) => {
            match crate::outbox::publish(&runtime.store, config, &request, "nats").await {
                Ok(Intake::Queued(task)) => {
                    intake.wake();
                    tracing::debug!(source = %source.name, task = task.id.0, key = %task.key, "source: queued");
                    return Ok("queued");
                }
                Ok(Intake::Replay(task)) => {
                    tracing::debug!(source = %source.name, task = task.id.0, key = %task.key, "source: a redelivery or repeat of a queued request");
                    return Ok("replay");
                }
                Ok(Intake::Mismatch(task)) => format!(
                    "key: {:?} is already used by task {} with a different request",
                    task.key, task.id
                ),
                Err(error) => match error.input_text() {
                    Some(text) => text,
                    None => return Err(error),
                },
            }
        }
        Err(error) => error.input_text().unwrap_or_else(|| error.to_string()),
    };
    let tenant = config
        .outbox
        .tenant
        .clone()
        .or_else(|| config.tenants.first().map(|t| t.name.clone()))
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&message.payload).into_owned();
    let (r, why) = (reference.clone(), rejected.clone());
    let task = runtime
        .store
        .write(move |tx| {
            ledger::insert_rejected_message(tx, &tenant, "nats", &r, &body, &why, Utc::now())
        })
        .await?;
    tracing::warn!(source = %source.name, message = %reference, task = task.0, reason = %rejected, "source: a message was rejected (dead task)");
    Ok("rejected")
}

/// The publish request of a message body, with `Nats-Msg-Id` as its key.
fn parse(body: &[u8], msg_id: Option<&str>) -> Result<PublishRequest> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("not JSON: {e}")))?;
    let mut request = PublishRequest::from_json(&value)?;
    match (&request.key, msg_id) {
        (Some(key), Some(id)) if key != id => {
            return Err(Error::invalid(
                "key",
                format!("{key:?} differs from the Nats-Msg-Id header {id:?}"),
            ));
        }
        (_, Some(id)) => request.key = Some(id.to_string()),
        (Some(_), None) => {}
        (None, None) => {
            return Err(Error::invalid(
                "key",
                "give a Nats-Msg-Id header (or key in the body)",
            ));
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_msg_id_is_the_key_and_bad_bodies_name_the_field() {
        let body = br#"{"action":"create","entity":"contact","payload":{"Name":"A"}}"#;
        assert_eq!(
            parse(body, Some("order-1")).unwrap().key.as_deref(),
            Some("order-1")
        );
        let keyed = br#"{"action":"create","entity":"contact","payload":{"Name":"A"},"key":"k"}"#;
        assert_eq!(parse(keyed, None).unwrap().key.as_deref(), Some("k"));
        let field = |body: &[u8], msg_id| match parse(body, msg_id) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("not invalid input: {other:?}"),
        };
        assert_eq!(field(keyed, Some("other")), "key");
        assert_eq!(field(body, None), "key");
        assert_eq!(field(b"not json", Some("x")), "body");
        let text = parse(keyed, Some("other"))
            .unwrap_err()
            .input_text()
            .unwrap();
        assert_eq!(
            text,
            r#"key: "k" differs from the Nats-Msg-Id header "other""#
        );
    }
}
