//! `syncd auth login|system-user`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::Context;
use crate::config::{AuthMode, Config};
use crate::{Error, Result};

/// `syncd auth …`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign in with the OAuth code flow + PKCE: prints the URL to open, waits for the redirect
    /// on the loopback URI, stores the tokens (mode 0600) in the tenant's `token_file` (default
    /// `$STATE_DIRECTORY/tokens-<tenant>.json`).
    ///
    /// For the systemd service the file must be in its state directory and owned by its
    /// (dynamic) user: run this through `systemd-run -p DynamicUser=yes -p User=syncd
    /// -p StateDirectory=syncd -p ConfigurationDirectory=syncd -p LoadCredential=…` as
    /// dist/INSTALL.md shows, or as root with `STATE_DIRECTORY=/var/lib/syncd` and then
    /// `chown --reference=/var/lib/private/syncd` on the file.
    Login {
        /// The tenant (default: the only one).
        #[arg(long)]
        tenant: Option<String>,
        /// Seconds to wait for the browser.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Check the system-user login with a private key (PEM or RSA-XML).
    SystemUser {
        /// The private key file (default: the tenant's `private_key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The tenant (default: the only one).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Runs an `auth` command.
pub async fn auth(context: &Context, command: AuthCommand) -> Result<()> {
    match command {
        AuthCommand::Login { tenant, timeout } => auth_login(context, tenant, timeout).await,
        AuthCommand::SystemUser { key, tenant } => auth_system_user(context, key, tenant).await,
    }
}

fn pick_tenant<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a crate::config::Tenant> {
    match name {
        Some(name) => config
            .tenant(name)
            .ok_or_else(|| Error::invalid("--tenant", format!("no tenant named {name:?}"))),
        None if config.tenants.len() == 1 => Ok(&config.tenants[0]),
        None => Err(Error::TenantRequired),
    }
}

async fn auth_login(context: &Context, tenant: Option<String>, timeout: u64) -> Result<()> {
    let config = context.config()?;
    let tenant = pick_tenant(&config, tenant.as_deref())?;
    let AuthMode::OAuth {
        token_file,
        redirect_uri,
    } = &tenant.auth
    else {
        return Err(Error::AuthMode {
            tenant: tenant.name.clone(),
            wanted: "oauth",
        });
    };
    let oauth = superoffice::auth::OAuth::new(crate::clients::oauth_config(
        tenant,
        token_file,
        redirect_uri,
    )?)?;
    let claims = oauth
        .login_with_loopback(Duration::from_secs(timeout), |url| {
            println!("Open this URL in a browser to grant access:\n\n  {url}\n");
            let _ = std::io::stdout().flush();
        })
        .await?;
    println!(
        "Signed in; tokens stored in {} (mode 0600).",
        token_file.display()
    );
    if let Some(context) = oauth.context_identifier() {
        println!("Tenant: {context}");
    }
    if claims.is_some_and(|c| !c.verified) {
        println!("Note: the ID token's signature could not be verified (JWKS unreachable).");
    }
    Ok(())
}

async fn auth_system_user(
    context: &Context,
    key: Option<PathBuf>,
    tenant: Option<String>,
) -> Result<()> {
    let mut config = context.config()?;
    let name = pick_tenant(&config, tenant.as_deref())?.name.clone();
    let tenant = config
        .tenants
        .iter_mut()
        .find(|t| t.name == name)
        .expect("picked above");
    let AuthMode::SystemUser { private_key, .. } = &mut tenant.auth else {
        return Err(Error::AuthMode {
            tenant: tenant.name.clone(),
            wanted: "system-user",
        });
    };
    if let Some(key) = key {
        *private_key = crate::config::SecretRef::file("--key", &key);
    }
    let auth = crate::clients::auth_for(tenant)?;
    auth.credential().await?;
    println!(
        "System user login for {} works: a ticket was issued.",
        tenant.customer_id
    );
    Ok(())
}
