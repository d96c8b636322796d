//! The HTTP stack: reqwest with rustls (ring) for HTTPS, shared by every part of the SDK.

/// Installs the process-wide rustls crypto provider (ring) if none is installed yet.
///
/// reqwest is built without a bundled provider (`rustls-no-provider`), so a provider must be
/// installed before the first client is built. Calling this more than once is harmless.
pub fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err means another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A `reqwest::ClientBuilder` with TLS ready (HTTPS to SuperOffice's hosts works out of the box).
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_with_tls_builds() {
        super::client_builder()
            .build()
            .expect("TLS backend initialises");
    }
}
