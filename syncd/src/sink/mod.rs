//! Sinks: the change feed leaves the machine. Each `[[sink]]` (only `kind = "nats"`, a NATS
//! JetStream stream, see [`nats`]) runs as the supervised loop `sink:NAME`: it reads the feed
//! after its acknowledged seq (`sink_cursors`, [`crate::store::sinks`]), publishes each change
//! as a [`crate::feed::ChangeEvent`] with `Nats-Msg-Id = {instance}:{seq}`, and moves its cursor
//! only over a contiguous prefix of acknowledged changes. A crash between a publish and the
//! cursor write re-sends those changes on restart with the same msg ids, which the stream's
//! de-duplication window drops.
//!
//! How far behind each sink is shows in `syncd status` (the sinks section), `/readyz` (when
//! `max_lag` is set) and the metrics `syncd_sink_lag{sink}`, `syncd_sink_acked_seq{sink}` and
//! `syncd_sink_errors_total{sink}`.

pub mod nats;

use crate::feed::ChangeEvent;

/// The supervised loop's name of a sink.
pub fn loop_name(sink: &str) -> String {
    format!("sink:{sink}")
}

/// A subject template (`superoffice.{tenant}.{entity}.{op}`): dot-separated tokens, each a
/// literal or exactly one placeholder (`{tenant}`, `{subscription}`, `{entity}`, `{op}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Tenant,
    Subscription,
    Entity,
    Op,
}

impl Template {
    /// Parses and checks a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut tokens = Vec::new();
        for part in text.split('.') {
            let token = match part {
                "{tenant}" => Token::Tenant,
                "{subscription}" => Token::Subscription,
                "{entity}" => Token::Entity,
                "{op}" => Token::Op,
                "" => return Err(format!("{text:?} has an empty token")),
                p if p.contains(['{', '}', '*', '>']) || p.chars().any(char::is_whitespace) => {
                    return Err(format!(
                        "{text:?}: token {p:?} is neither a literal nor one of {{tenant}}, \
                         {{subscription}}, {{entity}}, {{op}}"
                    ));
                }
                p => Token::Literal(p.to_string()),
            };
            tokens.push(token);
        }
        Ok(Template(tokens))
    }

    /// The subject of one change; each value is [`sanitise`]d to one token.
    pub fn subject(&self, event: &ChangeEvent) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|t| match t {
                Token::Literal(l) => l.clone(),
                Token::Tenant => sanitise(event.tenant.as_deref().unwrap_or("")),
                Token::Subscription => sanitise(&event.subscription),
                Token::Entity => sanitise(&event.entity),
                Token::Op => event.op.as_str().to_string(),
            })
            .collect();
        parts.join(".")
    }

    /// The template with each placeholder as `*`: every subject it can make.
    pub fn wildcard(&self) -> String {
        let parts: Vec<&str> = self
            .0
            .iter()
            .map(|t| match t {
                Token::Literal(l) => l.as_str(),
                _ => "*",
            })
            .collect();
        parts.join(".")
    }
}

/// One subject token from a value: `.`, `*`, `>` and whitespace become `_`; empty becomes `_`.
pub fn sanitise(value: &str) -> String {
    if value.is_empty() {
        return "_".to_string();
    }
    value
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whether the subject filter `filter` (a stream subject, with `*` and `>`) matches every
/// subject `pattern` (with `*` for any token) can match.
pub fn covers(filter: &str, pattern: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let p: Vec<&str> = pattern.split('.').collect();
    for (i, ft) in f.iter().enumerate() {
        if *ft == ">" {
            // `>` matches one or more tokens.
            return p.len() > i;
        }
        let Some(pt) = p.get(i) else {
            return false;
        };
        if *pt == ">" {
            // Only a `>` covers a `>`.
            return false;
        }
        if *ft != "*" && (*pt == "*" || pt != ft) {
            return false;
        }
    }
    f.len() == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Op;

    #[test]
    fn subjects_are_sanitised_per_token() {
        let template = Template::parse(crate::config::DEFAULT_SUBJECT).unwrap();
        let event = ChangeEvent {
            seq: 1,
            tenant: Some("acme.eu west>*".into()),
            subscription: "s".into(),
            entity: "contact".into(),
            id: 5,
            op: Op::Update,
            at: chrono::Utc::now(),
            hash: None,
            previous_hash: None,
            record: None,
        };
        assert_eq!(
            template.subject(&event),
            "superoffice.acme_eu_west__.contact.update"
        );
        let none = ChangeEvent {
            tenant: None,
            ..event
        };
        assert_eq!(template.subject(&none), "superoffice._.contact.update");
        assert_eq!(template.wildcard(), "superoffice.*.*.*");
        for bad in ["a..b", "a.{x}", "a.b*", "a.>", "a b", "a.{op}x"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage_of_stream_subjects() {
        assert!(covers("superoffice.>", "superoffice.*.*.*"));
        assert!(covers("superoffice.*.*.*", "superoffice.*.*.*"));
        assert!(covers(">", "superoffice.*.contact.*"));
        assert!(covers("superoffice.*.contact.*", "superoffice.*.contact.*"));
        assert!(!covers("superoffice.*.contact.*", "superoffice.*.*.*"));
        assert!(!covers("superoffice.*.*", "superoffice.*.*.*"));
        assert!(!covers("other.>", "superoffice.*.*.*"));
        assert!(!covers("superoffice.*.*.*.>", "superoffice.*.*.*"));
        assert!(covers("superoffice.publish.>", "superoffice.publish.>"));
        assert!(!covers("superoffice.publish.*", "superoffice.publish.>"));
    }
}
