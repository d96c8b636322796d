//! The release binary run the way `dist/syncd.service` runs it: as a fresh unprivileged uid (the
//! unit's `DynamicUser=yes`, here through `setpriv`), with no `--config`, a cleared environment
//! holding only what systemd sets (`STATE_DIRECTORY`, `CONFIGURATION_DIRECTORY`,
//! `CREDENTIALS_DIRECTORY`, `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`), `UMask=0077`, and
//! the files laid out with the owners and modes of `dist/INSTALL.md`:
//!
//! | path | owner | mode |
//! |---|---|---|
//! | `etc/syncd/syncd.toml` (no secret in it) | root | 0644 |
//! | `var/lib/syncd/` (`StateDirectory=`, `StateDirectoryMode=0700`) | the uid | 0700 |
//! | `run/credentials/syncd.service/` (`LoadCredential=`, as systemd makes it) | the uid | 0500, files 0400 |
//!
//! Against the in-process emulator: `READY=1`, a sync that writes change rows, `WATCHDOG=1`
//! that keeps coming, `status`/`changes`/`tasks list`/`publish` working beside the daemon as
//! root and as the uid (the publishes are delivered; no root-owned file appears in the state
//! directory), and SIGTERM ending it with `STOPPING=1` and exit status 0.
//!
//! The binary is `$SYNCD_RELEASE_BIN` (`.ci/run` builds it once with
//! `cargo build --release -p syncd --no-default-features`, the build the .deb ships). Without it,
//! or when not run as root, the test fails under `CI=true` and says why; elsewhere it says why
//! and skips.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use syncd_testkit::notify::FakeSystemd;
use syncd_testkit::process::KillOnDrop;

/// Says why the test cannot run: a failure in CI, a loud skip elsewhere. `None` = go on.
fn unavailable(reason: &str) -> Option<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("unit_environment cannot run in CI: {reason}");
    }
    eprintln!("SKIPPED unit_environment: {reason}");
    Some(())
}

/// A uid in systemd's DynamicUser range that no account in /etc/passwd uses.
fn fresh_uid() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let used: BTreeSet<u32> = passwd
        .lines()
        .filter_map(|line| line.split(':').nth(2)?.parse().ok())
        .collect();
    let start = 61184 + std::process::id() % 4000;
    (start..65519)
        .chain(61184..start)
        .find(|uid| !used.contains(uid))
        .expect("a free uid in 61184..65519")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The files of the install steps, under one root directory.
struct Layout {
    root: tempfile::TempDir,
    uid: u32,
}

impl Layout {
    fn config_dir(&self) -> PathBuf {
        self.root.path().join("etc/syncd")
    }
    fn state_dir(&self) -> PathBuf {
        self.root.path().join("var/lib/syncd")
    }
    fn credentials_dir(&self) -> PathBuf {
        self.root.path().join("run/credentials/syncd.service")
    }
    fn notify_socket(&self) -> PathBuf {
        self.root.path().join("run/systemd/notify")
    }

    fn new(emu: &emulator::Emulator, uid: u32) -> Layout {
        let root = tempfile::tempdir().unwrap();
        // Like / on a host: every directory on the way is traversable by everyone.
        set_mode(root.path(), 0o755);
        let layout = Layout { root, uid };
        for dir in [
            "etc",
            "var",
            "var/lib",
            "run",
            "run/credentials",
            "run/systemd",
        ] {
            let dir = layout.root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            set_mode(&dir, 0o755);
        }

        // install -d -m 0755 /etc/syncd; install -m 0644 syncd.toml /etc/syncd/syncd.toml
        std::fs::create_dir(layout.config_dir()).unwrap();
        set_mode(&layout.config_dir(), 0o755);
        let config = layout.config_dir().join("syncd.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[control]
listen = "127.0.0.1:0"

[[tenant]]
name = "main"
environment = {env:?}
customer_id = {ctx:?}
client_id = {client_id:?}
client_secret = {{ credential = "client_secret" }}
auth = "system-user"
system_token = {system_token:?}
private_key = {{ credential = "system_user_key" }}

[[subscription]]
name = "contacts"
entity = "contact"
poll_interval = "1s"
webhooks = false
"#,
                env = emu.base_url(),
                ctx = emu.context_identifier(),
                client_id = emu.config().auth.client_id,
                system_token = emu.config().auth.system_token,
            ),
        )
        .unwrap();
        set_mode(&config, 0o644);

        // StateDirectory=syncd, StateDirectoryMode=0700: created by systemd, owned by the uid.
        std::fs::create_dir(layout.state_dir()).unwrap();
        chown(layout.state_dir(), Some(uid), Some(uid)).unwrap();
        set_mode(&layout.state_dir(), 0o700);

        // LoadCredential=: systemd copies each file into a directory the uid owns, 0500/0400:
        // the unit's client_secret and control_token, and system_user_key from the
        // system-user.conf drop-in.
        let credentials = layout.credentials_dir();
        std::fs::create_dir(&credentials).unwrap();
        for (name, content) in [
            ("client_secret", emu.config().auth.client_secret.to_string()),
            (
                "control_token",
                "unit-environment-control-token-0123456789".to_string(),
            ),
            (
                "system_user_key",
                emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM.to_string(),
            ),
        ] {
            let path = credentials.join(name);
            std::fs::write(&path, content).unwrap();
            chown(&path, Some(uid), Some(uid)).unwrap();
            set_mode(&path, 0o400);
        }
        chown(&credentials, Some(uid), Some(uid)).unwrap();
        set_mode(&credentials, 0o500);
        layout
    }

    /// The environment systemd gives the service (and nothing else).
    fn service_env(&self, command: &mut Command) {
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("RUST_LOG", "info")
            .env("STATE_DIRECTORY", self.state_dir())
            .env("CONFIGURATION_DIRECTORY", self.config_dir())
            .env("CREDENTIALS_DIRECTORY", self.credentials_dir());
    }

    /// `cmd` as the service's uid (`setpriv`, no supplementary groups, no new privileges).
    fn as_uid(&self, program: &Path) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .arg("--clear-groups")
            .arg("--no-new-privs")
            .arg("--")
            .arg(program);
        command
    }

    /// A CLI command next to the service, as root or as the service's uid, in the directories
    /// the service uses. Returns the output; panics with it when the command failed.
    fn cli(&self, binary: &Path, as_root: bool, args: &[&str]) -> Output {
        let mut command = if as_root {
            Command::new(binary)
        } else {
            self.as_uid(binary)
        };
        self.service_env(&mut command);
        command.env("RUST_LOG", "warn").args(args);
        let output = command.output().unwrap();
        let who = if as_root { "root" } else { "the service uid" };
        assert!(
            output.status.success(),
            "`syncd {}` as {who} failed ({:?}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Every file under the state directory whose owner is not the service's uid.
    fn foreign_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.state_dir()).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.uid() != self.uid {
                found.push(format!("{} (uid {})", entry.path().display(), meta.uid()));
            }
        }
        found
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_exit(child: &mut KillOnDrop, timeout: Duration) -> Option<std::process::ExitStatus> {
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
async fn the_release_binary_runs_as_the_unit_runs_it() {
    let Some(binary) = std::env::var_os("SYNCD_RELEASE_BIN").map(PathBuf::from) else {
        let _ = unavailable(
            "SYNCD_RELEASE_BIN is not set (build with `cargo build --release -p syncd \
             --no-default-features` and set it to target/release/syncd)",
        );
        return;
    };
    assert!(
        binary.is_file(),
        "SYNCD_RELEASE_BIN={} does not exist",
        binary.display()
    );
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    if euid != 0 {
        let _ = unavailable(&format!(
            "runs as uid {euid}; switching to a fresh uid with setpriv needs root"
        ));
        return;
    }

    let emu = emulator::Emulator::start(emulator::Config {
        counts: emulator::SeedCounts::contacts_only(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let layout = Layout::new(&emu, fresh_uid());
    // systemd's notify socket is world-writable, so a service of any uid can send to it.
    let mut systemd = FakeSystemd::bind(&layout.notify_socket());
    set_mode(&layout.notify_socket(), 0o777);

    // ExecStart=/usr/bin/syncd run, UMask=0077; systemd sets WATCHDOG_PID to the service's pid
    // (`exec` keeps the shell's pid for syncd).
    let log_path = layout.root.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = layout.as_uid(Path::new("/bin/sh"));
    command
        .arg("-c")
        .arg("umask 077; WATCHDOG_PID=$$ exec \"$0\" run")
        .arg(&binary);
    layout.service_env(&mut command);
    command
        .env("NOTIFY_SOCKET", layout.notify_socket())
        .env("WATCHDOG_USEC", "2000000")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut daemon = KillOnDrop(command.spawn().unwrap());
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !systemd.wait_for("READY=1", Duration::from_millis(500)) {
        let exited = daemon.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "no READY=1 (exit: {exited:?}): {:?}\n{}",
            systemd.messages,
            daemon_log()
        );
    }
    let db = layout.state_dir().join("syncd.db");
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!(
        meta.uid(),
        layout.uid,
        "the database belongs to the service"
    );
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "UMask=0077: the database is private"
    );

    // A sync completes: its inserts are in the change feed, read as the uid and as root.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let changes = stdout(&layout.cli(&binary, false, &["changes", "--since", "0"]));
        if changes.lines().count() >= 50 {
            let first: serde_json::Value =
                serde_json::from_str(changes.lines().next().unwrap()).unwrap();
            assert_eq!(first["op"], "insert", "{first}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no complete initial load in the change feed: {changes}\n{}",
            daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let as_root = stdout(&layout.cli(&binary, true, &["changes", "--since", "0"]));
    assert!(as_root.lines().count() >= 50, "{as_root}");

    // The watchdog keeps being fed.
    let fed = systemd.count("WATCHDOG=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while systemd.count("WATCHDOG=1") < fed + 2 && Instant::now() < deadline {
        systemd.wait_for("\u{0}never", Duration::from_millis(200));
    }
    assert!(
        systemd.count("WATCHDOG=1") >= fed + 2,
        "WATCHDOG=1 stopped: {:?}",
        systemd.messages
    );

    for as_root in [false, true] {
        let status = stdout(&layout.cli(&binary, as_root, &["status"]));
        assert!(status.contains("contacts"), "{status}");
        layout.cli(&binary, as_root, &["tasks", "list"]);
    }

    // A publish from each side is queued and delivered by the running daemon.
    let payload = layout.root.path().join("contact.json");
    std::fs::write(&payload, r#"{"Name": "Unit Environment AS"}"#).unwrap();
    set_mode(&payload, 0o644);
    let mut ids = Vec::new();
    for (as_root, key) in [(false, "unit-env-uid"), (true, "unit-env-root")] {
        let out = layout.cli(
            &binary,
            as_root,
            &[
                "publish",
                "--action",
                "create",
                "--entity",
                "contact",
                "--payload",
                payload.to_str().unwrap(),
                "--key",
                key,
            ],
        );
        let id = stdout(&out).trim().to_string();
        assert!(id.parse::<i64>().is_ok(), "a task id: {id:?}");
        ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = stdout(&layout.cli(&binary, false, &["tasks", "list"]));
        let done = ids
            .iter()
            .filter(|id| {
                list.lines().any(|line| {
                    let mut words = line.split_whitespace();
                    words.next() == Some(id.as_str()) && words.next() == Some("done")
                })
            })
            .count();
        if done == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the published tasks were not delivered: {list}\n{}",
            daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        layout.foreign_files().is_empty(),
        "root's CLI left files the service cannot use: {:?}",
        layout.foreign_files()
    );

    // SIGTERM: STOPPING=1 and exit status 0 well within TimeoutStopSec=15s.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(&mut daemon, Duration::from_secs(10)).expect("exits within 10 s");
    assert!(exit.success(), "exit status {exit:?}\n{}", daemon_log());
    assert!(
        systemd.wait_for("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        systemd.messages
    );
    // The CLI still reads the database of the stopped service.
    let status = stdout(&layout.cli(&binary, true, &["status"]));
    assert!(status.contains("contacts"), "{status}");
    assert!(
        layout.foreign_files().is_empty(),
        "{:?}",
        layout.foreign_files()
    );
}
