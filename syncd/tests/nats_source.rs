//! Publishes from NATS (`[[source]] kind = "nats"`) against a real `nats-server`: a request
//! delivered twice with the same `Nats-Msg-Id` (stored twice: the stream's de-duplication
//! window is shorter than the gap) creates exactly one record; a malformed message becomes a
//! `dead` task and is acknowledged, never redelivered. And the real thing: the `syncd` binary
//! killed after committing a task but before acknowledging its message; the server delivers
//! the message again after `ack_wait`, and the restarted daemon creates no second record.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use emulator::EntityType;
use syncd::outbox::TaskState;
use syncd_testkit::nats::*;
use syncd_testkit::outbox::*;
use syncd_testkit::process::{KillOnDrop, run_syncd};

async fn publish(js: &async_nats::jetstream::Context, msg_id: &str, body: &str) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(
        "superoffice.publish.contact",
        headers,
        body.to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_delivered_twice_creates_one_record_and_a_malformed_one_is_dead() {
    if !available("a_request_delivered_twice_creates_one_record_and_a_malformed_one_is_dead") {
        return;
    }
    let dir = workdir_nats();
    let nats = NatsServer::start(dir.path());
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "SUPEROFFICE_PUBLISH".into(),
        subjects: vec!["superoffice.publish.>".into()],
        duplicate_window: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let request = r#"{"action":"create","entity":"contact","payload":{"Name":"From NATS"}}"#;
    publish(&js, "order-1", request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    publish(&js, "order-1", request).await;
    publish(&js, "bad-1", "this is not JSON").await;
    let mut publish_stream = js.get_stream("SUPEROFFICE_PUBLISH").await.unwrap();
    assert_eq!(
        publish_stream.info().await.unwrap().state.messages,
        3,
        "the repeat is stored (outside the dedup window), so syncd sees it"
    );

    let emu = emulator().await;
    let setup = Setup::new(
        &emu,
        "",
        &format!(
            "[[source]]\nname = \"orders\"\nkind = \"nats\"\nurl = {:?}\nack_wait = \"1s\"\n",
            nats.url()
        ),
    );
    let running = setup.daemon().await;
    let store = setup.store();
    wait_for(Duration::from_secs(30), "three messages taken", || {
        tasks(&store).len() == 2
            && running.daemon.as_ref().unwrap().services().metrics.get(
                "syncd_source_messages_total",
                &[("source", "orders"), ("outcome", "replay")],
            ) == 1.0
    })
    .await;
    let all = settle(&store, Duration::from_secs(30)).await;
    let order = all.iter().find(|t| t.key == "order-1").expect("the task");
    assert_eq!(order.state, TaskState::Done, "{order:#?}");
    let dead = all
        .iter()
        .find(|t| t.key.starts_with("rejected:nats:SUPEROFFICE_PUBLISH:"))
        .expect("the dead task");
    assert_eq!(dead.state, TaskState::Dead);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("body: not JSON"),
        "{dead:#?}"
    );
    let made = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(made.len(), 1, "exactly one record: {made:?}");

    // Past ack_wait nothing is delivered again: every message was acknowledged.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        publish_stream.get_consumer("syncd-orders").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    assert_eq!(tasks(&store).len(), 2);
    let metrics = &running.daemon.as_ref().unwrap().services().metrics;
    for (outcome, n) in [("queued", 1.0), ("replay", 1.0), ("rejected", 1.0)] {
        assert_eq!(
            metrics.get(
                "syncd_source_messages_total",
                &[("source", "orders"), ("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 1);
    running.stop().await;
}

fn workdir_nats() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `syncd run` with `SYNCD_FAILPOINT` set; its stderr lines arrive on the receiver.
fn spawn(
    config: &std::path::Path,
    failpoint: Option<&str>,
) -> (KillOnDrop, mpsc::Receiver<String>) {
    run_syncd(binary(), config, failpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redelivered_after_a_crash_before_its_ack_creates_one_record() {
    if !available("a_message_redelivered_after_a_crash_before_its_ack_creates_one_record") {
        return;
    }
    let dir = workdir_nats();
    let nats = NatsServer::start(dir.path());
    let js = nats.jetstream().await;
    let emu = emulator().await;
    let setup = Setup::new(
        &emu,
        "",
        &format!(
            "[[source]]\nname = \"orders\"\nkind = \"nats\"\nurl = {:?}\nack_wait = \"1s\"\n",
            nats.url()
        ),
    );
    let config = setup.config_file();
    let store_path = setup.dir.path().join("syncd.db");

    // The first process commits the task, then stops before the ack; it is SIGKILLed there.
    let (mut child, lines) = spawn(&config, Some("source.before_ack"));
    // The stream is created by the source at start-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream("SUPEROFFICE_PUBLISH").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the source did not create its stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(
        &js,
        "order-7",
        r#"{"action":"create","entity":"contact","payload":{"Name":"Once"}}"#,
    )
    .await;
    let reached = loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("failpoint source.before_ack reached") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(reached, "the failpoint was not reached");
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let store = syncd::store::open(&store_path).unwrap();
    let before = tasks(&store);
    assert_eq!(before.len(), 1, "the task was committed before the crash");

    // The restarted daemon gets the message again (not acked) and replays the key.
    let (mut child, _lines) = spawn(&config, None);
    let mut stream = js.get_stream("SUPEROFFICE_PUBLISH").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("syncd-orders").await.unwrap();
        let info = consumer.info().await.unwrap().clone();
        let done = tasks(&store).iter().all(|t| t.state == TaskState::Done);
        // One message in the stream, delivered twice (the consumer sequence counts
        // deliveries), and acknowledged.
        if info.delivered.consumer_sequence >= 2
            && info.ack_floor.stream_sequence == 1
            && info.num_ack_pending == 0
            && done
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not redelivered and acked: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after = tasks(&store);
    assert_eq!(after.len(), 1, "one task: {after:#?}");
    assert_eq!(after[0].key, "order-7");
    let made = created(&emu, EntityType::Contact, SEEDED);
    assert_eq!(made.len(), 1, "exactly one record: {made:?}");
    let _ = stream.info().await.unwrap();
}
