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

pub use crate::feed::subject::{Template, sanitise};

/// The supervised loop's name of a sink.
pub fn loop_name(sink: &str) -> String {
    format!("sink:{sink}")
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
    use crate::feed::{ChangeEvent, Op};

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
