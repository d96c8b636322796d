//! The state the generated `Client` carries (`inner`): what every request needs besides its
//! own parameters.

use std::sync::Arc;

use reqwest::header::HeaderMap;

/// Shared per-client state, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    default_headers: HeaderMap,
}

impl Runtime {
    /// A runtime that adds `default_headers` to every request.
    pub fn new(default_headers: HeaderMap) -> Self {
        Runtime {
            inner: Arc::new(Inner { default_headers }),
        }
    }

    /// Headers added to every request unless the request sets them itself.
    pub fn default_headers(&self) -> &HeaderMap {
        &self.inner.default_headers
    }
}
