//! `kodiakctl validate`: checks manifests offline with the control plane's
//! own validation code, for editors and CI.

use crate::documents::{Input, load};

const EXAMPLES: &str = "\
Examples:
  kodiakctl validate -f mesh.yaml
  kodiakctl validate -f dataplane.yaml -v name=web-1 -v address=10.0.0.2
  cat policies.yaml | kodiakctl validate -f -";

/// Check resource documents without contacting a control plane.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    input: Input,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let count = load(&args.input)?.len();
    println!("{count} document{} valid", if count == 1 { "" } else { "s" });
    Ok(())
}
