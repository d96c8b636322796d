//! `cargo xtask codegen --out DIR [--features …]`: writes exactly what the build generates.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

/// Arguments of `cargo xtask codegen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write `superoffice.rs` and `openapi.json` into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Cargo features of the `superoffice` crate (comma-separated or repeated), e.g. `full`.
    #[arg(long)]
    features: Vec<String>,
    /// Do not add the crate's default features.
    #[arg(long)]
    no_default_features: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let features = super::feature_set(&args.features, args.no_default_features)?;
    let started = Instant::now();
    let generated = superoffice_codegen::generate(&superoffice_codegen::Request {
        root: superoffice_codegen::spec::workspace_root(),
        features,
        spec: None,
    })?;
    let elapsed = started.elapsed();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let rust = args.out.join("superoffice.rs");
    std::fs::write(&rust, &generated.code)?;
    let openapi = args.out.join("openapi.json");
    std::fs::write(&openapi, serde_json::to_string_pretty(&generated.openapi)?)?;
    for warning in &generated.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{} operations, {} lines → {} ({:.2} s) from {} ({})",
        generated.operations,
        generated.code.lines().count(),
        rust.display(),
        elapsed.as_secs_f64(),
        generated.spec.path.display(),
        generated.spec.source,
    );
    Ok(())
}
