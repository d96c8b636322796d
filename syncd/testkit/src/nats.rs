//! A real `nats-server` with JetStream for tests: on a free loopback port, storing in a
//! temporary directory, killed on drop. Without `nats-server` on the PATH a test fails under
//! `CI=true` and is skipped (with a message) elsewhere.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store_dir: PathBuf,
    log: PathBuf,
    /// Extra command-line arguments (e.g. `--user`/`--pass`, `--auth`).
    args: Vec<String>,
}

/// Whether `nats-server` is installed. Panics under `CI=true` when it is not (CI must run
/// these tests); elsewhere prints why the test is skipped.
pub fn available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: nats-server is not installed (CI must run this test: apt-get install nats-server)"
            );
        }
        eprintln!("SKIPPED {test}: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

impl NatsServer {
    /// Starts a server storing in `dir` (retries on a port collision).
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_with(dir, &[])
    }

    /// [`NatsServer::start`] with extra arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub fn start_with(dir: &Path, args: &[&str]) -> NatsServer {
        for _ in 0..5 {
            let mut server = NatsServer {
                child: None,
                port: free_port(),
                store_dir: dir.join("jetstream"),
                log: dir.join("nats-server.log"),
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "nats-server did not start (see {})",
            dir.join("nats-server.log").display()
        );
    }

    /// (Re)starts the process on the same port and store directory; false if it did not
    /// accept connections within 10 s.
    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        false
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the process (the store directory stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("nats-server did not restart on port {}", self.port);
    }

    /// A JetStream context on it.
    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to nats-server");
        jetstream::new(client)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message of the stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stream_seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub event: syncd::feed::ChangeEvent,
}

/// Every message of `stream`, in stream order.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    let info = stream.info().await.expect("stream info").clone();
    let count = usize::try_from(info.state.messages).expect("a message count");
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return out;
    }
    // One ordered consumer delivers them in batches (one request per message costs a round
    // trip each).
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("the consumer's messages");
    while out.len() < count {
        let message = messages
            .next()
            .await
            .expect("the stream's messages")
            .expect("a stream message");
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let event: syncd::feed::ChangeEvent =
            serde_json::from_slice(&message.payload).expect("a change event");
        out.push(Stored {
            stream_seq: message.info().expect("JetStream metadata").stream_sequence,
            subject: message.subject.to_string(),
            msg_id,
            event,
        });
    }
    out
}
