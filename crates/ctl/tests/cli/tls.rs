//! kodiakctl against the control plane's HTTPS API, whose generated
//! certificate no system trusts: `--ca-cert-file`, `--skip-verify`, and
//! what a user sees without either.

use kodiak_cp::testing::{TestControlPlane, start_memory};

use crate::support::{DEMO, Kodiakctl};

fn https_url(cp: &TestControlPlane) -> &str {
    cp.https_api_url().expect("the HTTPS API is on by default")
}

/// The control plane's certificate file as text.
fn cert_pem(cp: &TestControlPlane) -> String {
    std::fs::read_to_string(cp.tls_cert_file().expect("a generated certificate")).unwrap()
}

#[test]
fn a_control_plane_added_with_its_ca_is_used_over_https_even_after_the_file_is_gone() {
    let cp = start_memory();
    let ctl = Kodiakctl::new();
    let ca_file = ctl.file("kodiak-cp.crt", &cert_pem(&cp));
    ctl.run(&format!("config control-planes add --name tls --address {} --ca-cert-file {ca_file}", https_url(&cp)))
        .ok();
    std::fs::remove_file(&ca_file).unwrap();

    let manifests = ctl.file("demo.yaml", DEMO);
    ctl.run(&format!("apply -f {manifests}")).ok();
    let meshes = ctl.run("get meshes").ok();
    assert!(meshes.lines().any(|line| line.starts_with("demo ")), "{meshes}");
    assert!(ctl.run("get dataplanes -m demo").ok().contains("web-1"));

    let config = std::fs::read_to_string(ctl.config_file()).unwrap();
    assert!(config.contains("caCert: |") && config.contains("-----BEGIN CERTIFICATE-----"), "{config}");
    assert!(!config.contains("kodiak-cp.crt"), "the contents are stored, not the path: {config}");
}

#[test]
fn without_the_ca_the_error_says_the_certificate_is_not_trusted_and_hints_at_ca_cert_file() {
    let cp = start_memory();
    let ctl = Kodiakctl::new();
    ctl.run(&format!("config control-planes add --name tls --address {}", https_url(&cp))).ok();
    for stderr in [ctl.run("get meshes").fails(), Kodiakctl::against(https_url(&cp)).run("get meshes").fails()] {
        assert!(stderr.contains("certificate at https://127.0.0.1:"), "{stderr}");
        assert!(stderr.contains("is not trusted: it is not signed by a CA kodiakctl trusts"), "{stderr}");
        assert!(stderr.contains("--ca-cert-file FILE"), "{stderr}");
        assert!(!stderr.contains("error sending request"), "no raw client error: {stderr}");
    }

    // Another control plane's CA does not vouch for this one.
    let other = start_memory();
    let wrong_ca = ctl.file("other.crt", &cert_pem(&other));
    let add = format!("config control-planes add --name tls --address {} --overwrite", https_url(&cp));
    ctl.run(&format!("{add} --ca-cert-file {wrong_ca}")).ok();
    let stderr = ctl.run("get meshes").fails();
    assert!(stderr.contains("is not trusted") && stderr.contains("trusts only the CA certificates stored"), "{stderr}");

    // The plaintext port does not speak TLS.
    let plaintext = cp.api_url().replacen("http://", "https://", 1);
    let stderr = Kodiakctl::against(&plaintext).run("get meshes").fails();
    assert!(stderr.contains("Does the address speak TLS?"), "{stderr}");
}

#[test]
fn a_bad_ca_file_is_refused_at_add_and_the_configuration_is_unchanged() {
    let cp = start_memory();
    let ctl = Kodiakctl::new();
    ctl.run(&format!("config control-planes add --name plain --address {}", cp.api_url())).ok();
    let before = std::fs::read(ctl.config_file()).unwrap();

    let empty = ctl.file("empty.crt", "");
    let text = ctl.file("notes.txt", "this is not a certificate\n");
    let key_only = ctl.file("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let garbled = ctl.file("garbled.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let missing = format!("{}/missing.crt", ctl.config_file().parent().unwrap().display());
    let add = format!("config control-planes add --name tls --address {} --ca-cert-file", https_url(&cp));
    for (file, expected) in [
        (&empty, "holds no certificate"),
        (&text, "holds no certificate"),
        (&key_only, "holds no certificate"),
        (&garbled, "cannot be used as a trust anchor"),
        (&missing, "cannot read --ca-cert-file"),
    ] {
        let stderr = ctl.run(&format!("{add} {file}")).fails();
        assert!(stderr.contains(file.as_str()) && stderr.contains(expected), "{file}: {stderr}");
    }
    let good = ctl.file("kodiak-cp.crt", &cert_pem(&cp));
    let stderr =
        ctl.run(&format!("config control-planes add --name x --address {} --ca-cert-file {good}", cp.api_url()));
    let stderr = stderr.fails();
    assert!(stderr.contains("plaintext http://; use https://"), "{stderr}");
    let stderr = ctl.run(&format!("config control-planes add --name x --address {} --skip-verify", cp.api_url()));
    assert!(stderr.fails().contains("--skip-verify applies to https:// addresses only"));
    assert_eq!(std::fs::read(ctl.config_file()).unwrap(), before, "nothing was written");
}

#[test]
fn skip_verify_reaches_the_control_plane_and_warns_on_every_use() {
    let cp = start_memory();
    let ctl = Kodiakctl::new();
    let added = ctl.run(&format!("config control-planes add --name lab --address {} --skip-verify", https_url(&cp)));
    assert!(added.stderr.contains("Warning: the TLS certificate of control plane \"lab\" is not verified"));
    added.ok();
    let run = ctl.run("get meshes");
    assert!(run.stderr.contains("is not verified (added with --skip-verify)"), "{}", run.stderr);
    assert!(run.ok().contains("default"));
    let conflict = ctl.run(&format!(
        "config control-planes add --name x --address {} --skip-verify --ca-cert-file a",
        https_url(&cp)
    ));
    assert_eq!(conflict.code, 2, "clap refuses both at once: {}", conflict.stderr);
}

#[test]
fn a_stored_ca_that_is_not_a_certificate_is_named_with_the_config_file() {
    let ctl = Kodiakctl::new();
    let config = "currentControlPlane: x\ncontrolPlanes:\n- name: x\n  address: https://127.0.0.1:1\n  caCert: junk\n";
    std::fs::write(ctl.config_file(), config).unwrap();
    let stderr = ctl.run("get meshes").fails();
    assert!(stderr.contains(&ctl.config_file().display().to_string()), "{stderr}");
    assert!(stderr.contains("control plane \"x\": caCert") && stderr.contains("holds no certificate"), "{stderr}");
}
