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
    /// Any other login host, e.g. the emulator's `http://127.0.0.1:PORT`. It trusts tenant
    /// endpoints on its own origin only ([`Environment::check_endpoint`]).
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

    /// Checks a tenant endpoint the State API reported for `context` before anything (a
    /// credential above all) is sent to it, and returns it parsed.
    ///
    /// - `Sod`, `Stage`, `Online`: `https`, a host under `.superoffice.com` (tenants live on
    ///   hosts such as `online2`, `app`, `sod2`, `app-sod`, `stage`, `app-stage` of that domain,
    ///   FACTS §1.1), the default port, no user info, no query or fragment.
    /// - `Custom`: exactly the custom login host's own origin (scheme, host and port), e.g. the
    ///   emulator's `http://127.0.0.1:PORT`, which serves its tenants under path prefixes;
    ///   no user info, no query or fragment. A custom environment trusts nothing else.
    ///
    /// Anything else is [`Error::UntrustedEndpoint`] naming the endpoint and the reason.
    pub fn check_endpoint(&self, context: &str, endpoint: &str) -> Result<Url> {
        let untrusted = |reason: String| Error::UntrustedEndpoint {
            context: context.to_string(),
            endpoint: endpoint.to_string(),
            reason,
        };
        let url = Url::parse(endpoint).map_err(|e| untrusted(format!("not a URL ({e})")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(untrusted("it carries user info".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(untrusted("it carries a query or fragment".into()));
        }
        match self {
            Environment::Custom(login) => {
                if url.origin() != login.origin() {
                    return Err(untrusted(format!(
                        "the custom environment {} trusts only its own origin {}",
                        self,
                        login.origin().ascii_serialization()
                    )));
                }
            }
            Environment::Sod | Environment::Stage | Environment::Online => {
                if url.scheme() != "https" {
                    return Err(untrusted(format!(
                        "the scheme is {:?}, {self} endpoints must be https",
                        url.scheme()
                    )));
                }
                let under_domain = match url.host() {
                    Some(url::Host::Domain(host)) => host
                        .strip_suffix(SUPEROFFICE_DOMAIN)
                        .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
                    _ => false,
                };
                if !under_domain {
                    return Err(untrusted(format!(
                        "the host {:?} is not under .{SUPEROFFICE_DOMAIN}",
                        url.host_str().unwrap_or("")
                    )));
                }
                if url.port().is_some() {
                    return Err(untrusted(format!(
                        "{self} endpoints use the default https port, not {}",
                        url.port().unwrap_or_default()
                    )));
                }
            }
        }
        Ok(url)
    }
}

/// The domain every host of SuperOffice's own environments lives under (FACTS §1.1).
const SUPEROFFICE_DOMAIN: &str = "superoffice.com";

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

    fn reason(environment: &Environment, endpoint: &str) -> Option<String> {
        match environment.check_endpoint("Cust1", endpoint) {
            Ok(_) => None,
            Err(Error::UntrustedEndpoint {
                context,
                endpoint: named,
                reason,
            }) => {
                assert_eq!(context, "Cust1");
                assert_eq!(named, endpoint, "the error names the endpoint as reported");
                Some(reason)
            }
            Err(other) => panic!("expected UntrustedEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn superoffice_environments_trust_https_hosts_of_their_domain_only() {
        for env in [Environment::Sod, Environment::Stage, Environment::Online] {
            for good in [
                "https://online2.superoffice.com/Cust1",
                "https://app-sod.superoffice.com/Cust1",
                "https://disasterrecovery.superoffice.com/Cust1/",
                "https://APP.SuperOffice.com:443/Cust1",
            ] {
                assert_eq!(reason(&env, good), None, "{env:?} {good}");
            }
            for (bad, why) in [
                ("http://online2.superoffice.com/Cust1", "https"),
                ("https://evil.example/Cust1", "not under"),
                ("https://superoffice.com.evil.example/Cust1", "not under"),
                ("https://evilsuperoffice.com/Cust1", "not under"),
                ("https://superoffice.com/Cust1", "not under"),
                ("https://10.0.0.1/Cust1", "not under"),
                ("https://online2.superoffice.com:8443/Cust1", "port"),
                ("https://user:pw@online2.superoffice.com/Cust1", "user info"),
                ("https://online2.superoffice.com/Cust1?x=1", "query"),
                ("online2.superoffice.com/Cust1", "not a URL"),
            ] {
                let reason = reason(&env, bad).unwrap_or_else(|| panic!("{env:?} accepted {bad}"));
                assert!(reason.contains(why), "{bad}: {reason}");
            }
        }
    }

    #[test]
    fn a_custom_environment_trusts_its_own_origin_only() {
        let emulator = Environment::custom("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            reason(&emulator, "http://127.0.0.1:8080/tenant1/Cust1"),
            None
        );
        for bad in [
            "http://127.0.0.1:8081/tenant1/Cust1",
            "https://127.0.0.1:8080/tenant1/Cust1",
            "http://localhost:8080/tenant1/Cust1",
            "https://online2.superoffice.com/Cust1",
        ] {
            let reason = reason(&emulator, bad).unwrap_or_else(|| panic!("accepted {bad}"));
            assert!(reason.contains("own origin"), "{bad}: {reason}");
        }
    }
}
