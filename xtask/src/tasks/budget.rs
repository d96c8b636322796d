//! `cargo xtask budget`: measures the build budget of the `superoffice` crate.
//!
//! For the default features and for `full`: `cargo clean -p superoffice`, then a debug
//! `cargo build -p superoffice` (dependencies stay built; a build that compiled any other crate
//! is measured again). It reports the wall time, the peak
//! memory (VmHWM) of the rustc process compiling `superoffice`, sampled from `/proc`, and the
//! codegen time the build script recorded in `OUT_DIR/codegen-stats.json`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Arguments of `cargo xtask budget`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only measure these feature sets (`default`, `full`); both when omitted.
    #[arg(long)]
    only: Vec<String>,
}

struct Budget {
    features: &'static str,
    build_limit: f64,
}

const BUDGETS: [Budget; 2] = [
    Budget {
        features: "default",
        build_limit: 60.0,
    },
    Budget {
        features: "full",
        build_limit: 150.0,
    },
];
const MEMORY_LIMIT_MB: f64 = 4096.0;
const CODEGEN_LIMIT: f64 = 5.0;

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = superoffice_codegen::spec::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut failed = false;
    println!(
        "{:<8} {:>10} {:>14} {:>10} {:>7}  budget",
        "features", "build (s)", "peak rustc MB", "codegen s", "ops"
    );
    for budget in BUDGETS
        .iter()
        .filter(|b| args.only.is_empty() || args.only.iter().any(|o| o == b.features))
    {
        // A measurement that also compiled dependencies (another profile or feature set built
        // last) is thrown away and taken again: the budget is the crate's own build.
        let mut attempt = 0;
        let (seconds, peak_kb) = loop {
            attempt += 1;
            let (seconds, peak_kb, rebuilt) = measure(&cargo, &root, budget.features)?;
            if rebuilt.is_empty() || attempt == 2 {
                break (seconds, peak_kb);
            }
            eprintln!(
                "({} also compiled {}; measuring again)",
                budget.features,
                rebuilt.join(", ")
            );
        };
        let stats = codegen_stats(&root)?;
        let codegen = stats["codegen_seconds"].as_f64().unwrap_or(f64::NAN);
        let peak_mb = peak_kb as f64 / 1024.0;
        let ok =
            seconds <= budget.build_limit && peak_mb <= MEMORY_LIMIT_MB && codegen <= CODEGEN_LIMIT;
        failed |= !ok;
        println!(
            "{:<8} {:>10.1} {:>14.0} {:>10.2} {:>7}  {} (≤ {} s, ≤ {} MB, codegen ≤ {} s)",
            budget.features,
            seconds,
            peak_mb,
            codegen,
            stats["operations"],
            if ok { "ok" } else { "OVER" },
            budget.build_limit,
            MEMORY_LIMIT_MB,
            CODEGEN_LIMIT,
        );
    }
    if failed {
        bail!("over budget");
    }
    Ok(())
}

/// `cargo clean -p superoffice`, then a timed debug build with `features`: wall seconds, the
/// peak memory (kB) of the rustc compiling `superoffice`, and the other crates it compiled.
fn measure(cargo: &str, root: &Path, features: &str) -> anyhow::Result<(f64, u64, Vec<String>)> {
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["clean", "-p", "superoffice"])
        .status()?;
    if !status.success() {
        bail!("cargo clean -p superoffice failed");
    }
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "-p", "superoffice"])
        .stderr(Stdio::piped());
    if features != "default" {
        build.args(["--features", features]);
    }
    let started = Instant::now();
    let mut child = build.spawn().context("starting cargo build")?;
    let stderr = child.stderr.take().context("cargo's stderr")?;
    let reader = std::thread::spawn(move || {
        let mut compiled = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(rest) = line.trim_start().strip_prefix("Compiling ")
                && let Some(name) = rest.split_whitespace().next()
                && name != "superoffice"
            {
                compiled.push(name.to_string());
            }
        }
        compiled
    });
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak_kb = peak_kb.max(rustc_peak_kb("superoffice"));
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs_f64();
    let compiled = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("cargo build -p superoffice ({features}) failed");
    }
    Ok((seconds, peak_kb, compiled))
}

/// Peak resident memory (kB) of running rustc processes compiling `crate_name`.
fn rustc_peak_kb(crate_name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let needle = format!("--crate-name\0{crate_name}\0");
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !cmdline.contains(&needle) || cmdline.contains("build_script_build") {
                return None;
            }
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .max()
        .unwrap_or(0)
}

/// The newest `codegen-stats.json` written by `sdk/build.rs`.
fn codegen_stats(root: &Path) -> anyhow::Result<serde_json::Value> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let build = target.join("debug/build");
    let newest = std::fs::read_dir(&build)
        .with_context(|| format!("reading {}", build.display()))?
        .flatten()
        .map(|e| e.path().join("out/codegen-stats.json"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .context("no codegen-stats.json: did the build script run?")?;
    Ok(serde_json::from_str(&std::fs::read_to_string(newest)?)?)
}
