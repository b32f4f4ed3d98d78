//! MeshProxyPatch in real Envoy: the resources Kodiak generates for a
//! proxy, modified by `mesh_proxy_patch::apply`, loaded statically (see
//! `support`). The proxy `web` has an HTTP inbound, an outbound to the
//! HTTP service `backend` and one to the TCP service `db`; the
//! applications behind them answer on 127.0.0.1.

mod support;

use support::dataplane;
use support::running::echo_app;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kodiak_xds_gen::policies::mesh_proxy_patch;
use kodiak_xds_gen::{ProxyResources, proxy_resources, service_resources, services};
use serde_json::{Value, json};
use support::Envoy;
use support::free_port;
use support::running::{Response, http_get, serve};

const BODY: &str = "hello from backend";

/// Answers one HTTP/1.1 request with 200 [`BODY`].
fn http_app(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{BODY}", BODY.len());
}

/// The ports of one proxy's inbound, its two outbounds and Envoy's admin.
struct Ports {
    inbound: u16,
    backend: u16,
    db: u16,
    admin: u16,
}

/// `web`'s resources, with the applications as the instances of `web`,
/// `backend` and `db` (the apps stand where proxies' inbounds would).
fn web_resources(ports: &Ports, http: u16, echo: u16) -> ProxyResources {
    let web = dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: web-1, networking: {{address: 127.0.0.1,
            inbound: [{{port: {}, servicePort: {http}, tags: {{kuma.io/service: web, kuma.io/protocol: http}}}}],
            outbound: [{{port: {}, tags: {{kuma.io/service: backend}}}}, {{port: {}, tags: {{kuma.io/service: db}}}}]}}}}",
        ports.inbound, ports.backend, ports.db
    ));
    let instance = |name: &str, port: u16, protocol: &str| {
        dataplane(&format!(
            "{{type: Dataplane, mesh: default, name: {name}-1, networking: {{address: 127.0.0.1,
                inbound: [{{port: {port}, tags: {{kuma.io/service: {name}, kuma.io/protocol: {protocol}}}}}]}}}}"
        ))
    };
    let (backend, db) = (instance("backend", http, "http"), instance("db", echo, "tcp"));
    let shared: BTreeMap<_, _> = services([&web, &backend, &db])
        .iter()
        .map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view))))
        .collect();
    proxy_resources(&web, &shared, None)
}

/// The static config of `resources` with Envoy's admin on `admin`.
fn config(resources: &ProxyResources, admin: u16) -> Value {
    let mut config = support::static_config(resources);
    config["admin"] = json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}});
    config
}

/// Where the configurations `envoy --mode validate` checks go (removed
/// when the test passes).
fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("kodiak-proxy-patch-envoy-{}", std::process::id()))
}

fn get(port: u16, path: &str) -> Response {
    http_get(port, "backend", path)
}

/// Sends `data` to `port` and reads it back (the db service echoes).
fn echo(port: u16, data: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(data.as_bytes())?;
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back)?;
    Ok(String::from_utf8_lossy(&back).into_owned())
}

/// The connect timeout Envoy holds for the cluster `name`, from its config dump.
fn connect_timeout(admin: u16, name: &str) -> String {
    let dump: Value = serde_json::from_str(&get(admin, "/config_dump?resource=static_clusters").body).unwrap();
    let clusters = dump["configs"].as_array().unwrap();
    let cluster = clusters.iter().map(|entry| &entry["cluster"]).find(|cluster| cluster["name"] == name).unwrap();
    cluster["connect_timeout"].as_str().unwrap().to_owned()
}

/// What a user of `web` sees through its proxy.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Calling `backend` through the outbound: status, `x-patched` header, body.
    backend: (u16, Option<String>, String),
    /// Calling `web` through its inbound: status and body.
    inbound: (u16, String),
    /// Sending `ping` through the `db` outbound: the echo, or why not.
    db: Result<String, std::io::ErrorKind>,
    /// `backend`'s connect timeout in Envoy's config dump.
    backend_connect_timeout: String,
}

/// Runs `web`'s proxy with the patch `patch` writes for its ports applied,
/// and looks at it as a user would.
fn run(name: &str, patch: impl Fn(&Ports) -> String) -> Seen {
    let (http, echo_port) = (serve(http_app), serve(echo_app));
    let ports = Ports { inbound: free_port(), backend: free_port(), db: free_port(), admin: free_port() };
    let mut resources = web_resources(&ports, http, echo_port);
    let conf = mesh_proxy_patch::read(&kodiak_api::parse_document(&patch(&ports)).unwrap());
    assert_eq!(mesh_proxy_patch::apply(&conf, &mut resources, &Default::default()), []);
    let ports_to_wait_for = [ports.inbound, ports.backend, ports.admin];
    let _envoy = Envoy::start(&format!("proxy-patch-{name}"), &config(&resources, ports.admin), &ports_to_wait_for);
    let (backend, inbound) = (get(ports.backend, "/"), get(ports.inbound, "/"));
    Seen {
        backend: (backend.status, backend.header("x-patched").map(str::to_owned), backend.body),
        inbound: (inbound.status, inbound.body),
        db: echo(ports.db, "ping").map_err(|error| error.kind()),
        backend_connect_timeout: connect_timeout(ports.admin, "backend"),
    }
}

/// Adds a response header on backend's virtual host, makes web's inbound
/// deny every request with an RBAC filter added before the router, changes
/// backend's connect timeout and removes the db listener (`DB_LISTENER`).
const PATCH: &str = r#"
appendModifications:
  - virtualHost:
      operation: Patch
      match: {name: backend, routeConfigurationName: "outbound:backend"}
      value: |
        responseHeadersToAdd:
          - header: {key: x-patched, value: "yes"}
  - httpFilter:
      operation: AddBefore
      match: {name: envoy.filters.http.router, origin: inbound}
      value: |
        name: deny-all
        typedConfig:
          "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
          rules: {}
  - cluster:
      operation: Patch
      match: {name: backend}
      jsonPatches:
        - {op: replace, path: /connectTimeout, value: 0.250s}
  - listener:
      operation: Remove
      match: {origin: outbound, name: DB_LISTENER}
"#;

#[test]
fn patches_are_in_effect_in_envoy() {
    let before = run("unpatched", |_| "appendModifications: []".into());
    let expected = Seen {
        backend: (200, None, BODY.into()),
        inbound: (200, BODY.into()),
        db: Ok("ping".into()),
        backend_connect_timeout: "5s".into(),
    };
    assert_eq!(before, expected);

    let after = run("patched", |ports| PATCH.replace("DB_LISTENER", &format!("'outbound:127.0.0.1:{}'", ports.db)));
    let expected = Seen {
        backend: (200, Some("yes".into()), BODY.into()),
        inbound: (403, "RBAC: access denied".into()),
        db: Err(std::io::ErrorKind::ConnectionRefused),
        backend_connect_timeout: "0.250s".into(),
    };
    assert_eq!(after, expected);
}

/// A patch Kodiak accepts (the result is a well-formed Cluster) and Envoy
/// refuses: a connect timeout must be positive. This is the patch that
/// exercises the NACK path over xDS.
#[test]
fn envoy_refuses_a_zero_connect_timeout() {
    let ports = Ports { inbound: free_port(), backend: free_port(), db: free_port(), admin: free_port() };
    let mut resources = web_resources(&ports, free_port(), free_port());
    let validate = |name: &str, resources: &ProxyResources| {
        let file = work_dir().join(format!("{name}.json"));
        std::fs::create_dir_all(work_dir()).unwrap();
        std::fs::write(&file, config(resources, ports.admin).to_string()).unwrap();
        let output = Command::new(support::envoy_bin()).args(["--mode", "validate", "-c"]).arg(&file).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    };
    let (valid, text) = validate("valid", &resources);
    assert!(valid, "the generated config must validate: {text}");

    let conf = mesh_proxy_patch::read(&json!({"appendModifications": [{"cluster": {
        "operation": "Patch", "match": {"name": "backend"}, "value": "connectTimeout: 0s"}}]}));
    assert_eq!(mesh_proxy_patch::apply(&conf, &mut resources, &Default::default()), []);
    let (valid, text) = validate("zero-timeout", &resources);
    assert!(!valid, "Envoy must refuse a zero connect timeout: {text}");
    assert!(text.contains("ConnectTimeout") && text.contains("value must be greater than 0s"), "{text}");
    let _ = std::fs::remove_dir_all(work_dir());
}
