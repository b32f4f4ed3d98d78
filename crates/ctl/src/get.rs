//! `kodiakctl get`: one resource or a list, as a table, YAML or JSON.

use std::time::SystemTime;

use kodiak_api::{ResourceType, Scope, to_json, to_yaml};
use kodiak_client::{ListPage, Page};
use serde_json::Value;

use crate::Global;
use crate::age::age;
use crate::kinds::{describe, key, parse_kind};
use crate::missing_mesh::check_mesh_of_empty_list;
use crate::table::Table;

const EXAMPLES: &str = "\
Examples:
  kodiakctl get meshes
  kodiakctl get dataplanes -m default
  kodiakctl get mt -A                      # MeshTimeouts of every mesh
  kodiakctl get meshtimeout backend-timeouts -o yaml
  kodiakctl get dp --size 50 --offset 100 -o json";

/// Show resources of one type.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Resource type: plural, singular or short name (meshes, dataplanes, dp,
    /// meshtimeouts, mt, ...)
    #[arg(value_name = "TYPE")]
    kind: String,

    /// Show only this resource
    name: Option<String>,

    /// The mesh (ignored for meshes, zones and global secrets)
    #[arg(short, long, default_value = "default")]
    mesh: String,

    /// List the type across every mesh
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_meshes: bool,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Fetch one page of at most this many items, 1 to 1000 (default: everything)
    #[arg(long, conflicts_with = "name", value_parser = clap::value_parser!(u32).range(1..=i64::from(Page::MAX_SIZE)))]
    size: Option<u32>,

    /// Fetch one page starting at this item (default: everything)
    #[arg(long, conflicts_with = "name")]
    offset: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let client = crate::config::client(global)?;
    if let Some(name) = &args.name {
        let key = key(kind, &args.mesh, name);
        let fetched = client.get(&key).await?.ok_or_else(|| anyhow::anyhow!(describe(&key, "not found")))?;
        print(args.output, kind, &fetched.document, std::slice::from_ref(&fetched.document));
        return Ok(());
    }
    let mesh = (!args.all_meshes).then_some(args.mesh.as_str());
    let page = if args.size.is_some() || args.offset.is_some() {
        client.list(kind, mesh, Page { size: args.size, offset: args.offset }).await?
    } else {
        let items = client.list_all(kind, mesh).await?;
        ListPage { total: items.len() as u64, items, next: None }
    };
    if let Some(mesh) = mesh.filter(|_| kind.scope() == Scope::Mesh && page.items.is_empty()) {
        check_mesh_of_empty_list(&client, mesh).await?;
    }
    let value = serde_json::to_value(&page)?;
    print(args.output, kind, &value, &page.items);
    Ok(())
}

/// `value` for YAML and JSON (Kuma's shapes), `rows` for the table.
fn print(output: Output, kind: ResourceType, value: &Value, rows: &[Value]) {
    match output {
        Output::Table => print!("{}", table(kind, rows, SystemTime::now())),
        Output::Yaml => print!("{}", to_yaml(value)),
        Output::Json => println!("{}", to_json(value)),
    }
}

/// A column: its header and how to read its cell from a document.
type Column = (&'static str, fn(&Value, SystemTime) -> String);

/// Each type shows what tells its resources apart at a glance.
fn columns(kind: ResourceType) -> Vec<Column> {
    let mut columns: Vec<Column> = Vec::new();
    if kind.scope() == Scope::Mesh {
        columns.push(("MESH", |doc, _| text(doc, "mesh")));
    }
    columns.push(("NAME", |doc, _| text(doc, "name")));
    match kind {
        ResourceType::Mesh => columns.push(("MTLS", |doc, _| {
            doc.pointer("/mtls/enabledBackend").and_then(Value::as_str).unwrap_or("off").to_owned()
        })),
        ResourceType::Dataplane => columns.push(("TAGS", |doc, _| dataplane_tags(doc))),
        ResourceType::Zone => {
            columns.push(("ENABLED", |doc, _| doc.get("enabled").and_then(Value::as_bool).unwrap_or(true).to_string()))
        }
        kind if kind.is_policy() => columns.push(("TARGETREF", |doc, _| target_ref(doc))),
        _ => {}
    }
    columns.push(("AGE", |doc, now| age(doc.get("creationTime").and_then(Value::as_str), now)));
    columns
}

fn table(kind: ResourceType, documents: &[Value], now: SystemTime) -> Table {
    let columns = columns(kind);
    let headers: Vec<&'static str> = columns.iter().map(|(header, _)| *header).collect();
    let mut table = Table::new(&headers);
    for document in documents {
        table.push(columns.iter().map(|(_, cell)| cell(document, now)).collect());
    }
    table
}

fn text(document: &Value, field: &str) -> String {
    document.get(field).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The tags of a Dataplane's inbounds and gateway, `k=v` sorted and
/// comma-separated. Reads the Dataplane's own fields, so it serves both a
/// document and an overview's `dataplane`.
pub fn dataplane_tags(fields: &Value) -> String {
    let networking = &fields["networking"];
    let inbound_tags = networking["inbound"].as_array().into_iter().flatten().map(|inbound| &inbound["tags"]);
    let gateway_tags = std::iter::once(&networking["gateway"]["tags"]);
    let mut tags: Vec<String> = inbound_tags
        .chain(gateway_tags)
        .filter_map(Value::as_object)
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    tags.sort();
    tags.dedup();
    tags.join(",")
}

/// `Mesh`, `MeshService:web`, `MeshSubset[version=v1]`: the kind a policy
/// targets and what picks the proxies. No targetRef means the whole mesh.
fn target_ref(document: &Value) -> String {
    let target = &document["spec"]["targetRef"];
    let kind = target["kind"].as_str().unwrap_or("Mesh");
    let mut out = kind.to_owned();
    if let Some(name) = target["name"].as_str() {
        out.push(':');
        out.push_str(name);
    }
    if let Some(tags) = target["tags"].as_object().filter(|tags| !tags.is_empty()) {
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
        out.push_str(&format!("[{}]", tags.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap()
    }

    #[test]
    fn meshes_show_their_mtls_backend() {
        let meshes = [
            json!({"type": "Mesh", "name": "default", "creationTime": "2025-06-01T11:59:55Z"}),
            json!({"type": "Mesh", "name": "secure", "mtls": {"enabledBackend": "ca-1"}, "creationTime": "2025-05-28T12:00:00Z"}),
        ];
        assert_eq!(
            table(ResourceType::Mesh, &meshes, now()).to_string(),
            "NAME      MTLS   AGE\ndefault   off    5s\nsecure    ca-1   4d\n"
        );
    }

    #[test]
    fn dataplanes_show_inbound_tags() {
        let dp = json!({"type": "Dataplane", "mesh": "default", "name": "web-1", "networking": {"address": "127.0.0.2",
            "inbound": [{"port": 1, "tags": {"kuma.io/service": "web", "version": "v1"}},
                        {"port": 2, "tags": {"kuma.io/service": "web"}}]}});
        assert_eq!(
            table(ResourceType::Dataplane, &[dp], now()).to_string(),
            "MESH      NAME    TAGS                             AGE\n\
             default   web-1   kuma.io/service=web,version=v1   -\n"
        );
    }

    #[test]
    fn policies_show_their_target() {
        let policy =
            |target: Value| json!({"type": "MeshTimeout", "mesh": "m", "name": "t", "spec": {"targetRef": target}});
        assert_eq!(target_ref(&policy(json!({"kind": "Mesh"}))), "Mesh");
        assert_eq!(target_ref(&policy(json!({"kind": "MeshService", "name": "web"}))), "MeshService:web");
        assert_eq!(
            target_ref(&policy(json!({"kind": "MeshSubset", "tags": {"version": "v1"}}))),
            "MeshSubset[version=v1]"
        );
        assert_eq!(target_ref(&json!({"spec": {}})), "Mesh");
        let headers = columns(ResourceType::MeshTimeout).iter().map(|(h, _)| *h).collect::<Vec<_>>();
        assert_eq!(headers, ["MESH", "NAME", "TARGETREF", "AGE"]);
    }

    #[test]
    fn zones_and_secrets() {
        let zone = json!({"type": "Zone", "name": "east", "enabled": false});
        assert_eq!(table(ResourceType::Zone, &[zone], now()).to_string(), "NAME   ENABLED   AGE\neast   false     -\n");
        let headers = columns(ResourceType::Secret).iter().map(|(h, _)| *h).collect::<Vec<_>>();
        assert_eq!(headers, ["MESH", "NAME", "AGE"]);
    }
}
