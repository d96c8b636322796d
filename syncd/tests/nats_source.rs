//! Publishes from NATS (`[[source]] kind = "nats"`) against a real `nats-server`: a request
//! delivered twice with the same `Nats-Msg-Id` (stored twice: the stream's de-duplication
//! window is shorter than the gap) creates exactly one record; a malformed message becomes a
//! `dead` task and is acknowledged, never redelivered.

mod common_nats;
mod common_outbox;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use common_nats::*;
use common_outbox::*;
use emulator::EntityType;
use syncd::outbox::TaskState;

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
