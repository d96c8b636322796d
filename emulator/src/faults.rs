//! Fault injection: rules that make a share of requests slow, fail with a status, or lose their
//! connection, chosen by a seeded random stream.
//!
//! A rule applies to a route class. `all` covers every request except `/__admin`; `data` every
//! call under `/{host}/{ctx}/api/`; `odata` the archive/list calls within it; `entity` the other
//! data calls; `auth` the login service (`/login/…`, `/Login/api/…`); `state` the State API;
//! `webhook` outgoing deliveries. The first rule (in the order they were added) that fires
//! decides the outcome.

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
        if self.status.is_none() && self.latency_ms.is_none() && !self.drop_connection {
            return Err("a rule needs status, latency_ms or drop_connection".into());
        }
        Ok(())
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultAction {
    /// Sleep this long first.
    pub latency_ms: Option<u64>,
    /// Then close the connection.
    pub drop_connection: bool,
    /// Or answer with this status.
    pub status: Option<u16>,
    /// With this `Retry-After`.
    pub retry_after: Option<u64>,
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

    /// Decides the fate of a request belonging to `classes`.
    pub fn decide(&mut self, classes: &[RouteClass]) -> Option<FaultAction> {
        if self.rules.is_empty() {
            return None;
        }
        for rule in &mut self.rules {
            if !classes.contains(&rule.route_class) || rule.count == Some(0) {
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
            });
        }
        None
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
    }
}
