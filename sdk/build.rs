//! Generates the typed client from SuperOffice's official spec into `OUT_DIR/superoffice.rs`.
//!
//! The spec is found by `superoffice_codegen::spec::locate` (`SUPEROFFICE_OPENAPI`, then
//! `spec/upstream/Swagger-v1-REST.json`, then `../shared/superoffice/openapi/…`). When none
//! exists and the opt-in `download-spec` feature is on, the zip is downloaded
//! (`SUPEROFFICE_OPENAPI_URL` or SuperOffice's public docs repository), checked against
//! `spec/superoffice.lock` and unpacked into `OUT_DIR/spec/`. What is generated is decided by
//! `spec/superoffice.toml` and the enabled cargo features.

use std::collections::BTreeSet;
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir)
        .parent()
        .expect("sdk/ lives in the workspace")
        .to_path_buf();

    println!(
        "cargo:rerun-if-env-changed={}",
        superoffice_codegen::spec::ENV_VAR
    );
    // Only existing paths: cargo re-runs a build script on every build for a missing one.
    let shared_dir = Path::new(superoffice_codegen::spec::SHARED_PATH)
        .parent()
        .expect("a file path");
    for rel in [
        Path::new(superoffice_codegen::spec::CONFIG_PATH),
        Path::new(superoffice_codegen::spec::LOCK_PATH),
        Path::new("spec/upstream"),
        shared_dir,
    ] {
        let path = root.join(rel);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Some(path) = std::env::var_os(superoffice_codegen::spec::ENV_VAR) {
        println!("cargo:rerun-if-changed={}", Path::new(&path).display());
    }

    let features: BTreeSet<String> = std::env::vars()
        .filter_map(|(key, _)| {
            key.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .collect();

    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let spec = downloaded_spec(&root, &out_dir);

    let started = std::time::Instant::now();
    let generated = match superoffice_codegen::generate(&superoffice_codegen::Request {
        root: root.clone(),
        features,
        spec,
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
    let stats = format!(
        "{{\"codegen_seconds\":{:.3},\"operations\":{},\"lines\":{},\"spec_sha256\":\"{}\"}}\n",
        started.elapsed().as_secs_f64(),
        generated.operations,
        generated.code.lines().count(),
        generated.spec_sha256,
    );
    let accept = superoffice_codegen::rust::accept_rust(&generated.accept);
    for (name, text) in [
        ("superoffice.rs", generated.code.as_str()),
        ("accept.rs", accept.as_str()),
        ("codegen-stats.json", stats.as_str()),
    ] {
        let path = out_dir.join(name);
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("error: writing {}: {error}", path.display());
            std::process::exit(1);
        }
    }
}

/// With the `download-spec` feature and no local spec: downloads, checks and unpacks it into
/// `OUT_DIR/spec/` (once; a later build reuses the checked file). `None` otherwise, and the
/// lookup's own error names every way to provide the file.
#[cfg(feature = "download-spec")]
fn downloaded_spec(root: &Path, out_dir: &Path) -> Option<std::path::PathBuf> {
    use superoffice_codegen::fetch;
    println!("cargo:rerun-if-env-changed={}", fetch::URL_ENV_VAR);
    if superoffice_codegen::spec::locate(root).is_ok() {
        return None;
    }
    let dest = out_dir.join("spec");
    let pin = match superoffice_codegen::spec::read_lock(root) {
        Ok(Some(sha256)) => fetch::Pin::Require(sha256),
        Ok(None) => {
            eprintln!(
                "\nerror: feature download-spec: {} is missing, so a download cannot be checked\n",
                superoffice_codegen::spec::LOCK_PATH
            );
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("\nerror: feature download-spec: {error}\n");
            std::process::exit(1);
        }
    };
    let existing = dest.join(fetch::SPEC_FILE);
    if let (fetch::Pin::Require(sha256), Ok(loaded)) =
        (&pin, superoffice_codegen::spec::load(&existing))
        && &loaded.sha256 == sha256
    {
        return Some(existing);
    }
    let url = fetch::url(None);
    match fetch::fetch(&url, &dest, &pin) {
        Ok(fetched) => {
            println!(
                "cargo:warning=downloaded the SuperOffice spec from {url} (sha256 {})",
                fetched.sha256
            );
            Some(fetched.spec)
        }
        Err(error) => {
            eprintln!(
                "\nerror: feature download-spec: {error}\nProvide the file another way: set SUPEROFFICE_OPENAPI to a local Swagger-v1-REST.json, or set SUPEROFFICE_OPENAPI_URL to a reachable copy of Swagger-v1-REST.zip.\n"
            );
            std::process::exit(1);
        }
    }
}

#[cfg(not(feature = "download-spec"))]
fn downloaded_spec(_root: &Path, _out_dir: &Path) -> Option<std::path::PathBuf> {
    None
}
