//! Secrets of the configuration: where one comes from ([`SecretSource`], as written in the
//! file) and the reference kept in the [`super::Config`] ([`SecretRef`]), read only when a
//! command needs it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use superoffice::auth::Secret;

use crate::{Error, Result};

/// A secret given as `{ env = "VAR" }`, `{ file = "path" }`, `{ credential = "name" }`
/// (`$CREDENTIALS_DIRECTORY/name`, systemd `LoadCredential=`) or `{ value = "…" }`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretSource {
    pub(super) env: Option<String>,
    pub(super) file: Option<PathBuf>,
    pub(super) credential: Option<String>,
    pub(super) value: Option<String>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("credential", &self.credential)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SecretSource {
    /// The secret written inline (`value = "…"`, or a bare string where the key allows one).
    pub(super) fn inline(value: String) -> SecretSource {
        SecretSource {
            env: None,
            file: None,
            credential: None,
            value: Some(value),
        }
    }

    /// The secret is the text of `path`.
    pub(super) fn path(path: PathBuf) -> SecretSource {
        SecretSource {
            env: None,
            file: Some(path),
            credential: None,
            value: None,
        }
    }

    /// Whether exactly one of `env`, `file`, `credential`, `value` is given.
    pub(super) fn has_one_source(&self) -> bool {
        [
            self.env.is_some(),
            self.file.is_some(),
            self.credential.is_some(),
            self.value.is_some(),
        ]
        .iter()
        .filter(|given| **given)
        .count()
            == 1
    }

    /// Reads the secret; the error says what is wrong (without the key).
    fn read(&self) -> std::result::Result<Secret, String> {
        if !self.has_one_source() {
            return Err("give exactly one of env, file, credential, value".into());
        }
        if let Some(var) = &self.env {
            return std::env::var(var)
                .map(Secret::new)
                .map_err(|_| format!("environment variable {var} is not set"));
        }
        let path = match (&self.file, &self.credential) {
            (Some(file), _) => file.clone(),
            (_, Some(name)) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {name:?} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
                    )
                })?;
                Path::new(&dir).join(name)
            }
            _ => return Ok(Secret::new(self.value.clone().unwrap_or_default())),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// `private_key = "/path"` (a key file, as before) or a secret source whose text is the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum PathOrSource {
    Path(PathBuf),
    Source(SecretSource),
}

impl PathOrSource {
    pub(super) fn source(&self) -> SecretSource {
        match self {
            PathOrSource::Path(path) => SecretSource::path(path.clone()),
            PathOrSource::Source(source) => source.clone(),
        }
    }
}

/// `system_token = "…"` (the token itself) or a secret source.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum TextOrSource {
    Text(String),
    Source(SecretSource),
}

impl TextOrSource {
    pub(super) fn source(&self) -> SecretSource {
        match self {
            TextOrSource::Text(text) => SecretSource::inline(text.clone()),
            TextOrSource::Source(source) => source.clone(),
        }
    }
}

/// A secret of the configuration, read only when a command needs it ([`SecretRef::resolve`]):
/// `syncd status` works beside the service without the service's credentials, and
/// `syncd config check` lists the secrets it cannot read here instead of failing on the first.
#[derive(Debug, Clone)]
pub struct SecretRef {
    key: String,
    /// The file of the key (`(given)` for one given in the program), for messages.
    file: String,
    /// The line of the key in `file`.
    line: Option<usize>,
    source: SecretSource,
}

impl SecretRef {
    /// A secret of the config file: `key` at `line` of `file`.
    pub(super) fn new(key: &str, file: &str, line: usize, source: SecretSource) -> SecretRef {
        SecretRef {
            key: key.to_string(),
            file: file.to_string(),
            line: Some(line),
            source,
        }
    }

    /// A secret given in the program (tests, the demo); `key` names it in messages.
    pub fn value(key: &str, secret: &str) -> SecretRef {
        SecretRef::given(key, SecretSource::inline(secret.to_string()))
    }

    /// A secret read from a file given in the program (`syncd auth system-user --key`).
    pub fn file(key: &str, path: &Path) -> SecretRef {
        SecretRef::given(key, SecretSource::path(path.to_path_buf()))
    }

    fn given(key: &str, source: SecretSource) -> SecretRef {
        SecretRef {
            key: key.to_string(),
            file: "(given)".to_string(),
            line: None,
            source,
        }
    }

    /// The config key (`tenant[0].client_secret`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the secret now; the error names the file, line and key.
    pub fn resolve(&self) -> Result<Secret> {
        self.source.read().map_err(|message| Error::Config {
            file: Some(self.file.clone()),
            line: self.line,
            key: Some(self.key.clone()),
            message,
        })
    }
}
