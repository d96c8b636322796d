//! The first program a new user writes: `superoffice` as an ordinary path dependency (default
//! features), a GET and a typed list against a running emulator (`superoffice-emulator`).
//! `.ci/run` builds it in a fresh crate outside the workspace and runs it.
//!
//! Environment: `SO_BASE_URL` (login host), `SO_TENANT_URL`, `SO_ACCESS_TOKEN`, as the emulator
//! prints them.

use futures::TryStreamExt;
use superoffice::auth::StaticAuth;
use superoffice::entity::Contact;
use superoffice::odata::Query;
use superoffice::prelude::*;
use superoffice::{Client, Environment};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let base = var("SO_BASE_URL")?;
    let tenant = var("SO_TENANT_URL")?;
    let context = tenant
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|c| c.starts_with("Cust"))
        .ok_or_else(|| format!("{tenant} does not end in a context identifier"))?
        .to_string();
    let client = Client::builder()
        .environment(Environment::custom(&base)?)
        .customer_id(context)
        .auth(StaticAuth::bearer(var("SO_ACCESS_TOKEN")?))
        .build()?;

    let contact = client
        .contact_get()
        .id(1)
        .send()
        .await
        .map_err(superoffice::Error::from)?;
    let name = contact.name.clone().ok_or("contact 1 has no name")?;
    println!("GET Contact/1: {name}");

    // A typed list: the Contact entity's list archive, keyset-paged, typed column access.
    let rows: Vec<_> = client
        .entity::<Contact>()
        .list(Query::new().select(["contactId", "name"]))
        .try_collect()
        .await?;
    let ids: Vec<i64> = rows.iter().filter_map(|row| row.int("contactId")).collect();
    if ids.is_empty() || ids.len() != rows.len() {
        return Err(format!("{} rows, {} with a contactId", rows.len(), ids.len()).into());
    }
    println!("listed {} contacts (first: {:?})", rows.len(), rows[0].str("name"));
    Ok(())
}
