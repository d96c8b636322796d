//! Test helpers: a scripted HTTP server on 127.0.0.1 and emulator-backed clients.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use superoffice::auth::StaticAuth;
use superoffice::{Client, ClientBuilder, Environment};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Accept the connection and close it without answering (a transport error).
    Drop,
    /// Answer with a status, extra headers and a body.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl Step {
    pub fn json(status: u16, body: serde_json::Value) -> Step {
        Step::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, content_type: &str, body: &str) -> Step {
        Step::Respond {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Step {
        match self {
            Step::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Step::Respond {
                    status,
                    headers,
                    body,
                }
            }
            Step::Drop => Step::Drop,
        }
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers requests with the scripted steps in order; when the script runs out, answers 200 `{}`.
pub struct Scripted {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    steps: Arc<Mutex<VecDeque<Step>>>,
}

impl Scripted {
    pub async fn start(steps: Vec<Step>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let steps = Arc::new(Mutex::new(VecDeque::from(steps)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_task = seen.clone();
        let steps_task = steps.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let steps = steps_task.clone();
                let seen = seen_task.clone();
                tokio::spawn(async move {
                    loop {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        seen.lock().unwrap().push(request);
                        let step = steps
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or_else(|| Step::json(200, serde_json::json!({})));
                        match step {
                            Step::Drop => return,
                            Step::Respond {
                                status,
                                headers,
                                body,
                            } => {
                                let mut head = format!(
                                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n",
                                    body.len()
                                );
                                for (name, value) in headers {
                                    head.push_str(&format!("{name}: {value}\r\n"));
                                }
                                head.push_str("\r\n");
                                if socket.write_all(head.as_bytes()).await.is_err()
                                    || socket.write_all(body.as_bytes()).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Scripted { addr, seen, steps }
    }

    /// Appends steps to the script (for answers that name the server's own address).
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.steps.lock().unwrap().extend(steps);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A client talking straight to this server (no State API), with a static token.
    pub fn client(&self) -> ClientBuilder {
        Client::builder()
            .base_url(format!("{}/Cust1", self.url()))
            .auth(StaticAuth::bearer("token"))
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
    })
}

/// A client for an in-process emulator, resolving the tenant through its State API.
pub fn emulator_client(emu: &emulator::Emulator) -> ClientBuilder {
    Client::builder()
        .environment(Environment::custom(&emu.base_url()).unwrap())
        .customer_id(emu.context_identifier())
        .auth(StaticAuth::bearer(emu.issue_access_token()))
}
