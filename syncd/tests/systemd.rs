//! `syncd run` under a fake systemd: `READY=1` only after the database is migrated and auth
//! verified, `STATUS=` updates, `WATCHDOG=1` while the loops run, and on SIGTERM `STOPPING=1`
//! and exit status 0 within 10 s. SIGHUP reloads the configuration.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncd_testkit::notify::FakeSystemd;
use syncd_testkit::process::KillOnDrop;

fn write_config(dir: &Path, emu: &emulator::Emulator, poll: &str, token: &str) {
    let text = format!(
        r#"
store = {store:?}

[control]
listen = "127.0.0.1:0"

[[tenant]]
name = "main"
environment = {env:?}
customer_id = {ctx:?}
auth = "static"
token = {{ value = {token:?} }}

[[subscription]]
name = "contacts"
entity = "contact"
poll_interval = {poll:?}
webhooks = false
"#,
        store = dir.join("syncd.db").display().to_string(),
        env = emu.base_url(),
        ctx = emu.context_identifier(),
    );
    std::fs::write(dir.join("syncd.toml"), text).unwrap();
}

fn spawn(dir: &Path, notify: &Path) -> Child {
    // systemd sets WATCHDOG_PID to the service's pid: `exec` keeps the shell's pid for syncd.
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "WATCHDOG_PID=$$ exec {:?} --config syncd.toml --log-format json run",
            env!("CARGO_BIN_EXE_syncd")
        ))
        .current_dir(dir)
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("STATE_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_a_clean_sigterm() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &emu, "1s", &emu.issue_access_token());
    let notify_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&notify_path);
    let mut daemon = KillOnDrop(spawn(dir.path(), &notify_path));
    let child = &mut daemon.0;

    assert!(
        systemd.wait_for("READY=1", Duration::from_secs(30)),
        "no READY=1: {:?}",
        systemd.messages
    );
    let ready_at = systemd
        .messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .unwrap();
    assert!(
        dir.path().join("syncd.db").exists(),
        "the database exists before READY=1"
    );
    assert!(
        systemd.messages[..ready_at]
            .iter()
            .any(|m| m.contains("STATUS=")),
        "a status before ready: {:?}",
        systemd.messages
    );
    assert!(
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(10)),
        "the loops feed the watchdog: {:?}",
        systemd.messages
    );

    // SIGHUP reloads without stopping: the daemon restarts with the re-read config.
    let before = systemd.count("READY=1");
    signal(child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while systemd.count("READY=1") == before && Instant::now() < deadline {
        systemd.wait_for("\u{0}never", Duration::from_millis(200));
    }
    assert!(
        systemd.count("READY=1") > before,
        "ready again after the reload: {:?}",
        systemd.messages
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the daemon"
    );

    // A reload whose new configuration cannot be used (a secret that cannot be read) keeps the
    // running daemon as it is: no restart, the loops keep feeding the watchdog.
    let text = std::fs::read_to_string(dir.path().join("syncd.toml")).unwrap();
    let token_line = text.lines().find(|l| l.starts_with("token = ")).unwrap();
    std::fs::write(
        dir.path().join("syncd.toml"),
        text.replace(token_line, "token = { env = \"SYNCD_TEST_RELOAD_UNSET\" }"),
    )
    .unwrap();
    let readies = systemd
        .messages
        .iter()
        .filter(|m| m.contains("READY=1"))
        .count();
    signal(child, "HUP");
    systemd.wait_for("\u{0}never", Duration::from_secs(2));
    let pings_before = systemd
        .messages
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    systemd.wait_for("\u{0}never", Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a failed reload must not stop the daemon"
    );
    let messages = &systemd.messages;
    assert_eq!(
        messages.iter().filter(|m| m.contains("READY=1")).count(),
        readies,
        "a failed reload does not restart the daemon: {messages:?}"
    );
    assert!(
        messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() > pings_before,
        "the running daemon keeps feeding the watchdog: {messages:?}"
    );

    let stopping = Instant::now();
    signal(child, "TERM");
    let status = wait_exit(child, Duration::from_secs(10)).expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
    assert!(
        systemd.wait_for("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        systemd.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_never_signal_ready() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &emu, "1s", "8A:Cust12345.forged");
    let notify_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&notify_path);
    let mut daemon = KillOnDrop(spawn(dir.path(), &notify_path));
    let status =
        wait_exit(&mut daemon.0, Duration::from_secs(30)).expect("exits on bad credentials");
    assert!(!status.success());
    systemd.wait_for("READY=1", Duration::from_millis(300));
    assert!(
        !systemd.messages.iter().any(|m| m.contains("READY=1")),
        "{:?}",
        systemd.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_loop_withholds_the_watchdog_until_it_recovers() {
    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &emu, "200ms", &emu.issue_access_token());
    let config = dir.path().join("syncd.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[supervisor]\nrestart_backoff = \"100ms\"\nrestart_max_backoff = \"200ms\"\n");
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&notify_path);
    let _daemon = KillOnDrop(spawn(dir.path(), &notify_path));
    assert!(
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(30)),
        "{:?}",
        systemd.messages
    );
    // The subscription loop now fails on every start (restarts every 100-200 ms), while the
    // outbox loop keeps reporting in.
    let db = dir.path().join("syncd.db");
    syncd_testkit::sync::sabotage(&db, "ALTER TABLE cursors RENAME TO cursors_away");
    // Its last report ages past the watchdog interval (1 s)…
    systemd.wait_for("\u{0}never", Duration::from_millis(1500));
    systemd.messages.clear();
    // …and from then on no ping goes out, although the loop is restarted again and again.
    systemd.wait_for("\u{0}never", Duration::from_secs(3));
    assert!(
        !systemd.messages.iter().any(|m| m.contains("WATCHDOG=1")),
        "a restarting loop must withhold the watchdog: {:?}",
        systemd.messages
    );
    assert!(
        systemd
            .messages
            .iter()
            .any(|m| m.contains("STATUS=loop sync:contacts failed")),
        "the status line says which loop fails: {:?}",
        systemd.messages
    );
    // Repaired, the loop reports in again and the pings resume.
    syncd_testkit::sync::sabotage(&db, "ALTER TABLE cursors_away RENAME TO cursors");
    assert!(
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(10)),
        "{:?}",
        systemd.messages
    );
}
