//! `cargo xtask spec fetch|pin|show`: the pinned upstream spec.

use anyhow::Context;
use superoffice_codegen::fetch;

/// Arguments of `cargo xtask spec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Download Swagger-v1-REST.zip, check the JSON's sha256 against `spec/superoffice.lock` and
    /// unpack it to `spec/upstream/`.
    Fetch {
        /// Where to download the zip from (default: SuperOffice's public docs repository).
        #[arg(long, env = "SUPEROFFICE_OPENAPI_URL")]
        url: Option<String>,
        /// Accept a spec with another hash and re-pin `spec/superoffice.lock` to it.
        #[arg(long)]
        accept_new: bool,
    },
    /// Record the sha256 of the spec the lookup finds in `spec/superoffice.lock`.
    Pin,
    /// Print which spec the lookup finds, its hash and whether it matches the lock.
    Show,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = superoffice_codegen::spec::workspace_root();
    if let Command::Fetch { url, accept_new } = &args.command {
        let url = fetch::url(url.as_deref());
        let pin = match (accept_new, superoffice_codegen::spec::read_lock(&root)?) {
            (true, _) => fetch::Pin::AcceptNew,
            (false, Some(sha256)) => fetch::Pin::Require(sha256),
            (false, None) => anyhow::bail!(
                "{} is missing: nothing to check the download against (pass --accept-new to pin what is downloaded)",
                superoffice_codegen::spec::LOCK_PATH
            ),
        };
        let dest = root.join("spec/upstream");
        let fetched = fetch::fetch(&url, &dest, &pin)?;
        for file in &fetched.files {
            println!("unpacked {}", file.display());
        }
        println!("sha256:  {}", fetched.sha256);
        if *accept_new {
            let loaded = superoffice_codegen::spec::load(&fetched.spec)
                .with_context(|| format!("reading {}", fetched.spec.display()))?;
            superoffice_codegen::spec::write_lock(
                &root,
                &fetched.sha256,
                &format!("info.version {}", version(&loaded.json)),
            )?;
            println!("pinned in {}", superoffice_codegen::spec::LOCK_PATH);
        } else {
            println!("lock:    matches {}", superoffice_codegen::spec::LOCK_PATH);
        }
        return Ok(());
    }
    let located = superoffice_codegen::spec::locate(&root)?;
    let loaded = superoffice_codegen::spec::load(&located.path)?;
    let version = version(&loaded.json);
    match args.command {
        Command::Fetch { .. } => unreachable!("handled above"),
        Command::Pin => {
            superoffice_codegen::spec::write_lock(
                &root,
                &loaded.sha256,
                &format!("info.version {version}"),
            )?;
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
            match superoffice_codegen::spec::check_lock(&root, &loaded.sha256)? {
                None => println!("lock:    matches {}", superoffice_codegen::spec::LOCK_PATH),
                Some(warning) => println!("lock:    {warning}"),
            }
        }
    }
    Ok(())
}

fn version(json: &serde_json::Value) -> String {
    json.pointer("/info/version")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string()
}
