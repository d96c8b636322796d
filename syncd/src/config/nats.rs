//! `[[sink]]`, `[[source]]` and `instance`: the NATS JetStream streams the change feed is
//! published to and publish requests arrive from.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawNats, RawSink, RawSource};
use super::retention::RETENTION;
use super::secret::SecretRef;
use super::values::{Ctx, DAY, SECOND};
use crate::Result;

/// The default sink subject template.
pub const DEFAULT_SUBJECT: &str = "superoffice.{tenant}.{entity}.{op}";
/// The default stream.
pub const DEFAULT_STREAM: &str = "SUPEROFFICE";
/// The default source subject.
pub const DEFAULT_SOURCE_SUBJECT: &str = "superoffice.publish.>";
/// The default source stream.
pub const DEFAULT_SOURCE_STREAM: &str = "SUPEROFFICE_PUBLISH";
/// `duplicate_window`: at least 2 minutes (a re-send after a crash and restart must fall
/// inside it), at most 7 days.
const DUPLICATE_WINDOW: RangeInclusive<Duration> =
    Duration::from_secs(120)..=Duration::from_secs(7 * 86_400);

/// One `[[source]]` (only `kind = "nats"`: a durable pull consumer on a JetStream stream
/// whose messages are publish requests, see [`crate::source`]).
#[derive(Debug, Clone)]
pub struct Source {
    /// Name (the loop `source:NAME`, logs, metrics).
    pub name: String,
    /// Server URL(s).
    pub url: String,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// PEM file of the CA that signs the server's certificate (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// The stream holding the requests (created with `subject` when missing; default
    /// `SUPEROFFICE_PUBLISH`).
    pub stream: String,
    /// The consumer's filter subject (default `superoffice.publish.>`).
    pub subject: String,
    /// The durable consumer's name (default `syncd-NAME`).
    pub durable: String,
    /// How long the server waits for an ack before it delivers a message again.
    pub ack_wait: Duration,
}

/// One `[[sink]]` (only `kind = "nats"`: a NATS JetStream stream).
#[derive(Debug, Clone)]
pub struct Sink {
    /// Name (`sink_cursors`, metrics, the loop `sink:NAME`).
    pub name: String,
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`, `tls://…`).
    pub url: String,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// PEM file of the CA that signs the server's certificate (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// The JetStream stream (default `SUPEROFFICE`).
    pub stream: String,
    /// Subject template: `{tenant}`, `{subscription}`, `{entity}`, `{op}` are replaced by the
    /// change's (sanitised) values. Default `superoffice.{tenant}.{entity}.{op}`.
    pub subject: String,
    /// The stream's subjects when syncd creates it (default: the template with each
    /// placeholder as `*`).
    pub stream_subjects: Vec<String>,
    /// Stream retention policy when syncd creates it.
    pub retention: StreamRetention,
    /// Stream replicas when syncd creates it (1–5).
    pub replicas: usize,
    /// Stream `max_age` when syncd creates it (`None`: unlimited).
    pub max_age: Option<Duration>,
    /// Stream de-duplication window when syncd creates it (at least 2 minutes).
    pub duplicate_window: Duration,
    /// `/readyz` is not ready while the sink is more than this many changes behind (`None`:
    /// off).
    pub max_lag: Option<u64>,
    /// Changes published before their acks are awaited.
    pub batch: usize,
}

/// How a NATS sink or source authenticates (each secret from a secret source).
#[derive(Debug, Clone)]
pub enum NatsAuth {
    /// No credentials.
    None,
    /// `token = {…}`.
    Token(SecretRef),
    /// `user = "…"`, `password = {…}`.
    UserPassword(String, SecretRef),
    /// `nkey = {…}`: the seed (`SU…`).
    Nkey(SecretRef),
    /// `creds = {…}`: the text of a `.creds` file (JWT and seed).
    Creds(SecretRef),
}

/// The retention policy of a stream syncd creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRetention {
    /// Kept until the stream's limits (`max_age`) remove them.
    Limits,
    /// Kept while a consumer is interested.
    Interest,
    /// Removed once a consumer acknowledged them.
    WorkQueue,
}

/// Whether `text` can be one token of a NATS subject (and of a msg id prefix).
fn valid_token(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | ':') || c.is_whitespace())
}

/// A sink, source or durable name: letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `instance`: one token of a NATS subject.
pub(super) fn instance(ctx: &Ctx<'_>, raw: Option<&Spanned<String>>) -> Result<Option<String>> {
    match raw {
        Some(i) if !valid_token(i.get_ref()) => Err(ctx.at(
            i,
            "instance",
            "must be non-empty without '.', '*', '>', ':' or whitespace",
        )),
        i => Ok(i.map(|i| i.get_ref().clone())),
    }
}

/// Every `[[sink]]`, in file order; names are unique.
pub(super) fn sinks(ctx: &Ctx<'_>, raw: &[Spanned<RawSink>]) -> Result<Vec<Sink>> {
    let mut sinks: Vec<Sink> = Vec::new();
    for (index, spanned) in raw.iter().enumerate() {
        let new = sink(ctx, index, spanned)?;
        if sinks.iter().any(|s| s.name == new.name) {
            return Err(ctx.at(
                spanned,
                &format!("sink[{index}].name"),
                format!("{:?} is used by another [[sink]]", new.name),
            ));
        }
        sinks.push(new);
    }
    Ok(sinks)
}

/// Every `[[source]]`, in file order; names are unique.
pub(super) fn sources(ctx: &Ctx<'_>, raw: &[Spanned<RawSource>]) -> Result<Vec<Source>> {
    let mut sources: Vec<Source> = Vec::new();
    for (index, spanned) in raw.iter().enumerate() {
        let new = source(ctx, index, spanned)?;
        if sources.iter().any(|s| s.name == new.name) {
            return Err(ctx.at(
                spanned,
                &format!("source[{index}].name"),
                format!("{:?} is used by another [[source]]", new.name),
            ));
        }
        sources.push(new);
    }
    Ok(sources)
}

/// The `index`th `[[sink]]`.
fn sink(ctx: &Ctx<'_>, index: usize, spanned: &Spanned<RawSink>) -> Result<Sink> {
    let r = spanned.get_ref();
    let key = |k: &str| format!("sink[{index}].{k}");
    if r.kind.get_ref() != "nats" {
        return Err(ctx.at(
            &r.kind,
            &key("kind"),
            format!("{:?} is not a sink kind (give \"nats\")", r.kind.get_ref()),
        ));
    }
    if !valid_name(&r.name) {
        return Err(ctx.at(
            spanned,
            &key("name"),
            format!("{:?}: use letters, digits, '-' and '_'", r.name),
        ));
    }
    if r.url.get_ref().trim().is_empty() {
        return Err(ctx.at(&r.url, &key("url"), "is empty"));
    }
    let auth = nats_auth(ctx, &key, spanned)?;
    let stream = match &r.stream {
        None => DEFAULT_STREAM.to_string(),
        Some(span) => {
            let stream = span.get_ref();
            if stream.is_empty()
                || stream
                    .chars()
                    .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
            {
                return Err(ctx.at(
                    span,
                    &key("stream"),
                    format!("{stream:?} is not a valid stream name"),
                ));
            }
            stream.clone()
        }
    };
    let template = match &r.subject {
        None => {
            crate::feed::subject::Template::parse(DEFAULT_SUBJECT).expect("the default is valid")
        }
        Some(span) => crate::feed::subject::Template::parse(span.get_ref())
            .map_err(|e| ctx.at(span, &key("subject"), e))?,
    };
    let subject = r
        .subject
        .as_ref()
        .map_or_else(|| DEFAULT_SUBJECT.to_string(), |s| s.get_ref().clone());
    let stream_subjects = match &r.stream_subjects {
        Some(list) => {
            if list.is_empty() {
                return Err(ctx.at(spanned, &key("stream_subjects"), "is empty"));
            }
            for s in list {
                if s.get_ref()
                    .split('.')
                    .any(|t| t.is_empty() || t.chars().any(char::is_whitespace))
                {
                    return Err(ctx.at(
                        s,
                        &key("stream_subjects"),
                        format!("{:?} is not a subject", s.get_ref()),
                    ));
                }
            }
            list.iter().map(|s| s.get_ref().clone()).collect()
        }
        None => vec![template.wildcard()],
    };
    let retention = ctx.keyword(
        r.retention.as_ref(),
        &key("retention"),
        StreamRetention::Limits,
        "limits, interest or workqueue",
        |text| match text {
            "limits" => Some(StreamRetention::Limits),
            "interest" => Some(StreamRetention::Interest),
            "workqueue" => Some(StreamRetention::WorkQueue),
            _ => None,
        },
    )?;
    let max_age = ctx.optional_duration(r.max_age.as_ref(), &key("max_age"), RETENTION)?;
    let max_lag = match &r.max_lag {
        None => None,
        Some(v) => Some(ctx.count::<u64>(Some(v), &key("max_lag"), 0, 1..=i64::MAX)?),
    };
    Ok(Sink {
        name: r.name.clone(),
        url: r.url.get_ref().clone(),
        auth,
        tls_ca: r.tls_ca.clone(),
        tls_required: r.tls_required.unwrap_or(false),
        stream,
        subject,
        stream_subjects,
        retention,
        replicas: ctx.count(r.replicas.as_ref(), &key("replicas"), 1, 1..=5)?,
        max_age,
        duplicate_window: ctx.duration(
            r.duplicate_window.as_ref(),
            &key("duplicate_window"),
            Duration::from_secs(120),
            DUPLICATE_WINDOW,
        )?,
        max_lag,
        batch: ctx.count(r.batch.as_ref(), &key("batch"), 256, 1..=10_000)?,
    })
}

/// The `index`th `[[source]]`.
fn source(ctx: &Ctx<'_>, index: usize, spanned: &Spanned<RawSource>) -> Result<Source> {
    let r = spanned.get_ref();
    let key = |k: &str| format!("source[{index}].{k}");
    if r.kind.get_ref() != "nats" {
        return Err(ctx.at(
            &r.kind,
            &key("kind"),
            format!(
                "{:?} is not a source kind (give \"nats\")",
                r.kind.get_ref()
            ),
        ));
    }
    if !valid_name(&r.name) {
        return Err(ctx.at(
            spanned,
            &key("name"),
            format!("{:?}: use letters, digits, '-' and '_'", r.name),
        ));
    }
    if r.url.get_ref().trim().is_empty() {
        return Err(ctx.at(&r.url, &key("url"), "is empty"));
    }
    let auth = nats_auth(ctx, &key, spanned)?;
    let text = |v: &Option<Spanned<String>>, default: String| {
        v.as_ref().map(|s| s.get_ref().clone()).unwrap_or(default)
    };
    let stream = text(&r.stream, DEFAULT_SOURCE_STREAM.to_string());
    if let Some(span) = &r.stream
        && !valid_name(&stream)
    {
        return Err(ctx.at(
            span,
            &key("stream"),
            format!("{stream:?} is not a valid stream name"),
        ));
    }
    let durable = text(&r.durable, format!("syncd-{}", r.name));
    if let Some(span) = &r.durable
        && !valid_name(&durable)
    {
        return Err(ctx.at(
            span,
            &key("durable"),
            format!("{durable:?}: use letters, digits, '-' and '_'"),
        ));
    }
    let subject = text(&r.subject, DEFAULT_SOURCE_SUBJECT.to_string());
    if let Some(span) = &r.subject
        && !valid_filter(&subject)
    {
        return Err(ctx.at(
            span,
            &key("subject"),
            format!("{subject:?} is not a subject filter"),
        ));
    }
    Ok(Source {
        name: r.name.clone(),
        url: r.url.get_ref().clone(),
        auth,
        tls_ca: r.tls_ca.clone(),
        tls_required: r.tls_required.unwrap_or(false),
        stream,
        subject,
        durable,
        ack_wait: ctx.duration(
            r.ack_wait.as_ref(),
            &key("ack_wait"),
            Duration::from_secs(30),
            SECOND..=DAY,
        )?,
    })
}

/// Whether `subject` is a NATS subject filter: non-empty tokens without whitespace, `*` and
/// `>` only as whole tokens, `>` only last.
fn valid_filter(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    !tokens.iter().enumerate().any(|(i, t)| {
        t.is_empty()
            || t.chars().any(char::is_whitespace)
            || (*t == ">" && i + 1 != tokens.len())
            || (t.len() > 1 && t.contains(['*', '>']))
    })
}

/// `token`, `user` + `password`, `nkey` or `creds`: at most one way.
fn nats_auth<R: RawNats>(
    ctx: &Ctx<'_>,
    key: &dyn Fn(&str) -> String,
    at: &Spanned<R>,
) -> Result<NatsAuth> {
    let [token, password, nkey, creds] = at.get_ref().secrets();
    let user = at.get_ref().user();
    let given = [
        token.is_some(),
        password.is_some() || user.is_some(),
        nkey.is_some(),
        creds.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ctx.at(
            at,
            &key("token"),
            "give at most one of token, user/password, nkey, creds",
        ));
    }
    Ok(match (token, password, nkey, creds, user) {
        (Some(t), ..) => NatsAuth::Token(ctx.secret_ref(t, &key("token"), t.get_ref().clone())?),
        (_, Some(p), _, _, Some(u)) => NatsAuth::UserPassword(
            u.get_ref().clone(),
            ctx.secret_ref(p, &key("password"), p.get_ref().clone())?,
        ),
        (_, Some(p), _, _, None) => return Err(ctx.at(p, &key("user"), "password without user")),
        (_, None, _, _, Some(u)) => {
            return Err(ctx.at(u, &key("password"), "user without password"));
        }
        (_, _, Some(n), ..) => {
            NatsAuth::Nkey(ctx.secret_ref(n, &key("nkey"), n.get_ref().clone())?)
        }
        (_, _, _, Some(c), _) => {
            NatsAuth::Creds(ctx.secret_ref(c, &key("creds"), c.get_ref().clone())?)
        }
        _ => NatsAuth::None,
    })
}
