//! Commands that need no control plane: `validate`, `apply --dry-run`, and
//! what happens when there is none.

use crate::support::{DEMO, Kodiakctl};

/// Port 1 on loopback is never served: a command that tries it fails.
const NOBODY: &str = "http://127.0.0.1:1";

const BAD: &str = "\
type: Mesh
name: Bad Name
labels:
  team: 5
---
type: Mesh
name: fine
---
type: MeshTimeout
name: no-mesh
spec:
  targetRef: {kind: Mesh}
";

#[test]
fn validate_accepts_good_documents_without_a_control_plane() {
    let ctl = Kodiakctl::against(NOBODY);
    let file = ctl.file("demo.yaml", DEMO);
    assert_eq!(ctl.run(&format!("validate -f {file}")).ok(), "3 documents valid\n");
    let json = r#"{"type": "Mesh", "name": "from-json"}"#;
    assert_eq!(ctl.run_with_stdin("validate -f -", json).ok(), "1 document valid\n");
}

#[test]
fn validate_reports_every_violation_with_its_document_and_field() {
    let ctl = Kodiakctl::new();
    let stderr = ctl.run(&format!("validate -f {}", ctl.file("bad.yaml", BAD))).fails();
    assert!(stderr.contains("2 of 3 documents"), "{stderr}");
    assert!(stderr.contains("document 1 (Mesh \"Bad Name\"):"), "{stderr}");
    assert!(stderr.contains("  * name: "), "{stderr}");
    assert!(stderr.contains("  * labels[\"team\"]: "), "{stderr}");
    assert!(stderr.contains("document 3 (MeshTimeout \"no-mesh\"):\n  * mesh: must be defined"), "{stderr}");
    assert!(!stderr.contains("document 2"), "{stderr}");
}

#[test]
fn validate_checks_a_mesh_proxy_patchs_envoy_values_as_the_control_plane_does() {
    let ctl = Kodiakctl::against(NOBODY);
    let patch = "\
type: MeshProxyPatch
mesh: default
name: typo
spec:
  targetRef: {kind: Mesh}
  default:
    appendModifications:
    - cluster: {operation: Patch, match: {name: backend}, value: 'conectTimeout: 2s'}
";
    let stderr = ctl.run(&format!("validate -f {}", ctl.file("patch.yaml", patch))).fails();
    assert!(stderr.contains("document 1 (MeshProxyPatch \"typo\"):"), "{stderr}");
    assert!(stderr.contains("  * spec.default.appendModifications[0].cluster.value: "), "{stderr}");
    assert!(stderr.contains("conectTimeout"), "{stderr}");
    let fixed = patch.replace("conectTimeout", "connectTimeout");
    assert_eq!(ctl.run(&format!("validate -f {}", ctl.file("fixed.yaml", &fixed))).ok(), "1 document valid\n");
}

#[test]
fn validate_refuses_a_mesh_name_over_63_characters() {
    let ctl = Kodiakctl::new();
    let file = ctl.file("long.yaml", &format!("type: Mesh\nname: {}\n", "m".repeat(64)));
    let stderr = ctl.run(&format!("validate -f {file}")).fails();
    assert!(stderr.contains("  * name: cannot be longer than 63 characters"), "{stderr}");
}

#[test]
fn validate_reports_syntax_errors_with_line_and_column() {
    let ctl = Kodiakctl::new();
    let file = ctl.file("broken.yaml", "type: Mesh\nname: [unclosed\n");
    let stderr = ctl.run(&format!("validate -f {file}")).fails();
    assert!(stderr.contains("is not valid YAML or JSON: line "), "{stderr}");
    assert!(stderr.contains(", column "), "{stderr}");
}

#[test]
fn placeholders_are_filled_from_vars_and_missing_ones_are_named() {
    let ctl = Kodiakctl::new();
    let file = ctl.file("template.yaml", "type: Mesh\nname: {{ name }}\nlabels: {team: '{{team}}'}\n");
    let stderr = ctl.run(&format!("validate -f {file} -v name=web")).fails();
    assert!(stderr.contains("no value for {{ team }}"), "{stderr}");
    ctl.run(&format!("validate -f {file} -v name=web --var team=core")).ok();
    let yaml = ctl.run(&format!("apply -f {file} -v name=web -v team=core --dry-run")).ok();
    assert_eq!(yaml, "type: Mesh\nname: web\nlabels:\n  team: core\n");
}

#[test]
fn dry_run_separates_documents_and_needs_no_control_plane() {
    let ctl = Kodiakctl::against(NOBODY);
    let yaml = ctl.run(&format!("apply --dry-run -f {}", ctl.file("demo.yaml", DEMO))).ok();
    assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
    assert!(yaml.contains("name: backend-timeouts"), "{yaml}");
}

#[test]
fn a_missing_control_plane_is_explained() {
    let stderr = Kodiakctl::against(NOBODY).run("get meshes").fails();
    assert!(stderr.contains("cannot connect to the control plane at http://127.0.0.1:1/"), "{stderr}");
    assert!(stderr.contains("kodiak-cp run"), "{stderr}");
    assert!(stderr.contains("kodiakctl config control-planes add"), "{stderr}");
}

#[test]
fn unknown_types_list_the_known_ones() {
    let stderr = Kodiakctl::against(NOBODY).run("get meshtimeoutz").fails();
    assert!(stderr.contains("unknown resource type \"meshtimeoutz\""), "{stderr}");
    assert!(stderr.contains("meshtimeouts (mt)"), "{stderr}");
}

#[test]
fn validate_refuses_a_resource_named_twice() {
    let ctl = Kodiakctl::new();
    let twice = format!("{DEMO}---\ntype: Mesh\nname: other\n---\ntype: Mesh\nname: demo\nlabels: {{team: core}}\n");
    let stderr = ctl.run(&format!("validate -f {}", ctl.file("twice.yaml", &twice))).fails();
    assert!(stderr.contains("1 of 5 documents in "), "{stderr}");
    assert!(stderr.ends_with("\ndocument 5 (Mesh \"demo\"): repeats document 1\n"), "{stderr}");
    // The same name in another mesh, or as another type, is another resource.
    let timeout = |mesh: &str| {
        format!(
            "type: MeshTimeout\nmesh: {mesh}\nname: same\nspec:\n  targetRef: {{kind: Mesh}}\n  \
             to: [{{targetRef: {{kind: Mesh}}, default: {{connectionTimeout: 2s}}}}]\n"
        )
    };
    let meshes = "type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n---\ntype: Mesh\nname: same\n";
    let distinct = format!("{meshes}---\n{}---\n{}", timeout("a"), timeout("b"));
    assert_eq!(ctl.run(&format!("validate -f {}", ctl.file("distinct.yaml", &distinct))).ok(), "5 documents valid\n");
}

#[test]
fn an_address_without_a_scheme_is_shown_with_one() {
    let stderr = Kodiakctl::against("127.0.0.1:5681").run("get meshes").fails();
    assert!(stderr.contains("invalid control plane address \"127.0.0.1:5681\""), "{stderr}");
    assert!(stderr.contains("has no scheme") && stderr.contains("did you mean http://127.0.0.1:5681?"), "{stderr}");
    assert!(!stderr.contains("relative URL"), "{stderr}");
}

#[test]
fn page_sizes_are_checked_before_asking() {
    let ctl = Kodiakctl::against(NOBODY);
    for size in ["0", "1001", "5000"] {
        let run = ctl.run(&format!("get meshes --size {size}"));
        assert_eq!(run.code, 2, "--size {size}: {run:?}");
        assert!(run.stderr.contains(&format!("invalid value '{size}' for '--size <SIZE>'")), "{}", run.stderr);
        assert!(run.stderr.contains("1..=1000"), "{}", run.stderr);
    }
    // A size in range passes and reaches for the control plane.
    assert!(ctl.run("get meshes --size 1000").fails().contains("cannot connect"));
}
