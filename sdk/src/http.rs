//! The HTTP stack: reqwest with an explicit TLS configuration, shared by every part of the SDK.
//!
//! **TLS is chosen by cargo feature and never installed process-wide.** With `rustls-ring`
//! (default) or `rustls-aws-lc`, [`client_builder`] hands reqwest a rustls [`ClientConfig`]
//! built by [`tls_config`] with that crypto provider and the platform certificate verifier
//! (`rustls-platform-verifier`); no global default provider is installed, so an application
//! may install its own without a clash. With only `native-tls`, reqwest's native-tls backend is
//! used. A caller can always pass its own `reqwest::Client` instead (see below).
//!
//! **Credentials never follow a redirect.** Every client the SDK builds (the API runtime, the
//! State API lookup, the OAuth token endpoint, the JWKS fetch, the system-user login) comes
//! from [`client_builder`], which does not follow redirects: a 3xx answer (other than
//! `304 Not Modified`) is [`Error::Redirect`], naming the operation,
//! the status and the `Location`, and nothing is sent to the redirect target. reqwest's own
//! redirect handling would drop `Authorization` on a cross-origin hop but forward
//! `SO-AppToken` and any request body (the system-user login carries the application token
//! in its body), so the SDK does not rely on it.
//!
//! A `reqwest::Client` a caller hands in (`ClientBuilder::http_client`,
//! `OAuthConfig::with_http_client`, `SystemUserConfig::with_http_client`) should be built from
//! [`client_builder`] too. If it follows redirects anyway, the SDK still refuses any answer
//! that came from another origin than the request went to (scheme, host and port; so also
//! https → http) with [`Error::Redirect`], but by then the client has
//! already re-sent the request to that origin: only a non-following client keeps the
//! credentials home.

use reqwest::StatusCode;
use url::Url;

use crate::Error;

/// A `reqwest::ClientBuilder` with TLS ready (HTTPS to SuperOffice's hosts works out of the box,
/// with the backend the cargo features choose; see the [module docs](self)) that does **not**
/// follow redirects. Override the redirect policy only for clients that never carry SuperOffice
/// credentials (e.g. a test browser).
///
/// If the TLS configuration cannot be built (see [`tls_config`]), the failure is logged and the
/// returned builder's `build()` fails: no client without working certificate checks.
pub fn client_builder() -> reqwest::ClientBuilder {
    with_tls(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()))
}

/// The rustls crypto provider the cargo features select (`rustls-ring` wins over
/// `rustls-aws-lc`).
#[cfg(any(feature = "rustls-ring", feature = "rustls-aws-lc"))]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "rustls-ring")]
    {
        rustls::crypto::ring::default_provider()
    }
    #[cfg(not(feature = "rustls-ring"))]
    {
        rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// The rustls client configuration of every client the SDK builds: [`crypto_provider`],
/// rustls' safe default protocol versions (TLS 1.2 and 1.3), the platform's certificate
/// verifier, ALPN `h2` and `http/1.1`. Nothing is installed process-wide.
#[cfg(any(feature = "rustls-ring", feature = "rustls-aws-lc"))]
pub fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    use std::sync::Arc;
    let provider = Arc::new(crypto_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous() // rustls' name for "custom verifier"; this one is the platform's
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(any(feature = "rustls-ring", feature = "rustls-aws-lc"))]
fn with_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    match tls_config() {
        Ok(config) => builder.tls_backend_preconfigured(config),
        Err(error) => {
            tracing::error!(%error, "building the rustls client configuration failed; the HTTP client will not build");
            // An unknown preconfigured backend makes `build()` fail: fail closed.
            builder.tls_backend_preconfigured(())
        }
    }
}

#[cfg(all(
    feature = "native-tls",
    not(any(feature = "rustls-ring", feature = "rustls-aws-lc"))
))]
fn with_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.tls_backend_native()
}

/// No TLS feature: plain HTTP only (an `https` URL fails to connect).
#[cfg(not(any(
    feature = "rustls-ring",
    feature = "rustls-aws-lc",
    feature = "native-tls"
)))]
fn with_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder
}

/// Whether `status` asks the client to go elsewhere (every 3xx except `304 Not Modified`,
/// which only says the cached copy is current).
pub(crate) fn is_redirect(status: StatusCode) -> bool {
    status.is_redirection() && status != StatusCode::NOT_MODIFIED
}

/// Refuses an answer that is a redirect, or that came from another origin than `sent_to`
/// (a caller-supplied client followed a redirect). `operation` names the call in the error.
pub(crate) fn refuse_redirect(
    operation: &str,
    sent_to: &Url,
    response: &reqwest::Response,
) -> crate::Result<()> {
    let status = response.status();
    if is_redirect(status) {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        tracing::error!(
            operation,
            status = status.as_u16(),
            location = location.as_deref().unwrap_or("-"),
            "refused a redirect: credentials are never sent to a redirect target"
        );
        return Err(Error::Redirect {
            operation: operation.to_string(),
            status,
            location,
            followed: false,
        });
    }
    if response.url().origin() != sent_to.origin() {
        let location = response.url().as_str().to_string();
        tracing::error!(
            operation,
            status = status.as_u16(),
            sent_to = %sent_to.origin().ascii_serialization(),
            answered_from = %response.url().origin().ascii_serialization(),
            "the HTTP client followed a redirect to another origin; refusing the answer (build the client with superoffice::http::client_builder so redirects are not followed)"
        );
        return Err(Error::Redirect {
            operation: operation.to_string(),
            status,
            location: Some(location),
            followed: true,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_with_tls_builds() {
        client_builder().build().expect("TLS backend initialises");
    }

    #[cfg(any(feature = "rustls-ring", feature = "rustls-aws-lc"))]
    #[test]
    fn the_tls_config_is_explicit_and_installs_no_global_provider() {
        let config = tls_config().expect("rustls config");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        client_builder().build().expect("client");
        // Building clients installed nothing process-wide: an application can still install
        // its own provider (tests in this binary never install one).
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }

    #[test]
    fn only_real_redirects_count() {
        for code in [300, 301, 302, 303, 305, 307, 308] {
            assert!(is_redirect(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 204, 304, 400, 421, 503] {
            assert!(!is_redirect(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    fn answer(status: u16, url: &str, location: Option<&str>) -> reqwest::Response {
        use reqwest::ResponseBuilderExt;
        let mut builder = http::Response::builder()
            .status(status)
            .url(Url::parse(url).unwrap());
        if let Some(location) = location {
            builder = builder.header(reqwest::header::LOCATION, location);
        }
        reqwest::Response::from(builder.body(bytes::Bytes::new()).unwrap())
    }

    #[test]
    fn redirects_and_answers_from_other_origins_are_refused() {
        let sent = Url::parse("https://online2.superoffice.com/Cust1/api/v1/Contact/1").unwrap();
        let ok = answer(200, sent.as_str(), None);
        assert!(refuse_redirect("op", &sent, &ok).is_ok());
        let not_modified = answer(304, sent.as_str(), None);
        assert!(refuse_redirect("op", &sent, &not_modified).is_ok());

        let moved = answer(302, sent.as_str(), Some("https://evil.example/steal"));
        let err = refuse_redirect("ContactGet", &sent, &moved).unwrap_err();
        let Error::Redirect {
            operation,
            status,
            location,
            followed,
        } = &err
        else {
            panic!("expected Error::Redirect, got {err:?}")
        };
        assert_eq!(operation, "ContactGet");
        assert_eq!(*status, StatusCode::FOUND);
        assert_eq!(location.as_deref(), Some("https://evil.example/steal"));
        assert!(!followed);
        assert!(
            err.to_string().contains("https://evil.example/steal"),
            "{err}"
        );

        for elsewhere in [
            "https://evil.example/Cust1/api/v1/Contact/1",
            "http://online2.superoffice.com/Cust1/api/v1/Contact/1",
            "https://online2.superoffice.com:8443/Cust1/api/v1/Contact/1",
        ] {
            let followed = answer(200, elsewhere, None);
            let err = refuse_redirect("op", &sent, &followed).unwrap_err();
            assert!(
                matches!(&err, Error::Redirect { followed: true, location: Some(l), .. } if l == elsewhere),
                "{elsewhere}: {err:?}"
            );
        }
        // Same origin, other path: the credential stayed with its origin.
        let same = answer(200, "https://online2.superoffice.com/Cust1/other", None);
        assert!(refuse_redirect("op", &sent, &same).is_ok());
    }
}
