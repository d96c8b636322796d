//! The HTTP stack: reqwest with rustls (ring) for HTTPS, shared by every part of the SDK.
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

/// A `reqwest::ClientBuilder` with TLS ready (HTTPS to SuperOffice's hosts works out of the box)
/// that does **not** follow redirects (see the [module docs](self)). Override the redirect
/// policy only for clients that never carry SuperOffice credentials (e.g. a test browser).
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
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
