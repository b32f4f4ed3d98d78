//! `kodiakctl inspect <policy-type> NAME`: the Dataplanes a policy affects
//! (`GET /meshes/{mesh}/{plural}/{name}/_resources/dataplanes`, every page).

use clap::Parser;
use kodiak_api::ResourceType;
use serde_json::{Value, json};

use super::{emit, raw};
use crate::Global;
use crate::get::Output;
use crate::kinds::{key, parse_kind};
use crate::table::Table;

const EXAMPLES: &str = "\
Examples:
  kodiakctl inspect meshtimeout mesh-timeout-all-default
  kodiakctl inspect mtp allow-all-shop -m shop
  kodiakctl inspect meshretry retry-backend -o yaml";

/// The Dataplanes a policy affects: those where it shapes some conf (for the proxy, an
/// outbound or an inbound), or where a MeshTrafficPermission decides for some callers. A
/// shadow-labelled policy lists where it would apply.
#[derive(Debug, Parser)]
#[command(name = "kodiakctl inspect", no_binary_name = true, after_help = EXAMPLES)]
struct Args {
    /// Policy type: plural, singular or short name (meshtimeouts, meshtimeout, mt, ...)
    #[arg(value_name = "POLICY-TYPE")]
    kind: String,

    /// The policy's name
    name: String,

    /// The mesh
    #[arg(short, long, default_value = "default")]
    mesh: String,

    /// Output format; table is readable text, json and yaml the API's answer
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// The options every command takes, also after the policy's name.
    #[command(flatten)]
    global: Global,
}

/// Runs `kodiakctl inspect <words...>` where the first word is a policy type.
pub async fn run(words: &[String], global: &Global) -> anyhow::Result<()> {
    let mut args = match Args::try_parse_from(words) {
        Ok(args) => args,
        // --help and --version print and exit as usual; errors too.
        Err(error) => error.exit(),
    };
    let global = Global {
        config_file: args.global.config_file.take().or_else(|| global.config_file.clone()),
        cp_address: args.global.cp_address.take().or_else(|| global.cp_address.clone()),
    };
    let kind = parse_kind(&args.kind)?;
    if !kind.is_policy() {
        anyhow::bail!(
            "{kind} is not a policy; kodiakctl inspect takes dataplanes, dataplane NAME or a policy type (meshtimeout, meshretry, ...)"
        );
    }
    let client = crate::config::client(&global)?;
    let plural = kind.plural();
    let path = ["meshes", args.mesh.as_str(), plural.as_str(), args.name.as_str(), "_resources", "dataplanes"];
    let size = kodiak_client::Page::MAX_SIZE.to_string();
    let mut items: Vec<Value> = Vec::new();
    let mut warnings: Vec<Value> = Vec::new();
    loop {
        let offset = items.len().to_string();
        let page = client
            .get_path(&path, &[("size", &size), ("offset", &offset)])
            .await
            .map_err(|error| anyhow::anyhow!("cannot inspect {}: {error}", key(kind, &args.mesh, &args.name)))?;
        let total = page["total"].as_u64().unwrap_or_default() as usize;
        let got = page["items"].as_array().cloned().unwrap_or_default();
        if warnings.is_empty() {
            warnings = page["warnings"].as_array().cloned().unwrap_or_default();
        }
        let done = got.is_empty();
        items.extend(got);
        if done || items.len() >= total {
            break;
        }
    }
    emit(&match args.output {
        Output::Table => affected_text(kind, &args.mesh, &args.name, &items) + &warnings_text(&warnings),
        output => {
            let mut answer = json!({ "total": items.len(), "items": items, "next": null });
            if !warnings.is_empty() {
                answer["warnings"] = warnings.into();
            }
            raw(output, &answer)
        }
    })
}

/// The affected Dataplanes as text: a heading, then a table.
pub fn affected_text(kind: ResourceType, mesh: &str, name: &str, items: &[Value]) -> String {
    let what = format!("{} affects", key(kind, mesh, name));
    let mut out = match items.len() {
        0 => return format!("{what} no Dataplane.\n"),
        1 => format!("{what} 1 Dataplane:\n"),
        count => format!("{what} {count} Dataplanes:\n"),
    };
    let mut table = Table::new(&["MESH", "NAME", "LABELS"]);
    for item in items {
        let labels: Vec<String> = item["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let cell = |field: &str| item[field].as_str().unwrap_or_default().to_owned();
        table.push(vec![cell("mesh"), cell("name"), labels.join(",")]);
    }
    out.push_str(&table.to_string());
    out
}

/// The server's warnings about the policy, one line each.
fn warnings_text(warnings: &[Value]) -> String {
    warnings.iter().filter_map(Value::as_str).map(|warning| format!("warning: {warning}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_warnings_follow_one_a_line() {
        let warnings = [json!("spec.to[0].targetRef: no Dataplane of the mesh serves service \"bakend\"")];
        assert_eq!(
            warnings_text(&warnings),
            "warning: spec.to[0].targetRef: no Dataplane of the mesh serves service \"bakend\"\n"
        );
        assert_eq!(warnings_text(&[]), "");
    }

    #[test]
    fn affected_dataplanes_read_as_a_table() {
        let items = [json!({"type": "Dataplane", "mesh": "shop", "name": "web-1", "labels": {"team": "a"}})];
        assert_eq!(
            affected_text(ResourceType::MeshTimeout, "shop", "t", &items),
            "MeshTimeout \"t\" in mesh \"shop\" affects 1 Dataplane:\nMESH   NAME    LABELS\nshop   web-1   team=a\n"
        );
        assert_eq!(
            affected_text(ResourceType::MeshRetry, "shop", "r", &[]),
            "MeshRetry \"r\" in mesh \"shop\" affects no Dataplane.\n"
        );
    }

    #[test]
    fn the_policy_arguments_parse_like_a_subcommand() {
        let words = ["mt", "mesh-timeout-all-default", "-m", "shop", "-o", "json"].map(String::from);
        let args = Args::try_parse_from(words).unwrap();
        assert_eq!(
            (args.kind.as_str(), args.name.as_str(), args.mesh.as_str()),
            ("mt", "mesh-timeout-all-default", "shop")
        );
        assert_eq!(args.output, Output::Json);
        assert!(Args::try_parse_from(["mt"].map(String::from)).is_err(), "the name is required");
    }
}
