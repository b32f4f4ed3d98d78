//! `kodiakctl delete`: removes one resource.

use crate::Global;
use crate::kinds::{describe, key, parse_kind};

const EXAMPLES: &str = "\
Examples:
  kodiakctl delete meshtimeout backend-timeouts
  kodiakctl delete dp web-1 -m staging
  kodiakctl delete mesh demo";

/// Delete a resource.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Resource type: plural, singular or short name (meshes, dp, mt, ...)
    #[arg(value_name = "TYPE")]
    kind: String,

    /// The resource's name
    name: String,

    /// The mesh (ignored for meshes, zones and global secrets)
    #[arg(short, long, default_value = "default")]
    mesh: String,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let key = key(parse_kind(&args.kind)?, &args.mesh, &args.name);
    let client = crate::config::client(global)?;
    if !client.delete(&key).await? {
        anyhow::bail!(describe(&key, "not found"));
    }
    println!("Deleted {key}");
    Ok(())
}
