//! `[[tenant]]`: the SuperOffice tenants and how each authenticates, with the
//! `SYNCD_TENANT_<NAME>_*` overrides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use superoffice::Environment;
use toml::Spanned;

use super::raw::RawTenant;
use super::secret::SecretRef;
use super::values::Ctx;
use crate::Result;

/// How a tenant authenticates.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// OAuth tokens from `syncd auth login`, kept in `token_file` and refreshed.
    OAuth {
        /// The token file (mode 0600).
        token_file: PathBuf,
        /// The loopback redirect URI registered for the app.
        redirect_uri: String,
    },
    /// The system user: signs `system_token` with the private key.
    SystemUser {
        /// The system token (from the admin's id_token).
        system_token: SecretRef,
        /// The PEM or RSA-XML private key (a file path in the config reads that file).
        private_key: SecretRef,
    },
    /// A fixed bearer token.
    Static {
        /// The token.
        token: SecretRef,
    },
}

/// One SuperOffice tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Name used by subscriptions.
    pub name: String,
    /// Login host.
    pub environment: Environment,
    /// Explicit data base URL (skips the State API).
    pub base_url: Option<String>,
    /// Context identifier.
    pub customer_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// Client secret / application token.
    pub client_secret: Option<SecretRef>,
    /// Authentication.
    pub auth: AuthMode,
    /// Concurrent requests to this tenant.
    pub max_concurrency: usize,
    /// `SO-Language`.
    pub language: Option<String>,
}

/// Every `[[tenant]]`, in file order; names are unique.
pub(super) fn tenants(
    ctx: &Ctx<'_>,
    raw: &[Spanned<RawTenant>],
    env: &BTreeMap<String, String>,
) -> Result<Vec<Tenant>> {
    let mut tenants: Vec<Tenant> = Vec::new();
    for (index, spanned) in raw.iter().enumerate() {
        let name = &spanned.get_ref().name;
        if tenants.iter().any(|x| x.name == *name) {
            return Err(ctx.at(
                spanned,
                &format!("tenant[{index}].name"),
                format!("tenant {name:?} is defined twice"),
            ));
        }
        tenants.push(tenant(ctx, index, spanned.get_ref(), env)?);
    }
    Ok(tenants)
}

/// One `[[tenant]]` (the `index`th); `SYNCD_TENANT_<NAME>_{ENVIRONMENT,BASE_URL,CUSTOMER_ID,
/// CLIENT_ID}` (name upper-cased, `-` → `_`) take the place of the keys.
fn tenant(
    ctx: &Ctx<'_>,
    index: usize,
    t: &RawTenant,
    env: &BTreeMap<String, String>,
) -> Result<Tenant> {
    let key = |k: &str| format!("tenant[{index}].{k}");
    let upper = t.name.to_ascii_uppercase().replace('-', "_");
    let var = |k: &str| env.get(&format!("SYNCD_TENANT_{upper}_{k}")).cloned();
    let environment = match (var("ENVIRONMENT"), &t.environment) {
        (Some(v), _) => v.parse().map_err(|e| ctx.plain(&key("environment"), e))?,
        (None, Some(v)) => v
            .get_ref()
            .parse()
            .map_err(|e| ctx.at(v, &key("environment"), e))?,
        (None, None) => Environment::Online,
    };
    let base_url = var("BASE_URL").or_else(|| t.base_url.clone());
    let customer_id = var("CUSTOMER_ID").unwrap_or_else(|| t.customer_id.clone());
    let client_id = var("CLIENT_ID").unwrap_or_else(|| t.client_id.clone());
    let client_secret = ctx.secret(t.client_secret.as_ref(), &key("client_secret"))?;
    let auth = auth(ctx, &key, t)?;
    if matches!(auth, AuthMode::SystemUser { .. }) && client_secret.is_none() {
        return Err(ctx.at(
            &t.auth,
            &key("client_secret"),
            "the system user needs the client secret (application token)",
        ));
    }
    Ok(Tenant {
        name: t.name.clone(),
        environment,
        base_url,
        customer_id,
        client_id,
        client_secret,
        auth,
        max_concurrency: ctx.count(
            t.max_concurrency.as_ref(),
            &key("max_concurrency"),
            8,
            1..=256,
        )?,
        language: t.language.clone(),
    })
}

/// `auth` and the keys it requires.
fn auth(ctx: &Ctx<'_>, key: &dyn Fn(&str) -> String, t: &RawTenant) -> Result<AuthMode> {
    let required =
        |k: &str, mode: &str| ctx.at(&t.auth, &key(k), format!("required with auth = \"{mode}\""));
    Ok(match t.auth.get_ref().as_str() {
        "oauth" => AuthMode::OAuth {
            token_file: t
                .token_file
                .clone()
                .unwrap_or_else(|| super::default_state_file(&format!("tokens-{}.json", t.name))),
            redirect_uri: t
                .redirect_uri
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8765/callback".into()),
        },
        "system-user" => {
            let token = t
                .system_token
                .as_ref()
                .ok_or_else(|| required("system_token", "system-user"))?;
            let private = t
                .private_key
                .as_ref()
                .ok_or_else(|| required("private_key", "system-user"))?;
            AuthMode::SystemUser {
                system_token: ctx.secret_ref(
                    token,
                    &key("system_token"),
                    token.get_ref().source(),
                )?,
                private_key: ctx.secret_ref(
                    private,
                    &key("private_key"),
                    private.get_ref().source(),
                )?,
            }
        }
        "static" => AuthMode::Static {
            token: ctx
                .secret(t.token.as_ref(), &key("token"))?
                .ok_or_else(|| required("token", "static"))?,
        },
        other => {
            return Err(ctx.at(
                &t.auth,
                &key("auth"),
                format!("{other:?} is not one of oauth, system-user, static"),
            ));
        }
    })
}
