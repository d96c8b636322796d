//! Generates the typed client from SuperOffice's official spec into `OUT_DIR/superoffice.rs`.
//!
//! The spec is found by `xtask::spec::locate` (`SUPEROFFICE_OPENAPI`, then
//! `spec/upstream/Swagger-v1-REST.json`, then `../shared/superoffice/openapi/…`); what is
//! generated is decided by `spec/superoffice.toml` and the enabled cargo features.

use std::collections::BTreeSet;
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir)
        .parent()
        .expect("sdk/ lives in the workspace")
        .to_path_buf();

    println!("cargo:rerun-if-env-changed={}", xtask::spec::ENV_VAR);
    // Only existing paths: cargo re-runs a build script on every build for a missing one.
    let shared_dir = Path::new(xtask::spec::SHARED_PATH)
        .parent()
        .expect("a file path");
    for rel in [
        Path::new(xtask::spec::CONFIG_PATH),
        Path::new(xtask::spec::LOCK_PATH),
        Path::new("spec/upstream"),
        shared_dir,
    ] {
        let path = root.join(rel);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Some(path) = std::env::var_os(xtask::spec::ENV_VAR) {
        println!("cargo:rerun-if-changed={}", Path::new(&path).display());
    }

    let features: BTreeSet<String> = std::env::vars()
        .filter_map(|(key, _)| {
            key.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .collect();

    let started = std::time::Instant::now();
    let generated = match xtask::generate(&xtask::Request {
        root: root.clone(),
        features,
    }) {
        Ok(generated) => generated,
        Err(error) => {
            // Printed under `--- stderr` by cargo; the message says what to do.
            eprintln!("\nerror: generating the SuperOffice client failed:\n{error}\n");
            std::process::exit(1);
        }
    };
    println!("cargo:rerun-if-changed={}", generated.spec.path.display());
    for warning in &generated.warnings {
        println!("cargo:warning={warning}");
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let stats = format!(
        "{{\"codegen_seconds\":{:.3},\"operations\":{},\"lines\":{},\"spec_sha256\":\"{}\"}}\n",
        started.elapsed().as_secs_f64(),
        generated.operations,
        generated.code.lines().count(),
        generated.spec_sha256,
    );
    for (name, text) in [
        ("superoffice.rs", generated.code.as_str()),
        ("codegen-stats.json", stats.as_str()),
    ] {
        let path = out_dir.join(name);
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("error: writing {}: {error}", path.display());
            std::process::exit(1);
        }
    }
}
