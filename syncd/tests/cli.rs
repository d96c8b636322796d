//! The `syncd` binary's offline commands: `config check` on the shipped example and on broken
//! configs, `status`/`changes` on a fresh database.

use std::path::Path;
use std::process::Command;

fn syncd(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_syncd"))
        .args(args)
        .env("CREDENTIALS_DIRECTORY", dir.join("credentials"))
        .env_remove("STATE_DIRECTORY")
        .current_dir(dir)
        .output()
        .expect("run syncd");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn example_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("credentials")).unwrap();
    for name in ["client_secret", "webhook_secret"] {
        std::fs::write(dir.join("credentials").join(name), "s3cret\n").unwrap();
    }
    std::fs::write(
        dir.join("credentials").join("control_token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("credentials").join("system_user_key"),
        emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM,
    )
    .unwrap();
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/syncd.toml"))
            .unwrap();
    shipped.replace(
        "# store = \"/var/lib/syncd/syncd.db\"",
        &format!("store = {:?}", dir.join("syncd.db").display().to_string()),
    )
}

#[test]
fn the_shipped_example_config_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    let (ok, stdout, stderr) = syncd(dir.path(), &["--config", "syncd.toml", "config", "check"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (1 tenants, 2 subscriptions"),
        "{stdout}"
    );
}

#[test]
fn the_shipped_config_checks_out_without_systemd_and_lists_what_it_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_syncd"))
        .args(["--config", "syncd.toml", "config", "check"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("note: cannot read control.token here")
            && stdout.contains("needs $CREDENTIALS_DIRECTORY"),
        "{stdout}"
    );
}

#[test]
fn bad_configs_fail_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_config(dir.path()).replace(
        "poll_interval = \"5m\"\nreconcile_interval",
        "poll_interval = \"often\"\nreconcile_interval",
    );
    std::fs::write(dir.path().join("syncd.toml"), &text).unwrap();
    let line = text.lines().position(|l| l.contains("\"often\"")).unwrap() + 1;
    let (ok, _, stderr) = syncd(dir.path(), &["--config", "syncd.toml", "config", "check"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("syncd.toml:{line}:"))
            && stderr.contains("subscription[0].poll_interval"),
        "{stderr}"
    );

    let text = example_config(dir.path()).replace(
        "client_secret = { credential = \"client_secret\" }",
        "client_secret = { credential = \"missing\" }",
    );
    std::fs::write(dir.path().join("syncd.toml"), &text).unwrap();
    // A secret that cannot be read here is a note (the unit may have it), or with --strict an
    // error naming the key.
    let (ok, stdout, stderr) = syncd(dir.path(), &["--config", "syncd.toml", "config", "check"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("note: cannot read tenant[0].client_secret here")
            && stdout.contains("missing"),
        "{stdout}"
    );
    let (ok, _, stderr) = syncd(
        dir.path(),
        &["--config", "syncd.toml", "config", "check", "--strict"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("tenant[0].client_secret") && stderr.contains("missing"),
        "{stderr}"
    );

    let (ok, _, stderr) = syncd(dir.path(), &["--config", "nope.toml", "config", "check"]);
    assert!(!ok && stderr.contains("nope.toml"), "{stderr}");
}

/// Every command but `run`, with the same config.
const COMMANDS: &[&[&str]] = &[
    &["status"],
    &["status", "--json"],
    &["changes", "--since", "0"],
    &["tasks", "list"],
    &["tasks", "list", "--json"],
    &["tasks", "show", "1"],
    &["tasks", "retry", "1"],
    &["resync", "contacts"],
    &[
        "publish",
        "--action",
        "create",
        "--entity",
        "contact",
        "--payload",
        "payload.json",
    ],
];

fn with_config<'a>(command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--config", "syncd.toml"];
    args.extend_from_slice(command);
    args
}

#[test]
fn commands_need_a_database_say_so_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    std::fs::write(dir.path().join("payload.json"), r#"{"Name": "x"}"#).unwrap();
    for command in COMMANDS {
        let (ok, stdout, stderr) = syncd(dir.path(), &with_config(command));
        assert!(!ok, "{command:?} succeeded without a database: {stdout}");
        assert!(
            stderr.contains("no database at")
                && stderr.contains("start the daemon first, or set `store`"),
            "{command:?}: {stderr}"
        );
        assert!(
            !dir.path().join("syncd.db").exists(),
            "{command:?} created a database"
        );
    }
}

#[test]
fn commands_never_migrate_an_older_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    std::fs::write(dir.path().join("payload.json"), r#"{"Name": "x"}"#).unwrap();
    let db = dir.path().join("syncd.db");
    drop(syncd::store::open(&db).unwrap());
    // What an older daemon left: the schema one version back.
    let older = syncd::store::SCHEMA_VERSION - 1;
    // Written as an older daemon would have left it: by hand, not through the store.
    let set_version = |version: u32| {
        syncd_testkit::sync::sabotage(&db, &format!("PRAGMA user_version = {version}"));
    };
    set_version(older);
    for command in COMMANDS {
        let (ok, stdout, stderr) = syncd(dir.path(), &with_config(command));
        assert!(!ok, "{command:?} accepted an older schema: {stdout}");
        assert!(
            stderr.contains(&format!("schema version {older} is older")),
            "{command:?}: {stderr}"
        );
        let version = syncd::store::schema_version(&db).unwrap();
        assert_eq!(version, older, "{command:?} migrated the database");
    }

    // With the current schema the read-only commands work.
    set_version(syncd::store::SCHEMA_VERSION);
    let (ok, stdout, stderr) = syncd(dir.path(), &with_config(&["status", "--json"]));
    assert!(ok, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status --json is JSON");
    assert!(status["subscriptions"].is_array(), "{stdout}");
    let (ok, stdout, stderr) = syncd(dir.path(), &with_config(&["tasks", "list", "--json"]));
    assert!(ok, "{stderr}");
    let tasks: serde_json::Value = serde_json::from_str(&stdout).expect("tasks --json is JSON");
    assert!(
        tasks["tasks"].is_array() && tasks["counts"].is_object(),
        "{stdout}"
    );
}

#[test]
fn status_shows_loops_and_quarantine_and_quarantine_lists_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    let store = syncd::store::open(&dir.path().join("syncd.db")).unwrap();
    store
        .write_blocking(|tx| {
            syncd::store::runs::register(
                tx,
                syncd::store::runs::Registration {
                    name: "contacts",
                    kind: superoffice::entity::EntityKind::Contact,
                    fingerprint: "",
                },
                syncd::store::types::UtcTime::now(),
            )?;
            syncd::store::quarantine::put(
                tx,
                "contacts",
                7,
                "{\"contactId\":7}",
                "jq: x",
                "2026-12-04T23:00:00Z".parse().unwrap(),
            )?;
            syncd::store::quarantine::put(
                tx,
                "contacts",
                9,
                "{\"contactId\":9}",
                "the transform ran out of its time budget (100ms)",
                "2026-12-04T23:00:01Z".parse().unwrap(),
            )?;
            syncd::store::loops::put(
                tx,
                &syncd::store::loops::LoopRow {
                    name: "sync:contacts".into(),
                    state: syncd::store::loops::LoopState::Backoff,
                    restarts: 3,
                    failing: 3,
                    last_error: Some("store: no such table: cursors".into()),
                    last_error_at: Some("2026-12-04T23:00:02Z".into()),
                    updated_at: "2026-12-04T23:00:02Z".into(),
                },
            )
        })
        .unwrap();
    drop(store);
    let run = |args: &[&str]| {
        let mut all = vec!["--config", "syncd.toml"];
        all.extend_from_slice(args);
        syncd(dir.path(), &all)
    };

    let (ok, stdout, stderr) = run(&["status"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("QUARANTINED"), "{stdout}");
    let contacts = stdout.lines().find(|l| l.starts_with("contacts")).unwrap();
    // QUARANTINED, then POLL (no daemon has recorded an interval yet).
    let columns: Vec<&str> = contacts.split_whitespace().collect();
    assert_eq!(columns[columns.len() - 2..], ["2", "-"], "{stdout}");
    assert!(stdout.contains("POLL"), "{stdout}");
    assert!(
        stdout.contains("loop sync:contacts: restarting (waiting out its backoff) (3 restarts, 3 failures in a row, last error at 2026-12-04T23:00:02Z: store: no such table: cursors)"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&["quarantine", "list"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("jq: x") && stdout.contains("time budget"),
        "{stdout}"
    );
    assert!(stdout.contains("2 quarantined"), "{stdout}");
    let (ok, stdout, _) = run(&["quarantine", "list", "--json"]);
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], 7);
    assert_eq!(first["json"], "{\"contactId\":7}");

    let (ok, _, stderr) = run(&["quarantine", "retry", "--subscription", "nope"]);
    assert!(
        !ok && stderr.contains("--subscription") && stderr.contains("nope"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["quarantine", "retry", "--subscription", "contacts", "1234"]);
    assert!(
        !ok && stderr.contains("no quarantined record matches"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run(&["quarantine", "retry", "--subscription", "contacts", "9"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("contacts 9: refetch queued"), "{stdout}");
    let queued: Vec<(String, i64, bool)> =
        syncd::store::open_read_only(&dir.path().join("syncd.db"))
            .unwrap()
            .read_blocking(syncd::store::webhooks::queue)
            .unwrap()
            .into_iter()
            .map(|(sub, q)| {
                let retry = q
                    .event_id
                    .starts_with(&format!("{}:", syncd::store::quarantine::RETRY_EVENT));
                (sub, q.id, retry)
            })
            .collect();
    assert_eq!(queued, vec![("contacts".to_string(), 9, true)]);
}
