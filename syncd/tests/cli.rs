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
        dir.join("key.pem"),
        emulator::test_keys::SYSTEM_USER_PRIVATE_KEY_PEM,
    )
    .unwrap();
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/syncd.toml"))
            .unwrap();
    shipped
        .replace(
            "/run/credentials/syncd.service/system_user_key",
            &dir.join("key.pem").display().to_string(),
        )
        .replace(
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
    let (ok, _, stderr) = syncd(dir.path(), &["--config", "syncd.toml", "config", "check"]);
    assert!(!ok);
    assert!(
        stderr.contains("tenant[0].client_secret") && stderr.contains("missing"),
        "{stderr}"
    );

    let (ok, _, stderr) = syncd(dir.path(), &["--config", "nope.toml", "config", "check"]);
    assert!(!ok && stderr.contains("nope.toml"), "{stderr}");
}

#[test]
fn status_and_changes_need_a_database_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("syncd.toml"), example_config(dir.path())).unwrap();
    let (ok, _, stderr) = syncd(dir.path(), &["--config", "syncd.toml", "status"]);
    assert!(!ok && stderr.contains("no database"), "{stderr}");
    let (ok, _, stderr) = syncd(
        dir.path(),
        &["--config", "syncd.toml", "changes", "--since", "0"],
    );
    assert!(!ok && stderr.contains("no database"), "{stderr}");
}
