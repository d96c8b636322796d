//! Fault injection: rules that make a share of requests slow, fail with a status, or lose their
//! connection, chosen by a seeded random stream.
//!
//! A rule applies to a route class. `all` covers every request except `/__admin`; `data` every
//! call under `/{host}/{ctx}/api/`; `odata` the archive/list calls within it; `entity` the other
//! data calls; `auth` the login service (`/login/…`, `/Login/api/…`); `state` the State API;
//! `webhook` outgoing deliveries. The first rule (in the order they were added) that fires
//! decides the outcome.
//!
//! A rule with a `body` answers with that body (as JSON, with `status` or 200) instead of
//! handling the request: how tests serve answers of an unexpected shape, such as a list
//! without its `value` array or rows without their primary key. A rule with `matching` only
//! applies to requests whose path and (decoded) query contain that text.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where a fault rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RouteClass {
    /// Every request except `/__admin`.
    All,
    /// Data calls (`/{host}/{ctx}/api/…`).
    Data,
    /// Archive and list calls.
    Odata,
    /// Data calls other than archives.
    Entity,
    /// Login service.
    Auth,
    /// State API.
    State,
    /// Outgoing webhook deliveries.
    Webhook,
}

/// A fault rule, as posted to `POST /__admin/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Where it applies.
    pub route_class: RouteClass,
    /// Answer with this status instead of handling the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// Probability (0..=1) that the rule fires for a matching request.
    #[serde(default = "one")]
    pub rate: f64,
    /// `Retry-After` seconds to send with `status`.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay before the request is handled (or failed).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Close the connection without an answer.
    #[serde(default)]
    pub drop_connection: bool,
    /// Fire at most this many times (then the rule goes quiet).
    #[serde(default)]
    pub count: Option<u64>,
    /// Answer with this body (`application/json`, with `status` or 200) instead of handling
    /// the request.
    #[serde(default)]
    pub body: Option<String>,
    /// Only requests whose path and query contain this text match (the query percent-decoded,
    /// e.g. `$select=contactId&`); webhook deliveries never do.
    #[serde(default)]
    pub matching: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl FaultRule {
    /// A rule answering `status` for every matching request.
    pub fn status(route_class: RouteClass, status: u16) -> Self {
        FaultRule {
            route_class,
            status: Some(status),
            rate: 1.0,
            retry_after: None,
            latency_ms: None,
            drop_connection: false,
            count: None,
            body: None,
            matching: None,
        }
    }

    /// A rule answering 200 with `body` (JSON text) for every matching request.
    pub fn body(route_class: RouteClass, body: impl Into<String>) -> Self {
        FaultRule {
            status: None,
            body: Some(body.into()),
            ..FaultRule::status(route_class, 200)
        }
    }

    /// A rule that delays every matching request by `ms` and then handles it normally.
    pub fn latency(route_class: RouteClass, ms: u64) -> Self {
        FaultRule {
            status: None,
            latency_ms: Some(ms),
            ..FaultRule::status(route_class, 200)
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err("rate must be within 0..=1".into());
        }
        if let Some(s) = self.status
            && !(100..=599).contains(&s)
        {
            return Err("status must be an HTTP status code".into());
        }
        if self.status.is_none()
            && self.latency_ms.is_none()
            && !self.drop_connection
            && self.body.is_none()
        {
            return Err("a rule needs status, latency_ms, drop_connection or body".into());
        }
        if self.drop_connection && self.body.is_some() {
            return Err("a rule cannot both drop the connection and answer a body".into());
        }
        Ok(())
    }
}

/// What to do to one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultAction {
    /// Sleep this long first.
    pub latency_ms: Option<u64>,
    /// Then close the connection.
    pub drop_connection: bool,
    /// Or answer with this status.
    pub status: Option<u16>,
    /// With this `Retry-After`.
    pub retry_after: Option<u64>,
    /// Or answer `status` (default 200) with this JSON body.
    pub body: Option<String>,
}

/// The active rules and their random stream.
#[derive(Debug)]
pub struct Faults {
    rules: Vec<FaultRule>,
    rng: ChaCha8Rng,
}

impl Faults {
    /// No rules.
    pub fn new(seed: u64) -> Self {
        Faults {
            rules: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xFA17),
        }
    }

    /// Adds a rule.
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Decides the fate of a request belonging to `classes` (rules with `matching` never fire).
    pub fn decide(&mut self, classes: &[RouteClass]) -> Option<FaultAction> {
        self.decide_request(classes, None)
    }

    /// Decides the fate of a request belonging to `classes`, whose path and decoded query are
    /// `target` (see [`request_target`]).
    pub fn decide_request(
        &mut self,
        classes: &[RouteClass],
        target: Option<&str>,
    ) -> Option<FaultAction> {
        if self.rules.is_empty() {
            return None;
        }
        for rule in &mut self.rules {
            if !classes.contains(&rule.route_class) || rule.count == Some(0) {
                continue;
            }
            if let Some(needle) = &rule.matching
                && !target.is_some_and(|t| t.contains(needle.as_str()))
            {
                continue;
            }
            if rule.rate < 1.0 && self.rng.gen_range(0.0..1.0) >= rule.rate {
                continue;
            }
            if let Some(c) = rule.count.as_mut() {
                *c -= 1;
            }
            return Some(FaultAction {
                latency_ms: rule.latency_ms,
                drop_connection: rule.drop_connection,
                status: rule.status,
                retry_after: rule.retry_after,
                body: rule.body.clone(),
            });
        }
        None
    }
}

/// `path?k=v&k=v` with the query percent-decoded: what [`FaultRule::matching`] looks in.
pub fn request_target(path: &str, query: Option<&str>) -> String {
    match query {
        None => path.to_string(),
        Some(query) => {
            let pairs: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_by_class_rate_and_count() {
        let mut f = Faults::new(1);
        assert!(f.decide(&[RouteClass::All]).is_none());
        f.add(FaultRule {
            count: Some(2),
            ..FaultRule::status(RouteClass::Odata, 503)
        });
        assert!(
            f.decide(&[RouteClass::All, RouteClass::Data, RouteClass::Entity])
                .is_none()
        );
        let odata = [RouteClass::All, RouteClass::Data, RouteClass::Odata];
        assert_eq!(f.decide(&odata).unwrap().status, Some(503));
        assert_eq!(f.decide(&odata).unwrap().status, Some(503));
        assert!(f.decide(&odata).is_none(), "count exhausted");
        f.clear();
        f.add(FaultRule {
            rate: 0.5,
            ..FaultRule::status(RouteClass::All, 500)
        });
        let fired = (0..1000)
            .filter(|_| f.decide(&[RouteClass::All]).is_some())
            .count();
        assert!((400..600).contains(&fired), "{fired}");
    }

    #[test]
    fn seeded_decisions_repeat() {
        let run = || {
            let mut f = Faults::new(9);
            f.add(FaultRule {
                rate: 0.3,
                ..FaultRule::status(RouteClass::All, 500)
            });
            (0..50)
                .map(|_| f.decide(&[RouteClass::All]).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn validation() {
        assert!(FaultRule::status(RouteClass::All, 503).validate().is_ok());
        assert!(
            FaultRule {
                rate: 2.0,
                ..FaultRule::status(RouteClass::All, 503)
            }
            .validate()
            .is_err()
        );
        assert!(
            FaultRule {
                status: None,
                ..FaultRule::status(RouteClass::All, 503)
            }
            .validate()
            .is_err()
        );
        let parsed: FaultRule =
            serde_json::from_str(r#"{"route_class":"odata","rate":0.5,"drop_connection":true}"#)
                .unwrap();
        assert!(parsed.drop_connection && parsed.validate().is_ok());
        let body: FaultRule =
            serde_json::from_str(r#"{"route_class":"odata","body":"{\"odata.nextLink\":null}"}"#)
                .unwrap();
        assert_eq!(
            body,
            FaultRule::body(RouteClass::Odata, r#"{"odata.nextLink":null}"#)
        );
        assert!(body.validate().is_ok());
        assert!(
            FaultRule {
                drop_connection: true,
                ..body.clone()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn body_rules_hand_their_body_to_the_request() {
        let mut f = Faults::new(3);
        f.add(FaultRule {
            count: Some(1),
            ..FaultRule::body(RouteClass::Odata, r#"{"value":[{"name":"x"}]}"#)
        });
        let odata = [RouteClass::All, RouteClass::Data, RouteClass::Odata];
        let action = f.decide(&odata).expect("fires");
        assert_eq!(action.body.as_deref(), Some(r#"{"value":[{"name":"x"}]}"#));
        assert_eq!(action.status, None, "200 unless a status is given");
        assert!(f.decide(&odata).is_none(), "count exhausted");
    }

    #[test]
    fn matching_rules_fire_only_for_requests_containing_the_text() {
        let mut f = Faults::new(5);
        f.add(FaultRule {
            matching: Some("$select=contactId&".into()),
            ..FaultRule::status(RouteClass::Odata, 500)
        });
        let odata = [RouteClass::All, RouteClass::Data, RouteClass::Odata];
        let ids = request_target(
            "/x/Cust1/api/v1/Contact",
            Some("%24select=contactId&%24top=50"),
        );
        assert_eq!(ids, "/x/Cust1/api/v1/Contact?$select=contactId&$top=50");
        let columns = request_target(
            "/x/Cust1/api/v1/Contact",
            Some("%24select=contactId%2Cname&%24top=50"),
        );
        assert!(f.decide_request(&odata, Some(&columns)).is_none());
        assert!(f.decide(&odata).is_none(), "no target, no match");
        assert_eq!(
            f.decide_request(&odata, Some(&ids)).unwrap().status,
            Some(500)
        );
    }
}
