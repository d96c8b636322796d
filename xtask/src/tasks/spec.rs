//! `cargo xtask spec pin|show`: the pinned upstream spec.

/// Arguments of `cargo xtask spec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Record the sha256 of the spec the lookup finds in `spec/superoffice.lock`.
    Pin,
    /// Print which spec the lookup finds, its hash and whether it matches the lock.
    Show,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = xtask::spec::workspace_root();
    let located = xtask::spec::locate(&root)?;
    let loaded = xtask::spec::load(&located.path)?;
    let version = loaded
        .json
        .pointer("/info/version")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    match args.command {
        Command::Pin => {
            xtask::spec::write_lock(&root, &loaded.sha256, &format!("info.version {version}"))?;
            println!(
                "pinned {} ({version}) sha256 {}",
                located.path.display(),
                loaded.sha256
            );
        }
        Command::Show => {
            println!(
                "spec:    {} (found via {})",
                located.path.display(),
                located.source
            );
            println!("version: {version}");
            println!("sha256:  {}", loaded.sha256);
            match xtask::spec::check_lock(&root, &loaded.sha256)? {
                None => println!("lock:    matches {}", xtask::spec::LOCK_PATH),
                Some(warning) => println!("lock:    {warning}"),
            }
        }
    }
    Ok(())
}
