//! `kodiakctl inspect dataplane NAME`: which policies shape the proxy
//! (`--type rules`), the Envoy configuration the control plane generated
//! for it (`--type config`) and its Envoy's own config dump
//! (`--type config-dump`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{emit, raw};
use crate::Global;
use crate::get::Output;
use crate::table::Table;

const EXAMPLES: &str = "\
Examples:
  kodiakctl inspect dataplane web-1
  kodiakctl inspect dataplane web-1 -m shop --shadow
  kodiakctl inspect dataplane web-1 --type rules -o yaml
  kodiakctl inspect dataplane web-1 --type config
  kodiakctl inspect dataplane web-1 --type config-dump > web-1-envoy.json";

/// Which policies shape a proxy, and the Envoy configuration it runs
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The Dataplane's name
    name: String,

    /// The mesh
    #[arg(short, long, default_value = "default")]
    mesh: String,

    /// What to show: rules (per policy type, the conf for the proxy, each outbound and each
    /// inbound, with the policies it comes from), config (the Envoy configuration the control
    /// plane last sent to the sidecar, private keys redacted), config-dump (the sidecar Envoy's
    /// own /config_dump, fetched by the control plane from the Envoy admin API at
    /// 127.0.0.1:<networking.admin.port>)
    #[arg(long = "type", value_enum, default_value_t = View::Rules)]
    view: View,

    /// With --type rules: count policies labelled kuma.io/effect: shadow as if in force
    #[arg(long)]
    shadow: bool,

    /// With --type config-dump: include the endpoints (EDS) Envoy holds
    #[arg(long)]
    include_eds: bool,

    /// Output format; table is readable text, json and yaml the API's answer
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum View {
    Rules,
    Config,
    ConfigDump,
}

pub async fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    if args.shadow && args.view != View::Rules {
        anyhow::bail!("--shadow applies only to --type rules");
    }
    if args.include_eds && args.view != View::ConfigDump {
        anyhow::bail!("--include-eds applies only to --type config-dump");
    }
    let client = crate::config::client(global)?;
    let (segment, query): (&str, Vec<(&str, &str)>) = match args.view {
        View::Rules => ("_rules", if args.shadow { vec![("shadow", "true")] } else { Vec::new() }),
        View::Config => ("_config", Vec::new()),
        View::ConfigDump => ("xds", if args.include_eds { vec![("include_eds", "true")] } else { Vec::new() }),
    };
    let answer = client.get_path(&["meshes", &args.mesh, "dataplanes", &args.name, segment], &query).await?;
    emit(&match (args.output, args.view) {
        (Output::Table, View::Rules) => {
            let dataplane = client.get_path(&["meshes", &args.mesh, "dataplanes", &args.name], &[]).await?;
            rules_text(&answer, &called_services(&dataplane))
        }
        (Output::Table, View::Config) => config_text(&answer),
        // Envoy's own format: JSON, as its admin API answers.
        (Output::Table, View::ConfigDump) => raw(Output::Json, &answer),
        (output, _) => raw(output, &answer),
    })
}

const HEADERS: [&str; 4] = ["TARGET", "CALLERS", "ORIGINS", "CONF"];

/// The services a Dataplane's outbounds call (`kuma.io/service` tags).
fn called_services(dataplane: &Value) -> BTreeSet<String> {
    let outbounds = list(&dataplane["networking"]["outbound"]);
    outbounds.iter().filter_map(|outbound| outbound["tags"]["kuma.io/service"].as_str().map(str::to_owned)).collect()
}

/// A `_rules` answer as text: per policy type, a table of what each target
/// (the proxy, an outbound, an inbound) gets and from which policies, then
/// the type's warnings. Confs toward services the proxy does not call
/// (`called`: its outbounds' services) are marked so.
pub fn rules_text(answer: &Value, called: &BTreeSet<String>) -> String {
    let mut out = String::new();
    let resource = &answer["resource"];
    out.push_str(&format!(
        "Dataplane {:?} in mesh {:?}{}\n",
        text(&resource["name"]),
        text(&resource["mesh"]),
        if answer["shadow"] == true { " (shadow policies counted)" } else { "" }
    ));
    let rules = answer["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    if rules.is_empty() {
        out.push_str("\nNo policy applies to this proxy.\n");
    }
    for rule in rules {
        let mut table = Table::new(&HEADERS);
        if let Some(proxy) = rule.get("proxyRule").filter(|rule| rule.is_object()) {
            table.push(row("proxy".into(), "-".into(), proxy));
        }
        for to in list(&rule["toRules"]) {
            table.push(row(outbound(&to["matchers"], called), "-".into(), to));
        }
        for inbound in list(&rule["fromRules"]) {
            let target = inbound_name(&inbound["inbound"]);
            for from in list(&inbound["rules"]) {
                table.push(row(target.clone(), callers(&from["matchers"]), from));
            }
        }
        for inbound in list(&rule["inboundRules"]) {
            let target = inbound_name(&inbound["inbound"]);
            for matched in list(&inbound["rules"]) {
                let origins: Vec<&Value> = list(&matched["origin"]).iter().map(|o| &o["resourceMeta"]).collect();
                let conf = matched["conf"].as_array().and_then(|confs| confs.last()).unwrap_or(&Value::Null);
                table.push(vec![
                    target.clone(),
                    format!("match {}", compact(&matched["match"])),
                    names(origins.into_iter()),
                    compact(conf),
                ]);
            }
        }
        out.push_str(&format!("\n{}\n{table}", text(&rule["type"])));
        for warning in list(&rule["warnings"]) {
            out.push_str(&format!("warning: {}\n", text(warning)));
        }
    }
    out
}

fn row(target: String, callers: String, rule: &Value) -> Vec<String> {
    vec![target, callers, names(list(&rule["origin"]).iter()), compact(&rule["conf"])]
}

/// `outbound backend`, `outbound route my-route`, `outbound *` (every other
/// destination); `outbound db (not called)` for a service no outbound names.
fn outbound(matchers: &Value, called: &BTreeSet<String>) -> String {
    let matchers = list(matchers);
    match matchers.first() {
        None => "outbound *".into(),
        Some(first) if first["key"] == "meshhttproute" => format!("outbound route {}", text(&first["value"])),
        Some(_) => {
            let services: Vec<&str> = matchers.iter().map(|m| text(&m["value"])).collect();
            let note = if services.iter().any(|service| called.contains(*service)) { "" } else { " (not called)" };
            format!("outbound {}{note}", services.join(","))
        }
    }
}

/// `inbound 10001` or `inbound 10001 (http)` for a named inbound.
fn inbound_name(inbound: &Value) -> String {
    let port = inbound["port"].as_u64().unwrap_or_default();
    match inbound["name"].as_str() {
        Some(name) => format!("inbound {port} ({name})"),
        None => format!("inbound {port}"),
    }
}

/// `*` for every caller, else the tag conditions (`!` for a tag the caller must not carry).
fn callers(matchers: &Value) -> String {
    let conditions: Vec<String> = list(matchers)
        .iter()
        .map(|m| format!("{}{}={}", if m["not"] == true { "!" } else { "" }, text(&m["key"]), text(&m["value"])))
        .collect();
    if conditions.is_empty() { "*".into() } else { conditions.join(",") }
}

fn names<'a>(metas: impl Iterator<Item = &'a Value>) -> String {
    let names: Vec<&str> = metas.map(|meta| meta["name"].as_str().unwrap_or("?")).collect();
    if names.is_empty() { "-".into() } else { names.join(",") }
}

/// A `_config` answer as text: its generation, then each resource's name
/// by type, then the whole configuration as YAML.
pub fn config_text(answer: &Value) -> String {
    let resource = &answer["resource"];
    let mut out = format!(
        "# Envoy configuration generated for Dataplane {:?} in mesh {:?}, generation {}\n",
        text(&resource["name"]),
        text(&resource["mesh"]),
        answer["generation"]
    );
    let mut table = Table::new(&["TYPE", "NAME", "VERSION"]);
    for (group, items) in answer["xds"].as_object().into_iter().flatten() {
        for item in list(items) {
            table.push(vec![group.clone(), text(&item["name"]).into(), text(&item["version"]).into()]);
        }
    }
    for line in table.to_string().lines() {
        out.push_str(&format!("# {line}\n"));
    }
    out.push_str(&kodiak_api::to_yaml(&answer["xds"]));
    out
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// JSON on one line.
fn compact(value: &Value) -> String {
    if value.is_null() { "-".into() } else { value.to_string() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(name: &str) -> Value {
        json!({"type": "MeshTimeout", "mesh": "shop", "name": name, "labels": {}})
    }

    #[test]
    fn rules_read_as_a_table_per_policy_type() {
        let answer = json!({
            "resource": {"type": "Dataplane", "mesh": "shop", "name": "web-1", "labels": {}},
            "shadow": false,
            "rules": [{
                "type": "MeshTimeout",
                "toRules": [
                    {"matchers": [{"key": "kuma.io/service", "value": "backend", "not": false}],
                     "conf": {"idleTimeout": "1s"}, "origin": [meta("all"), meta("backend")]},
                    {"matchers": [{"key": "kuma.io/service", "value": "db", "not": false}],
                     "conf": {"idleTimeout": "2s"}, "origin": [meta("all"), meta("db")]},
                    {"matchers": [], "conf": {"idleTimeout": "1h"}, "origin": [meta("all")]},
                ],
                "fromRules": [{"inbound": {"port": 10001, "tags": {}}, "rules": [
                    {"matchers": [{"key": "kuma.io/service", "value": "other", "not": true}],
                     "conf": {"idleTimeout": "2h"}, "origin": [meta("all")]},
                ]}],
                "inboundRules": [], "toResourceRules": [],
                "warnings": ["something to know"],
            }],
        });
        let called = BTreeSet::from(["backend".to_owned()]);
        assert_eq!(
            rules_text(&answer, &called),
            "Dataplane \"web-1\" in mesh \"shop\"\n\
             \n\
             MeshTimeout\n\
             TARGET                     CALLERS                  ORIGINS       CONF\n\
             outbound backend           -                        all,backend   {\"idleTimeout\":\"1s\"}\n\
             outbound db (not called)   -                        all,db        {\"idleTimeout\":\"2s\"}\n\
             outbound *                 -                        all           {\"idleTimeout\":\"1h\"}\n\
             inbound 10001              !kuma.io/service=other   all           {\"idleTimeout\":\"2h\"}\n\
             warning: something to know\n"
        );
    }

    #[test]
    fn a_proxy_nothing_applies_to_says_so() {
        let answer = json!({"resource": {"mesh": "m", "name": "a"}, "shadow": true, "rules": []});
        assert_eq!(
            rules_text(&answer, &BTreeSet::new()),
            "Dataplane \"a\" in mesh \"m\" (shadow policies counted)\n\nNo policy applies to this proxy.\n"
        );
    }

    #[test]
    fn config_lists_resources_then_the_yaml() {
        let answer = json!({"resource": {"mesh": "m", "name": "a"}, "generation": 3, "xds": {
            "clusters": [{"name": "backend", "version": "00ff", "resource": {"name": "backend"}}],
            "listeners": [],
        }});
        let text = config_text(&answer);
        assert!(text.starts_with("# Envoy configuration generated for Dataplane \"a\" in mesh \"m\", generation 3\n"));
        assert!(text.contains("# clusters   backend   00ff\n"), "{text}");
        assert!(text.contains("clusters:\n- name: backend\n"), "{text}");
    }
}
