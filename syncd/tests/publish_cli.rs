//! `syncd publish` and `syncd tasks …` as the binary: the task id on stdout, replays, errors
//! naming the field, `--dry-run` sending and queueing nothing, and the task view commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use emulator::EntityType;
use syncd::outbox::{TaskId, TaskState};
use syncd_testkit::outbox::*;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn syncd(config: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new(binary())
            .arg("--config")
            .arg(&config)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let output = child.wait_with_output().unwrap();
        Out {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_the_task_id_and_dry_run_sends_nothing() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let config = setup.config_file();
    let dir = setup.dir.path();
    let payload = file(dir, "contact.json", r#"{"Name": "Cli AS"}"#);
    let payload = payload.to_str().unwrap();

    let before = emu.stats().requests;
    let dry = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            payload,
            "--key",
            "cli-1",
            "--dry-run",
        ],
        None,
    )
    .await;
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout.contains(
            "GET /api/v1/ForeignApp/syncd/syncd/Key/idempotency_key/contact?keyValue=cli-1"
        ),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("POST /api/v1/Contact\n"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("\"Name\": \"Cli AS\""));
    assert!(
        !dir.join("syncd.db").exists(),
        "a dry run does not even create the database"
    );
    assert_eq!(emu.stats().requests, before, "a dry run sends nothing");
    // Only the daemon creates the database; commands beside it refuse a missing one.
    let refused = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            payload,
        ],
        None,
    )
    .await;
    assert!(
        !refused.ok && refused.stderr.contains("no database at"),
        "{}",
        refused.stderr
    );
    assert!(!dir.join("syncd.db").exists());
    drop(syncd::store::open(&dir.join("syncd.db")).unwrap());

    let first = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            payload,
            "--key",
            "cli-1",
        ],
        None,
    )
    .await;
    assert!(first.ok, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), "1");
    let replay = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            payload,
            "--key",
            "cli-1",
        ],
        None,
    )
    .await;
    assert!(replay.ok);
    assert_eq!(replay.stdout.trim(), "1");
    assert!(
        replay.stderr.contains("not queued again"),
        "{}",
        replay.stderr
    );
    let other = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            "-",
            "--key",
            "cli-1",
        ],
        Some(r#"{"Name": "Different"}"#),
    )
    .await;
    assert!(!other.ok);
    assert!(other.stderr.contains("key:"), "{}", other.stderr);

    // From stdin, with a patch by id, a query parameter and an explicit condition.
    let patch = syncd(
        &config,
        &[
            "publish",
            "--action",
            "patch",
            "--entity",
            "contact",
            "--id",
            "2",
            "--query",
            "$select=Name,Department",
            "--if-unmodified-since",
            "2099-01-01T00:00:00Z",
            "--payload",
            "-",
        ],
        Some(r#"[{"op": "replace", "path": "/Department", "value": "From stdin"}]"#),
    )
    .await;
    assert!(patch.ok, "{}", patch.stderr);
    assert_eq!(patch.stdout.trim(), "2");
    assert_eq!(emu.stats().requests, before, "publish only queues");

    // The daemon picks up what the CLI queued.
    let running = setup.daemon().await;
    let tasks = settle(&running.store, Duration::from_secs(20)).await;
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:#?}"
    );
    assert_eq!(created(&emu, EntityType::Contact, SEEDED).len(), 1);
    let contact = get_entity(&emu, "Contact", 2).await;
    assert_eq!(contact["Department"], "From stdin");
    assert_eq!(
        tasks[1].result.as_ref().unwrap()["Department"],
        "From stdin"
    );
    assert!(
        tasks[1].result.as_ref().unwrap()["OrgNr"].is_null(),
        "$select reached the server"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_the_task_commands_work() {
    let emu = emulator().await;
    let setup = Setup::new(&emu, "", "");
    let config = setup.config_file();
    let dir = setup.dir.path();
    let good = file(dir, "good.json", r#"{"Name": "Good AS"}"#);
    let good = good.to_str().unwrap();
    let not_json = file(dir, "bad.json", "{oops");
    let wrong_type = file(dir, "type.json", r#"{"Name": 42}"#);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--action",
                "frobnicate",
                "--entity",
                "contact",
                "--payload",
                good,
            ],
            "action:",
        ),
        (
            vec![
                "--action",
                "create",
                "--entity",
                "widget",
                "--payload",
                good,
            ],
            "entity:",
        ),
        (
            vec![
                "--action",
                "create",
                "--entity",
                "contact",
                "--payload",
                not_json.to_str().unwrap(),
            ],
            "payload: not JSON",
        ),
        (
            vec![
                "--action",
                "create",
                "--entity",
                "contact",
                "--payload",
                wrong_type.to_str().unwrap(),
            ],
            "payload.Name",
        ),
        (
            vec![
                "--action",
                "update",
                "--entity",
                "contact",
                "--payload",
                good,
            ],
            "id: required for update",
        ),
        (
            vec![
                "--action",
                "create",
                "--entity",
                "contact",
                "--payload",
                good,
                "--query",
                "noequals",
            ],
            "query:",
        ),
        (
            vec![
                "--action",
                "create",
                "--entity",
                "contact",
                "--payload",
                "/nonexistent/file.json",
            ],
            "payload: reading",
        ),
        (
            vec!["--action", "create", "--entity", "contact"],
            "payload: required",
        ),
    ];
    // What the daemon would have created.
    drop(syncd::store::open(&setup.dir.path().join("syncd.db")).unwrap());
    let queued = syncd(
        &config,
        &[
            "publish",
            "--action",
            "create",
            "--entity",
            "contact",
            "--payload",
            good,
            "--key",
            "keep",
        ],
        None,
    )
    .await;
    assert!(queued.ok, "{}", queued.stderr);
    for (args, field) in cases {
        let mut full = vec!["publish"];
        full.extend(args.iter());
        let out = syncd(&config, &full, None).await;
        assert!(!out.ok, "{args:?} should fail");
        assert!(
            out.stderr.contains(field),
            "{args:?}: {} should name {field}",
            out.stderr
        );
    }

    let list = syncd(&config, &["tasks", "list"], None).await;
    assert!(list.ok, "{}", list.stderr);
    assert!(
        list.stdout.contains("STATE") && list.stdout.contains("keep"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("pending 1"), "{}", list.stdout);
    let only_done = syncd(&config, &["tasks", "list", "--state", "done"], None).await;
    assert!(!only_done.stdout.contains("keep"));
    let bad_state = syncd(&config, &["tasks", "list", "--state", "finished"], None).await;
    assert!(!bad_state.ok && bad_state.stderr.contains("state:"));

    let show = syncd(&config, &["tasks", "show", "1"], None).await;
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["key"], "keep");
    assert_eq!(shown["payload"]["Name"], "Good AS");

    let retry_pending = syncd(&config, &["tasks", "retry", "1"], None).await;
    assert!(!retry_pending.ok && retry_pending.stderr.contains("nothing to retry"));
    assert!(syncd(&config, &["tasks", "skip", "1"], None).await.ok);
    assert_eq!(task(&setup.store(), TaskId(1)).state, TaskState::Skipped);
    assert!(syncd(&config, &["tasks", "retry", "1"], None).await.ok);
    assert_eq!(task(&setup.store(), TaskId(1)).state, TaskState::Pending);
    assert!(syncd(&config, &["tasks", "skip", "1"], None).await.ok);
    let purge = syncd(&config, &["tasks", "purge", "--older-than", "0s"], None).await;
    assert!(purge.ok, "{}", purge.stderr);
    assert!(purge.stdout.contains("purged 1"), "{}", purge.stdout);
    assert!(tasks(&setup.store()).is_empty());
    let missing = syncd(&config, &["tasks", "show", "1"], None).await;
    assert!(!missing.ok && missing.stderr.contains("no task 1"));
}
