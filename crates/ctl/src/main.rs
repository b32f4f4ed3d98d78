//! kodiakctl: the Kodiak command-line tool. It reads and changes resources
//! through a control plane's REST API and validates manifests offline.

mod age;
mod apply;
mod config;
mod delete;
mod documents;
mod generate;
mod get;
mod inspect;
mod kinds;
mod missing_mesh;
mod table;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  kodiakctl apply -f mesh.yaml
  kodiakctl get meshes
  kodiakctl get meshtimeouts -m default -o yaml
  kodiakctl inspect dataplanes
  kodiakctl inspect dataplane web-1 --type rules
  kodiakctl inspect meshtimeout mesh-timeout-all-default
  kodiakctl validate -f policies.yaml
  kodiakctl generate dataplane-token --mesh default --name web-1 --valid-for 720h > web-1.token
  kodiakctl --cp-address http://10.0.0.5:5681 get dataplanes -A";

#[derive(Debug, Parser)]
#[command(name = "kodiakctl", version, about = "Manage a Kodiak service mesh", after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts: where the control plane is.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// kodiakctl's configuration file [default: $XDG_CONFIG_HOME/kodiak/kodiakctl.yaml,
    /// or ~/.config/kodiak/kodiakctl.yaml]
    #[arg(long, env = "KODIAKCTL_CONFIG", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// The control plane's REST API address; overrides the configuration
    /// [default: the current control plane, or http://127.0.0.1:5681]
    #[arg(long, env = "KODIAKCTL_CP_ADDRESS", global = true, value_name = "URL")]
    cp_address: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Apply(apply::Args),
    Get(get::Args),
    Delete(delete::Args),
    Inspect(inspect::Args),
    Validate(validate::Args),
    /// Generate dataplane and user tokens (admins only)
    Generate(generate::Args),
    /// Manage kodiakctl's configuration
    Config(config::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    // One request at a time: a single-threaded runtime is enough.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Apply(args) => apply::run(args, global).await,
            Command::Get(args) => get::run(args, global).await,
            Command::Delete(args) => delete::run(args, global).await,
            Command::Inspect(args) => inspect::run(args, global).await,
            Command::Validate(args) => validate::run(args),
            Command::Generate(args) => generate::run(args, global).await,
            Command::Config(args) => config::run(args, global),
        }
    })
}
