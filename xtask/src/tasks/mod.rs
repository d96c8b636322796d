//! One module per `cargo xtask` task.

pub mod budget;
pub mod codegen;
pub mod coverage;
pub mod spec;

use std::collections::BTreeSet;

/// Parses `--features a,b` (also repeated) into a set; `default` expands to the crate's default
/// features as declared in `sdk/Cargo.toml`.
pub fn feature_set(features: &[String], no_default: bool) -> anyhow::Result<BTreeSet<String>> {
    let mut set: BTreeSet<String> = features
        .iter()
        .flat_map(|f| f.split([',', ' ']))
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    if !no_default {
        set.extend(default_features()?);
    }
    Ok(set)
}

/// The `default` feature list of `sdk/Cargo.toml`.
pub fn default_features() -> anyhow::Result<Vec<String>> {
    let path = superoffice_codegen::spec::workspace_root().join("sdk/Cargo.toml");
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let defaults = manifest
        .get("features")
        .and_then(|f| f.get("default"))
        .and_then(|d| d.as_array())
        .ok_or_else(|| anyhow::anyhow!("{} has no [features] default", path.display()))?;
    Ok(defaults
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect())
}
