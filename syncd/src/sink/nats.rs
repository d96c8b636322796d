//! The NATS JetStream sink (`[[sink]] kind = "nats"`), the loop `sink:NAME`.
//!
//! One session: connect (credentials and TLS from the config), check the stream (create it
//! when missing; when it exists its subjects must cover the sink's subjects, else an error),
//! then publish the feed after the stored cursor in batches of `batch` changes: every change of
//! a batch is sent (pipelined), then the PubAcks are awaited in seq order and the cursor is
//! stored over the contiguous acknowledged prefix. A failure anywhere ends the session: it is
//! logged with the sink and the error, counted in `syncd_sink_errors_total{sink}`, stored for
//! `syncd status`, and a new session starts after a backoff (0.5 s doubling to 30 s, reset by
//! progress). The sync itself never waits for a sink; the sink catches up from its cursor.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, HeaderMap};
use tokio_util::sync::CancellationToken;

use super::{Template, covers, loop_name};
use crate::config::{NatsAuth, Sink, StreamRetention};
use crate::feed::Tenants;
use crate::store::feed::FeedPage;
use crate::store::sinks;
use crate::{Error, Result, Runtime};

/// First wait after a failed session; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between sessions.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Connecting, and waiting for one PubAck or stream request.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle sink reports to the watchdog when systemd sets none.
const IDLE_BEAT: Duration = Duration::from_secs(5);

fn err(sink: &str, message: impl std::fmt::Display) -> Error {
    Error::Sink {
        sink: sink.to_string(),
        message: message.to_string(),
    }
}

/// Runs the sink `name` until `shutdown`. Failed sessions are retried here with backoff (never
/// returned); only a sink missing from the config is an error.
pub async fn run(runtime: Arc<Runtime>, name: String, shutdown: CancellationToken) -> Result<()> {
    let sink = runtime
        .config
        .sinks
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| Error::config(format!("no [[sink]] is named {name:?}")))?;
    let template = Template::parse(&sink.subject).map_err(|e| err(&name, e))?;
    // The id stored with the database is always part of it: a database started from scratch
    // (a lost disk) restarts its seqs, and must not reuse msg ids the stream still remembers.
    let stored = runtime.store.write(|tx| sinks::instance_id(tx)).await?;
    let instance = match &runtime.config.instance {
        Some(instance) => format!("{instance}-{stored}"),
        None => stored,
    };
    let tenants = Tenants::from_config(&runtime.config);
    let loop_name = loop_name(&name);
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let session = Session {
            runtime: &runtime,
            sink: &sink,
            template: &template,
            instance: &instance,
            tenants: &tenants,
            loop_name: &loop_name,
        };
        match session.run(&shutdown, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                runtime
                    .metrics
                    .inc("syncd_sink_errors_total", &[("sink", &name)], 1);
                tracing::warn!(sink = %name, url = %sink.url, stream = %sink.stream, %error, retry_in = ?backoff, "sink: session failed; retrying");
                let text = error.to_string();
                let n = name.clone();
                if let Err(e) = runtime
                    .store
                    .write(move |tx| sinks::set_error(tx, &n, &text))
                    .await
                {
                    tracing::warn!(sink = %name, error = %e, "sink: recording the failure failed");
                }
            }
        }
        let until = tokio::time::Instant::now() + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let beat = runtime.notifier.heartbeat_interval().unwrap_or(IDLE_BEAT);
        while tokio::time::Instant::now() < until {
            runtime.notifier.alive(&loop_name);
            report(&runtime, &sink, None).await;
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + beat)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

/// Updates the lag metrics and `/readyz` from `acked` (read from the store when `None`).
async fn report(runtime: &Runtime, sink: &Sink, acked: Option<i64>) {
    let acked = match acked {
        Some(a) => a,
        None => {
            let name = sink.name.clone();
            match runtime
                .store
                .read(move |c| sinks::acked_seq(c, &name))
                .await
            {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(sink = %sink.name, %error, "sink: reading the cursor failed");
                    return;
                }
            }
        }
    };
    let lag = (runtime.feed.last() - acked).max(0);
    let labels = [("sink", sink.name.as_str())];
    runtime.metrics.set("syncd_sink_lag", &labels, lag as f64);
    runtime
        .metrics
        .set("syncd_sink_acked_seq", &labels, acked as f64);
    let problem = sink
        .max_lag
        .filter(|max| lag as u64 > *max)
        .map(|max| format!("{lag} changes behind (max_lag {max}), acknowledged up to seq {acked}"));
    runtime.health.set_sink_problem(&sink.name, problem);
}

/// Connects to `url` with `auth` and TLS settings (shared with [`crate::source`]); the error
/// says what failed, without any secret.
pub async fn connect_to(
    client_name: String,
    url: &str,
    auth: &NatsAuth,
    tls_ca: Option<&std::path::Path>,
    tls_required: bool,
) -> std::result::Result<async_nats::Client, String> {
    let mut options = ConnectOptions::new()
        .name(client_name)
        .connection_timeout(TIMEOUT)
        .request_timeout(Some(TIMEOUT));
    let secret = |s: &crate::config::SecretRef| s.resolve().map_err(|e| e.to_string());
    options = match auth {
        NatsAuth::None => options,
        NatsAuth::Token(s) => options.token(secret(s)?.expose().to_string()),
        NatsAuth::UserPassword(user, s) => {
            options.user_and_password(user.clone(), secret(s)?.expose().to_string())
        }
        NatsAuth::Nkey(s) => options.nkey(secret(s)?.expose().trim().to_string()),
        NatsAuth::Creds(s) => options
            .credentials(secret(s)?.expose())
            .map_err(|e| format!("{}: not a creds file: {e}", s.key()))?,
    };
    if let Some(ca) = tls_ca {
        options = options
            .add_root_certificates(ca.to_path_buf())
            .require_tls(true);
    }
    if tls_required {
        options = options.require_tls(true);
    }
    options
        .connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

/// Connects with the sink's credentials and TLS settings.
pub async fn connect(sink: &Sink) -> Result<async_nats::Client> {
    connect_to(
        format!("syncd sink {}", sink.name),
        &sink.url,
        &sink.auth,
        sink.tls_ca.as_deref(),
        sink.tls_required,
    )
    .await
    .map_err(|e| err(&sink.name, e))
}

/// Creates the stream when missing; checks that an existing one takes every subject the sink
/// publishes to.
pub async fn ensure_stream(
    js: &jetstream::Context,
    sink: &Sink,
    template: &Template,
) -> Result<()> {
    let ours = template.wildcard();
    match js.get_stream(&sink.stream).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| err(&sink.name, format!("stream {}: {e}", sink.stream)))?;
            if !info.config.subjects.iter().any(|s| covers(s, &ours)) {
                return Err(err(
                    &sink.name,
                    format!(
                        "stream {} exists with subjects {:?}, which do not cover {ours:?} \
                         (add it to the stream's subjects or change the sink's subject)",
                        sink.stream, info.config.subjects
                    ),
                ));
            }
            Ok(())
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let config = stream::Config {
                name: sink.stream.clone(),
                subjects: sink.stream_subjects.clone(),
                retention: match sink.retention {
                    StreamRetention::Limits => stream::RetentionPolicy::Limits,
                    StreamRetention::Interest => stream::RetentionPolicy::Interest,
                    StreamRetention::WorkQueue => stream::RetentionPolicy::WorkQueue,
                },
                num_replicas: sink.replicas,
                max_age: sink.max_age.unwrap_or_default(),
                duplicate_window: sink.duplicate_window,
                ..Default::default()
            };
            if !config.subjects.iter().any(|s| covers(s, &ours)) {
                return Err(err(
                    &sink.name,
                    format!(
                        "stream_subjects {:?} do not cover the subject {ours:?}",
                        config.subjects
                    ),
                ));
            }
            js.create_stream(config)
                .await
                .map_err(|e| err(&sink.name, format!("creating stream {}: {e}", sink.stream)))?;
            tracing::info!(sink = %sink.name, stream = %sink.stream, subjects = ?sink.stream_subjects, "sink: created the stream");
            Ok(())
        }
        Err(e) => Err(err(&sink.name, format!("stream {}: {e}", sink.stream))),
    }
}

struct Session<'a> {
    runtime: &'a Arc<Runtime>,
    sink: &'a Sink,
    template: &'a Template,
    instance: &'a str,
    tenants: &'a Tenants,
    loop_name: &'a str,
}

impl Session<'_> {
    /// Publishes until `shutdown` (`Ok`) or a failure (`Err`).
    async fn run(&self, shutdown: &CancellationToken, backoff: &mut Duration) -> Result<()> {
        let (runtime, sink) = (self.runtime, self.sink);
        let client = tokio::select! {
            c = connect(sink) => c?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(TIMEOUT)
            .ack_timeout(TIMEOUT)
            .build(client);
        ensure_stream(&js, sink, self.template).await?;
        let name = sink.name.clone();
        let mut cursor = runtime
            .store
            .read(move |c| sinks::acked_seq(c, &name))
            .await?;
        tracing::info!(sink = %sink.name, url = %sink.url, stream = %sink.stream, acked_seq = cursor, "sink: connected");
        let mut rx = runtime.feed.subscribe();
        let beat = runtime.notifier.heartbeat_interval().unwrap_or(IDLE_BEAT);
        loop {
            runtime.notifier.alive(self.loop_name);
            rx.borrow_and_update();
            let tenants = self.tenants.clone();
            let batch = sink.batch;
            let page = runtime
                .store
                .read(move |c| crate::store::feed::page_after(c, cursor, None, batch, &tenants))
                .await?;
            let events = match page {
                FeedPage::Changes(events) => events,
                FeedPage::Gone { since, oldest } => {
                    return Err(err(
                        &sink.name,
                        format!(
                            "changes after seq {since} were deleted (the oldest kept is {oldest}) \
                             before this sink acknowledged them"
                        ),
                    ));
                }
            };
            if events.is_empty() {
                report(runtime, sink, Some(cursor)).await;
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                    _ = tokio::time::sleep(beat) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            let mut pending = Vec::with_capacity(events.len());
            for event in &events {
                let payload = serde_json::to_vec(event)
                    .map_err(|e| err(&sink.name, format!("encoding seq {}: {e}", event.seq)))?;
                let mut headers = HeaderMap::new();
                headers.insert(
                    "Nats-Msg-Id",
                    format!("{}:{}", self.instance, event.seq).as_str(),
                );
                let subject = self.template.subject(event);
                let ack = js
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(|e| err(&sink.name, format!("publishing seq {}: {e}", event.seq)))?;
                pending.push((event.seq, ack));
            }
            let mut acked = cursor;
            let mut failure = None;
            for (seq, ack) in pending {
                match ack.await {
                    Ok(ack) if ack.stream == sink.stream => acked = seq,
                    Ok(ack) => {
                        failure = Some(err(
                            &sink.name,
                            format!(
                                "seq {seq} was stored in stream {:?}, not {:?}",
                                ack.stream, sink.stream
                            ),
                        ));
                        break;
                    }
                    Err(e) => {
                        failure = Some(err(&sink.name, format!("no ack for seq {seq}: {e}")));
                        break;
                    }
                }
            }
            if acked > cursor {
                let name = sink.name.clone();
                cursor = runtime
                    .store
                    .write(move |tx| sinks::set_acked_seq(tx, &name, acked))
                    .await?;
                *backoff = INITIAL_BACKOFF;
                report(runtime, sink, Some(cursor)).await;
            }
            if let Some(failure) = failure {
                return Err(failure);
            }
        }
    }
}
