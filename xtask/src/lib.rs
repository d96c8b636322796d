//! The SuperOffice SDK generator, shared by `sdk/build.rs` and the `cargo xtask` commands.
//!
//! Layout: [`spec`] finds and pins the upstream Swagger file.

pub mod spec;

use std::path::Path;

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
