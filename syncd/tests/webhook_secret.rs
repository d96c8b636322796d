//! Webhooks fail closed: without any secret every delivery is refused; without a configured
//! secret, `syncd webhooks ensure` and start-up with `public_url` generate one (0600, in the
//! state directory), register it (also on an existing webhook that has none) and the receiver
//! checks deliveries with it. Unfollowed events are not stored; oversized bodies are 413.
//! `[retention]`: the daemon deletes old webhook events and runs at start-up.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use emulator::EntityType;
use serde_json::json;
use syncd::store::runs::{RunEnd, finish_run, start_run};
use syncd::store::types::UtcTime;
use syncd::store::webhooks::NewEvent;
use syncd_testkit::sync::*;

const T: Duration = Duration::from_secs(30);

fn post(url: &str, body: &str, signature: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/webhooks/superoffice"))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("X-SuperOffice-Signature", signature);
    }
    request
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

fn sign(secret: &str, body: &str) -> String {
    syncd::sync::webhook::sign(secret.as_bytes(), body.as_bytes())
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn contacts_subscription() -> &'static str {
    // Polls and reconciles are far apart: within the test only webhooks bring changes in.
    "\n[[subscription]]\nname = \"contacts\"\nentity = \"contact\"\ncolumns = [\"name\", \"department\"]\npoll_interval = \"1h\"\nreconcile_interval = \"1h\"\n"
}

fn metric(running: &Running, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
    running.services().metrics.get(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_secret_every_webhook_is_refused() {
    let emu = emulator(counts(5, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(contacts_subscription());
    let running = start(&text).await;
    let url = running.control_url();
    let body = r#"{"EventId":"e1","Event":"contact.changed","Entity":"contact","PrimaryKey":1,"ContextIdentifier":"Cust12345"}"#;
    assert_eq!(status(post(&url, body, None)).await, 401);
    // Whatever it is signed with: there is nothing to check it against.
    assert_eq!(status(post(&url, body, Some(&sign("", body)))).await, 401);
    assert_eq!(
        status(post(&url, body, Some(&sign("guess", body)))).await,
        401
    );
    assert!(webhook_events(&db).is_empty(), "nothing stored");
    assert_eq!(queued_refetches(&db), 0);
    assert_eq!(
        metric(
            &running,
            "syncd_webhook_events_total",
            &[("outcome", "no_secret")]
        ),
        3.0
    );
    assert_eq!(metric(&running, "syncd_webhook_secret_present", &[]), 0.0);
    assert!(
        !dir.path().join(syncd::sync::secret::FILE_NAME).exists(),
        "no secret is generated without public_url"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_with_public_url_generates_registers_and_reuses_a_secret() {
    let emu = emulator(counts(5, 0, 0), |_| {}).await;
    let dir = workdir();
    let secret_file = dir.path().join(syncd::sync::secret::FILE_NAME);
    let mut text = base_config(&emu, dir.path(), "public_url = \"auto\"");
    text.push_str(contacts_subscription());
    let running = start(&text).await;
    assert_eq!(mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    // The subscription loop registers the webhook right after start.
    eventually(
        T,
        "webhook registered with the generated secret",
        || async {
            let hooks = syncd::sync::ensure::list(&client(&emu), None)
                .await
                .map_err(|e| e.to_string())?;
            match hooks.as_slice() {
                [hook] if hook.secret.as_deref() == Some(secret.as_str()) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(metric(&running, "syncd_webhook_secret_present", &[]), 1.0);
    running.stop().await;

    // A restart reuses the file: the registered webhook stays as it is.
    let running = start(&text).await;
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);
    let services = running.services().clone();
    let in_force = services.sync.webhook_secret().unwrap();
    assert_eq!(in_force.secret.expose(), secret);
    assert_eq!(in_force.source, syncd::sync::secret::SecretSource::File);
    // The new control-plane port (listen port 0) is registered by the daemon, with the same
    // secret; after that an `ensure` has nothing to do.
    let target = format!("{}/webhooks/superoffice", running.control_url());
    eventually(T, "webhook follows the new port", || async {
        let hooks = syncd::sync::ensure::list(&client(&emu), None)
            .await
            .map_err(|e| e.to_string())?;
        match hooks.as_slice() {
            [hook]
                if hook.target_url.as_deref() == Some(target.as_str())
                    && hook.secret.as_deref() == Some(secret.as_str()) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let done = syncd::sync::ensure::ensure(
        &services.config,
        &services.clients,
        &target,
        &in_force.secret,
    )
    .await
    .unwrap();
    assert_eq!(done[0].action, "unchanged");
    running.stop().await;
}

/// A free loopback port (the CLI needs the control plane's address before the daemon runs).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_ensure_generates_a_secret_gives_it_to_an_existing_webhook_and_deliveries_sync() {
    // The daemon is not running while `ensure` saves the webhook, so the emulator must not
    // require its test event to succeed.
    let emu = emulator(counts(20, 0, 0), |c| c.webhooks.test_on_save = false).await;
    let dir = workdir();
    let db = db_path(dir.path());
    let secret_file = dir.path().join(syncd::sync::secret::FILE_NAME);
    let port = free_port();
    let mut text = base_config(&emu, dir.path(), "public_url = \"auto\"").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    text.push_str(contacts_subscription());
    let config_file = dir.path().join("syncd.toml");
    std::fs::write(&config_file, &text).unwrap();
    let target = format!("http://127.0.0.1:{port}/webhooks/superoffice");

    // An existing webhook with syncd's name and no secret.
    let api = client(&emu);
    let request = superoffice::RawRequest::new(reqwest::Method::POST, "/api/v1/Webhook")
        .json(
            "application/json",
            &json!({"Name": "syncd-Cust12345", "Events": ["contact.changed"], "TargetUrl": target, "Secret": "", "State": "Active", "Type": "webhook"}),
        )
        .unwrap();
    api.send_raw("webhook_post", request).await.unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_syncd"))
        .args(["--config", &config_file.display().to_string()])
        .args(["webhooks", "ensure"])
        .env_remove("STATE_DIRECTORY")
        .current_dir(dir.path())
        .output()
        .expect("run syncd");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("generated") && stdout.contains("updated"),
        "{stdout}"
    );
    assert_eq!(mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(!secret.is_empty());
    assert!(
        !stdout.contains(&secret) && !stderr.contains(&secret),
        "the secret is never printed"
    );
    let hooks = syncd::sync::ensure::list(&api, None).await.unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].secret.as_deref(), Some(secret.as_str()));
    assert_eq!(hooks[0].target_url.as_deref(), Some(target.as_str()));
    let events = hooks[0].events.clone().unwrap_or_default();
    assert!(events.iter().any(|e| e == "contact.deleted"), "{events:?}");

    // The daemon uses the same file; what the emulator sends (signed with it) is accepted and
    // synced.
    let running = start(&text).await;
    let url = running.control_url();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    running
        .when_fed(T, "initial load", || async {
            matches(&db, "contacts", &truth_live(&emu, EntityType::Contact))
        })
        .await;
    let contacts = api.entities(superoffice::entity::EntityKind::Contact);
    contacts
        .merge_patch(7, &json!({ "Department": "via webhook" }), None)
        .await
        .unwrap();
    eventually(T, "webhook-driven update", || async {
        let json = records(&db, "contacts")[&7].json.clone();
        if json.contains("via webhook") {
            Ok(())
        } else {
            Err(json)
        }
    })
    .await;
    assert!(
        webhook_events(&db)
            .iter()
            .any(|e| e.event == "contact.changed" && e.primary_key == Some(7))
    );
    assert!(
        changes(&db, "contacts")
            .iter()
            .any(|c| c.id == 7 && c.op == "update")
    );

    // Unsigned and wrongly signed deliveries are refused with the generated secret too.
    let forged = r#"{"EventId":"f1","Event":"contact.deleted","Entity":"contact","PrimaryKey":3,"ContextIdentifier":"Cust12345"}"#;
    assert_eq!(status(post(&url, forged, None)).await, 401);
    assert_eq!(
        status(post(&url, forged, Some(&sign(SECRET, forged)))).await,
        401
    );
    assert!(!event_stored(&db, "f1"));

    // An event no subscription follows: 200, not stored.
    let sale = r#"{"EventId":"s1","Event":"sale.changed","Entity":"sale","PrimaryKey":3,"ContextIdentifier":"Cust12345"}"#;
    assert_eq!(
        status(post(&url, sale, Some(&sign(&secret, sale)))).await,
        200
    );
    assert!(!event_stored(&db, "s1"));
    assert_eq!(
        metric(
            &running,
            "syncd_webhook_events_total",
            &[("outcome", "unfollowed")]
        ),
        1.0
    );

    // A body over 64 KiB is refused before anything else, correctly signed or not.
    let padding = "x".repeat(syncd::sync::webhook::MAX_BODY);
    let big = format!(
        r#"{{"EventId":"big","Event":"contact.changed","Entity":"contact","PrimaryKey":3,"Pad":"{padding}"}}"#
    );
    assert_eq!(
        status(post(&url, &big, Some(&sign(&secret, &big)))).await,
        413
    );
    assert!(!event_stored(&db, "big"));
    feed_is_consistent(&db, "contacts").unwrap();
    running.stop().await;
}

/// Whether the webhook event `id` is stored.
fn event_stored(db: &Path, id: &str) -> bool {
    webhook_events(db).iter().any(|e| e.event_id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_prunes_old_webhook_events_and_runs_at_start_up() {
    let emu = emulator(counts(3, 0, 0), |_| {}).await;
    let dir = workdir();
    let db = db_path(dir.path());
    {
        let store = syncd::store::open(&db).unwrap();
        let now = UtcTime::now();
        let at = |days: i64| now.minus(chrono::TimeDelta::days(days));
        store
            .write_blocking(|tx| {
                for (id, received) in [("old", at(3)), ("new", at(1))] {
                    let event = NewEvent {
                        event_id: id.to_string(),
                        event: "contact.changed".to_string(),
                        entity: "contact".to_string(),
                        primary_key: 1,
                        body: "{}".to_string(),
                        targets: Vec::new(),
                    };
                    syncd::store::webhooks::record_event(tx, &event, received)?;
                }
                for started in [at(11), at(9)] {
                    let run = start_run(tx, "gone", PassKind::Poll, started)?;
                    let end = RunEnd {
                        status: RunStatus::Ok,
                        fetched: 0,
                        requests: 0,
                        applied: Default::default(),
                        error: None,
                    };
                    finish_run(tx, run, &end, started)?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str("\n[retention]\nwebhook_events = \"2d\"\nruns = \"10d\"\n");
    let running = start(&text).await;
    eventually(T, "start-up prune", || async {
        let events = webhook_events(&db).len();
        let runs = runs(&db)
            .iter()
            .filter(|r| r.subscription == "gone")
            .count();
        // The counter moves once both tables are done.
        let counted = ["webhook_events", "runs"]
            .map(|table| metric(&running, "syncd_pruned_rows_total", &[("table", table)]));
        if (events, runs, counted) == (1, 1, [1.0, 1.0]) {
            Ok(())
        } else {
            Err(format!("{events} events, {runs} runs, counted {counted:?}"))
        }
    })
    .await;
    assert!(event_stored(&db, "new"));
    running.stop().await;
}
