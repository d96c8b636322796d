//! Helpers shared by the integration tests: starting an emulator, calling it, and a webhook
//! receiver that records what it gets.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use emulator::{Config, Emulator, SeedCounts};
use serde_json::Value;

/// A small, fast configuration: few rows, webhook retries scaled down 100×.
pub fn config() -> Config {
    let mut c = Config {
        counts: SeedCounts {
            contacts: 50,
            persons: 60,
            sales: 20,
            projects: 10,
            appointments: 20,
            documents: 10,
            tickets: 10,
            selections: 5,
        },
        ..Config::default()
    };
    c.webhooks.retry_scale = 0.01;
    c
}

/// An emulator plus an authenticated client.
pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
    pub token: String,
}

impl Env {
    pub async fn start(config: Config) -> Env {
        let emu = Emulator::start(config).await.expect("emulator starts");
        let token = emu.issue_access_token();
        Env {
            emu,
            http: reqwest::Client::new(),
            token,
        }
    }

    pub async fn default() -> Env {
        Env::start(config()).await
    }

    /// `{tenant_url}/api/v1/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/api/v1/{}",
            self.emu.tenant_url(),
            path.trim_start_matches('/')
        )
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(&self.token)
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(self.url(path)).bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(&self.token)
    }

    /// GET and parse JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).send().await.expect("request");
        let status = r.status();
        let body = r.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// The `value` rows of an archive query.
    pub async fn rows(&self, path: &str) -> Vec<Value> {
        self.get_json(path).await["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// An admin call.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/__admin/{path}", self.emu.base_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin request");
        let status = r.status();
        let text = r.text().await.expect("admin body");
        assert!(status.is_success(), "admin {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Statuses to answer, in order; 200 when empty.
    script: Mutex<VecDeque<u16>>,
    /// Status to answer to everything but test events, when set.
    fail_all: Mutex<Option<u16>>,
}

/// A webhook receiver on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<ReceiverState>,
    pub url: String,
}

async fn receive(
    State(s): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let is_test = headers.get("x-hook-test").is_some();
    s.got.lock().unwrap().push(Received {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    if !is_test && let Some(code) = *s.fail_all.lock().unwrap() {
        return StatusCode::from_u16(code).unwrap();
    }
    let code = s.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { state, url }
    }

    /// Answers these statuses to the next requests (then 200).
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    /// Answers `status` to every non-test request (None: back to 200).
    pub fn fail_all(&self, status: Option<u16>) {
        *self.state.fail_all.lock().unwrap() = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Received requests other than test events.
    pub fn events(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.header("x-hook-test").is_none())
            .collect()
    }

    /// Waits until `n` non-test requests arrived (or the timeout passed).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.events();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
