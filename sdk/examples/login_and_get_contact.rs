//! Sign in with OAuth 2.0 (authorization code + PKCE, loopback redirect) and read a contact.
//!
//! ```sh
//! cargo run -p superoffice --example login_and_get_contact            # against the emulator
//! SUPEROFFICE_ENVIRONMENT=sod SUPEROFFICE_CUSTOMER_ID=Cust12345 \
//!   SUPEROFFICE_CLIENT_ID=… SUPEROFFICE_CLIENT_SECRET=… \
//!   cargo run -p superoffice --example login_and_get_contact -- 5   # a real tenant, contact 5
//! ```
//! For a real tenant, register `http://127.0.0.1:8765/callback` as a redirect URI of the app
//! and open the printed URL in a browser.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use superoffice::auth::{OAuth, OAuthConfig};
use superoffice::entity::Contact;
use superoffice::{Client, Environment};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id: i32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1);
    let real = std::env::var("SUPEROFFICE_CLIENT_ID").is_ok();
    let emulator = if real {
        None
    } else {
        Some(common::start_emulator().await?)
    };

    let (environment, customer, client_id, secret) = match &emulator {
        Some(emu) => (
            Environment::custom(&emu.base_url())?,
            emu.context_identifier().to_string(),
            emu.config().auth.client_id.clone(),
            Some(emu.config().auth.client_secret.clone()),
        ),
        None => (
            std::env::var("SUPEROFFICE_ENVIRONMENT")?.parse()?,
            std::env::var("SUPEROFFICE_CUSTOMER_ID")?,
            std::env::var("SUPEROFFICE_CLIENT_ID")?,
            std::env::var("SUPEROFFICE_CLIENT_SECRET").ok(),
        ),
    };
    let redirect = url::Url::parse(if emulator.is_some() {
        "http://127.0.0.1:0/callback"
    } else {
        "http://127.0.0.1:8765/callback"
    })?;
    let mut config =
        OAuthConfig::new(environment.clone(), client_id, redirect).with_tenant(customer.clone());
    if let Some(secret) = secret {
        config = config.with_client_secret(secret);
    }
    let oauth = OAuth::new(config)?;

    let claims = oauth
        .login_with_loopback(Duration::from_secs(300), |url| {
            if emulator.is_some() {
                // The emulator consents by itself: play the browser and follow its redirect.
                let url = url.clone();
                tokio::spawn(async move {
                    let browser = superoffice::http::client_builder()
                        .redirect(reqwest::redirect::Policy::limited(5))
                        .build()?;
                    browser.get(url).send().await.map(|_| ())
                });
            } else {
                println!("Open this URL to sign in:\n\n  {url}\n");
            }
        })
        .await?;
    if let Some(id_token) = &claims {
        println!(
            "Signed in to {} (ID token signature verified: {})",
            id_token.claims.context_identifier.as_deref().unwrap_or("?"),
            id_token.verified
        );
    }

    let client = Client::builder()
        .environment(environment)
        .customer_id(customer)
        .auth(oauth)
        .build()?;
    let contact = client.entity::<Contact>().get(id).await?;
    println!(
        "Contact {id}: {} ({}), updated {}",
        contact.name.as_deref().unwrap_or("?"),
        contact.category.and_then(|c| c.value).unwrap_or_default(),
        contact
            .updated_date
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    Ok(())
}
