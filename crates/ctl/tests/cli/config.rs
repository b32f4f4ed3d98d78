//! `kodiakctl config control-planes` with a private config file, and
//! commands finding the current control plane through it.

use kodiak_cp::testing::start_memory;

use crate::support::Kodiakctl;

#[test]
fn added_control_planes_become_current_and_are_used() {
    let cp = start_memory();
    let ctl = Kodiakctl::new();
    ctl.run(&format!("config control-planes add --name local --address {}", cp.api_url())).ok();
    ctl.run("config control-planes add --name down --address http://127.0.0.1:1").ok();

    let list = ctl.run("config control-planes list").ok();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("CURRENT   NAME "), "{list}");
    assert!(lines[1].starts_with("          local ") && lines[1].ends_with(cp.api_url()), "{list}");
    assert!(lines[2].starts_with("*         down "), "{list}");
    assert!(ctl.run("get meshes").fails().contains("http://127.0.0.1:1/"));

    ctl.run("config control-planes use local").ok();
    assert!(ctl.run("get meshes").ok().contains("default"));
    let text = std::fs::read_to_string(ctl.config_file()).unwrap();
    assert!(text.contains("currentControlPlane: local"), "{text}");
}

#[test]
fn adding_checks_the_address_and_names_are_unique_unless_overwritten() {
    let ctl = Kodiakctl::new();
    let stderr = ctl.run("config control-planes add --name x --address 127.0.0.1:5681").fails();
    assert!(stderr.contains("invalid control plane address"), "{stderr}");
    assert!(stderr.contains("did you mean http://127.0.0.1:5681?"), "{stderr}");
    assert!(!ctl.config_file().exists(), "nothing is written for a bad address");

    ctl.run("config control-planes add --name x --address http://127.0.0.1:5681").ok();
    let stderr = ctl.run("config control-planes add --name x --address http://10.0.0.1:5681").fails();
    assert!(stderr.contains("--overwrite"), "{stderr}");
    ctl.run("config control-planes add --name x --address http://10.0.0.1:5681 --overwrite").ok();
    assert!(ctl.run("config control-planes list").ok().contains("http://10.0.0.1:5681"));
}

#[test]
fn removing_the_current_control_plane_falls_back_to_the_default_address() {
    let ctl = Kodiakctl::new();
    ctl.run("config control-planes add --name x --address http://127.0.0.1:5681").ok();
    let stdout = ctl.run("config control-planes remove x").ok();
    assert!(stdout.contains("No control plane is current now"), "{stdout}");
    assert_eq!(ctl.run("config control-planes list").ok(), "CURRENT   NAME   ADDRESS\n");
    let stderr = ctl.run("config control-planes use x").fails();
    assert!(stderr.contains("no control plane named \"x\""), "{stderr}");
}

#[test]
fn unknown_fields_in_the_config_file_are_named() {
    let ctl = Kodiakctl::new();
    std::fs::write(ctl.config_file(), "curentControlPlane: x\ncontrolPlanes: []\n").unwrap();
    for command in ["get meshes", "config control-planes list"] {
        let stderr = ctl.run(command).fails();
        assert!(stderr.contains(&ctl.config_file().display().to_string()), "{command}: {stderr}");
        assert!(stderr.contains("unknown field `curentControlPlane`"), "{command}: {stderr}");
    }
    std::fs::write(ctl.config_file(), "controlPlanes:\n- name: x\n  adress: http://127.0.0.1:5681\n").unwrap();
    let stderr = ctl.run("config control-planes list").fails();
    assert!(stderr.contains("unknown field `adress`"), "{stderr}");
}
