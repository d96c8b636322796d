//! `syncd demo` end to end: the emulator with live activity, the daemon with polling and
//! webhooks, and a local copy that ends equal to the emulator's ground truth.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_in_sync_with_ground_truth() {
    let args = syncd::cli::demo::DemoArgs {
        duration: Duration::from_secs(4),
        contacts: 200,
        seed: 7,
        activity: 20,
        poll_interval: Duration::from_millis(500),
        store: None,
        nats: None,
        listen: "127.0.0.1:0".into(),
    };
    let summary = syncd::cli::demo::run_demo(&args, false)
        .await
        .expect("the demo runs");
    assert!(summary.in_sync(), "{summary:?}");
    assert!(
        summary.activity > 0,
        "other users changed things: {summary:?}"
    );
    let inserts = summary.changes.get("insert").copied().unwrap_or(0);
    assert!(
        inserts >= 200 + 400,
        "the initial load is in the change feed: {summary:?}"
    );
    assert!(
        summary.changes.get("update").copied().unwrap_or(0) > 0,
        "{summary:?}"
    );
    assert!(
        summary.webhook_events > 0,
        "webhooks were registered and delivered: {summary:?}"
    );
}
