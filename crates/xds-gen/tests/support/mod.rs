//! What the integration tests share: the Envoy binary and turning a proxy's
//! resources into a configuration Envoy loads without a control plane.
//! Each test binary uses a part of it.
#![allow(dead_code)]

pub mod running;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kodiak_xds_gen::{ProxyResources, render};
use serde_json::{Value, json};

/// A validated Dataplane view from a YAML document, as users write them.
pub fn dataplane(yaml: &str) -> kodiak_api::dataplane_view::DataplaneView {
    let document = kodiak_api::parse_document(yaml).unwrap();
    let resource = kodiak_api::Resource::from_document(&document).unwrap_or_else(|e| panic!("{e}"));
    kodiak_api::dataplane_view::DataplaneView::from_resource(&resource)
}

/// `ENVOY_BIN`, else the Envoy scripts/install-envoy.sh installs.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-envoy.sh");
        let installed = std::process::Command::new("bash").arg(script).output().unwrap();
        assert!(installed.status.success(), "{}", String::from_utf8_lossy(&installed.stderr));
        PathBuf::from(String::from_utf8_lossy(&installed.stdout).lines().last().unwrap().trim())
    })
}

/// A free port for a listener, reserved against every other test process
/// (see [`kodiak_test_ports::free_port`]).
pub fn free_port() -> u16 {
    kodiak_test_ports::free_port()
}

/// `value` with every `sdsConfig` removed: secrets named without a source
/// are the static ones.
pub fn without_sds_source(mut value: Value) -> Value {
    match &mut value {
        Value::Object(object) => {
            object.remove("sdsConfig");
            object.values_mut().for_each(|field| *field = without_sds_source(field.take()));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| *item = without_sds_source(item.take())),
        _ => {}
    }
    value
}

/// `value` with every `rds` source replaced by the route configuration it names.
fn with_inline_routes(mut value: Value, routes: &HashMap<String, Value>) -> Value {
    match &mut value {
        Value::Object(object) => {
            if let Some(rds) = object.remove("rds") {
                let name = rds["routeConfigName"].as_str().unwrap_or_default();
                let route = routes.get(name).unwrap_or_else(|| panic!("no route configuration {name:?}"));
                object.insert("routeConfig".into(), route.clone());
            }
            object.values_mut().for_each(|field| *field = with_inline_routes(field.take(), routes));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| *item = with_inline_routes(item.take(), routes)),
        _ => {}
    }
    value
}

/// A static Envoy configuration with exactly the proxy's resources: the
/// secrets as static secrets (named without their ADS source), each EDS
/// cluster as a STATIC one holding its assignment, each RDS route
/// configuration inline in its listener.
pub fn static_config(resources: &ProxyResources) -> Value {
    let by_name = |list: &[std::sync::Arc<kodiak_xds_server::Resource>]| -> HashMap<String, Value> {
        list.iter().map(|resource| (resource.name.clone(), render(resource))).collect()
    };
    let (assignments, routes) = (by_name(&resources.endpoints), by_name(&resources.routes));
    let clusters: Vec<Value> = resources
        .clusters
        .iter()
        .map(|resource| {
            let mut cluster = without_sds_source(render(resource));
            if cluster["type"] == "EDS" {
                let object = cluster.as_object_mut().unwrap();
                object.remove("edsClusterConfig");
                object.insert("type".into(), "STATIC".into());
                object.insert("loadAssignment".into(), assignments[&resource.name].clone());
            }
            cluster
        })
        .collect();
    let listeners: Vec<Value> = resources
        .listeners
        .iter()
        .map(|resource| with_inline_routes(without_sds_source(render(resource)), &routes))
        .collect();
    let secrets: Vec<Value> = resources.secrets.iter().map(|resource| render(resource)).collect();
    json!({"static_resources": {"secrets": secrets, "clusters": clusters, "listeners": listeners}})
}

/// A running Envoy on a static configuration, stopped when dropped.
pub struct Envoy {
    child: std::process::Child,
    /// Its standard error (the log), for failure messages.
    pub log: PathBuf,
    /// Where its configuration and log are; removed when the test passes.
    dir: PathBuf,
}

impl Envoy {
    /// Starts Envoy on `config` (kept with its log in a temporary folder
    /// named after `name`) and waits, up to 30 s, until it accepts on each
    /// of `ports`; panics with its log if it exits first (a configuration
    /// it rejects). Access-log files get their lines within 100 ms.
    pub fn start(name: &str, config: &Value, ports: &[u16]) -> Envoy {
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("kodiak-envoy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (file, log) = (dir.join("envoy.json"), dir.join("envoy.log"));
        std::fs::write(&file, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let child = std::process::Command::new(envoy_bin())
            .args(["--disable-hot-restart", "--concurrency", "1", "--file-flush-interval-msec", "100", "-c"])
            .arg(&file)
            .arg("--log-level")
            .arg(std::env::var("ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut envoy = Envoy { child, log, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = envoy.child.try_wait() {
                    panic!("Envoy {name} exited ({status}):\n{}", envoy.log_text());
                }
                assert!(Instant::now() < deadline, "Envoy {name} does not listen on {port}:\n{}", envoy.log_text());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        envoy
    }

    /// What Envoy wrote on its standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
