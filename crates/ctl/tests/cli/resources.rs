//! apply, get, delete and inspect against a real control plane.

use kodiak_cp::testing::{TestControlPlane, start_memory};
use serde_json::Value;

use crate::support::{DEMO, Kodiakctl};

/// A control plane holding [`DEMO`], and a user pointed at it.
fn demo() -> (TestControlPlane, Kodiakctl) {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    ctl.run(&format!("apply -f {}", ctl.file("demo.yaml", DEMO))).ok();
    (cp, ctl)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn apply_creates_then_updates() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    assert_eq!(
        ctl.run(&format!("apply -f {}", ctl.file("demo.yaml", DEMO))).ok(),
        "Mesh \"demo\" created\n\
         Dataplane \"web-1\" created in mesh \"demo\"\n\
         MeshTimeout \"backend-timeouts\" created in mesh \"demo\"\n"
    );
    let changed = DEMO.replace("connectionTimeout: 2s", "connectionTimeout: 7s");
    let stdout = ctl.run_with_stdin("apply -f -", &changed).ok();
    assert!(stdout.contains("MeshTimeout \"backend-timeouts\" updated in mesh \"demo\"\n"), "{stdout}");
    let document = json(&ctl.run("get mt backend-timeouts -m demo -o json").ok());
    assert_eq!(document["spec"]["to"][0]["default"]["connectionTimeout"], "7s");
}

#[test]
fn get_prints_tables_yaml_and_json() {
    let (_cp, ctl) = demo();
    let meshes = ctl.run("get meshes").ok();
    let header = meshes.lines().next().unwrap();
    assert!(header.starts_with("NAME ") && header.contains("   MTLS   ") && header.ends_with("AGE"), "{meshes}");
    assert!(meshes.lines().any(|l| l.starts_with("demo ") && l.contains(" off ")), "{meshes}");

    let dataplanes = ctl.run("get dp -m demo").ok();
    assert!(dataplanes.starts_with("MESH "), "{dataplanes}");
    assert!(dataplanes.contains("kuma.io/protocol=http,kuma.io/service=web,version=v1"), "{dataplanes}");

    let policies = ctl.run("get meshtimeouts -A").ok();
    let row = policies.lines().find(|l| l.contains("backend-timeouts")).unwrap_or_default();
    assert!(row.starts_with("demo ") && row.contains(" Mesh "), "{policies}");

    let list: Value = serde_yaml::from_str(&ctl.run("get mt -m demo -o yaml").ok()).unwrap();
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
    assert!(names.contains(&"backend-timeouts"), "{list}");
    assert_eq!(list["total"], names.len());
    assert_eq!(list["next"], Value::Null);

    let one: Value = serde_yaml::from_str(&ctl.run("get dataplane web-1 -m demo -o yaml").ok()).unwrap();
    assert_eq!(one["type"], "Dataplane");
    assert_eq!(one["networking"]["address"], "127.0.0.2");
}

#[test]
fn get_pages_when_asked() {
    let (_cp, ctl) = demo();
    let first = json(&ctl.run("get meshes --size 1 -o json").ok());
    assert_eq!(first["items"].as_array().unwrap().len(), 1, "{first}");
    assert!(first["total"].as_u64().unwrap() >= 2, "{first}");
    assert!(first["next"].is_string(), "{first}");
    let second = json(&ctl.run("get meshes --size 1 --offset 1 -o json").ok());
    assert_ne!(first["items"][0]["name"], second["items"][0]["name"]);
}

#[test]
fn delete_removes_and_missing_resources_are_named() {
    let (_cp, ctl) = demo();
    assert_eq!(
        ctl.run("delete meshtimeout backend-timeouts -m demo").ok(),
        "Deleted MeshTimeout \"backend-timeouts\" in mesh \"demo\"\n"
    );
    let missing = "Error: MeshTimeout \"backend-timeouts\" not found in mesh \"demo\"\n";
    assert_eq!(ctl.run("get mt backend-timeouts -m demo").fails(), missing);
    assert_eq!(ctl.run("delete mt backend-timeouts -m demo").fails(), missing);
}

#[test]
fn an_invalid_file_changes_nothing() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    let file = ctl.file("mixed.yaml", "type: Mesh\nname: fresh\n---\ntype: Mesh\nname: Not Valid\n");
    let stderr = ctl.run(&format!("apply -f {file}")).fails();
    assert!(stderr.contains("document 2 (Mesh \"Not Valid\"):\n  * name: "), "{stderr}");
    assert_eq!(ctl.run("get mesh fresh").fails(), "Error: Mesh \"fresh\" not found\n");
}

#[test]
fn the_servers_refusal_is_shown() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    // The Mesh "other" goes through; the Dataplane names a mesh that does not exist.
    let orphans = DEMO.replace("mesh: demo", "mesh: nope").replace("name: demo\n", "name: other\n");
    let stderr = ctl.run(&format!("apply -f {}", ctl.file("orphans.yaml", &orphans))).fails();
    let expected = "Error: Dataplane \"web-1\" in mesh \"nope\" was not applied \
                    (the document after it was not sent): ";
    assert!(stderr.starts_with(expected), "{stderr}");
    assert!(stderr.lines().next().unwrap().len() > expected.len() && stderr.contains("nope"), "{stderr}");
    ctl.run("get mesh other").ok();
}

#[test]
fn inspect_shows_dataplanes_offline_until_they_connect() {
    let (_cp, ctl) = demo();
    let table = ctl.run("inspect dataplanes -m demo").ok();
    let mut lines = table.lines();
    let headers: Vec<&str> = lines.next().unwrap().split("   ").map(str::trim).filter(|h| !h.is_empty()).collect();
    assert_eq!(
        headers,
        [
            "MESH",
            "NAME",
            "TAGS",
            "STATUS",
            "LAST CONNECTED",
            "ACKS",
            "NACKS",
            "MTLS",
            "CERT EXPIRY",
            "LAST NACK",
            "AGE"
        ],
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("demo ") && row.contains(" web-1 "), "{table}");
    assert!(row.contains(" Offline ") && row.contains(" never ") && row.contains(" 0 "), "{table}");
    let cells: Vec<&str> = row.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells[7..10], ["-", "-", "-"], "no mesh certificate, no NACK: {table}");
}

#[test]
fn apply_sends_nothing_when_a_resource_is_named_twice() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    let twice = "type: Mesh\nname: fresh\n---\ntype: Mesh\nname: fresh\nlabels: {team: core}\n";
    let stderr = ctl.run(&format!("apply -f {}", ctl.file("twice.yaml", twice))).fails();
    assert!(stderr.contains("document 2 (Mesh \"fresh\"): repeats document 1"), "{stderr}");
    assert_eq!(ctl.run("get mesh fresh").fails(), "Error: Mesh \"fresh\" not found\n");
}

#[test]
fn lists_in_a_mesh_that_does_not_exist_fail() {
    let (_cp, ctl) = demo();
    let missing = "Error: mesh \"nosuch\" does not exist\n";
    for command in
        ["get dp -m nosuch", "get mt -m nosuch -o json", "get dp -m nosuch --size 5", "inspect dataplanes -m nosuch"]
    {
        assert_eq!(ctl.run(command).fails(), missing, "{command}");
    }
    // An empty list is fine where it is the answer: an existing mesh, every
    // mesh, a global type.
    assert_eq!(ctl.run("get dp -m default").ok(), "MESH   NAME   TAGS   AGE\n");
    assert_eq!(ctl.run("get dp -m demo --offset 5").ok(), "MESH   NAME   TAGS   AGE\n");
    assert!(ctl.run("inspect dataplanes -m default").ok().starts_with("MESH "));
    ctl.run("get zones").ok();
    ctl.run("get mt -A -m nosuch").ok();
}
