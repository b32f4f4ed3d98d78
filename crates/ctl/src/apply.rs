//! `kodiakctl apply`: creates or updates the resources of a manifest.

use kodiak_api::to_yaml;
use kodiak_client::Applied;

use crate::Global;
use crate::documents::{Input, load};
use crate::kinds::describe;

const EXAMPLES: &str = "\
Examples:
  kodiakctl apply -f mesh.yaml
  kodiakctl apply -f dataplane.yaml -v name=web-1 -v address=10.0.0.2
  kodiakctl apply -f policies.yaml --dry-run
  cat policies.yaml | kodiakctl apply -f -";

/// Create or update resources from a file. Every document is checked first;
/// if any is invalid, nothing is sent.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    input: Input,

    /// Print the documents that would be sent, as YAML, and send nothing
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let resources = load(&args.input)?;
    if args.dry_run {
        let documents: Vec<String> = resources.iter().map(|r| to_yaml(&r.to_document())).collect();
        print!("{}", documents.join("---\n"));
        return Ok(());
    }
    let client = crate::config::client(global)?;
    // In file order, so a Mesh listed before its policies exists when they
    // arrive; the first refusal stops the rest.
    for (index, resource) in resources.iter().enumerate() {
        match client.put(resource).await {
            Ok(Applied::Created) => println!("{}", describe(&resource.key, "created")),
            Ok(Applied::Updated) => println!("{}", describe(&resource.key, "updated")),
            Err(error) => {
                let unsent = resources.len() - index - 1;
                let note = match unsent {
                    0 => String::new(),
                    1 => " (the document after it was not sent)".to_owned(),
                    n => format!(" (the {n} documents after it were not sent)"),
                };
                return Err(anyhow::Error::new(error).context(format!("{} was not applied{note}", resource.key)));
            }
        }
    }
    Ok(())
}
