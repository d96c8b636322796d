//! `superoffice-emulator`: runs the emulator until Ctrl-C.
//!
//! `superoffice-emulator --port 8080 --seed 42 --contacts 100000 --persons 50000`

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use emulator::{Config, Emulator, SeedCounts};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "superoffice-emulator",
    about = "A local SuperOffice CRM Online emulator"
)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Seed of all generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Contacts to seed.
    #[arg(long, default_value_t = 1000)]
    contacts: u32,
    /// Persons to seed.
    #[arg(long, default_value_t = 2000)]
    persons: u32,
    /// Sales to seed.
    #[arg(long, default_value_t = 500)]
    sales: u32,
    /// Projects to seed.
    #[arg(long, default_value_t = 100)]
    projects: u32,
    /// Appointments to seed.
    #[arg(long, default_value_t = 1000)]
    appointments: u32,
    /// Documents to seed.
    #[arg(long, default_value_t = 500)]
    documents: u32,
    /// Tickets to seed.
    #[arg(long, default_value_t = 500)]
    tickets: u32,
    /// Selections to seed.
    #[arg(long, default_value_t = 20)]
    selections: u32,
    /// Serve data calls without credentials.
    #[arg(long)]
    no_auth: bool,
    /// Multiplier of the webhook retry delays (1 s, 4 s).
    #[arg(long, default_value_t = 1.0)]
    retry_scale: f64,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut config = Config {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        seed: args.seed,
        counts: SeedCounts {
            contacts: args.contacts,
            persons: args.persons,
            sales: args.sales,
            projects: args.projects,
            appointments: args.appointments,
            documents: args.documents,
            tickets: args.tickets,
            selections: args.selections,
        },
        ..Config::default()
    };
    config.auth.require_auth = !args.no_auth;
    config.auth.access_token_ttl_secs = args.token_ttl;
    config.webhooks.retry_scale = args.retry_scale;
    let emu = Emulator::start(config)
        .await
        .context("starting the emulator")?;
    let cfg = emu.config();
    println!("login host:   {}", emu.base_url());
    println!("tenant:       {}", emu.tenant_url());
    println!(
        "client:       {} / {}",
        cfg.auth.client_id, cfg.auth.client_secret
    );
    println!("system token: {}", cfg.auth.system_token);
    println!("access token: {}", emu.issue_access_token());
    println!("admin:        {}/__admin/stats", emu.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    emu.shutdown().await;
    Ok(())
}
