//! `kodiakctl generate ...` and a control plane added with a user token.

use kodiak_cp::testing::{start, start_memory, start_sqlite};

use crate::support::Kodiakctl;

/// The claims of a JWT, unchecked.
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64_url(payload);
    serde_json::from_slice(&bytes).unwrap()
}

/// Base64url without padding, decoded by hand to keep the test free of a codec dependency.
fn base64_url(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut bits, mut count, mut out) = (0u32, 0, Vec::new());
    for byte in text.bytes() {
        bits = (bits << 6) | alphabet.iter().position(|&a| a == byte).expect("base64url") as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn generated_tokens_carry_what_was_asked_and_no_newline() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    let token = ctl
        .run(
            "generate dataplane-token --name web-1 --tag kuma.io/service=web,web-api --tag version=v1 --valid-for 720h",
        )
        .ok();
    assert_eq!(token.trim_end(), token, "no newline when stdout is not a terminal");
    let dataplane = claims(&token);
    assert_eq!(dataplane["Mesh"], "default", "--mesh defaults to default");
    assert_eq!(dataplane["Name"], "web-1");
    assert_eq!(dataplane["Tags"], serde_json::json!({"kuma.io/service": ["web", "web-api"], "version": ["v1"]}));

    let user = claims(&ctl.run("generate user-token --name alice --group a,b --group c --valid-for 1h").ok());
    assert_eq!((user["Name"].as_str(), user["Groups"].clone()), (Some("alice"), serde_json::json!(["a", "b", "c"])));
}

#[test]
fn bad_requests_are_explained() {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    let stderr = ctl.run("generate dataplane-token --mesh default --valid-for 30d").fails();
    assert!(
        stderr.contains("validFor") && stderr.contains("use hours, minutes or seconds (720h, not 30d)"),
        "{stderr}"
    );
    let stderr = ctl.run("generate dataplane-token --mesh nowhere --valid-for 1h").fails();
    assert!(stderr.contains("no Mesh named \"nowhere\""), "{stderr}");
    let stderr = ctl.run("generate dataplane-token --tag kuma.io/service --valid-for 1h").fails();
    assert!(stderr.contains("expected NAME=VALUE"), "{stderr}");
    let missing = ctl.run("generate user-token --name alice");
    assert_eq!(missing.code, 2, "clap refuses a missing --valid-for");
    assert!(missing.stderr.contains("--valid-for"), "{}", missing.stderr);
}

#[test]
fn a_control_plane_added_with_a_token_gets_it_on_every_request() {
    let data = tempfile::tempdir().unwrap();
    let first = start_sqlite(data.path()).unwrap();
    let admin_token = Kodiakctl::against(first.api_url())
        .run("generate user-token --name ops --group mesh-system:admin --valid-for 1h")
        .ok();
    let user_token = Kodiakctl::against(first.api_url()).run("generate user-token --name alice --valid-for 1h").ok();
    first.stop();
    let mut config = kodiak_cp::testing::loopback_config();
    config.store.data_dir = data.path().to_owned();
    config.api_server.authn.localhost_is_admin = false;
    let cp = start(config).unwrap();

    let anonymous = Kodiakctl::against(cp.api_url());
    let stderr = anonymous.run("generate dataplane-token --valid-for 1h").fails();
    assert!(stderr.contains("Access Denied"), "{stderr}");

    let ctl = Kodiakctl::new();
    let add =
        format!("config control-planes add --name secured --address {} --auth-type tokens --auth-conf", cp.api_url());
    ctl.run(&format!("{add} token={user_token}")).ok();
    let stderr = ctl.run("get secrets -m default").fails();
    assert!(stderr.contains("Access Denied") && stderr.contains("user \"alice\""), "{stderr}");
    ctl.run(&format!("{add} token={admin_token} --overwrite")).ok();
    ctl.run("get secrets -m default").ok();
    ctl.run("generate dataplane-token --valid-for 1h").ok();
    let text = std::fs::read_to_string(ctl.config_file()).unwrap();
    assert!(text.contains("authType: tokens"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ctl.config_file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the config file holds a token");

    let stderr = ctl
        .run(&format!(
            "config control-planes add --name x --address {} --auth-type basic --auth-conf a=b",
            cp.api_url()
        ))
        .fails();
    assert!(stderr.contains("--auth-type \"basic\" is not known"), "{stderr}");
    let stderr =
        ctl.run(&format!("config control-planes add --name x --address {} --auth-type tokens", cp.api_url())).fails();
    assert!(stderr.contains("needs --auth-conf token="), "{stderr}");
}
