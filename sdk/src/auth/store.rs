//! Where OAuth tokens live between runs: the [`TokenStore`] trait, a JSON file
//! ([`FileTokenStore`]: mode 0600, atomic writes) and an in-memory store
//! ([`MemoryTokenStore`]).
//!
//! `syncd auth login` signs in once and saves the tokens; the daemon loads them at start
//! ([`OAuth::from_store`](super::oauth::OAuth::from_store)) and saves again after every refresh.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Secret;
use crate::{Error, Result};

/// What a [`TokenStore`] keeps: the OAuth tokens and the useful claims of the last ID token.
///
/// `Debug` shows no token values (they are [`Secret`]s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The access token (`8A:Cust12345.…`).
    pub access_token: Secret,
    /// The refresh token. SuperOffice does not rotate it: the same one is reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// When the access token expires (`None`: unknown, only a 401 triggers a refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The tenant (`ctx` claim), e.g. `Cust12345`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_identifier: Option<String>,
    /// The REST base of the tenant (`webapi_url` claim). Prefer the State API's endpoint for
    /// data calls (FACTS §1.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webapi_url: Option<String>,
    /// The tenant+app system token (`system_token` claim), for the system-user flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_token: Option<Secret>,
}

/// Loads and saves [`StoredTokens`].
///
/// Implementations are called from async code but are expected to be quick (a small file);
/// [`OAuth`](super::oauth::OAuth) runs `save` on a blocking thread.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The saved tokens, `Ok(None)` if nothing was saved yet. Unreadable or corrupt contents are
    /// an error, never silently treated as empty.
    fn load(&self) -> Result<Option<StoredTokens>>;

    /// Replaces the saved tokens.
    fn save(&self, tokens: &StoredTokens) -> Result<()>;

    /// Where the tokens live, for messages (a path, "memory", …).
    fn location(&self) -> String;
}

/// Tokens in a JSON file, readable by the owner only.
///
/// `save` creates the parent directory (mode 0700 on Unix) and writes atomically: a temporary
/// file with mode 0600 in the same directory, fsync, rename over the target, fsync of the
/// directory. A crash leaves either the old or the new file, never half of one. `load` reports
/// a corrupt file as [`Error::TokenStore`] naming it and leaves it alone.
#[derive(Clone, Debug)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store at `path` (nothing is read or created until `load`/`save`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: io::Error) -> Error {
        Error::TokenStore {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn write_atomically(&self, bytes: &[u8]) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir)?;
        let name = self
            .path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
            .to_string_lossy()
            .into_owned();
        let temp = dir.join(format!(
            ".{name}.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut file = open_private_new(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, &self.path)?;
            sync_dir(&dir);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self) -> Result<Option<StoredTokens>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        warn_if_readable_by_others(&self.path);
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            // serde_json's messages name positions and types, not values.
            self.error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a valid token file ({e}); sign in again to replace it, or delete it"),
            ))
        })
    }

    fn save(&self, tokens: &StoredTokens) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(tokens)
            .map_err(|e| self.error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        bytes.push(b'\n');
        self.write_atomically(&bytes).map_err(|e| self.error(e))?;
        tracing::debug!(path = %self.path.display(), "saved OAuth tokens");
        Ok(())
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// Creates `dir` (and its parents) with mode 0700 on Unix: a directory for files that hold
/// secrets (token files, syncd's generated webhook secret).
#[cfg(unix)]
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir` (and its parents).
#[cfg(not(unix))]
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Creates `path`, which must not exist, for writing with mode 0600 on Unix from the start (the
/// file is never readable by others, not even briefly).
#[cfg(unix)]
pub fn open_private_new(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates `path`, which must not exist, for writing.
#[cfg(not(unix))]
pub fn open_private_new(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Makes a rename or link in `dir` durable. Best effort: some file systems cannot fsync a
/// directory.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the token file is accessible to other users; it is rewritten with mode 0600 on the next save"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Tokens in memory only (tests, or a process that signs in every time it starts).
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Option<StoredTokens>>,
    saves: std::sync::atomic::AtomicUsize,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `tokens`.
    pub fn with_tokens(tokens: StoredTokens) -> Self {
        MemoryTokenStore {
            tokens: Mutex::new(Some(tokens)),
            saves: Default::default(),
        }
    }

    /// The tokens held now.
    pub fn get(&self) -> Option<StoredTokens> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times `save` was called.
    pub fn saves(&self) -> usize {
        self.saves.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTokenStore")
            .field("has_tokens", &self.get().is_some())
            .field("saves", &self.saves())
            .finish()
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Result<Option<StoredTokens>> {
        Ok(self.get())
    }

    fn save(&self, tokens: &StoredTokens) -> Result<()> {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokens.clone());
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredTokens {
        StoredTokens {
            access_token: Secret::new("8A:Cust1.access-sekrit"),
            refresh_token: Some(Secret::new("refresh-sekrit")),
            expires_at: Some(DateTime::from_timestamp(1_900_000_000, 0).unwrap()),
            context_identifier: Some("Cust1".into()),
            webapi_url: Some("https://sod.superoffice.com/Cust1/api/".into()),
            system_token: Some(Secret::new("App-sekrit")),
        }
    }

    #[test]
    fn round_trips_and_creates_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("a/b/tokens.json"));
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        let mut other = sample();
        other.refresh_token = None;
        store.save(&other).unwrap();
        assert_eq!(store.load().unwrap(), Some(other));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tokens.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_even_when_replacing_an_open_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let store = FileTokenStore::new(&path);
        store.save(&sample()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        fs::write(&path, b"{\"access_token\": ").unwrap();
        let err = FileTokenStore::new(&path).load().unwrap_err();
        assert!(matches!(err, Error::TokenStore { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"{\"access_token\": ");
    }

    #[test]
    fn debug_shows_no_secrets() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("sekrit"), "{text}");
        let memory = MemoryTokenStore::with_tokens(sample());
        assert!(!format!("{memory:?}").contains("sekrit"));
    }
}
