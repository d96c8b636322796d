//! `spec/superoffice.toml`: generator settings, normalisation switches, feature → tag mapping
//! and excluded operations.
//!
//! Everything that decides *what* is generated lives in that file, not in code; see its comments
//! for the meaning of each key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// The parsed generation config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Settings handed to progenitor and the Rust post-pass.
    pub generate: GenerateSettings,
    /// Which normalisations run.
    pub normalize: Normalize,
    /// Cargo feature of the `superoffice` crate → tags it generates (`"*"` = every tag).
    pub features: BTreeMap<String, Vec<String>>,
    /// operationId (as in the upstream spec) → why it is not generated.
    #[serde(default)]
    pub exclude: BTreeMap<String, String>,
}

/// How the Rust code is generated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GenerateSettings {
    /// Type of the `inner` value carried by the generated `Client`.
    pub inner_type: String,
    /// Path under which the generated `types` module is reachable from inside the crate.
    pub types_path: String,
    /// Type that replaces `{type: string, format: date-time}` when `lenient-datetime` is on.
    pub date_time_type: String,
    /// Module with `option_i32`/`option_i64` deserializers used when `lenient-integers` is on.
    pub lenient_int_module: String,
}

/// Normalisation switches. Each is documented in `spec/superoffice.toml` and in
/// [`crate::normalize`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Normalize {
    /// `SuperOffice.CRM.Services.ContactEntity` → `ContactEntity`; fails on collisions.
    pub short_names: bool,
    /// One media type per body and response.
    pub json_only: bool,
    /// What to do with `multipart/form-data` uploads.
    pub multipart: Multipart,
    /// Drop `_Links` where `Links` exists (and any `_X`/`X` twin).
    pub links_clash: bool,
    /// `4XX`/`5XX` responses typed as `SoError`.
    pub error_schema: bool,
    /// `date-time` → the lenient date-time type.
    pub lenient_datetime: bool,
    /// Integer fields accept fractional JSON numbers.
    pub lenient_integers: bool,
    /// Arrays and maps may be `null`.
    pub nullable_containers: bool,
    /// Bare `{type: object}` → any JSON value.
    pub any_object: bool,
    /// Property enums become named open enums.
    pub open_enums: bool,
    /// Objects keep unknown fields.
    pub keep_unknown: bool,
    /// Header parameters removed from every signature (set as client defaults instead).
    pub common_headers: Vec<String>,
    /// Declare `If-Modified-Since` (GETs with a 304) and `If-Unmodified-Since` (writes with a 412).
    pub conditional_headers: bool,
    /// Inline parameter enums become shared `…Param` types.
    pub param_enums: bool,
    /// Shorter operation ids (`v1ContactEntity_GetContactEntity` → `contact_get`).
    pub operation_names: bool,
    /// Drop the 11 KB `info.description` (it becomes the `Client` docs).
    pub short_info: bool,
    /// Turn .NET XML doc tags into Markdown.
    pub doc_cleanup: bool,
}

/// Handling of the `multipart/form-data` image uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Multipart {
    /// Exclude them from generation; the SDK has a hand-written multipart helper.
    HandWritten,
    /// Send the file as a raw `application/octet-stream` body.
    RawBytes,
}

impl Config {
    /// Reads `spec/superoffice.toml` under `root`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(crate::spec::CONFIG_PATH);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parses the config text; errors name the key and line.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        for (feature, tags) in &config.features {
            if tags.is_empty() {
                return Err(Error::Config(format!(
                    "feature `{feature}` maps to no tags"
                )));
            }
        }
        Ok(config)
    }

    /// The tags selected by a set of enabled cargo features; `None` means every tag.
    pub fn tags_for(&self, features: &BTreeSet<String>) -> Result<Option<BTreeSet<String>>> {
        let mut tags = BTreeSet::new();
        for feature in features {
            let Some(mapped) = self.features.get(feature) else {
                continue; // features that select no tags (e.g. `default`) are fine
            };
            for tag in mapped {
                if tag == "*" {
                    return Ok(None);
                }
                tags.insert(tag.clone());
            }
        }
        Ok(Some(tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_config_parses() {
        let config = Config::load(&crate::spec::workspace_root()).unwrap();
        assert!(config.features.contains_key("full"));
        assert!(
            config
                .exclude
                .values()
                .all(|reason| !reason.trim().is_empty())
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let text =
            std::fs::read_to_string(crate::spec::workspace_root().join("spec/superoffice.toml"))
                .unwrap()
                .replace("json-only = true", "json-only = \"yes\"");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("json-only") || err.contains("line"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn full_selects_everything_and_features_are_additive() {
        let config = Config::load(&crate::spec::workspace_root()).unwrap();
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(config.tags_for(&set(&["full", "contact"])).unwrap(), None);
        let contact = config.tags_for(&set(&["contact"])).unwrap().unwrap();
        let both = config
            .tags_for(&set(&["contact", "person"]))
            .unwrap()
            .unwrap();
        assert!(contact.is_subset(&both) && both.len() > contact.len());
    }
}
