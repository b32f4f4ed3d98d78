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

/// A free port on 127.0.0.1 for a listener. It is drawn at random below the
/// kernel's range for outgoing connections (32768 and up on Linux), so no
/// connection of this or another test takes it before the listener binds
/// it; the same process never gets it twice.
///
/// The port is also reserved for the rest of the process's life against
/// every other test process that draws ports here (nextest runs each test
/// in a process of its own, two or more at once). A free port alone is not
/// enough: two processes may draw the same one before either Envoy binds
/// it, and Envoy binds its listeners with `SO_REUSEPORT`, so both Envoys
/// then listen on it and the kernel hands each new connection to one of
/// them at random. A test would get half of its connections answered by
/// another test's proxy (an mTLS listener closing them without a word, for
/// one), with nothing in its own proxy's log.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static RESERVED: std::sync::Mutex<Vec<PortReservation>> = std::sync::Mutex::new(Vec::new());
    let (low, high) = (21_000u64, 32_000u64);
    for _ in 0..1000 {
        // A fresh RandomState is randomly keyed: a random number without a crate.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = u16::try_from(low + random % (high - low)).expect("below 32000");
        // Reserved first, so no other process can draw the port between
        // the check that it is free and its reservation.
        let Some(reservation) = reserve(port) else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            RESERVED.lock().unwrap().push(reservation);
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// What holds a port's reservation: dropped only when the process exits.
#[cfg(target_os = "linux")]
type PortReservation = std::os::unix::net::UnixListener;
#[cfg(not(target_os = "linux"))]
type PortReservation = ();

/// Reserves `port` among the processes of this network namespace: a Unix
/// socket in the abstract namespace named after it, which one process at a
/// time can bind (this one too: a port is never handed out twice) and which
/// goes away with its process, leaving no file behind. None when taken.
#[cfg(target_os = "linux")]
fn reserve(port: u16) -> Option<PortReservation> {
    use std::os::linux::net::SocketAddrExt;
    let name = std::os::unix::net::SocketAddr::from_abstract_name(format!("kodiak-test-port-{port}")).ok()?;
    std::os::unix::net::UnixListener::bind_addr(&name).ok()
}

/// Elsewhere only this process's own ports are known.
#[cfg(not(target_os = "linux"))]
fn reserve(port: u16) -> Option<PortReservation> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    (!given.contains(&port)).then(|| given.push(port))
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
