//! `cargo xtask coverage [--features full]`: per tag, the operations in the spec, generated,
//! and excluded with the reason from the config.

use superoffice_codegen::coverage::Coverage;

/// Arguments of `cargo xtask coverage`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cargo features of the `superoffice` crate (comma-separated or repeated), e.g. `full`.
    #[arg(long)]
    features: Vec<String>,
    /// Do not add the crate's default features.
    #[arg(long)]
    no_default_features: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = superoffice_codegen::spec::workspace_root();
    let features = super::feature_set(&args.features, args.no_default_features)?;
    let config = superoffice_codegen::Config::load(&root)?;
    let located = superoffice_codegen::spec::locate(&root)?;
    let loaded = superoffice_codegen::spec::load(&located.path)?;
    let prepared = superoffice_codegen::prepare(&loaded.json, &config)?;
    let tags = config.tags_for(&features)?;
    let (selected, warnings) =
        superoffice_codegen::select::select(&prepared.doc, tags.as_ref(), &prepared.excluded)?;
    for warning in prepared.warnings.iter().chain(&warnings) {
        eprintln!("warning: {warning}");
    }
    let coverage = Coverage::compute(&prepared.upstream_ops, &prepared.excluded, &selected)?;
    println!(
        "spec: {} (sha256 {})",
        located.path.display(),
        loaded.sha256
    );
    println!(
        "features: {}\n",
        features.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    print!("{}", coverage.render());
    let (spec, generated, excluded, not_selected) = coverage.totals();
    if tags.is_none() && (generated + excluded != spec || not_selected != 0) {
        anyhow::bail!(
            "with every tag selected, generated + excluded ({}) must equal the spec's {spec}",
            generated + excluded
        );
    }
    Ok(())
}
