//! Prometheus metrics, in-process: counters and gauges with labels, rendered in the text
//! exposition format on `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `syncd_rows` | gauge | subscription (live records stored) |
//! | `syncd_changes_total` | counter | subscription, op (`insert`/`update`/`delete`) |
//! | `syncd_lag_seconds` | gauge | subscription (now − newest committed source timestamp) |
//! | `syncd_last_success_timestamp_seconds` | gauge | subscription |
//! | `syncd_subscription_degraded` | gauge | subscription (1 while the breaker holds it) |
//! | `syncd_runs_total` | counter | subscription, kind, status |
//! | `syncd_errors_total` | counter | subscription |
//! | `syncd_requests_total` | counter | tenant, status (`none` = no answer) |
//! | `syncd_retries_total` | counter | tenant, reason |
//! | `syncd_webhook_events_total` | counter | outcome (`queued`, `duplicate`, `rejected` (unsigned, wrongly signed or malformed), `no_secret`, `too_large`, `test`, `unfollowed`, `ignored` (no `PrimaryKey`)) |
//! | `syncd_webhook_secret_present` | gauge | (1: a webhook secret is in force; 0: every webhook is refused) |
//! | `syncd_pruned_rows_total` | counter | table (`webhook_events`, `runs`: deleted by `[retention]`) |
//! | `syncd_retention_errors_total` | counter | (failed prunes) |
//! | `syncd_unannounced_changes_total` | counter | subscription (found by polling, no webhook said so) |
//! | `syncd_poll_interval_seconds` | gauge | subscription (the time between polls in force: stretched while webhooks are healthy) |
//! | `syncd_rows_read_total` | counter | subscription, kind (rows read from archives by passes, reconciles and webhook refetches) |
//! | `syncd_tasks` | gauge | state (publish ledger) |
//! | `syncd_publish_total` | counter | entity, action, outcome |
//! | `syncd_control_refused_total` | counter | reason (`missing_token`, `wrong_token`, `no_token_configured`, `foreign_origin`, `not_json`, `body_too_large`, `timeout`, `header_timeout`) |
//! | `syncd_control_connections` | gauge | (open control-plane connections) |
//! | `syncd_control_connection_waits_total` | counter | (times the connection cap made a connection wait) |
//! | `syncd_control_accept_errors_total` | counter | (failed accepts) |
//! | `syncd_loop_restarts_total` | counter | loop (`sync:<subscription>`, `outbox`; see `supervise`) |
//! | `syncd_quarantined_records` | gauge | subscription (records whose transform failed) |
//! | `syncd_tenant_up` | gauge | tenant (0: degraded, see [`crate::tenants`]) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use superoffice::runtime::Observer;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Family {
    kind: &'static str,
    help: &'static str,
    values: BTreeMap<Labels, f64>,
}

/// The registry. Share it as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn describe(name: &str) -> (&'static str, &'static str) {
    match name {
        "syncd_rows" => ("gauge", "Live records stored per subscription."),
        "syncd_changes_total" => ("counter", "Changes written to the change feed."),
        "syncd_lag_seconds" => (
            "gauge",
            "Seconds between now and the newest committed source change.",
        ),
        "syncd_last_success_timestamp_seconds" => {
            ("gauge", "Unix time of the last successful pass.")
        }
        "syncd_subscription_degraded" => (
            "gauge",
            "1 while the mass-delete breaker holds the subscription.",
        ),
        "syncd_runs_total" => ("counter", "Sync passes by kind and outcome."),
        "syncd_errors_total" => ("counter", "Failed passes and records per subscription."),
        "syncd_requests_total" => ("counter", "SuperOffice API attempts by HTTP status."),
        "syncd_retries_total" => ("counter", "Retries the SDK runtime made, by reason."),
        "syncd_webhook_events_total" => ("counter", "Webhook deliveries received, by outcome."),
        "syncd_webhook_secret_present" => (
            "gauge",
            "1 while a webhook secret is in force; 0: every webhook is refused.",
        ),
        "syncd_pruned_rows_total" => ("counter", "Old rows deleted by [retention], by table."),
        "syncd_retention_errors_total" => ("counter", "Failed retention prunes."),
        "syncd_unannounced_changes_total" => (
            "counter",
            "Changes polling found that no webhook announced.",
        ),
        "syncd_poll_interval_seconds" => (
            "gauge",
            "Seconds between polls in force (stretched while webhooks are healthy).",
        ),
        "syncd_rows_read_total" => ("counter", "Rows read from archives, by run kind."),
        "syncd_tasks" => ("gauge", "Publish tasks by state."),
        "syncd_publish_total" => ("counter", "Publish attempts by entity, action and outcome."),
        "syncd_control_refused_total" => ("counter", "Control-plane requests refused, by reason."),
        "syncd_control_connections" => ("gauge", "Open control-plane connections."),
        "syncd_control_connection_waits_total" => (
            "counter",
            "Times a connection waited because the connection cap was reached.",
        ),
        "syncd_control_accept_errors_total" => ("counter", "Failed control-plane accepts."),
        "syncd_loop_restarts_total" => {
            ("counter", "Restarts of a supervised loop after it failed.")
        }
        "syncd_quarantined_records" => (
            "gauge",
            "Records whose transform failed or ran out of budget, per subscription.",
        ),
        "syncd_tenant_up" => (
            "gauge",
            "1 while a tenant's credentials work, 0 while it is degraded.",
        ),
        "syncd_sink_lag" => (
            "gauge",
            "Changes committed to the feed that the sink has not acknowledged yet.",
        ),
        "syncd_sink_acked_seq" => (
            "gauge",
            "The highest seq up to which every change was acknowledged by the sink.",
        ),
        "syncd_sink_errors_total" => (
            "counter",
            "Failed sink sessions (connect, stream check, publish without ack).",
        ),
        "syncd_source_errors_total" => (
            "counter",
            "Failed source sessions (connect, consumer, store, ack).",
        ),
        "syncd_source_messages_total" => (
            "counter",
            "Source messages taken, by outcome (queued, replay, rejected).",
        ),
        _ => ("untyped", "syncd metric."),
    }
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn update(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| {
            let (kind, help) = describe(name);
            Family {
                kind,
                help,
                values: BTreeMap::new(),
            }
        });
        f(family.values.entry(labels).or_insert(0.0));
    }

    /// Adds to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        self.update(name, labels, |v| *v += by as f64);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.update(name, labels, |v| *v = value);
    }

    /// The current value (0 when never touched).
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families
            .get(name)
            .and_then(|f| f.values.get(&labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, value) in &family.values {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let rendered: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}=\"{}\"",
                                v.replace('\\', "\\\\")
                                    .replace('"', "\\\"")
                                    .replace('\n', "\\n")
                            )
                        })
                        .collect();
                    let _ = writeln!(out, "{name}{{{}}} {value}", rendered.join(","));
                }
            }
        }
        out
    }

    /// An SDK observer that counts requests and retries for `tenant`.
    pub fn observer(self: &Arc<Self>, tenant: &str) -> Arc<dyn Observer> {
        Arc::new(RequestMetrics {
            metrics: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

#[derive(Debug)]
struct RequestMetrics {
    metrics: Arc<Metrics>,
    tenant: String,
}

impl Observer for RequestMetrics {
    fn attempt(
        &self,
        _operation: &str,
        status: Option<StatusCode>,
        _attempt: u32,
        _latency: Duration,
    ) {
        let status = status
            .map(|s| s.as_u16().to_string())
            .unwrap_or_else(|| "none".into());
        self.metrics.inc(
            "syncd_requests_total",
            &[("tenant", &self.tenant), ("status", &status)],
            1,
        );
    }

    fn retry(&self, _operation: &str, reason: &str, _delay: Duration) {
        self.metrics.inc(
            "syncd_retries_total",
            &[("tenant", &self.tenant), ("reason", reason)],
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.inc(
            "syncd_changes_total",
            &[("subscription", "contacts"), ("op", "insert")],
            3,
        );
        metrics.set("syncd_rows", &[("subscription", "con\"tacts")], 42.0);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE syncd_changes_total counter"),
            "{text}"
        );
        assert!(
            text.contains("syncd_changes_total{subscription=\"contacts\",op=\"insert\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("syncd_rows{subscription=\"con\\\"tacts\"} 42"),
            "{text}"
        );
        assert_eq!(
            metrics.get(
                "syncd_changes_total",
                &[("subscription", "contacts"), ("op", "insert")]
            ),
            3.0
        );
    }
}
