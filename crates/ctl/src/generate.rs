//! `kodiakctl generate dataplane-token` and `generate user-token`: ask the
//! control plane (as an admin) to issue a token, and print it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Subcommand;
use kodiak_client::{DataplaneTokenRequest, UserTokenRequest};

use crate::Global;

const EXAMPLES: &str = "\
Examples:
  kodiakctl generate dataplane-token --mesh default --name web-1 --valid-for 720h > web-1.token
  kodiakctl generate dataplane-token -m default --tag kuma.io/service=web,web-api --valid-for 24h
  kodiakctl generate user-token --name alice --group team-a --valid-for 24h";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: GenerateCommand,
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// Issue a dataplane token: kodiak-dp shows it (--dataplane-token-file) to
    /// register and serve a Dataplane. Every option given restricts which
    /// Dataplanes may use it; the token is printed on stdout.
    #[command(
        name = "dataplane-token",
        after_help = "Examples:\n  kodiakctl generate dataplane-token --mesh default --name web-1 --valid-for 720h > web-1.token\n  \
                      kodiakctl generate dataplane-token -m default --tag kuma.io/service=web --valid-for 24h\n\n\
                      Needs an admin: run it on the control plane's host, or add the control plane with\n\
                      `kodiakctl config control-planes add ... --auth-type tokens --auth-conf token=<admin token>`."
    )]
    DataplaneToken {
        /// The mesh of the Dataplanes that may use the token
        #[arg(short, long, default_value = "default")]
        mesh: String,
        /// Only the Dataplane of this name may use it
        #[arg(long)]
        name: Option<String>,
        /// A tag the Dataplane must have, with every value its inbounds carry
        /// for it listed: `kuma.io/service=web` or `kuma.io/service=web,web-api` (repeatable)
        #[arg(long = "tag", value_name = "NAME=VALUE[,VALUE...]")]
        tags: Vec<String>,
        /// The kind of proxy: dataplane (the only kind Kodiak has)
        #[arg(long)]
        proxy_type: Option<String>,
        /// Only Dataplanes labelled kuma.io/workload=<this> may use it
        #[arg(long)]
        workload: Option<String>,
        /// How long the token is valid, as a Go duration: 720h, 30m, 1h30m (not 30d)
        #[arg(long, value_name = "DURATION")]
        valid_for: String,
    },
    /// Issue a user token for the REST API (`Authorization: Bearer <token>`);
    /// the token is printed on stdout
    #[command(
        name = "user-token",
        after_help = "Examples:\n  kodiakctl generate user-token --name alice --group team-a --valid-for 24h\n  \
                      kodiakctl generate user-token --name ops --group mesh-system:admin --valid-for 8h   # an admin"
    )]
    UserToken {
        /// The user the token names
        #[arg(long)]
        name: String,
        /// A group of the user (repeatable, or comma-separated); mesh-system:admin makes an admin
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// How long the token is valid, as a Go duration: 24h, 30m (not 1d)
        #[arg(long, value_name = "DURATION")]
        valid_for: String,
    },
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let client = crate::config::client(global)?;
    let token = match args.command {
        GenerateCommand::DataplaneToken { mesh, name, tags, proxy_type, workload, valid_for } => {
            let request = DataplaneTokenRequest {
                name: name.unwrap_or_default(),
                mesh,
                tags: parse_tags(&tags)?,
                proxy_type: proxy_type.unwrap_or_default(),
                workload: workload.unwrap_or_default(),
                valid_for,
            };
            client.generate_dataplane_token(&request).await.context("cannot generate the dataplane token")?
        }
        GenerateCommand::UserToken { name, groups, valid_for } => {
            let request = UserTokenRequest { name, groups, valid_for };
            client.generate_user_token(&request).await.context("cannot generate the user token")?
        }
    };
    print_token(&token)
}

/// The token alone, so `> file` holds exactly the token; a newline only on a terminal.
fn print_token(token: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(token.as_bytes())?;
    if stdout.is_terminal() {
        stdout.write_all(b"\n")?;
    }
    Ok(stdout.flush()?)
}

/// `--tag k=v1,v2` (repeatable; the same tag twice adds values).
fn parse_tags(tags: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in tags {
        let (name, values) = tag
            .split_once('=')
            .filter(|(name, values)| !name.is_empty() && !values.is_empty())
            .with_context(|| format!("--tag {tag:?}: expected NAME=VALUE or NAME=VALUE1,VALUE2"))?;
        let allowed = out.entry(name.to_owned()).or_default();
        for value in values.split(',').map(str::trim) {
            anyhow::ensure!(!value.is_empty(), "--tag {tag:?}: a value is empty");
            allowed.push(value.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_on_the_first_equals_and_on_commas() {
        let tags =
            parse_tags(&["kuma.io/service=web,web-api".into(), "version=v1".into(), "version=v2".into()]).unwrap();
        assert_eq!(tags["kuma.io/service"], ["web", "web-api"]);
        assert_eq!(tags["version"], ["v1", "v2"]);
        for bad in ["web", "=web", "kuma.io/service=", "k=a,,b"] {
            let error = parse_tags(&[bad.into()]).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
