//! Building a [`Client`], and requests the generated operations do not cover.
//!
//! ```no_run
//! # async fn demo() -> superoffice::Result<()> {
//! use superoffice::{Client, Environment, auth::StaticAuth};
//! let client = Client::builder()
//!     .environment(Environment::Online)
//!     .customer_id("Cust12345")
//!     .auth(StaticAuth::bearer("8A:Cust12345.token"))
//!     .language("en")
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The client never follows redirects: a 3xx answer is [`Error::Redirect`], so the
//! credential and `SO-AppToken` only ever go to the configured base URL or the tenant
//! endpoint the State API reported (which must be one the environment trusts, see
//! [`Environment::check_endpoint`]).

use std::sync::Arc;
use std::time::Duration;

use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response};
use tokio::sync::Semaphore;

use crate::auth::{Auth, Secret};
use crate::retry::RetryPolicy;
use crate::runtime::{self, Inner, Observer, Runtime};
use crate::tenant::TenantResolver;
use crate::{Client, Environment, Error, Result};

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default per-attempt timeout (SuperOffice flags REST calls slower than 2 s; 60 s is generous).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit of concurrent requests per tenant.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// Configures and builds a [`Client`]. Start with [`Client::builder`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    environment: Option<Environment>,
    base_url: Option<String>,
    customer_id: Option<String>,
    auth: Option<Arc<dyn Auth>>,
    app_token: Option<Secret>,
    language: Option<String>,
    culture: Option<String>,
    time_zone: Option<String>,
    user_agent: Option<String>,
    connect_timeout: Option<Duration>,
    attempt_timeout: Option<Option<Duration>>,
    overall_timeout: Option<Duration>,
    max_concurrency: Option<usize>,
    retry: Option<RetryPolicy>,
    http: Option<reqwest::Client>,
    observer: Option<Arc<dyn Observer>>,
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The same client with another retry policy (e.g. to retry one POST you know is safe).
    pub fn with_retry(&self, retry: RetryPolicy) -> Client {
        Client {
            baseurl: self.baseurl.clone(),
            client: self.client.clone(),
            inner: self.inner.with_retry(retry),
        }
    }

    /// The same client with another overall timeout for each call (all attempts included).
    pub fn with_overall_timeout(&self, timeout: Option<Duration>) -> Client {
        Client {
            baseurl: self.baseurl.clone(),
            client: self.client.clone(),
            inner: self.inner.with_overall_timeout(timeout),
        }
    }

    /// The runtime this client carries (auth, tenant, retry policy).
    pub fn runtime(&self) -> &Runtime {
        &self.inner
    }

    /// The configured base URL (the tenant endpoint actually used may differ; see
    /// [`crate::tenant`]).
    pub fn base_url(&self) -> &str {
        &self.baseurl
    }

    /// Sends a request the generated operations do not express (merge patch, multipart upload,
    /// extra headers) through the same pipeline: auth, tenant endpoint, retries, tracing.
    /// `path_and_query` starts with `/api/…`. Non-2xx answers are errors; 304 is
    /// [`Error::NotModified`].
    pub async fn send_raw(&self, operation: &'static str, request: RawRequest) -> Result<Response> {
        let url = format!("{}{}", self.baseurl, request.path_and_query);
        let mut builder = self
            .client
            .request(request.method, url)
            .headers(request.headers);
        if let Some((content_type, body)) = request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let built = builder
            .build()
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let response = ClientHooks::exec(
            self,
            built,
            &OperationInfo {
                operation_id: operation,
            },
        )
        .await
        .map_err(Error::Transport)?;
        if response
            .headers()
            .contains_key(crate::error::SDK_ERROR_HEADER)
        {
            return Err(runtime::error_from_response(response).await);
        }
        runtime::check(response).await
    }
}

/// A hand-built request for [`Client::send_raw`].
#[derive(Debug)]
pub struct RawRequest {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Option<(HeaderValue, reqwest::Body)>,
}

impl RawRequest {
    /// A request without body. `path_and_query` starts with `/api/`.
    pub fn new(method: Method, path_and_query: impl Into<String>) -> Self {
        RawRequest {
            method,
            path_and_query: path_and_query.into(),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// A JSON body with the given content type (`application/json`, `application/merge-patch+json`, …).
    pub fn json(
        mut self,
        content_type: &'static str,
        body: &impl serde::Serialize,
    ) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidRequest(format!("serialising the body: {e}")))?;
        self.headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        self.body = Some((
            HeaderValue::from_static(content_type),
            reqwest::Body::from(bytes),
        ));
        Ok(self)
    }

    /// A raw body with the given content type.
    pub fn body(mut self, content_type: HeaderValue, body: impl Into<reqwest::Body>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }
}

impl ClientBuilder {
    /// Which SuperOffice installation: `Sod`, `Stage`, `Online`, or a custom login host
    /// (the emulator). With a customer id, the tenant endpoint is resolved through the State API.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Talk to this tenant base URL directly (e.g. `https://app.superoffice.com/Cust12345`),
    /// without the State API.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The tenant's context identifier (`Cust12345`).
    pub fn customer_id(mut self, customer_id: impl Into<String>) -> Self {
        self.customer_id = Some(customer_id.into());
        self
    }

    /// The credential provider (OAuth, system user or static).
    pub fn auth(mut self, auth: impl Auth + 'static) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// A shared credential provider.
    pub fn auth_arc(mut self, auth: Arc<dyn Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// `SO-AppToken` on every request (the client secret; needed with tickets in Online).
    pub fn app_token(mut self, token: impl Into<Secret>) -> Self {
        self.app_token = Some(token.into());
        self
    }

    /// `SO-Language` and `Accept-Language` (e.g. `en`): translated strings.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// `SO-Culture` (e.g. `en-US`): number and date formatting of string values.
    pub fn culture(mut self, culture: impl Into<String>) -> Self {
        self.culture = Some(culture.into());
        self
    }

    /// `SO-TimeZone` (e.g. `UTC`, or `UTC, includeTZOffset`).
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = Some(time_zone.into());
        self
    }

    /// `User-Agent`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Timeout of each attempt (default 60 s; `None` for none).
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Timeout of each call, all attempts and waits included (default none).
    pub fn overall_timeout(mut self, timeout: Duration) -> Self {
        self.overall_timeout = Some(timeout);
        self
    }

    /// Concurrent requests allowed to this tenant (default 8).
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(limit.max(1));
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Use this reqwest client (its own timeouts and TLS settings apply; the connect timeout
    /// and user agent of this builder do not).
    ///
    /// Build it from [`crate::http::client_builder`], which does not follow redirects. The
    /// SDK refuses every redirect ([`Error::Redirect`]) and every answer from another origin
    /// than the request went to, but a client that follows redirects has already re-sent the
    /// request (with `Authorization` and `SO-AppToken`) by then; see [`crate::http`].
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Receives per-attempt and retry events (metrics).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Builds the client. Needs a base URL, or an environment and a customer id.
    pub fn build(self) -> Result<Client> {
        let http = match self.http {
            Some(http) => http,
            None => crate::http::client_builder()
                .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                .user_agent(self.user_agent.clone().unwrap_or_else(default_user_agent))
                .build()
                .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?,
        };
        let (baseurl, tenant) = match (&self.base_url, &self.environment, &self.customer_id) {
            (Some(base), _, _) => (base.trim_end_matches('/').to_string(), None),
            (None, Some(environment), Some(customer)) => {
                let resolver = TenantResolver::new(environment, customer.clone(), http.clone());
                (
                    format!("{}/{customer}", environment.login_base()),
                    Some(Arc::new(resolver)),
                )
            }
            (None, None, _) => {
                return Err(Error::Config(
                    "no base URL and no environment: set one of them".into(),
                ));
            }
            (None, Some(_), None) => {
                return Err(Error::Config(
                    "an environment needs a customer id (context identifier, e.g. Cust12345)"
                        .into(),
                ));
            }
        };
        url::Url::parse(&baseurl)
            .map_err(|e| Error::Config(format!("base URL {baseurl:?}: {e}")))?;

        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str, sensitive: bool| -> Result<()> {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| Error::Config(format!("{name} is not a valid header value")))?;
            value.set_sensitive(sensitive);
            headers.insert(HeaderName::from_static(name), value);
            Ok(())
        };
        if let Some(token) = &self.app_token {
            set("so-apptoken", token.expose(), true)?;
        }
        if let Some(language) = &self.language {
            set("so-language", language, false)?;
            set("accept-language", language, false)?;
        }
        if let Some(culture) = &self.culture {
            set("so-culture", culture, false)?;
        }
        if let Some(time_zone) = &self.time_zone {
            set("so-timezone", time_zone, false)?;
        }
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );

        let runtime = Runtime::from_inner(Inner {
            auth: self.auth,
            tenant,
            default_headers: headers,
            retry: self.retry.unwrap_or_default(),
            limiter: Arc::new(Semaphore::new(
                self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            )),
            attempt_timeout: self
                .attempt_timeout
                .unwrap_or(Some(DEFAULT_ATTEMPT_TIMEOUT)),
            overall_timeout: self.overall_timeout,
            observer: self.observer,
        });
        Ok(Client::new_with_client(&baseurl, http, runtime))
    }
}

fn default_user_agent() -> String {
    format!("superoffice-rs/{}", env!("CARGO_PKG_VERSION"))
}
