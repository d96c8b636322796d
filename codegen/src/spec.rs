//! Finding, loading and pinning SuperOffice's official Swagger file.
//!
//! The file is never part of this repository. [`locate`] looks in three places, in order:
//! the path in `SUPEROFFICE_OPENAPI`, `spec/upstream/Swagger-v1-REST.json` (git-ignored, where a
//! user drops a download) and `../shared/superoffice/openapi/Swagger-v1-REST.json` next to the
//! workspace. `spec/superoffice.lock` records the sha256 of the file the generation config was
//! written for.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Environment variable that names the spec file explicitly.
pub const ENV_VAR: &str = "SUPEROFFICE_OPENAPI";
/// Where a user drops a downloaded spec, relative to the workspace root (git-ignored).
pub const UPSTREAM_PATH: &str = "spec/upstream/Swagger-v1-REST.json";
/// The shared reference copy, relative to the workspace root.
pub const SHARED_PATH: &str = "../shared/superoffice/openapi/Swagger-v1-REST.json";
/// The lock file, relative to the workspace root.
pub const LOCK_PATH: &str = "spec/superoffice.lock";
/// The generation config, relative to the workspace root.
pub const CONFIG_PATH: &str = "spec/superoffice.toml";

/// How a spec file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Named by `SUPEROFFICE_OPENAPI`.
    EnvVar,
    /// `spec/upstream/Swagger-v1-REST.json`.
    Upstream,
    /// `../shared/superoffice/openapi/Swagger-v1-REST.json`.
    Shared,
    /// Downloaded by the build script (the SDK's `download-spec` feature).
    Downloaded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::EnvVar => ENV_VAR,
            Source::Upstream => UPSTREAM_PATH,
            Source::Shared => SHARED_PATH,
            Source::Downloaded => "download (feature download-spec)",
        })
    }
}

/// A spec file that exists on disk.
#[derive(Debug, Clone)]
pub struct Located {
    /// Absolute or workspace-relative path of the file.
    pub path: PathBuf,
    /// Which rule found it.
    pub source: Source,
}

/// The workspace root, as seen by the crate that compiled this library.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("codegen/ lives one level below the workspace root")
        .to_path_buf()
}

/// Finds the REST spec, reading `SUPEROFFICE_OPENAPI` from the process environment.
pub fn locate(root: &Path) -> Result<Located> {
    locate_with(root, std::env::var_os(ENV_VAR).map(PathBuf::from))
}

/// Finds the REST spec with an explicit value for `SUPEROFFICE_OPENAPI` (for tests).
pub fn locate_with(root: &Path, env_value: Option<PathBuf>) -> Result<Located> {
    if let Some(path) = env_value.filter(|p| !p.as_os_str().is_empty()) {
        if path.is_file() {
            return Ok(Located {
                path,
                source: Source::EnvVar,
            });
        }
        return Err(Error::SpecNotFound(format!(
            "{ENV_VAR} is set to {}, but no file exists there",
            path.display()
        )));
    }
    for (rel, source) in [
        (UPSTREAM_PATH, Source::Upstream),
        (SHARED_PATH, Source::Shared),
    ] {
        let path = root.join(rel);
        if path.is_file() {
            return Ok(Located { path, source });
        }
    }
    Err(Error::SpecNotFound(format!(
        "SuperOffice's REST spec (Swagger-v1-REST.json) was not found.\n\
         Looked at: ${ENV_VAR} (unset), {up}, {shared}.\n\
         Any one of these provides it:\n\
         - in a clone of this repository: `cargo xtask spec fetch` (downloads and unpacks it to \
         spec/upstream/, checking the pinned hash);\n\
         - in a crate that depends on `superoffice`: enable its `download-spec` feature (the \
         build downloads it into OUT_DIR; URL overridable with SUPEROFFICE_OPENAPI_URL);\n\
         - by hand: download Swagger-v1-REST.zip (public SuperOfficeDocs/docs repository, \
         downloads/api/Swagger-v1-REST.zip), unzip it and put Swagger-v1-REST.json at {up} or \
         point {ENV_VAR} at it.",
        up = root.join(UPSTREAM_PATH).display(),
        shared = root.join(SHARED_PATH).display(),
    )))
}

/// Reads a spec file: its bytes, parsed JSON and sha256.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha256 = sha256_hex(&bytes);
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::Spec(format!("{} is not UTF-8: {e}", path.display())))?;
    let text = text.trim_start_matches('\u{feff}');
    let json = serde_json::from_str(text)
        .map_err(|e| Error::Spec(format!("{} is not valid JSON: {e}", path.display())))?;
    Ok(Loaded { json, sha256 })
}

/// A parsed spec and the sha256 of its bytes.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The document.
    pub json: serde_json::Value,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pinned hash from `spec/superoffice.lock`, if the file exists.
pub fn read_lock(root: &Path) -> Result<Option<String>> {
    let path = root.join(LOCK_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_lock(&text)
            .map(Some)
            .ok_or_else(|| Error::Spec(format!("{}: no `sha256 = \"…\"` line", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn parse_lock(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("sha256")?
            .trim_start()
            .strip_prefix('=')?;
        let value = rest.trim().trim_matches('"');
        (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| value.to_ascii_lowercase())
    })
}

/// Writes `spec/superoffice.lock` for a file with the given hash.
pub fn write_lock(root: &Path, sha256: &str, note: &str) -> Result<()> {
    let path = root.join(LOCK_PATH);
    let text = format!(
        "# sha256 of the Swagger-v1-REST.json that spec/superoffice.toml was written for.\n\
         # A different file still builds, with a warning. Re-pin with `cargo xtask spec pin`.\n\
         # {note}\n\
         sha256 = \"{sha256}\"\n"
    );
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Compares a loaded spec with the lock; returns a warning when they differ.
pub fn check_lock(root: &Path, actual: &str) -> Result<Option<String>> {
    Ok(match read_lock(root)? {
        Some(pinned) if pinned != actual => Some(format!(
            "the SuperOffice spec differs from the pinned one (pinned sha256 {pinned}, found \
             sha256 {actual}); generation continues, check `cargo xtask coverage` and re-pin with \
             `cargo xtask spec pin`"
        )),
        Some(_) => None,
        None => Some(format!(
            "{LOCK_PATH} is missing (found spec sha256 {actual}); pin it with `cargo xtask spec pin`"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_that_points_nowhere_is_an_error_naming_the_variable() {
        let dir = tempdir();
        let err = locate_with(&dir, Some(dir.join("missing.json"))).unwrap_err();
        assert!(err.to_string().contains(ENV_VAR), "{err}");
    }

    #[test]
    fn missing_everywhere_says_where_to_put_it() {
        let dir = tempdir();
        let err = locate_with(&dir.join("ws"), None).unwrap_err().to_string();
        assert!(err.contains(UPSTREAM_PATH), "{err}");
        assert!(err.contains("Swagger-v1-REST.zip"), "{err}");
        // Every way to provide it: the env var, the fetch command, the cargo feature.
        for way in [
            ENV_VAR,
            "cargo xtask spec fetch",
            "download-spec",
            "SUPEROFFICE_OPENAPI_URL",
        ] {
            assert!(err.contains(way), "{way}: {err}");
        }
    }

    #[test]
    fn upstream_wins_over_shared_and_env_wins_over_both() {
        let dir = tempdir();
        let ws = dir.join("ws");
        std::fs::create_dir_all(ws.join("spec/upstream")).unwrap();
        std::fs::create_dir_all(dir.join("shared/superoffice/openapi")).unwrap();
        std::fs::write(ws.join(UPSTREAM_PATH), "{}").unwrap();
        std::fs::write(ws.join(SHARED_PATH), "{}").unwrap();
        assert_eq!(locate_with(&ws, None).unwrap().source, Source::Upstream);
        std::fs::remove_file(ws.join(UPSTREAM_PATH)).unwrap();
        assert_eq!(locate_with(&ws, None).unwrap().source, Source::Shared);
        let other = dir.join("other.json");
        std::fs::write(&other, "{}").unwrap();
        assert_eq!(
            locate_with(&ws, Some(other)).unwrap().source,
            Source::EnvVar
        );
    }

    #[test]
    fn lock_round_trip_and_mismatch_warning_names_both_hashes() {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("spec")).unwrap();
        let a = sha256_hex(b"a");
        let b = sha256_hex(b"b");
        write_lock(&dir, &a, "test").unwrap();
        assert_eq!(read_lock(&dir).unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(check_lock(&dir, &a).unwrap(), None);
        let warning = check_lock(&dir, &b).unwrap().unwrap();
        assert!(warning.contains(&a) && warning.contains(&b), "{warning}");
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-spec-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
