//! OAuth 2.0 authorization code + PKCE (S256) for an interactive user (FACTS §1.3–1.6), built
//! on the `oauth2` crate with our own reqwest client.
//!
//! ```no_run
//! # async fn demo() -> superoffice::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use superoffice::Environment;
//! use superoffice::auth::{FileTokenStore, OAuth, OAuthConfig};
//!
//! let config = OAuthConfig::new(Environment::Sod, "my-client-id", "http://127.0.0.1:8765/callback".parse().unwrap())
//!     .with_client_secret("my-secret")
//!     .with_store(Arc::new(FileTokenStore::new("/var/lib/syncd/tokens.json")));
//! // Once (`syncd auth login`): opens the browser flow and saves the tokens.
//! let oauth = OAuth::new(config.clone())?;
//! oauth.login_with_loopback(Duration::from_secs(300), |url| println!("Open {url}")).await?;
//! // Every start of the daemon: load the saved tokens; they are refreshed as needed.
//! let oauth = OAuth::from_store(config)?;
//! # Ok(()) }
//! ```
//!
//! Refresh: [`Auth::credential`] refreshes when the access token expires within 60 s;
//! [`Auth::refresh`] refreshes once after a 401 unless another caller already did. Concurrent
//! callers share one refresh (a tokio mutex plus a generation check). SuperOffice does not
//! rotate refresh tokens: refresh answers carry none and the original one is kept.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::jwt::{Expected, JwksCache, VerifiedJwt};
use super::loopback::LoopbackListener;
use super::store::{StoredTokens, TokenStore};
use super::{Auth, BoxFuture, Credential, Secret};
use crate::{Environment, Error, Result};

/// Refresh proactively when the access token expires within this long.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// After a failed proactive refresh (the token still being valid), wait this long before trying
/// again, so an unreachable login host does not stall every request.
const RETRY_PROACTIVE_AFTER: Duration = Duration::from_secs(10);
/// Timeout of one request to the token endpoint.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of an [`OAuth`] provider.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The login host.
    pub environment: Environment,
    /// The application's client id.
    pub client_id: String,
    /// The client secret; `None` for a native app that relies on PKCE alone.
    pub client_secret: Option<Secret>,
    /// The registered redirect URI; a loopback one (`http://127.0.0.1:<port>/<path>`) for
    /// [`OAuth::login_with_loopback`].
    pub redirect_uri: Url,
    /// Skip the tenant picker: sends `acr_values=tenant:<ctx>`.
    pub tenant: Option<String>,
    /// Where tokens are loaded from and saved to.
    pub store: Option<Arc<dyn TokenStore>>,
    /// The HTTP client for the login host; default: one from [`crate::http::client_builder`]
    /// (which does not follow redirects; a supplied client should not either, see
    /// [`crate::http`]).
    pub http: Option<reqwest::Client>,
    /// Accept an ID token whose signature cannot be checked because the JWKS is unreachable
    /// (claims still checked, [`VerifiedJwt::verified`] false). Default false: such a token is
    /// refused with [`Error::JwksUnavailable`]. Set with
    /// [`allow_unverified_id_token_when_jwks_unreachable`](Self::allow_unverified_id_token_when_jwks_unreachable()).
    pub allow_unverified_id_token_when_jwks_unreachable: bool,
}

impl OAuthConfig {
    /// Settings without secret, tenant or store.
    pub fn new(environment: Environment, client_id: impl Into<String>, redirect_uri: Url) -> Self {
        OAuthConfig {
            environment,
            client_id: client_id.into(),
            client_secret: None,
            redirect_uri,
            tenant: None,
            store: None,
            http: None,
            allow_unverified_id_token_when_jwks_unreachable: false,
        }
    }

    /// Sets the client secret.
    pub fn with_client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Sets the tenant (`acr_values=tenant:<ctx>`).
    pub fn with_tenant(mut self, context_identifier: impl Into<String>) -> Self {
        self.tenant = Some(context_identifier.into());
        self
    }

    /// Sets the token store.
    pub fn with_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses this HTTP client for the login host. Build it from
    /// [`crate::http::client_builder`]: a client that follows redirects would re-send the code
    /// exchange (client secret, PKCE verifier) or the refresh token to the redirect target
    /// before the SDK could refuse the answer.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Opt-out of fail-closed ID-token verification: when `allow` is true and the JWKS cannot
    /// be fetched, the ID token's claims are used with an unchecked signature
    /// ([`VerifiedJwt::verified`] false, a warning logged). Default false: the sign-in or
    /// refresh fails with [`Error::JwksUnavailable`]. The tenant and `system_token` the
    /// claims carry come from the token, so only allow this where the token endpoint itself
    /// is trusted.
    pub fn allow_unverified_id_token_when_jwks_unreachable(mut self, allow: bool) -> Self {
        self.allow_unverified_id_token_when_jwks_unreachable = allow;
        self
    }
}

/// An authorize request to send the user's browser to, and what to keep until the redirect
/// comes back.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    /// The authorize URL (`response_type=code`, `scope=openid`, `state`, `nonce`,
    /// `code_challenge` with `S256`, and `acr_values` when a tenant is set).
    pub url: Url,
    /// The `state` sent; the redirect must carry the same.
    pub state: String,
    /// The PKCE code verifier (sent with the code exchange).
    pub pkce_verifier: Secret,
    /// The `nonce` sent; the ID token must carry the same.
    pub nonce: String,
    /// The redirect URI sent; the code exchange repeats it.
    pub redirect_uri: Url,
}

/// The S256 PKCE challenge of a code verifier: `base64url(sha256(verifier))` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_string()))
        .as_str()
        .to_string()
}

/// The `id_token` field of a token response.
#[derive(Clone, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenField")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ExtraTokenFields for IdTokenField {}

type TokenAnswer = StandardTokenResponse<IdTokenField, BasicTokenType>;

type OAuth2Client = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// `oauth2`'s async HTTP client over our reqwest client (reqwest 0.13; `oauth2`'s own
/// integration targets 0.12). A redirect answer is [`Error::Redirect`]: the form carries the
/// client secret, the code and PKCE verifier or the refresh token.
struct Transport<'a>(&'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for Transport<'_> {
    type Error = Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let http = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .timeout(TOKEN_REQUEST_TIMEOUT)
                .build()
                .map_err(Error::Transport)?;
            let sent_to = request.url().clone();
            let response = http.execute(request).await.map_err(Error::Transport)?;
            crate::http::refuse_redirect("token endpoint", &sent_to, &response)?;
            // 5xx: the login host is unavailable (maintenance, overload), a transport-level
            // failure that keeps its status, not an OAuth error answer.
            let response = if response.status().is_server_error() {
                response.error_for_status().map_err(Error::Transport)?
            } else {
                response
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(Error::Transport)?.to_vec();
            let mut out = HttpResponse::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// Turns an `oauth2` error into ours, without token values.
fn token_error(what: &str, error: RequestTokenError<Error, BasicErrorResponse>) -> Error {
    match error {
        RequestTokenError::Request(e) => e,
        RequestTokenError::ServerResponse(e) => {
            let detail = e
                .error_description()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let hint = if matches!(
                e.error(),
                oauth2::basic::BasicErrorResponseType::InvalidGrant
            ) && what == "refresh"
            {
                " (the refresh token was revoked or the app uninstalled; sign in again)"
            } else {
                ""
            };
            Error::Auth(format!(
                "the token endpoint refused the {what} ({}{detail}){hint}",
                e.error().as_ref()
            ))
        }
        RequestTokenError::Parse(e, body) => {
            let shown = if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                // JSON of the wrong shape: name where, not what (it may hold tokens).
                format!(
                    "field {:?}: {:?} error",
                    e.path().to_string(),
                    e.inner().classify()
                )
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                format!("not JSON: {text:?}")
            };
            Error::Auth(format!(
                "the token endpoint's answer to the {what} is unreadable ({shown})"
            ))
        }
        RequestTokenError::Other(message) => {
            Error::Auth(format!("the token endpoint failed the {what}: {message}"))
        }
    }
}

/// The tokens in use.
#[derive(Clone)]
struct TokenState {
    /// Bumped on every exchange and refresh; the double-check of single-flight compares it.
    generation: u64,
    stored: StoredTokens,
    /// `expires_in` of the answer that produced the access token, when known.
    lifetime: Option<Duration>,
    id_token: Option<VerifiedJwt>,
}

impl TokenState {
    fn credential(&self) -> Credential {
        Credential::Bearer(self.stored.access_token.clone())
    }

    /// Whether the access token expires within the margin: 60 s, or half its lifetime when
    /// that is shorter (so a short-lived token is not refreshed on every call).
    fn expiring(&self, now: DateTime<Utc>) -> bool {
        let Some(expires_at) = self.stored.expires_at else {
            return false;
        };
        let margin = match self.lifetime {
            Some(lifetime) => REFRESH_MARGIN.min(lifetime / 2),
            None => REFRESH_MARGIN,
        };
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::zero());
        expires_at - now <= margin
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.stored.expires_at.is_some_and(|at| at <= now)
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// OAuth 2.0 authorization code + PKCE provider. See the [module docs](self).
pub struct OAuth {
    config: OAuthConfig,
    client: OAuth2Client,
    http: reqwest::Client,
    jwks: JwksCache,
    state: RwLock<Option<Arc<TokenState>>>,
    refresh_lock: tokio::sync::Mutex<()>,
    proactive_failed_at: Mutex<Option<Instant>>,
}

impl fmt::Debug for OAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.snapshot();
        f.debug_struct("OAuth")
            .field("environment", &self.config.environment)
            .field("client_id", &self.config.client_id)
            .field("client_secret", &self.config.client_secret)
            .field("redirect_uri", &self.config.redirect_uri.as_str())
            .field("tenant", &self.config.tenant)
            .field("store", &self.config.store)
            .field("signed_in", &state.is_some())
            .field(
                "expires_at",
                &state.as_ref().and_then(|s| s.stored.expires_at),
            )
            .finish()
    }
}

impl OAuth {
    /// A provider; loads saved tokens from the store when one is configured (a corrupt store
    /// is an error). Without saved tokens, sign in with [`login_with_loopback`](Self::login_with_loopback)
    /// or [`authorize_request`](Self::authorize_request) + [`exchange_code`](Self::exchange_code).
    pub fn new(config: OAuthConfig) -> Result<OAuth> {
        let env = &config.environment;
        let mut client = oauth2::Client::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(env.authorize_url()))
            .set_token_uri(TokenUrl::from_url(env.token_url()))
            .set_redirect_uri(RedirectUrl::from_url(config.redirect_uri.clone()))
            // client_id (and client_secret) in the form body (FACTS §1.4).
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = &config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
        }
        let http = match &config.http {
            Some(http) => http.clone(),
            None => crate::http::client_builder()
                .build()
                .map_err(Error::Transport)?,
        };
        let jwks = JwksCache::new(
            env.jwks_url(),
            http.clone(),
            config.allow_unverified_id_token_when_jwks_unreachable,
        );
        let loaded = match &config.store {
            Some(store) => store.load()?,
            None => None,
        };
        if let Some(stored) = &loaded {
            tracing::debug!(
                store = %config.store.as_ref().map(|s| s.location()).unwrap_or_default(),
                context = stored.context_identifier.as_deref().unwrap_or("-"),
                "loaded saved OAuth tokens"
            );
        }
        Ok(OAuth {
            client,
            http,
            jwks,
            state: RwLock::new(loaded.map(|stored| {
                Arc::new(TokenState {
                    generation: GENERATION.fetch_add(1, Ordering::Relaxed),
                    stored,
                    lifetime: None,
                    id_token: None,
                })
            })),
            refresh_lock: tokio::sync::Mutex::new(()),
            proactive_failed_at: Mutex::new(None),
            config,
        })
    }

    /// A provider that continues a saved sign-in: like [`new`](Self::new), but the store must
    /// be configured and hold tokens.
    pub fn from_store(config: OAuthConfig) -> Result<OAuth> {
        let Some(store) = config.store.clone() else {
            return Err(Error::Config(
                "OAuth::from_store needs a token store".into(),
            ));
        };
        let oauth = OAuth::new(config)?;
        if !oauth.is_signed_in() {
            return Err(Error::Auth(format!(
                "no saved sign-in in {}; sign in first",
                store.location()
            )));
        }
        Ok(oauth)
    }

    /// The settings.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Whether there are tokens (they may be expired; a refresh may still work).
    pub fn is_signed_in(&self) -> bool {
        self.snapshot().is_some()
    }

    /// When the current access token expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.snapshot().and_then(|s| s.stored.expires_at)
    }

    /// The tokens and claims as saved to the store (token values stay [`Secret`]s).
    pub fn tokens(&self) -> Option<StoredTokens> {
        self.snapshot().map(|s| s.stored.clone())
    }

    /// The claims of the last ID token received in this process (not persisted; see
    /// [`tokens`](Self::tokens) for the saved ones).
    pub fn id_token(&self) -> Option<VerifiedJwt> {
        self.snapshot().and_then(|s| s.id_token.clone())
    }

    /// The tenant of the signed-in user (`ctx` claim).
    pub fn context_identifier(&self) -> Option<String> {
        self.snapshot()
            .and_then(|s| s.stored.context_identifier.clone())
    }

    fn snapshot(&self) -> Option<Arc<TokenState>> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn not_signed_in(&self) -> Error {
        match &self.config.store {
            Some(store) => Error::Auth(format!(
                "not signed in (no tokens in {}); sign in first",
                store.location()
            )),
            None => Error::Auth("not signed in; sign in first".into()),
        }
    }

    /// A new authorize request for the configured redirect URI: fresh `state`, `nonce` and
    /// PKCE verifier.
    pub fn authorize_request(&self) -> AuthorizeRequest {
        self.authorize_request_to(&self.config.redirect_uri)
    }

    fn authorize_request_to(&self, redirect_uri: &Url) -> AuthorizeRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random().secret().clone();
        let redirect = RedirectUrl::from_url(redirect_uri.clone());
        let mut request = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .add_extra_param("nonce", nonce.clone());
        if let Some(tenant) = &self.config.tenant {
            request = request.add_extra_param("acr_values", format!("tenant:{tenant}"));
        }
        let (url, state) = request.url();
        AuthorizeRequest {
            url,
            state: state.secret().clone(),
            pkce_verifier: Secret::new(verifier.secret().clone()),
            nonce,
            redirect_uri: redirect_uri.clone(),
        }
    }

    /// Exchanges the authorization code from the redirect for tokens, verifies the ID token
    /// against the JWKS (an unreachable JWKS fails the sign-in with
    /// [`Error::JwksUnavailable`] unless
    /// [`OAuthConfig::allow_unverified_id_token_when_jwks_unreachable()`] was set), and saves the
    /// tokens to the store. Returns the ID token's claims.
    pub async fn exchange_code(
        &self,
        request: &AuthorizeRequest,
        code: &Secret,
    ) -> Result<Option<VerifiedJwt>> {
        tracing::debug!("exchanging the authorization code");
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.expose().to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                request.pkce_verifier.expose().to_string(),
            ))
            .set_redirect_uri(std::borrow::Cow::Owned(RedirectUrl::from_url(
                request.redirect_uri.clone(),
            )))
            .request_async(&Transport(&self.http))
            .await
            .map_err(|e| token_error("authorization code exchange", e))?;
        let _guard = self.refresh_lock.lock().await;
        let state = self.absorb(answer, None, Some(&request.nonce)).await?;
        self.install(state.clone());
        if let Some(store) = &self.config.store {
            persist(store.clone(), state.stored.clone()).await?;
        }
        tracing::info!(
            context = state.stored.context_identifier.as_deref().unwrap_or("-"),
            verified = state.id_token.as_ref().is_some_and(|t| t.verified),
            "signed in"
        );
        Ok(state.id_token.clone())
    }

    /// The whole interactive sign-in for a native app: binds the loopback redirect URI
    /// (`127.0.0.1:<port>`), calls `on_url` with the authorize URL (print it or open a
    /// browser), waits up to `timeout` for the redirect, checks `state` and exchanges the
    /// code. Port 0 in the redirect URI picks a free port (only if the app registration
    /// accepts any loopback port).
    pub async fn login_with_loopback<F>(
        &self,
        timeout: Duration,
        on_url: F,
    ) -> Result<Option<VerifiedJwt>>
    where
        F: FnOnce(&Url),
    {
        let listener = LoopbackListener::bind(&self.config.redirect_uri).await?;
        let request = self.authorize_request_to(listener.redirect_uri());
        on_url(&request.url);
        let response = listener.wait(request.state.clone(), timeout).await?;
        self.exchange_code(&request, &response.code).await
    }

    /// Refreshes now, whatever the expiry (single-flight with other refreshes).
    pub async fn refresh_now(&self) -> Result<Credential> {
        let _guard = self.refresh_lock.lock().await;
        let current = self.snapshot().ok_or_else(|| self.not_signed_in())?;
        self.refresh_locked(&current).await
    }

    /// Builds the new state from a token answer; keeps the previous refresh token and claims
    /// when the answer carries none.
    async fn absorb(
        &self,
        answer: TokenAnswer,
        previous: Option<&TokenState>,
        nonce: Option<&str>,
    ) -> Result<Arc<TokenState>> {
        let now = Utc::now();
        let lifetime = answer.expires_in();
        let id_token = match &answer.extra_fields().id_token {
            Some(jwt) => {
                let expected = Expected {
                    issuer: self.config.environment.issuer(),
                    audience: self.config.client_id.clone(),
                    audience_is_prefix: false,
                    nonce: nonce.map(str::to_string),
                };
                Some(self.jwks.verify(jwt, &expected).await?)
            }
            None => None,
        };
        let previous_stored = previous.map(|p| &p.stored);
        let refresh_token = answer
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()))
            .or_else(|| previous_stored.and_then(|p| p.refresh_token.clone()));
        let claims = id_token.as_ref().map(|t| &t.claims);
        let pick = |new: Option<&String>, old: Option<&String>| new.or(old).cloned();
        let stored = StoredTokens {
            access_token: Secret::new(answer.access_token().secret().clone()),
            refresh_token,
            expires_at: lifetime
                .and_then(|l| chrono::Duration::from_std(l).ok())
                .map(|l| now + l),
            context_identifier: pick(
                claims.and_then(|c| c.context_identifier.as_ref()),
                previous_stored.and_then(|p| p.context_identifier.as_ref()),
            ),
            webapi_url: pick(
                claims.and_then(|c| c.webapi_url.as_ref()),
                previous_stored.and_then(|p| p.webapi_url.as_ref()),
            ),
            system_token: claims
                .and_then(|c| c.system_token.clone())
                .or_else(|| previous_stored.and_then(|p| p.system_token.clone())),
        };
        Ok(Arc::new(TokenState {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            stored,
            lifetime,
            id_token: id_token.or_else(|| previous.and_then(|p| p.id_token.clone())),
        }))
    }

    fn install(&self, state: Arc<TokenState>) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    /// Refreshes `current`. The caller holds `refresh_lock`.
    async fn refresh_locked(&self, current: &TokenState) -> Result<Credential> {
        let Some(refresh_token) = &current.stored.refresh_token else {
            return Err(Error::Auth(
                "the access token expired and there is no refresh token; sign in again".into(),
            ));
        };
        tracing::debug!("refreshing the access token");
        let refresh_token = RefreshToken::new(refresh_token.expose().to_string());
        let answer = self
            .client
            .exchange_refresh_token(&refresh_token)
            .request_async(&Transport(&self.http))
            .await
            .map_err(|e| token_error("refresh", e))?;
        let state = self.absorb(answer, Some(current), None).await?;
        self.install(state.clone());
        *self
            .proactive_failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        tracing::debug!(
            expires_in = state.lifetime.map(|l| l.as_secs()),
            "refreshed the access token"
        );
        if let Some(store) = &self.config.store
            && let Err(e) = persist(store.clone(), state.stored.clone()).await
        {
            // The new access token works; the saved refresh token is unchanged (no rotation).
            tracing::warn!(error = %e, "could not save the refreshed tokens");
        }
        Ok(state.credential())
    }

    async fn credential_impl(&self) -> Result<Credential> {
        let seen = self.snapshot().ok_or_else(|| self.not_signed_in())?;
        if !seen.expiring(Utc::now()) {
            return Ok(seen.credential());
        }
        if !seen.expired(Utc::now()) && self.recently_failed() {
            return Ok(seen.credential());
        }
        let _guard = self.refresh_lock.lock().await;
        let current = self.snapshot().ok_or_else(|| self.not_signed_in())?;
        if current.generation != seen.generation {
            // Another caller refreshed while this one waited.
            return Ok(current.credential());
        }
        match self.refresh_locked(&current).await {
            Ok(credential) => Ok(credential),
            Err(e) if !current.expired(Utc::now()) => {
                tracing::warn!(error = %e, "proactive token refresh failed; the current token is still valid");
                *self
                    .proactive_failed_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                Ok(current.credential())
            }
            Err(e) => Err(e),
        }
    }

    fn recently_failed(&self) -> bool {
        self.proactive_failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < RETRY_PROACTIVE_AFTER)
    }

    async fn refresh_impl(&self, rejected: &Credential) -> Result<Credential> {
        let _guard = self.refresh_lock.lock().await;
        let current = self.snapshot().ok_or_else(|| self.not_signed_in())?;
        if current.credential() != *rejected {
            // Another caller refreshed since `rejected` was handed out.
            return Ok(current.credential());
        }
        self.refresh_locked(&current).await
    }
}

/// Saves on a blocking thread (file I/O and fsync).
async fn persist(store: Arc<dyn TokenStore>, tokens: StoredTokens) -> Result<()> {
    let location = store.location();
    tokio::task::spawn_blocking(move || store.save(&tokens))
        .await
        .map_err(|e| Error::TokenStore {
            path: location,
            source: std::io::Error::other(e.to_string()),
        })?
}

impl Auth for OAuth {
    fn credential(&self) -> BoxFuture<'_, Result<Credential>> {
        Box::pin(self.credential_impl())
    }

    fn refresh(&self, rejected: &Credential) -> BoxFuture<'_, Result<Credential>> {
        let rejected = rejected.clone();
        Box::pin(async move { self.refresh_impl(&rejected).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthConfig {
        OAuthConfig::new(
            Environment::Sod,
            "client-1",
            Url::parse("http://127.0.0.1:8765/callback").unwrap(),
        )
        .with_client_secret("client-sekrit")
        .with_tenant("Cust26759")
    }

    #[test]
    fn authorize_url_carries_the_documented_parameters() {
        let oauth = OAuth::new(config()).unwrap();
        let request = oauth.authorize_request();
        assert!(
            request
                .url
                .as_str()
                .starts_with("https://sod.superoffice.com/login/common/oauth/authorize?")
        );
        let q: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "client-1");
        assert_eq!(q["scope"], "openid");
        assert_eq!(q["state"], request.state);
        assert_eq!(q["nonce"], request.nonce);
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:8765/callback");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["code_challenge"],
            pkce_challenge(request.pkce_verifier.expose())
        );
        assert_eq!(q["acr_values"], "tenant:Cust26759");
        assert!(!q.contains_key("client_secret"));
        // RFC 7636 §4.1: 43..=128 unreserved characters.
        let v = request.pkce_verifier.expose();
        assert!((43..=128).contains(&v.len()));
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
        // Fresh values per request.
        let again = oauth.authorize_request();
        assert_ne!(again.state, request.state);
        assert_ne!(again.pkce_verifier, request.pkce_verifier);
    }

    #[test]
    fn debug_hides_secrets() {
        let oauth = OAuth::new(config()).unwrap();
        let text = format!("{oauth:?} {:?}", oauth.authorize_request());
        assert!(!text.contains("client-sekrit"), "{text}");
        assert!(text.contains("client-1"));
    }

    #[test]
    fn the_refresh_margin_shrinks_for_short_lived_tokens() {
        let now = Utc::now();
        let mut state = TokenState {
            generation: 0,
            stored: StoredTokens {
                access_token: "a".into(),
                refresh_token: None,
                expires_at: Some(now + chrono::Duration::seconds(59)),
                context_identifier: None,
                webapi_url: None,
                system_token: None,
            },
            lifetime: None,
            id_token: None,
        };
        assert!(state.expiring(now));
        state.stored.expires_at = Some(now + chrono::Duration::seconds(61));
        assert!(!state.expiring(now));
        state.lifetime = Some(Duration::from_secs(30));
        state.stored.expires_at = Some(now + chrono::Duration::seconds(20));
        assert!(!state.expiring(now));
        state.stored.expires_at = Some(now + chrono::Duration::seconds(10));
        assert!(state.expiring(now));
        state.stored.expires_at = None;
        assert!(!state.expiring(now));
    }
}
