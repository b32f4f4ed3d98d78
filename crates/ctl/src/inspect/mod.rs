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
  kodiakctl inspect dataplanes -m shop
  # Which policies shape each outbound and inbound of web-1 (--shadow: with shadow policies)
  kodiakctl inspect dataplane web-1 -m shop
  # The Envoy configuration the control plane sent it, and its Envoy's own config dump
  kodiakctl inspect dataplane web-1 -m shop --type config
  kodiakctl inspect dataplane web-1 -m shop --type config-dump
  # The Dataplanes a policy affects
  kodiakctl inspect meshtimeout mesh-timeout-all-shop -m shop
  kodiakctl inspect mt backend-timeouts -m shop -o json";

/// Inspect resources together with what the control plane knows about them;
/// `kodiakctl inspect <policy-type> NAME` lists the Dataplanes a policy affects
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

/// A raw API answer in the asked format: YAML, else JSON.
fn raw(output: Output, value: &serde_json::Value) -> String {
    match output {
        Output::Yaml => kodiak_api::to_yaml(value),
        Output::Json | Output::Table => format!("{}\n", kodiak_api::to_json(value)),
    }
}

/// Writes `text` to standard output. A reader that stops early (`| head`,
/// a pager quit) is not an error: config dumps are long.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
