//! The SuperOffice SDK generator (crate `superoffice-codegen`), shared by `sdk/build.rs` and the
//! `cargo xtask` commands. It has no command-line dependencies (no clap, no anyhow), so the
//! SDK's build compiles only what generation needs.
//!
//! Pipeline ([`generate`]): find the upstream Swagger 2.0 file ([`spec`]) → convert it to
//! OpenAPI 3.0.3 ([`convert`]) → run the named normalisations ([`normalize`]) on the whole
//! document → keep the tags the enabled cargo features select ([`select`]) → progenitor and a
//! small post-pass ([`rust`]) → `prettyplease`. [`surface`] and [`coverage`] describe the
//! result for snapshots and reports. Everything that decides what is generated comes from
//! `spec/superoffice.toml` ([`config`]). With the `fetch` feature, [`fetch`] downloads and
//! unpacks the upstream zip.

pub mod config;
pub mod convert;
pub mod coverage;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod normalize;
pub mod rust;
pub mod select;
pub mod spec;
pub mod surface;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use config::Config;

/// Everything that can go wrong while generating the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream spec could not be found; the message says where to put it.
    #[error("{0}")]
    SpecNotFound(String),
    /// The spec or lock file is unreadable or malformed.
    #[error("{0}")]
    Spec(String),
    /// `spec/superoffice.toml` is invalid; the message names the key and line.
    #[error("invalid generation config: {0}")]
    Config(String),
    /// The Swagger document uses a construct the converter does not handle.
    #[error("unsupported Swagger construct at {pointer}: {what}")]
    Unsupported {
        /// JSON pointer into the upstream document.
        pointer: String,
        /// What was found.
        what: String,
    },
    /// A normalisation met input it does not expect.
    #[error("normalisation failed: {0}")]
    Normalize(String),
    /// progenitor or the Rust post-pass failed.
    #[error("code generation failed: {0}")]
    Generate(String),
    /// Downloading or unpacking the upstream zip failed (feature `fetch`).
    #[error("fetching the spec failed: {0}")]
    Fetch(String),
    /// The downloaded spec is not the pinned one.
    #[error(
        "the downloaded Swagger-v1-REST.json has sha256 {actual}, but spec/superoffice.lock pins {expected}; nothing was written (re-pin deliberately with `cargo xtask spec fetch --accept-new`)"
    )]
    SpecHashMismatch {
        /// The pinned hash.
        expected: String,
        /// The hash of the downloaded file.
        actual: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Result alias for the generator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A converted and normalised document with everything needed to select from it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// All operations, normalised.
    pub doc: Value,
    /// Operations excluded by a normalisation or by `[exclude]`, by upstream id, with reasons.
    pub excluded: BTreeMap<String, String>,
    /// What each normalisation did.
    pub report: Vec<(&'static str, String)>,
    /// `[exclude]` entries that name no operation of the spec.
    pub warnings: Vec<String>,
    /// Every operation of the upstream spec (for coverage).
    pub upstream_ops: Vec<select::OpRef>,
}

/// Converts and normalises an upstream Swagger document.
pub fn prepare(swagger: &Value, config: &Config) -> Result<Prepared> {
    let converted = convert::convert(swagger)?;
    let upstream_ops = select::op_refs(&converted)?;
    let warnings = config
        .exclude
        .keys()
        .filter(|id| !upstream_ops.iter().any(|op| &op.upstream_id == *id))
        .map(|id| format!("[exclude] names `{id}`, which is not in the spec"))
        .collect();
    let normalized = normalize::normalize(converted, &config.normalize)?;
    let mut excluded = normalized.excluded;
    for (id, reason) in &config.exclude {
        excluded.entry(id.clone()).or_insert_with(|| reason.clone());
    }
    Ok(Prepared {
        doc: normalized.doc,
        excluded,
        report: normalized.report,
        warnings,
        upstream_ops,
    })
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// The workspace root (for `spec/`).
    pub root: PathBuf,
    /// Enabled cargo features of the `superoffice` crate.
    pub features: BTreeSet<String>,
    /// A spec file to use instead of the lookup ([`spec::locate`]), e.g. one the build script
    /// downloaded into `OUT_DIR`.
    pub spec: Option<PathBuf>,
}

/// The outcome of [`generate`].
#[derive(Debug, Clone)]
pub struct Generated {
    /// Formatted Rust source of the client.
    pub code: String,
    /// The OpenAPI document it was generated from (normalised and selected).
    pub openapi: Value,
    /// The spec file that was used.
    pub spec: spec::Located,
    /// sha256 of that file.
    pub spec_sha256: String,
    /// Warnings for the build to print (lock mismatch, stale config entries).
    pub warnings: Vec<String>,
    /// Number of operations generated.
    pub operations: usize,
    /// `(operation id, Accept)` of the binary downloads ([`rust::accept_table`]).
    pub accept: Vec<(String, String)>,
}

/// Runs the whole pipeline for a set of enabled features.
pub fn generate(request: &Request) -> Result<Generated> {
    let config = Config::load(&request.root)?;
    let located = match &request.spec {
        Some(path) => spec::Located {
            path: path.clone(),
            source: spec::Source::Downloaded,
        },
        None => spec::locate(&request.root)?,
    };
    let loaded = spec::load(&located.path)?;
    let mut warnings: Vec<String> = spec::check_lock(&request.root, &loaded.sha256)?
        .into_iter()
        .collect();
    let prepared = prepare(&loaded.json, &config)?;
    warnings.extend(prepared.warnings.iter().cloned());
    let tags = config.tags_for(&request.features)?;
    let (openapi, select_warnings) =
        select::select(&prepared.doc, tags.as_ref(), &prepared.excluded)?;
    warnings.extend(select_warnings);
    let operations = normalize::operations(&openapi).len();
    let code = rust::generate(&openapi, &config)?;
    let accept = rust::accept_table(&openapi);
    Ok(Generated {
        accept,
        code,
        openapi,
        spec: located,
        spec_sha256: loaded.sha256,
        warnings,
        operations,
    })
}
