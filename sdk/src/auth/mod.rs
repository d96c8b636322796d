//! Credentials: one [`Auth`] trait, three providers.
//!
//! - [`OAuth`]: OAuth 2.0 authorization code + PKCE for an interactive user, with a loopback
//!   redirect helper ([`LoopbackListener`]), ID-token verification against the JWKS
//!   ([`jwt`]) and refresh (proactive within 60 s of expiry, reactive once on 401,
//!   single-flight). Tokens persist in a [`TokenStore`] ([`FileTokenStore`]: JSON, mode 0600,
//!   atomic writes).
//! - [`SystemUser`]: server-to-server; signs the system token with the app's RSA key (PEM or
//!   RSA-XML) and exchanges it for a ticket (`Authorization: SOTicket …` + `SO-AppToken`),
//!   cached and renewed on 401 or by age.
//! - [`StaticAuth`]: a fixed bearer token or ticket, for scripts and tests.
//!
//! Secrets are [`Secret`]s: redacted in `Debug` and `Display`, never logged. Credentials never
//! follow a redirect: the login host, token endpoint and JWKS are called without following
//! redirects ([`crate::http`]), and a JWT whose JWKS cannot be fetched is refused unless the
//! caller opted out explicitly ([`jwt`]).

mod der;
pub mod jwt;
pub mod loopback;
pub mod oauth;
pub mod store;
pub mod system_user;

pub use jwt::{Claims, VerifiedJwt};
pub use loopback::{AuthorizationResponse, LoopbackListener};
pub use oauth::{AuthorizeRequest, OAuth, OAuthConfig, pkce_challenge};
pub use store::{FileTokenStore, MemoryTokenStore, StoredTokens, TokenStore};
pub use system_user::{
    SystemUser, SystemUserConfig, SystemUserKey, sign_system_token, system_token_timestamp,
};

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::Result;

/// A boxed future, as returned by [`Auth`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A string that must not be printed: tokens, tickets, client secrets.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for putting it on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// What a request carries to prove who it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Credential {
    /// `Authorization: Bearer <access token>` (OAuth).
    Bearer(Secret),
    /// `Authorization: SOTicket <ticket>` plus `SO-AppToken: <client secret>` (system user).
    Ticket {
        /// The `7T:…` ticket.
        ticket: Secret,
        /// The application token (client secret).
        app_token: Secret,
    },
}

impl Credential {
    /// Sets `Authorization` (and `SO-AppToken` for tickets) on a request's headers, marked
    /// sensitive so they never show up in debug output.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<()> {
        let invalid =
            |_| crate::Error::Auth("credential contains characters not allowed in a header".into());
        let (authorization, app_token) = match self {
            Credential::Bearer(token) => (format!("Bearer {}", token.expose()), None),
            Credential::Ticket { ticket, app_token } => {
                (format!("SOTicket {}", ticket.expose()), Some(app_token))
            }
        };
        let mut value = HeaderValue::from_str(&authorization).map_err(invalid)?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        if let Some(app_token) = app_token {
            let mut value = HeaderValue::from_str(app_token.expose()).map_err(invalid)?;
            value.set_sensitive(true);
            headers.insert("SO-AppToken", value);
        }
        Ok(())
    }
}

/// A source of credentials.
///
/// Implementations are shared by every request of a client (and by clones of it), so they
/// must be single-flight: concurrent callers that find the credential expiring share one
/// refresh.
pub trait Auth: Send + Sync + fmt::Debug {
    /// A credential for the next request, refreshed first if it expires within 60 seconds.
    fn credential(&self) -> BoxFuture<'_, Result<Credential>>;

    /// The server answered 401 to a request that carried `rejected`. Return a fresh credential
    /// (or, if another caller refreshed already, the newer one). The runtime retries the request
    /// once with it; a second 401 is [`crate::Error::Unauthorized`].
    fn refresh(&self, rejected: &Credential) -> BoxFuture<'_, Result<Credential>>;
}

/// A fixed credential. `refresh` cannot produce a new one, so a 401 stays a 401.
#[derive(Clone, Debug)]
pub struct StaticAuth {
    credential: Credential,
}

impl StaticAuth {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: impl Into<Secret>) -> Self {
        StaticAuth {
            credential: Credential::Bearer(token.into()),
        }
    }

    /// `Authorization: SOTicket <ticket>` and `SO-AppToken: <app_token>`.
    pub fn ticket(ticket: impl Into<Secret>, app_token: impl Into<Secret>) -> Self {
        StaticAuth {
            credential: Credential::Ticket {
                ticket: ticket.into(),
                app_token: app_token.into(),
            },
        }
    }
}

impl Auth for StaticAuth {
    fn credential(&self) -> BoxFuture<'_, Result<Credential>> {
        let credential = self.credential.clone();
        Box::pin(async move { Ok(credential) })
    }

    fn refresh(&self, _rejected: &Credential) -> BoxFuture<'_, Result<Credential>> {
        let credential = self.credential.clone();
        Box::pin(async move { Ok(credential) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("8A:Cust1.sekrit");
        assert!(!format!("{secret:?}").contains("sekrit"));
        assert!(!format!("{secret}").contains("sekrit"));
        let credential = Credential::Ticket {
            ticket: "7T:abc".into(),
            app_token: "app".into(),
        };
        assert!(!format!("{credential:?}").contains("7T:abc"));
    }

    #[test]
    fn credentials_set_sensitive_headers() {
        let mut headers = HeaderMap::new();
        Credential::Ticket {
            ticket: "7T:abc".into(),
            app_token: "app".into(),
        }
        .apply(&mut headers)
        .unwrap();
        assert_eq!(headers[AUTHORIZATION], "SOTicket 7T:abc");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(headers["SO-AppToken"], "app");
        assert!(!format!("{headers:?}").contains("7T:abc"));
    }
}
