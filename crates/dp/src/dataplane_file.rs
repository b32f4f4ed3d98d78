//! `--dataplane-file`: render the template, then read and validate the
//! Dataplane with the control plane's own rules before anything is sent,
//! so a mistake shows up at once with its field path.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use kodiak_api::{Resource, ResourceType, parse_document, template};

/// A Dataplane read from a file, ready for `POST /bootstrap`.
#[derive(Debug)]
pub struct LocalDataplane {
    pub mesh: String,
    pub name: String,
    /// The document (after substitution), for the port check.
    pub document: serde_json::Value,
    /// The document as JSON text (after substitution).
    pub json: String,
    /// `networking.admin.port`, the default for `--admin-port`.
    pub admin_port: Option<u16>,
}

pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> anyhow::Result<LocalDataplane> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read dataplane file {}", path.display()))?;
    read(&text, vars).with_context(|| format!("dataplane file {}", path.display()))
}

/// Renders and validates one Dataplane document.
pub fn read(text: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<LocalDataplane> {
    let rendered = template::render(text, vars).map_err(|missing| anyhow::anyhow!(missing.hint("--dataplane-var")))?;
    for name in &rendered.unused {
        tracing::warn!("--dataplane-var {name} is not used by the dataplane file");
    }
    let document = parse_document(&rendered.text)?;
    let resource = match Resource::from_document(&document) {
        Ok(resource) => resource,
        Err(violations) => {
            let lines: Vec<String> = violations.iter().map(|v| format!("  * {v}")).collect();
            bail!("it is not a valid Dataplane:\n{}", lines.join("\n"));
        }
    };
    if resource.key.kind != ResourceType::Dataplane {
        bail!("it holds a {}, not a Dataplane", resource.key.kind);
    }
    let admin_port = document["networking"]["admin"]["port"].as_u64().and_then(|port| u16::try_from(port).ok());
    Ok(LocalDataplane {
        mesh: resource.key.mesh.clone().unwrap_or_default(),
        name: resource.key.name.clone(),
        json: serde_json::to_string(&document)?,
        document,
        admin_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  admin: {port: {{ admin }}}
  inbound:
  - port: 10001
    servicePort: 8080
    tags: {kuma.io/service: web}
";

    #[test]
    fn renders_validates_and_keeps_the_document_as_json() {
        let vars = BTreeMap::from([("name".to_owned(), "web-1".to_owned()), ("admin".to_owned(), "9902".to_owned())]);
        let dataplane = read(TEMPLATE, &vars).unwrap();
        assert_eq!((dataplane.mesh.as_str(), dataplane.name.as_str()), ("default", "web-1"));
        assert_eq!(dataplane.admin_port, Some(9902));
        let json: serde_json::Value = serde_json::from_str(&dataplane.json).unwrap();
        assert_eq!(json["networking"]["inbound"][0]["tags"]["kuma.io/service"], "web");
    }

    #[test]
    fn every_violation_is_listed_with_its_field_path() {
        let text = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - port: 99999\n";
        let message = format!("{:#}", read(text, &BTreeMap::new()).unwrap_err());
        assert!(message.contains("not a valid Dataplane"), "{message}");
        assert!(message.contains("  * networking.address: "), "{message}");
        assert!(message.contains("  * networking.inbound[0].port: "), "{message}");
        assert!(message.contains("  * networking.inbound[0].tags: "), "{message}");
    }

    #[test]
    fn other_resource_types_are_refused() {
        let message = read("type: Mesh\nname: default\n", &BTreeMap::new()).unwrap_err().to_string();
        assert!(message.contains("not a Dataplane"), "{message}");
    }
}
