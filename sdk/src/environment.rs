//! [`Environment`]: which SuperOffice installation to talk to, and the well-known URLs of
//! its login host (FACTS §1.1, §1.3).

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::{Error, Result};

/// A SuperOffice environment: where tokens come from and where the State API lives.
///
/// Data calls never go to these hosts; they go to the tenant's current endpoint, which the
/// State API reports (see [`crate::tenant`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Environment {
    /// Development: `https://sod.superoffice.com`.
    Sod,
    /// Stage / QA: `https://qaonline.superoffice.com`.
    Stage,
    /// Production: `https://online.superoffice.com`.
    Online,
    /// Any other login host, e.g. the emulator's `http://127.0.0.1:PORT`.
    Custom(Url),
}

impl Environment {
    /// A custom login host (the emulator, a proxy).
    pub fn custom(base: &str) -> Result<Self> {
        let url = Url::parse(base)
            .map_err(|e| Error::Config(format!("environment URL {base:?}: {e}")))?;
        Ok(Environment::Custom(url))
    }

    /// The login host, without a trailing slash (`https://online.superoffice.com`).
    pub fn login_base(&self) -> String {
        match self {
            Environment::Sod => "https://sod.superoffice.com".into(),
            Environment::Stage => "https://qaonline.superoffice.com".into(),
            Environment::Online => "https://online.superoffice.com".into(),
            Environment::Custom(url) => url.as_str().trim_end_matches('/').to_string(),
        }
    }

    fn join(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.login_base())).expect("login base and path form a URL")
    }

    /// The OAuth 2.0 authorize endpoint.
    pub fn authorize_url(&self) -> Url {
        self.join("/login/common/oauth/authorize")
    }

    /// The OAuth 2.0 token endpoint (the path ends in `tokens`, plural).
    pub fn token_url(&self) -> Url {
        self.join("/login/common/oauth/tokens")
    }

    /// The OpenID Connect discovery document.
    pub fn discovery_url(&self) -> Url {
        self.join("/login/.well-known/openid-configuration")
    }

    /// The JSON Web Key Set that signs ID tokens.
    pub fn jwks_url(&self) -> Url {
        self.join("/login/.well-known/jwks")
    }

    /// The expected `iss` of ID tokens.
    pub fn issuer(&self) -> String {
        self.login_base()
    }

    /// The State API for a tenant: `GET {login}/api/state/{ctx}`.
    pub fn state_url(&self, context: &str) -> Url {
        self.join(&format!("/api/state/{context}"))
    }

    /// The system-user login: `POST {login}/Login/api/PartnerSystemUser/Authenticate`.
    pub fn system_user_url(&self) -> Url {
        self.join("/Login/api/PartnerSystemUser/Authenticate")
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environment::Sod => f.write_str("Sod"),
            Environment::Stage => f.write_str("Stage"),
            Environment::Online => f.write_str("Online"),
            Environment::Custom(url) => write!(f, "Custom({url})"),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environment::Sod => f.write_str("sod"),
            Environment::Stage => f.write_str("qaonline"),
            Environment::Online => f.write_str("online"),
            Environment::Custom(url) => f.write_str(url.as_str().trim_end_matches('/')),
        }
    }
}

impl FromStr for Environment {
    type Err = Error;

    /// `sod`, `qaonline` (or `stage`), `online` (or `production`), or a URL.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sod" | "dev" | "development" => Ok(Environment::Sod),
            "qaonline" | "stage" | "qa" => Ok(Environment::Stage),
            "online" | "production" | "prod" => Ok(Environment::Online),
            other if other.starts_with("http://") || other.starts_with("https://") => {
                Environment::custom(s.trim())
            }
            _ => Err(Error::Config(format!(
                "unknown environment {s:?}: use sod, qaonline, online or a URL such as http://127.0.0.1:8080"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        let online: Environment = "online".parse().unwrap();
        assert_eq!(
            online.token_url().as_str(),
            "https://online.superoffice.com/login/common/oauth/tokens"
        );
        assert_eq!(
            online.state_url("Cust1").as_str(),
            "https://online.superoffice.com/api/state/Cust1"
        );
        let stage: Environment = "stage".parse().unwrap();
        assert_eq!(stage.issuer(), "https://qaonline.superoffice.com");
        let local: Environment = "http://127.0.0.1:8080/".parse().unwrap();
        assert_eq!(
            local.system_user_url().as_str(),
            "http://127.0.0.1:8080/Login/api/PartnerSystemUser/Authenticate"
        );
        assert!(
            "moon"
                .parse::<Environment>()
                .unwrap_err()
                .to_string()
                .contains("unknown environment")
        );
    }
}
