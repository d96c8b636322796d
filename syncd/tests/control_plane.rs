//! The control plane fails closed: `/publish` is off without `control.token` and needs the
//! bearer token, a JSON body and an allowed (or no) `Origin`; `/metrics` can need the token;
//! `/readyz` tells its problems only to the token; the server cuts off slow clients, refuses
//! oversized bodies, times out slow requests and caps connections; the Unix socket serves the
//! same routes with the same tokens.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;
use syncd_testkit::outbox::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const ORIGIN: &str = "https://app.example.com";
const WEBHOOK_SECRET: &str = "control-plane-webhook-secret";

fn publish_body() -> String {
    json!({ "action": "create", "entity": "contact", "payload": { "Name": "Auth AS" } }).to_string()
}

/// POST `body` to `url` with the given extra headers; (status, body text).
async fn post(url: &str, headers: &[(&str, &str)], body: String) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the control plane answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the control plane answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn refused(running: &Running, reason: &str) -> f64 {
    running
        .daemon
        .as_ref()
        .unwrap()
        .services()
        .metrics
        .get("syncd_control_refused_total", &[("reason", reason)])
}

/// Sends `head` and `body` (from another task, stopping at the first write error, without
/// half-closing) and reads until the end of the answer's head; returns the status line. Used
/// where the server answers before it has read the whole body.
async fn status_while_sending(
    stream: TcpStream,
    head: String,
    body: Vec<u8>,
    within: Duration,
) -> String {
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let written = async {
            write.write_all(head.as_bytes()).await?;
            for chunk in body.chunks(64 * 1024) {
                write.write_all(chunk).await?;
            }
            std::io::Result::Ok(())
        };
        // Write errors are expected once the server has answered and closed.
        let _ = written.await;
        // Keep the write half open (dropping it sends FIN) until the answer is read.
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_head = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_head)
        .await
        .expect("an answer in time");
    writer.abort();
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// Writes `request` (which should say `Connection: close`) and reads the whole answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).to_string()
}

fn raw_post(path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_not_served_without_a_token() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "").daemon().await;
    let url = running.control_url();
    let (status, _) = post(
        &format!("{url}/publish"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer anything-at-all-0123456789"),
        ],
        publish_body(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(get(&format!("{url}/healthz"), None).await.0, 200);
    // /metrics is open by default.
    let (status, text) = get(&format!("{url}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(text.contains("syncd_control_connections"), "{text}");
    assert!(tasks(&running.store).is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_needs_the_token_json_and_an_allowed_origin() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "")
        .with_token()
        .control(&format!("allowed_origins = [{ORIGIN:?}]"))
        .daemon()
        .await;
    let url = format!("{}/publish", running.control_url());
    let bearer = format!("Bearer {CONTROL_TOKEN}");
    let json_ct = ("content-type", "application/json");

    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(publish_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(refused(&running, "missing_token"), 1.0);

    let wrong = format!("Bearer {CONTROL_TOKEN}-not");
    let (status, _) = post(&url, &[json_ct, ("authorization", &wrong)], publish_body()).await;
    assert_eq!(status, 401);
    assert_eq!(refused(&running, "wrong_token"), 1.0);

    let (status, _) = post(
        &url,
        &[("content-type", "text/plain"), ("authorization", &bearer)],
        publish_body(),
    )
    .await;
    assert_eq!(status, 415);
    let (status, _) = post(&url, &[("authorization", &bearer)], publish_body()).await;
    assert_eq!(status, 415, "no Content-Type at all");

    let (status, _) = post(
        &url,
        &[
            json_ct,
            ("authorization", &bearer),
            ("origin", "https://evil.example.com"),
        ],
        publish_body(),
    )
    .await;
    assert_eq!(status, 403);
    // A foreign origin is refused before anything else, token or not.
    let (status, _) = post(
        &url,
        &[json_ct, ("origin", "https://evil.example.com")],
        publish_body(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(refused(&running, "foreign_origin"), 2.0);
    assert!(
        tasks(&running.store).is_empty(),
        "nothing refused was queued"
    );

    let (status, text) = post(
        &url,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("authorization", &bearer),
            ("origin", ORIGIN),
            ("idempotency-key", "from-the-app"),
        ],
        publish_body(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let (status, text) = post(
        &url,
        &[
            json_ct,
            ("authorization", &bearer),
            ("idempotency-key", "cli"),
        ],
        json!({ "action": "create", "entity": "contact", "payload": { "Name": "Other AS" } })
            .to_string(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(tasks(&running.store).len(), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_the_token_and_readyz_hides_problems() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "")
        .with_token()
        .control("metrics_auth = true")
        .daemon()
        .await;
    let base = running.control_url();

    let (status, _) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&format!("{base}/metrics"), Some("wrong-token-0123456789")).await;
    assert_eq!(status, 401);
    let (status, text) = get(&format!("{base}/metrics"), Some(CONTROL_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(text.contains("syncd_control_refused_total"), "{text}");

    assert_eq!(
        get(&format!("{base}/readyz"), None).await,
        (200, "ready\n".into())
    );
    let services = running.daemon.as_ref().unwrap().services().clone();
    services.health.set_run_error(
        "contacts",
        Some("reading /var/lib/syncd/secret-path.db failed".into()),
    );
    for token in [None, Some("wrong-token-0123456789")] {
        let (status, text) = get(&format!("{base}/readyz"), token).await;
        assert_eq!(status, 503);
        assert_eq!(text, "not ready: 1 problem\n", "{token:?}");
    }
    let (status, text) = get(&format!("{base}/readyz"), Some(CONTROL_TOKEN)).await;
    assert_eq!(status, 503);
    assert!(
        text.contains("subscription contacts") && text.contains("secret-path.db"),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_slow_bodies_time_out() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "")
        .with_token()
        .control("header_read_timeout = \"1s\"\nrequest_timeout = \"1s\"")
        .daemon()
        .await;
    let addr = running.daemon.as_ref().unwrap().control_addr();

    // Headers that never end.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /publish HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    let elapsed = start.elapsed();
    assert!(
        read.is_ok(),
        "the connection was still open after 5 s (header_read_timeout = 1s)"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before the timeout"
    );
    // Whatever hyper wrote before closing, it never served the request.
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 202 "),
        "{rest:?}"
    );
    assert_eq!(refused(&running, "header_timeout"), 1.0);

    // An idle connection that never sends anything is closed the same way.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "an idle connection stayed open");

    // A complete head, then a body that stops: 408 after request_timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {CONTROL_TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"action\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 5 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(refused(&running, "timeout"), 1.0);

    // The daemon keeps answering.
    assert_eq!(
        get(&format!("{}/healthz", running.control_url()), None)
            .await
            .0,
        200
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "")
        .with_token()
        .control(&format!(
            "webhook_secret = {{ value = {WEBHOOK_SECRET:?} }}"
        ))
        .daemon()
        .await;
    let addr = running.daemon.as_ref().unwrap().control_addr();

    // 10 MB to /publish (limit 1 MiB): a JSON string padded out.
    let mut body = br#"{"action":"create","entity":"contact","payload":{"Name":""#.to_vec();
    body.resize(10_000_000 - 3, b'a');
    body.extend_from_slice(br#""}}"#);
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {CONTROL_TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let status = status_while_sending(stream, head, body, Duration::from_secs(10)).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(tasks(&running.store).is_empty());

    // 100 KiB to the webhook receiver (limit 64 KiB), correctly signed.
    let mut event =
        br#"{"EventId":"big","Event":"contact.changed","PrimaryKey":1,"Pad":""#.to_vec();
    event.resize(100 * 1024 - 2, b'a');
    event.extend_from_slice(br#""}"#);
    let signature = syncd::sync::webhook::sign(WEBHOOK_SECRET.as_bytes(), &event);
    let head = format!(
        "POST /webhooks/superoffice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-SuperOffice-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        event.len()
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let status = status_while_sending(stream, head, event, Duration::from_secs(10)).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(refused(&running, "body_too_large"), 2.0);

    // Just under the webhook limit is read (and then judged on its content: 200 for JSON).
    let mut small = br#"{"EventId":"small","Event":"test","Pad":""#.to_vec();
    small.resize(60 * 1024 - 2, b'a');
    small.extend_from_slice(br#""}"#);
    let signature = syncd::sync::webhook::sign(WEBHOOK_SECRET.as_bytes(), &small);
    let (status, text) = post(
        &format!("{}/webhooks/superoffice", running.control_url()),
        &[
            ("content-type", "application/json"),
            ("x-superoffice-signature", &signature),
        ],
        String::from_utf8(small).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let emu = emulator().await;
    let running = Setup::new(&emu, "", "")
        .control("max_connections = 2\nheader_read_timeout = \"30s\"")
        .daemon()
        .await;
    let addr = running.daemon.as_ref().unwrap().control_addr();
    let metrics = running.daemon.as_ref().unwrap().services().metrics.clone();

    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    wait_for(Duration::from_secs(5), "two connections open", || {
        metrics.get("syncd_control_connections", &[]) == 2.0
    })
    .await;

    // The third connects (kernel queue) but is not served while the two are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    assert!(metrics.get("syncd_control_connection_waits_total", &[]) >= 1.0);

    // One closes: the third is served.
    drop(first);
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("served once a slot freed")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_the_same_routes_with_the_same_tokens() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "").with_token();
    let socket = setup.dir.path().join("control.sock");
    // A stale socket file from a previous run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let setup = setup.control(&format!("listen_unix = {:?}", socket.display().to_string()));
    let running = setup.daemon().await;

    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let mut stream = UnixStream::connect(&socket).await.unwrap();
    let answer = exchange(
        &mut stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut stream = UnixStream::connect(&socket).await.unwrap();
    let answer = exchange(&mut stream, &raw_post("/publish", None, &publish_body())).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(tasks(&running.store).is_empty());

    let mut stream = UnixStream::connect(&socket).await.unwrap();
    let answer = exchange(
        &mut stream,
        &raw_post("/publish", Some(CONTROL_TOKEN), &publish_body()),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(tasks(&running.store).len(), 1);

    running.stop().await;
    assert!(!socket.exists(), "the socket file is removed on shutdown");

    // Something that is not a socket is never replaced.
    std::fs::write(&socket, "not a socket").unwrap();
    let config = setup.config();
    let error = syncd::Daemon::start_embedded(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("control.listen_unix") && error.contains("not a socket"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
}
