//! The webhook secret in force: the one the receiver checks `X-SuperOffice-Signature` with and
//! the one the subscriptions register (`sync::ensure`).
//!
//! Resolved once at start-up (and by `syncd webhooks ensure`):
//!
//! 1. `control.webhook_secret`, when configured (an empty value is an error);
//! 2. else the file `webhook_secret` in the state directory (the directory of `store`), when
//!    it exists;
//! 3. else, when asked to (`syncd webhooks ensure`, or start-up with `control.public_url` set
//!    and a subscription that uses webhooks), a new secret: 32 bytes from the OS RNG,
//!    hex-encoded, written to that file with mode 0600 from the start (a temporary file in the
//!    same directory, fsync, then linked to the final name, which never replaces a file another
//!    process wrote meanwhile; the directory is fsynced);
//! 4. else there is no secret, and the receiver refuses every webhook (401).
//!
//! An existing file is reused, never regenerated, so the webhook registered with it keeps
//! working across restarts. A file that others can read or write (mode wider than 0600), or that
//! is empty, is an error naming the file: syncd does not start with it, and it is not silently
//! fixed (`chmod 600 FILE`, or delete it to get a new secret and run `syncd webhooks ensure`).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rand::RngCore as _;
use superoffice::auth::Secret;
use superoffice::auth::store::{create_private_dir, open_private_new, sync_dir};

use crate::config::Config;
use crate::{Error, Result};

/// The secret file's name, in the state directory.
pub const FILE_NAME: &str = "webhook_secret";

/// Bytes of randomness in a generated secret.
const GENERATED_BYTES: usize = 32;

/// Where the secret in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `control.webhook_secret`.
    Configured,
    /// The state-directory file, written earlier.
    File,
    /// The state-directory file, generated just now.
    Generated,
}

impl SecretSource {
    /// For logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSource::Configured => "configured",
            SecretSource::File => "file",
            SecretSource::Generated => "generated",
        }
    }
}

/// A resolved webhook secret.
#[derive(Debug, Clone)]
pub struct WebhookSecret {
    /// The secret (redacted in `Debug`).
    pub secret: Secret,
    /// Where it came from.
    pub source: SecretSource,
    /// The file (for `File`/`Generated`).
    pub path: Option<PathBuf>,
}

/// Whether [`resolve`] may create the file when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    /// Create it.
    IfMissing,
    /// Only read an existing one.
    Never,
}

/// `webhook_secret` in the directory of the database.
pub fn secret_path(config: &Config) -> PathBuf {
    let dir = match config.store.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join(FILE_NAME)
}

/// The secret in force (see the module docs); `None`: there is none and `generate` said not to
/// create one.
pub fn resolve(config: &Config, generate: Generate) -> Result<Option<WebhookSecret>> {
    if let Some(configured) = &config.control.webhook_secret {
        let secret = configured.resolve()?;
        if secret.expose().trim().is_empty() {
            return Err(Error::config_key(
                configured.key(),
                "empty; give a secret, or remove the key to use a generated one",
            ));
        }
        return Ok(Some(WebhookSecret {
            secret,
            source: SecretSource::Configured,
            path: None,
        }));
    }
    let path = secret_path(config);
    if let Some(secret) = read(&path)? {
        return Ok(Some(WebhookSecret {
            secret,
            source: SecretSource::File,
            path: Some(path),
        }));
    }
    if generate == Generate::Never {
        return Ok(None);
    }
    let (secret, source) = create(&path)?;
    Ok(Some(WebhookSecret {
        secret,
        source,
        path: Some(path),
    }))
}

fn file_error(path: &Path, what: &str, e: impl Into<io::Error>) -> Error {
    Error::io(
        format!("webhook secret file {}: {what}", path.display()),
        e.into(),
    )
}

/// Why a secret file was refused although the OS could read it.
fn refused(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// Reads an existing secret file; `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Secret>> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, "reading", e)),
    };
    if !meta.is_file() {
        return Err(file_error(path, "checking", refused("not a regular file")));
    }
    check_private(path, &meta)?;
    let text = fs::read_to_string(path).map_err(|e| file_error(path, "reading", e))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(file_error(
            path,
            "checking",
            refused("the file is empty (delete it to have a new secret generated)"),
        ));
    }
    Ok(Some(Secret::new(text.to_string())))
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(file_error(
            path,
            "checking",
            refused(format!(
                "mode {mode:04o} lets others read or write it; it must be 0600 (chmod 600 {})",
                path.display()
            )),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Generates a secret and stores it at `path`, unless another process stored one first (then
/// that one is returned, as `File`).
fn create(path: &Path) -> Result<(Secret, SecretSource)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(|e| file_error(path, "creating its directory", e))?;
    let mut bytes = [0u8; GENERATED_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = hex::encode(bytes);
    let temp = dir.join(format!(
        ".{FILE_NAME}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = open_private_new(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(file_error(path, "writing", e));
    }
    // A hard link publishes the complete file under its name and fails when the name exists,
    // so two processes generating at once cannot replace each other's (registered) secret.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(&dir);
            tracing::info!(path = %path.display(), "generated a webhook secret (mode 0600)");
            Ok((Secret::new(text), SecretSource::Generated))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let secret = read(path)?.ok_or_else(|| {
                file_error(
                    path,
                    "reading",
                    refused("it vanished right after it was created"),
                )
            })?;
            Ok((secret, SecretSource::File))
        }
        Err(e) => Err(file_error(path, "storing", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(dir: &Path, control: &str) -> Config {
        let text = format!(
            "store = {:?}\n[control]\n{control}\n",
            dir.join("syncd.db").display().to_string()
        );
        Config::parse(&text, "t.toml", &BTreeMap::new()).unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_configured_secret_wins_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "from-file").unwrap();
        let got = resolve(
            &config(dir.path(), "webhook_secret = { value = \"conf\" }"),
            Generate::IfMissing,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.secret.expose(), "conf");
        assert_eq!(got.source, SecretSource::Configured);
        let err = resolve(
            &config(dir.path(), "webhook_secret = { value = \"\" }"),
            Generate::IfMissing,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("control.webhook_secret"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_is_generated_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let config = config(&state, "");
        assert!(resolve(&config, Generate::Never).unwrap().is_none());
        assert!(!state.join(FILE_NAME).exists());

        let first = resolve(&config, Generate::IfMissing).unwrap().unwrap();
        assert_eq!(first.source, SecretSource::Generated);
        let path = state.join(FILE_NAME);
        assert_eq!(first.path.as_deref(), Some(path.as_path()));
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, first.secret.expose());
        assert_eq!(text.len(), 2 * GENERATED_BYTES);
        assert!(text.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [FILE_NAME]);

        for generate in [Generate::IfMissing, Generate::Never] {
            let again = resolve(&config, generate).unwrap().unwrap();
            assert_eq!(again.source, SecretSource::File);
            assert_eq!(again.secret.expose(), text);
        }
        // A second generation attempt never replaces the file.
        let (secret, source) = create(&path).unwrap();
        assert_eq!(
            (secret.expose(), source),
            (text.as_str(), SecretSource::File)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_or_an_empty_file_is_an_error_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "");
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "abc").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(&config, Generate::IfMissing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("0644"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "abc", "left untouched");

        // `syncd config check` reports it too.
        let with_tenant = Config::parse(
            &format!(
                "store = {:?}\n[[tenant]]\nname = \"t\"\nenvironment = \"http://127.0.0.1:9\"\ncustomer_id = \"C\"\nauth = \"static\"\ntoken = {{ value = \"x\" }}\n[[subscription]]\nname = \"c\"\nentity = \"contact\"\n",
                dir.path().join("syncd.db").display().to_string()
            ),
            "t.toml",
            &BTreeMap::new(),
        )
        .unwrap();
        let err = with_tenant.check(false).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        fs::remove_file(&path).unwrap();
        let notes = with_tenant.check(false).unwrap();
        assert!(
            notes.iter().any(|n| n.contains("refused with 401")),
            "{notes:?}"
        );

        fs::write(&path, "\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = resolve(&config, Generate::IfMissing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("empty"),
            "{err}"
        );
    }
}
