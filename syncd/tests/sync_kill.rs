//! Crash safety of the subscription engine: the `syncd` binary, run as a child process against
//! an emulator in this process while "other users" keep creating, editing and deleting, is
//! killed with SIGKILL at random moments and restarted, again and again. In the end the local
//! copy equals the emulator's ground truth and the change feed has no gap and no duplicate
//! (see `syncd_testkit::sync::kill`).
//!
//! `SYNCD_KILL_RUNS` (default 20) sets the number of kills, `SYNCD_KILL_SEED` the seed;
//! `cargo bench -p syncd --bench sync` runs more.

use std::path::Path;
use std::process::Command;

use syncd_testkit::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_duplicates_nothing() {
    let runs: u32 = std::env::var("SYNCD_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SYNCD_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_260_722);
    let report = kill::kill_scenario(Path::new(env!("CARGO_BIN_EXE_syncd")), runs, seed).await;
    println!("seed {seed}: {report:?}");
    // Not vacuous: most kills hit an open run, and those runs are found aborted afterwards.
    assert!(report.mid_run >= runs * 3 / 4, "kills mid-run: {report:?}");
    assert!(
        report.aborted_runs >= i64::from(report.mid_run) / 2,
        "kills leave aborted runs: {report:?}"
    );
    assert!(report.updates > 0 && report.deletes > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_bad_subscription_with_a_clear_error() {
    let emu = emulator(counts(3, 0, 0), |_| {}).await;
    let dir = workdir();
    let mut text = base_config(&emu, dir.path(), "");
    text.push_str(
        "\n[[subscription]]\nname = \"persons\"\nentity = \"person\"\nfilter = \"contactId eq {contactId}\"\n",
    );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, &text).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_syncd"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("subscription \"persons\"") && stderr.contains("parent"),
        "{stderr}"
    );
}
