//! Reading manifests for `apply` and `validate`: one code path, so what
//! `validate` accepts is exactly what `apply` sends, and both check with
//! kodiak_api, the code the control plane runs.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::Read;

use anyhow::Context;
use kodiak_api::{Resource, ResourceKey, Violations, parse_documents, template};
use kodiak_xds_gen::policies::mesh_proxy_patch;
use serde_json::Value;

/// Where the documents come from and the values for their placeholders.
#[derive(Debug, clap::Args)]
pub struct Input {
    /// File of resource documents, YAML or JSON, several separated by `---`;
    /// `-` reads standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,

    /// Replaces `{{ KEY }}` in the file with VALUE (repeatable)
    #[arg(short = 'v', long = "var", value_name = "KEY=VALUE", value_parser = template::parse_assignment)]
    vars: Vec<(String, String)>,
}

/// Reads, substitutes, parses and validates every document, and refuses a
/// resource named twice. Either all are valid or the error reports every
/// problem of every document.
pub fn load(input: &Input) -> anyhow::Result<Vec<Resource>> {
    let text = read(&input.file)?;
    let values: BTreeMap<String, String> = input.vars.iter().cloned().collect();
    // Unused values are fine here: one set of `-v` often serves several files.
    let text = template::render(&text, &values)
        .map_err(|missing| anyhow::anyhow!(missing.hint("-v")))
        .with_context(|| format!("cannot fill in {}", source(&input.file)))?
        .text;
    let documents =
        parse_documents(&text).with_context(|| format!("{} is not valid YAML or JSON", source(&input.file)))?;
    if documents.is_empty() {
        anyhow::bail!("{} holds no resource documents", source(&input.file));
    }
    let mut resources = Vec::new();
    let mut report = String::new();
    let mut first_seen = BTreeMap::new();
    for (index, document) in documents.iter().enumerate() {
        let number = index + 1;
        match check(document, number, &mut first_seen) {
            Ok(resource) => resources.push(resource),
            Err(problems) => report.push_str(&format!("\ndocument {number}{}:{problems}", identity(document))),
        }
    }
    if !report.is_empty() {
        let (invalid, total) = (documents.len() - resources.len(), documents.len());
        let which = if total == 1 { "the document".to_owned() } else { format!("{invalid} of {total} documents") };
        let verb = if invalid == 1 { "is" } else { "are" };
        anyhow::bail!("{which} in {} {verb} invalid:{report}", source(&input.file));
    }
    Ok(resources)
}

/// Document `number` as a resource, or what is wrong with it: one line per
/// violation, or the earlier document that names the same resource. A
/// second document with the same type, mesh and name would make `apply`
/// create the resource and at once overwrite it, which is never meant.
fn check(document: &Value, number: usize, first_seen: &mut BTreeMap<ResourceKey, usize>) -> Result<Resource, String> {
    let lines = |violations: Violations| {
        let lines = violations.iter().map(|violation| {
            let field = if violation.field.is_empty() { "(document)" } else { &violation.field };
            format!("\n  * {field}: {}", violation.reason)
        });
        lines.collect::<String>()
    };
    let resource = Resource::from_document(document).map_err(lines)?;
    // The checks of Envoy parts (MeshProxyPatch values) the control plane makes too.
    let envoy_parts = mesh_proxy_patch::check_resource(&resource);
    if !envoy_parts.is_empty() {
        return Err(lines(envoy_parts));
    }
    match first_seen.entry(resource.key.clone()) {
        Entry::Occupied(first) => Err(format!(" repeats document {}", first.get())),
        Entry::Vacant(slot) => {
            slot.insert(number);
            Ok(resource)
        }
    }
}

fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))
    }
}

fn source(file: &str) -> String {
    if file == "-" { "standard input".to_owned() } else { file.to_owned() }
}

/// ` (MeshTimeout "x")`, from whatever the document says about itself,
/// even when that is what is wrong, so the user finds it in a long file.
fn identity(document: &Value) -> String {
    let text = |field: &str| document.get(field).and_then(Value::as_str);
    match (text("type"), text("name")) {
        (Some(kind), Some(name)) => format!(" ({kind} {name:?})"),
        (Some(kind), None) => format!(" ({kind})"),
        (None, Some(name)) => format!(" ({name:?})"),
        (None, None) => String::new(),
    }
}
