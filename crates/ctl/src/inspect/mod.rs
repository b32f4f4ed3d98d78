//! `kodiakctl inspect`: resources together with what the control plane
//! knows about them: Dataplanes' connection state, which policies shape a
//! proxy and the Envoy configuration it got, the proxies a policy affects.

mod dataplane;
mod dataplanes;
mod policy;

use clap::Subcommand;

use crate::Global;
use crate::get::Output;

const EXAMPLES: &str = "\
Examples:
  kodiakctl inspect dataplanes
  kodiakctl inspect dataplanes -m staging
  kodiakctl inspect dataplane web-1                       # which policies shape each outbound and inbound
  kodiakctl inspect dataplane web-1 --shadow              # as if shadow-labelled policies were in force
  kodiakctl inspect dataplane web-1 --type config         # the Envoy configuration the control plane sent
  kodiakctl inspect dataplane web-1 --type config-dump    # the sidecar Envoy's own config dump
  kodiakctl inspect meshtimeout mesh-timeout-all-default  # the Dataplanes a policy affects
  kodiakctl inspect mt backend-timeouts -m shop -o json";

/// Inspect resources together with what the control plane knows about them.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Dataplanes with their status (Online while connected), last connection, the
    /// configurations their sidecar ACKed and NACKed (with the last NACK's reason), and their
    /// mesh mTLS: how their inbounds treat callers (STRICT or PERMISSIVE; - without mTLS) and
    /// when their certificate expires
    #[command(visible_alias = "dp", after_help = EXAMPLES)]
    Dataplanes {
        /// The mesh
        #[arg(short, long, default_value = "default")]
        mesh: String,
    },
    Dataplane(dataplane::Args),
    /// The Dataplanes a policy affects: `kodiakctl inspect <policy-type> NAME [-m MESH] [-o table|json|yaml]`
    #[command(external_subcommand)]
    Policy(Vec<String>),
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    match args.what {
        What::Dataplanes { mesh } => dataplanes::run(mesh, global).await,
        What::Dataplane(args) => dataplane::run(args, global).await,
        What::Policy(words) => policy::run(&words, global).await,
    }
}

/// Prints a raw API answer in the asked format (never [`Output::Table`]).
fn print_raw(output: Output, value: &serde_json::Value) {
    match output {
        Output::Yaml => print!("{}", kodiak_api::to_yaml(value)),
        Output::Json | Output::Table => println!("{}", kodiak_api::to_json(value)),
    }
}
