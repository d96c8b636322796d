//! Shared by the examples: connect to a real tenant when `SUPEROFFICE_*` variables are set,
//! otherwise to an in-process emulator with seed data.
//!
//! Real tenant: `SUPEROFFICE_ENVIRONMENT` (sod, qaonline, online), `SUPEROFFICE_CUSTOMER_ID`
//! (Cust12345) and `SUPEROFFICE_ACCESS_TOKEN` (an OAuth access token).

#![allow(dead_code)]

use superoffice::auth::StaticAuth;
use superoffice::{Client, Environment};

/// A client, and the emulator it talks to when no tenant is configured.
pub async fn connect() -> Result<(Client, Option<emulator::Emulator>), Box<dyn std::error::Error>> {
    if let (Ok(environment), Ok(customer), Ok(token)) = (
        std::env::var("SUPEROFFICE_ENVIRONMENT"),
        std::env::var("SUPEROFFICE_CUSTOMER_ID"),
        std::env::var("SUPEROFFICE_ACCESS_TOKEN"),
    ) {
        let client = Client::builder()
            .environment(environment.parse::<Environment>()?)
            .customer_id(customer)
            .auth(StaticAuth::bearer(token))
            .build()?;
        return Ok((client, None));
    }
    let emulator = start_emulator().await?;
    let client = Client::builder()
        .environment(Environment::custom(&emulator.base_url())?)
        .customer_id(emulator.context_identifier())
        .auth(StaticAuth::bearer(emulator.issue_access_token()))
        .build()?;
    Ok((client, Some(emulator)))
}

/// An emulator with a little of everything.
pub async fn start_emulator() -> Result<emulator::Emulator, Box<dyn std::error::Error>> {
    let counts = emulator::SeedCounts {
        contacts: 200,
        persons: 400,
        ..emulator::SeedCounts::NONE
    };
    let emulator = emulator::Emulator::start(emulator::Config {
        counts,
        ..Default::default()
    })
    .await?;
    println!(
        "(no SUPEROFFICE_* variables set: using the built-in emulator at {})",
        emulator.base_url()
    );
    Ok(emulator)
}
