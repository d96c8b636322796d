//! The HTTP change feed (`GET /changes`, `GET /changes/stream`) against the in-process
//! emulator and daemon: exactly the `changes` table with content, in order; the token is
//! required; bad parameters are 400s naming them; retention gaps are explicit (410 /
//! `event: reset`); the SSE stream pushes live changes and resumes after a disconnect with
//! `Last-Event-ID` without gaps or repeats. Every emitted event is checked against
//! `syncd/docs/change-event.schema.json`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use superoffice::entity::EntityKind;
use syncd::feed::{ChangeEvent, Op, Tenants};
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "test-feed-token-0123456789abcdef";

fn config(emu: &emulator::Emulator, dir: &std::path::Path) -> String {
    let mut text = base_config(emu, dir, &format!("token = {{ value = {TOKEN:?} }}"));
    text.push_str(
        "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\npoll_interval = \"200ms\"\npage_size = 7\ncolumns = [\"name\", \"department\"]\nwebhooks = false\n",
    );
    text
}

/// The whole feed, read through the store function the HTTP feed uses.
fn store_feed(running: &Running) -> Vec<ChangeEvent> {
    let tenants = Tenants::from_config(&running.config);
    running
        .store
        .read_blocking(|c| syncd::store::feed::changes_after(c, 0, None, usize::MAX, &tenants))
        .unwrap()
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Checks `event` against the schema file: required keys, no others, JSON types, enum and
/// patterns (the subset of draft 2020-12 the schema uses).
fn check_schema(schema: &Value, event: &Value) {
    let object = event.as_object().expect("an event is an object");
    let properties = schema["properties"].as_object().unwrap();
    for key in schema["required"].as_array().unwrap() {
        assert!(
            object.contains_key(key.as_str().unwrap()),
            "{key} missing in {event}"
        );
    }
    assert_eq!(schema["additionalProperties"], json!(false));
    for (key, value) in object {
        let rule = properties
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the schema: {event}"));
        let types: Vec<&str> = match &rule["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            Value::Null => continue, // any JSON value
            other => panic!("unexpected type rule {other}"),
        };
        let kind = match value {
            Value::Null => "null",
            Value::String(_) => "string",
            Value::Number(n) if n.is_i64() => "integer",
            Value::Object(_) => "object",
            other => panic!("{key}: unexpected {other}"),
        };
        assert!(
            types.contains(&kind),
            "{key}: {kind} is not one of {types:?} ({event})"
        );
        if let Some(minimum) = rule["minimum"].as_i64() {
            assert!(value.as_i64().unwrap() >= minimum, "{key} below {minimum}");
        }
        if let Some(allowed) = rule["enum"].as_array() {
            assert!(allowed.contains(value), "{key}: {value} not in {allowed:?}");
        }
        if let (Some(pattern), Some(text)) = (rule["pattern"].as_str(), value.as_str()) {
            assert!(
                matches_pattern(pattern, text),
                "{key}: {text:?} !~ {pattern}"
            );
        }
    }
}

/// The two patterns the schema uses (no regex crate in the workspace).
fn matches_pattern(pattern: &str, text: &str) -> bool {
    match pattern {
        "^[0-9a-f]{64}$" => {
            text.len() == 64
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$" => {
            let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
            text.len() == shape.len()
                && text.bytes().zip(shape.bytes()).all(|(c, s)| match s {
                    b'd' => c.is_ascii_digit(),
                    _ => c == s,
                })
        }
        other => panic!("the test does not know pattern {other}"),
    }
}

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/change-event.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Parses NDJSON, checking each line against the schema.
fn parse_lines(body: &str) -> Vec<ChangeEvent> {
    let schema = schema();
    body.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            check_schema(&schema, &value);
            serde_json::from_value(value).unwrap()
        })
        .collect()
}

async fn changes(running: &Running, query: &str) -> Vec<ChangeEvent> {
    let response = get(
        &format!("{}/changes?{query}", running.control_url()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    parse_lines(&response.text().await.unwrap())
}

async fn synced(emu: &emulator::Emulator, db: &std::path::Path) {
    let expected = truth_live(emu, emulator::EntityType::Contact);
    eventually(T, "contacts match the emulator", || async {
        matches(db, "contacts", &expected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_is_the_feed_with_content_behind_the_token() {
    let emu = emulator(counts(30, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let running = start(&config(&emu, dir.path())).await;
    synced(&emu, &db).await;
    let url = format!("{}/changes", running.control_url());

    assert_eq!(get(&url, None).await.status(), 401);
    assert_eq!(
        get(&url, Some("wrong-token-0123456789abcdef"))
            .await
            .status(),
        401
    );
    assert_eq!(get(&format!("{url}/stream"), None).await.status(), 401);

    // Edits, a new record and a delete, then the whole feed over HTTP equals the table.
    let api = client(&emu);
    let contacts = api.entities(EntityKind::Contact);
    contacts
        .merge_patch(4, &json!({ "Department": "feed test" }), None)
        .await
        .unwrap();
    contacts
        .create(&json!({ "Name": "Feed New" }))
        .await
        .unwrap();
    contacts.delete(6, None).await.unwrap();
    // Polling cannot see soft deletes: a reconcile confirms them.
    request(&db, "contacts", Request::Reconcile);
    synced(&emu, &db).await;

    let feed = store_feed(&running);
    assert!(
        feed.len() >= 33,
        "30 inserts, an update, an insert, a delete"
    );
    assert_eq!(changes(&running, "limit=10000").await, feed);
    assert_eq!(changes(&running, "").await, feed, "since defaults to 0");
    // Paging with since = the last seq received yields the same, in order.
    let mut paged = Vec::new();
    loop {
        let since = paged.last().map_or(0, |e: &ChangeEvent| e.seq);
        let page = changes(&running, &format!("since={since}&limit=7")).await;
        assert!(page.len() <= 7);
        let done = page.len() < 7;
        paged.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(paged, feed);
    assert_eq!(
        changes(&running, "subscription=contacts&since=3").await,
        feed[3..].to_vec()
    );

    // Content: the record hashes to `hash`, the latest equals what `records` holds, the
    // previous hash chains, deletes carry none.
    let stored = records(&db, "contacts");
    let mut last_hash = std::collections::BTreeMap::new();
    for event in &feed {
        assert_eq!(event.tenant.as_deref(), Some("emu"));
        assert_eq!(
            (event.subscription.as_str(), event.entity.as_str()),
            ("contacts", "contact")
        );
        match event.op {
            Op::Insert | Op::Update => {
                let record = event.record.as_ref().expect("content");
                assert_eq!(
                    event.hash.as_deref(),
                    Some(syncd::hash::record_hash(record).as_str())
                );
            }
            Op::Delete => assert_eq!((&event.hash, &event.record), (&None, &None)),
        }
        let expected_previous = match event.op {
            Op::Insert => None,
            _ => last_hash.get(&event.id).cloned().flatten(),
        };
        assert_eq!(event.previous_hash, expected_previous, "seq {}", event.seq);
        last_hash.insert(event.id, event.hash.clone());
    }
    let update = feed
        .iter()
        .find(|e| e.op == Op::Update && e.id == 4)
        .unwrap();
    assert_eq!(
        update.record.as_ref().unwrap()["department"],
        json!("feed test"),
        "{update:?}"
    );
    assert_eq!(
        serde_json::to_string(update.record.as_ref().unwrap()).unwrap(),
        stored[&4].json,
        "exactly the stored text"
    );
    assert!(feed.iter().any(|e| e.op == Op::Delete && e.id == 6));

    // Bad parameters name themselves.
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=x", "limit"),
        ("since=-1", "since"),
        ("since=abc", "since"),
        ("since=1&since=2", "since"),
        ("subscription=nope", "subscription"),
        ("cursor=1", "cursor"),
    ] {
        let response = get(&format!("{url}?{query}"), Some(TOKEN)).await;
        assert_eq!(response.status(), 400, "{query}");
        let text = response.text().await.unwrap();
        assert!(text.contains(&format!("`{name}`")), "{query}: {text}");
    }
    let response = get(&format!("{url}/stream?limit=5"), Some(TOKEN)).await;
    assert_eq!(response.status(), 400, "the stream has no limit");
    let response = reqwest::Client::new()
        .get(format!("{url}/stream"))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", "x1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("Last-Event-ID"));

    // `syncd changes` prints the same events.
    let file = dir.path().join("syncd.toml");
    std::fs::write(&file, config(&emu, dir.path())).unwrap();
    let cli = |since: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_syncd"))
            .args([
                "--config",
                file.to_str().unwrap(),
                "changes",
                "--since",
                since,
            ])
            .output()
            .unwrap()
    };
    let out = cli("0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parse_lines(&String::from_utf8(out.stdout).unwrap()), feed);

    // Retention deleted the oldest rows: a reader behind them is told, never skipped ahead.
    running.stop().await;
    // The retention's own pruning, with every row old enough and seq 5 the lowest acknowledged.
    let pruned = syncd::store::open_existing(&db)
        .unwrap()
        .write_blocking(|tx| {
            syncd::store::retention::prune_changes(
                tx,
                chrono::Utc::now() + chrono::TimeDelta::days(1),
                Some(5),
                1_000,
            )
        })
        .unwrap();
    assert_eq!(pruned, 5);
    let out = cli("2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("retention"),
        "{stderr}"
    );
    let running = start(&config(&emu, dir.path())).await;
    let url = format!("{}/changes", running.control_url());
    let response = get(&format!("{url}?since=2"), Some(TOKEN)).await;
    assert_eq!(response.status(), 410);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["since"].clone(), body["oldest"].clone()),
        (json!(2), json!(6))
    );
    assert_eq!(changes(&running, "since=5").await, feed[5..].to_vec());
    let mut sse = Sse::connect(&format!("{url}/stream?since=2"), None).await;
    let reset = sse.next_event().await.expect("a reset event");
    assert_eq!(reset.event, "reset");
    assert_eq!(
        serde_json::from_str::<Value>(&reset.data).unwrap()["oldest"],
        json!(6)
    );
    assert!(
        sse.next_event().await.is_none(),
        "the stream ends after a reset"
    );
    running.stop().await;
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// A minimal SSE client over a raw byte stream.
struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl Sse {
    async fn connect(url: &str, last_event_id: Option<i64>) -> Sse {
        let mut request = reqwest::Client::new().get(url).bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            body: response
                .bytes_stream()
                .map(|c| c.map(|b| b.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended. Panics after `T` in
    /// all (keep-alive comments do not extend the wait).
    async fn next_event(&mut self) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => continue, // a comment (keep-alive)
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = value.to_string(),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        other => panic!("unexpected SSE field {other:?}"),
                    }
                    any = true;
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an SSE event within the timeout")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }

    /// The next `event: change`, checked against the schema, with its id equal to its seq.
    async fn next_change(&mut self, schema: &Value) -> ChangeEvent {
        let event = self.next_event().await.expect("the stream goes on");
        assert_eq!(event.event, "change", "{event:?}");
        let value: Value = serde_json::from_str(&event.data).unwrap();
        check_schema(schema, &value);
        let change: ChangeEvent = serde_json::from_value(value).unwrap();
        assert_eq!(event.id, Some(change.seq.to_string()));
        change
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_pushes_live_changes_and_resumes_without_gaps_or_repeats() {
    let emu = emulator(counts(25, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let running = start(&config(&emu, dir.path())).await;
    synced(&emu, &db).await;
    let schema = schema();
    let stream_url = format!("{}/changes/stream", running.control_url());
    let api = client(&emu);
    let contacts = api.entities(EntityKind::Contact);

    // Read part of the initial load, then drop the connection.
    let mut received = Vec::new();
    let mut sse = Sse::connect(&format!("{stream_url}?since=0"), None).await;
    for _ in 0..10 {
        received.push(sse.next_change(&schema).await);
    }
    drop(sse);

    // Changes made while disconnected.
    for n in 0..4 {
        contacts
            .merge_patch(
                2 + n,
                &json!({ "Department": format!("offline {n}") }),
                None,
            )
            .await
            .unwrap();
    }
    contacts.delete(9, None).await.unwrap();
    request(&db, "contacts", Request::Reconcile);
    synced(&emu, &db).await;
    let offline_last = store_feed(&running).last().unwrap().seq;

    // Reconnect as EventSource does: the original URL plus Last-Event-ID (which wins).
    let last_id = received.last().unwrap().seq;
    let mut sse = Sse::connect(&format!("{stream_url}?since=0"), Some(last_id)).await;
    while received.last().unwrap().seq < offline_last {
        received.push(sse.next_change(&schema).await);
    }

    // Live: a change made now arrives on the open connection.
    contacts
        .merge_patch(20, &json!({ "Department": "live" }), None)
        .await
        .unwrap();
    let live = sse.next_change(&schema).await;
    assert_eq!((live.id, live.op), (20, Op::Update));
    assert_eq!(live.record.as_ref().unwrap()["department"], json!("live"));
    received.push(live);
    contacts
        .create(&json!({ "Name": "Live New" }))
        .await
        .unwrap();
    let created = sse.next_change(&schema).await;
    assert_eq!(created.op, Op::Insert);
    received.push(created);

    // The union is exactly the feed, in order, without duplicates.
    let feed = store_feed(&running);
    let seqs: Vec<i64> = received.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs.iter().collect::<BTreeSet<_>>().len(),
        seqs.len(),
        "no repeats: {seqs:?}"
    );
    assert_eq!(received, feed, "no gaps, same content, same order");
    drop(sse);
    running.stop().await;
}
