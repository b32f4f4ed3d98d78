//! MeshCircuitBreaker, MeshHealthCheck and MeshLoadBalancingStrategy in a
//! real Envoy, configured with what Kodiak generates (loaded statically,
//! see `support`) plus the policies' apply functions.
//!
//! One client proxy `web` calls the HTTP service `backend` through its
//! outbound listener. The instances of `backend` are small applications on
//! 127.0.0.1 that answer with their name and can be told to fail (503), to
//! fail their health path, or to be slow. Everything listens on 127.0.0.1.

mod support;

use support::dataplane;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route};
use kodiak_api::Resource as ApiResource;
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_xds_gen::policies::{mesh_circuit_breaker, mesh_health_check, mesh_load_balancing_strategy};
use kodiak_xds_gen::{ServiceResources, ServiceView, proxy_resources, service_resources, services};
use kodiak_xds_server::Resource;
use prost::Message;
use serde_json::{Value, json};
use support::free_port;

/// What an instance of `backend` does; the test changes it while running.
#[derive(Default)]
struct Behaviour {
    /// Answer 503 to every request but health checks.
    failing: AtomicBool,
    /// Answer 503 to health checks (`/health`).
    unhealthy: AtomicBool,
    /// Close the connection instead of answering requests (but health checks).
    closing: AtomicBool,
    /// Wait this long before answering a request.
    delay_ms: AtomicU64,
}

/// An instance of `backend`: an HTTP/1.1 application answering with its
/// name, or, when `protocol` is tcp, a line application (see [`serve_lines`]).
struct App {
    name: &'static str,
    port: u16,
    protocol: &'static str,
    behaviour: Arc<Behaviour>,
}

impl App {
    fn start(name: &'static str) -> App {
        App::start_speaking(name, "http")
    }

    fn start_speaking(name: &'static str, protocol: &'static str) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviour = Arc::new(Behaviour::default());
        let shared = behaviour.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let behaviour = shared.clone();
                match protocol {
                    "tcp" => std::thread::spawn(move || serve_lines(name, stream, &behaviour)),
                    _ => std::thread::spawn(move || serve(name, stream, &behaviour)),
                };
            }
        });
        App { name, port, protocol, behaviour }
    }
}

/// Answers the requests of one connection (kept alive) until the caller closes it.
fn serve(name: &str, stream: TcpStream, behaviour: &Behaviour) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/");
        let failing = if path == "/health" {
            behaviour.unhealthy.load(Ordering::SeqCst)
        } else {
            std::thread::sleep(Duration::from_millis(behaviour.delay_ms.load(Ordering::SeqCst)));
            if behaviour.closing.load(Ordering::SeqCst) {
                return;
            }
            behaviour.failing.load(Ordering::SeqCst)
        };
        let status = if failing { "503 Service Unavailable" } else { "200 OK" };
        let response = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{name}", name.len());
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A line application: answers `ping` with `pong` (its health check; when
/// unhealthy it closes the connection instead) and any other line with its
/// name, until the caller closes the connection.
fn serve_lines(name: &str, stream: TcpStream, behaviour: &Behaviour) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let answer = match line.trim_end() {
            "ping" if behaviour.unhealthy.load(Ordering::SeqCst) => return,
            "ping" => "pong\n".to_owned(),
            _ => format!("{name}\n"),
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

/// The policies' merged `to` confs for `backend`, as manifests write them.
#[derive(Default)]
struct Policies {
    load_balancing: Option<Value>,
    health_check: Option<Value>,
    circuit_breaker: Option<Value>,
}

/// A running client Envoy, stopped when dropped.
struct Client {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
    /// Where the application calls `backend`.
    port: u16,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

/// The shared resources of `service` for a caller with `policies` toward
/// it, laid on in the order generation applies them (load balancing,
/// health check, circuit breaker).
fn with_policies(name: &str, view: &ServiceView, policies: &Policies) -> ServiceResources {
    let mut backend = service_resources(name, view);
    let mut cluster = Cluster::decode(backend.cluster.body.value.as_slice()).unwrap();
    let mut routes =
        backend.route.as_ref().map(|route| RouteConfiguration::decode(route.body.value.as_slice()).unwrap());
    if let Some(conf) = &policies.load_balancing {
        let conf = mesh_load_balancing_strategy::read(conf);
        mesh_load_balancing_strategy::apply_to_cluster(&conf, &mut cluster);
        for route in routes.iter_mut().flat_map(|routes| &mut routes.virtual_hosts).flat_map(|host| &mut host.routes) {
            if let Some(route::Action::Route(action)) = &mut route.action {
                mesh_load_balancing_strategy::apply_to_route(&conf, action);
            }
        }
    }
    if let Some(conf) = &policies.health_check {
        mesh_health_check::apply_to_cluster(&mesh_health_check::read(conf), backend.protocol, &mut cluster);
    }
    if let Some(conf) = &policies.circuit_breaker {
        mesh_circuit_breaker::apply_to_cluster(&mesh_circuit_breaker::read(conf), &mut cluster);
    }
    backend.cluster = Resource::new(cluster.name.clone(), &cluster);
    backend.route = routes.map(|routes| Resource::new(routes.name.clone(), &routes));
    backend
}

/// Starts the client proxy of `web`, calling `backend` served by `apps`,
/// with `policies` toward it.
fn client(test: &str, apps: &[&App], policies: &Policies) -> Client {
    let port = free_port();
    let web = dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: web, networking: {{address: 127.0.0.1, inbound: [],
            outbound: [{{port: {port}, tags: {{kuma.io/service: backend}}}}]}}}}"
    ));
    let instances: Vec<DataplaneView> = apps
        .iter()
        .map(|app| {
            dataplane(&format!(
                "{{type: Dataplane, mesh: default, name: backend-{}, networking: {{address: 127.0.0.1, inbound: [
                    {{port: {}, tags: {{kuma.io/service: backend, kuma.io/protocol: {}}}}}]}}}}",
                app.name, app.port, app.protocol
            ))
        })
        .collect();
    let backend = with_policies("backend", &services(&instances)["backend"], policies);
    let resources = proxy_resources(&web, &BTreeMap::from([("backend".to_owned(), Arc::new(backend))]), None);
    Client::start(test, &support::static_config(&resources), port)
}

impl Client {
    /// Starts Envoy on `config` and waits until it listens on `port`, the
    /// port the test calls.
    fn start(test: &str, config: &Value, port: u16) -> Client {
        let dir = work_dir(test);
        let (file, log) = (dir.join("web.json"), dir.join("web.log"));
        std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        // One worker: round robin and connection limits then act as one proxy's
        // view of the service, not one per worker thread.
        let level = std::env::var("ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
        // Files (the health check event log) are flushed every 200 ms, not 10 s.
        let args = [
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--file-flush-interval-msec",
            "200",
            "--log-level",
            &level,
            "-c",
        ];
        let stderr = std::fs::File::create(&log).unwrap();
        let child =
            Command::new(support::envoy_bin()).args(args).arg(&file).stdout(Stdio::null()).stderr(stderr).spawn();
        let child = child.unwrap();
        let mut client = Client { child, log, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = client.child.try_wait() {
                panic!("Envoy exited ({status}):\n{}", std::fs::read_to_string(&client.log).unwrap());
            }
            assert!(Instant::now() < deadline, "Envoy does not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        client
    }
}

/// Where the Envoy of `test` keeps its configuration and logs (removed when
/// the test passes).
fn work_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kodiak-policies-envoy-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One answer as the calling application sees it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `x-envoy-overloaded`: the proxy turned the request away itself.
    overloaded: bool,
    /// The instance that answered (or the proxy's own text).
    body: String,
    /// The `name=value` of a `set-cookie` header.
    set_cookie: Option<String>,
}

impl Client {
    /// A GET of `/` to `backend` with the extra `headers`.
    fn get(&self, headers: &[(&str, &str)]) -> Answer {
        self.get_path("/", headers)
    }

    /// A GET of `path` to `backend` with the extra `headers`.
    fn get_path(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
        let request = format!("GET {path} HTTP/1.1\r\nhost: backend\r\n{extra}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("reading the answer: {e} ({response:?})"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {response:?}"));
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let overloaded = head.lines().any(|line| line.to_ascii_lowercase().starts_with("x-envoy-overloaded: true"));
        let set_cookie = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or_default().to_owned())
        });
        Answer { status, overloaded, body: body.to_owned(), set_cookie }
    }

    /// Who answers a line sent over TCP (a line application, see [`serve_lines`]).
    fn ask(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.write_all(b"who\n").unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).unwrap_or_else(|e| panic!("reading the answer: {e}"));
        answer.trim_end().to_owned()
    }

    /// Who answers `count` plain requests, in order.
    fn answerers(&self, count: usize) -> Vec<String> {
        (0..count).map(|_| self.get(&[]).body).collect()
    }

    /// Sends requests until `done` holds for the answerers of the last
    /// `window` of them; panics when it does not within 15 s.
    fn wait_until(&self, what: &str, window: usize, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen: Vec<String> = Vec::new();
        loop {
            seen.push(self.get(&[]).body);
            if seen.len() >= window && done(&seen[seen.len() - window..]) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within 15 s; answers, oldest first: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn distinct(names: &[String]) -> BTreeSet<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn outlier_detection_ejects_the_failing_instance() {
    let (a, b, c) = (App::start("a"), App::start("b"), App::start("c"));
    c.behaviour.failing.store(true, Ordering::SeqCst);
    let outlier = |disabled: bool| Policies {
        circuit_breaker: Some(json!({"outlierDetection": {"disabled": disabled, "interval": "1s",
            "baseEjectionTime": "1m", "maxEjectionPercent": 50, "detectors": {"totalFailures": {"consecutive": 3}}}})),
        ..Default::default()
    };

    let web = client("outlier", &[&a, &b, &c], &outlier(false));
    let mut answers = Vec::new();
    while answers.iter().filter(|answer: &&Answer| answer.body == "c").count() < 3 {
        let answer = web.get(&[]);
        assert_eq!(answer.status, if answer.body == "c" { 503 } else { 200 }, "{answer:?}");
        answers.push(answer);
        assert!(answers.len() <= 30, "c answered fewer than 3 of 30 requests: {answers:?}");
    }
    // Ejected after its third 5xx in a row: from then on only a and b answer.
    web.wait_until("c is ejected", 12, |last| !last.contains(&"c".to_owned()));
    let after = web.answerers(12);
    assert_eq!(distinct(&after), BTreeSet::from(["a", "b"]), "{after:?}");

    // An instance that closes connections instead of answering fails as a
    // gateway (the proxy answers 503 for it), and is ejected likewise.
    let d = App::start("d");
    d.behaviour.closing.store(true, Ordering::SeqCst);
    let gateway = Policies {
        circuit_breaker: Some(json!({"outlierDetection": {"baseEjectionTime": "1m", "maxEjectionPercent": 50,
            "detectors": {"gatewayFailures": {"consecutive": 2}}}})),
        ..Default::default()
    };
    let web = client("outlier-gateway", &[&a, &b, &d], &gateway);
    let answers: Vec<Answer> = (0..12).map(|_| web.get(&[])).collect();
    let failed = answers.iter().filter(|answer| answer.status == 503).count();
    assert!(failed >= 2, "d's closed connections reach the caller as 503s: {answers:?}");
    web.wait_until("d is ejected", 12, |last| distinct(last) == BTreeSet::from(["a", "b"]));

    // Disabled, the same outlier detection ejects nobody.
    let web = client("outlier-disabled", &[&a, &b, &c], &outlier(true));
    let answers = web.answerers(30);
    let from_c = answers.iter().filter(|name| *name == "c").count();
    assert!(from_c >= 8, "c keeps its share without outlier detection: {answers:?}");
}

/// Six requests sent 50 ms apart, each on a thread of its own, and their answers.
fn send_together(web: &Client) -> Vec<Answer> {
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let call = scope.spawn(|| web.get(&[]));
                std::thread::sleep(Duration::from_millis(50));
                call
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    })
}

/// With one request in service and one waiting allowed, the rest of six
/// requests sent together are turned away: 503 with `x-envoy-overloaded`.
fn assert_overflow_turned_away(answers: &[Answer]) {
    let served = answers.iter().filter(|answer| answer.status == 200 && answer.body == "slow").count();
    let overloaded = answers.iter().filter(|answer| answer.status == 503 && answer.overloaded).count();
    assert!((1..=2).contains(&served), "one in service and at most one waiting are served: {answers:?}");
    assert_eq!(served + overloaded, 6, "the rest are turned away as overloaded: {answers:?}");
}

#[test]
fn connection_limits_turn_the_overflow_away() {
    let slow = App::start("slow");
    slow.behaviour.delay_ms.store(1500, Ordering::SeqCst);
    let limits = Policies {
        circuit_breaker: Some(
            json!({"connectionLimits": {"maxConnections": 1, "maxPendingRequests": 1, "maxRequests": 1}}),
        ),
        ..Default::default()
    };
    let web = client("limits", &[&slow], &limits);
    assert_overflow_turned_away(&send_together(&web));

    // Without limits (Envoy's defaults) every request is served.
    let web = client("no-limits", &[&slow], &Policies { circuit_breaker: Some(json!({})), ..Default::default() });
    let answers = send_together(&web);
    assert!(answers.iter().all(|answer| answer.status == 200), "{answers:?}");
}

#[test]
fn health_check_takes_a_failing_instance_out_and_back() {
    let (a, b) = (App::start("a"), App::start("b"));
    let events = work_dir("health").join("health-events.log");
    let policies = Policies {
        health_check: Some(json!({"interval": "200ms", "timeout": "1s", "unhealthyThreshold": 2,
            "healthyThreshold": 1, "noTrafficInterval": "200ms", "healthyPanicThreshold": 0,
            "eventLogPath": events, "http": {"path": "/health", "expectedStatuses": [200]}})),
        ..Default::default()
    };
    let web = client("health", &[&a, &b], &policies);
    let both = |last: &[String]| distinct(last) == BTreeSet::from(["a", "b"]);
    web.wait_until("both instances serve", 4, both);

    b.behaviour.unhealthy.store(true, Ordering::SeqCst);
    web.wait_until("b is taken out", 10, |last| distinct(last) == BTreeSet::from(["a"]));
    let answers = web.answerers(10);
    assert_eq!(distinct(&answers), BTreeSet::from(["a"]), "b stays out while its health path fails: {answers:?}");

    // The event log has the ejection of b's endpoint.
    let ejected = |log: &str| {
        let port = format!("\"port_value\":{}", b.port);
        log.lines().any(|line| line.contains("eject_unhealthy_event") && line.contains(&port))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ejected(&std::fs::read_to_string(&events).unwrap_or_default()) {
        let log = std::fs::read_to_string(&events).unwrap_or_default();
        assert!(Instant::now() < deadline, "no ejection of b in the health check event log:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }

    b.behaviour.unhealthy.store(false, Ordering::SeqCst);
    web.wait_until("b comes back", 4, both);
}

/// Requests with `x-user: <key>` for 12 keys, 4 times each: each key lands
/// on one instance every time, and the keys spread over the instances.
fn assert_sticky(web: &Client) {
    let mut homes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..4 {
        for key in 0..12 {
            let key = format!("user-{key}");
            let answer = web.get(&[("x-user", &key)]);
            assert_eq!(answer.status, 200, "round {round}, {key}: {answer:?}");
            homes.entry(key).or_default().insert(answer.body);
        }
    }
    assert!(homes.values().all(|home| home.len() == 1), "a key moved between instances: {homes:?}");
    let used: BTreeSet<&String> = homes.values().flatten().collect();
    assert!(used.len() >= 2, "12 keys all landed on one instance: {homes:?}");
}

#[test]
fn ring_hash_and_maglev_keep_a_key_on_one_instance() {
    let apps = [App::start("a"), App::start("b"), App::start("c")];
    let apps: Vec<&App> = apps.iter().collect();
    let ring_hash = json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashFunction": "XXHash",
        "minRingSize": 64, "maxRingSize": 1024}}, "hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]});
    // Maglev with its hash policies in the deprecated place.
    let maglev = json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 1031,
        "hashPolicies": [{"type": "Header", "header": {"name": "x-user"}, "terminal": true}]}}});
    for (name, conf) in [("ring-hash", ring_hash), ("maglev", maglev)] {
        let web = client(name, &apps, &Policies { load_balancing: Some(conf), ..Default::default() });
        assert_sticky(&web);
    }

    // Round robin (the same header sent) does not keep keys in place.
    let round_robin = json!({"loadBalancer": {"type": "RoundRobin"}});
    let web = client("round-robin-key", &apps, &Policies { load_balancing: Some(round_robin), ..Default::default() });
    let homes: BTreeSet<String> = (0..6).map(|_| web.get(&[("x-user", "user-1")]).body).collect();
    assert!(homes.len() > 1, "{homes:?}");
}

#[test]
fn round_robin_takes_turns() {
    let apps = [App::start("a"), App::start("b"), App::start("c")];
    let apps: Vec<&App> = apps.iter().collect();
    let conf = json!({"loadBalancer": {"type": "RoundRobin", "roundRobin": {}}});
    let web = client("round-robin", &apps, &Policies { load_balancing: Some(conf), ..Default::default() });
    let answers = web.answerers(9);
    for turn in answers.chunks(3) {
        assert_eq!(distinct(turn), BTreeSet::from(["a", "b", "c"]), "each instance once per turn: {answers:?}");
    }
    assert_eq!(answers[0..3], answers[3..6], "the same order every turn: {answers:?}");
}

#[test]
fn least_request_and_random_serve_every_instance() {
    let apps = [App::start("a"), App::start("b"), App::start("c")];
    let apps: Vec<&App> = apps.iter().collect();
    let least = json!({"loadBalancer": {"type": "LeastRequest",
        "leastRequest": {"choiceCount": 2, "activeRequestBias": "1.5"}}});
    let random = json!({"loadBalancer": {"type": "Random", "random": {}}});
    for (name, conf) in [("least-request", least), ("random", random)] {
        let web = client(name, &apps, &Policies { load_balancing: Some(conf), ..Default::default() });
        let answers: Vec<Answer> = (0..30).map(|_| web.get(&[])).collect();
        assert!(answers.iter().all(|answer| answer.status == 200), "{name}: {answers:?}");
        let names: Vec<String> = answers.into_iter().map(|answer| answer.body).collect();
        assert!(distinct(&names).len() >= 2, "{name} sent 30 requests to one instance: {names:?}");
    }
}

#[test]
fn tcp_health_check_sends_and_expects_its_bytes() {
    let (a, b) = (App::start_speaking("a", "tcp"), App::start_speaking("b", "tcp"));
    // The http section is for HTTP services; a tcp service uses the tcp one.
    let policies = Policies {
        health_check: Some(json!({"interval": "200ms", "timeout": "1s", "unhealthyThreshold": 1,
            "healthyThreshold": 1, "noTrafficInterval": "200ms", "healthyPanicThreshold": 0,
            "http": {"path": "/health"}, "tcp": {"send": "ping\n", "receive": ["pong"]}})),
        ..Default::default()
    };
    let web = client("tcp-health", &[&a, &b], &policies);
    let asked = |count: usize| -> Vec<String> { (0..count).map(|_| web.ask()).collect() };
    let serves = |expected: BTreeSet<&str>, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answers = asked(6);
            if distinct(&answers) == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within 15 s; last answers {answers:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    serves(BTreeSet::from(["a", "b"]), "both instances pass the TCP check");
    b.behaviour.unhealthy.store(true, Ordering::SeqCst);
    serves(BTreeSet::from(["a"]), "b is taken out");
    let answers = asked(10);
    assert_eq!(distinct(&answers), BTreeSet::from(["a"]), "b stays out: {answers:?}");
    b.behaviour.unhealthy.store(false, Ordering::SeqCst);
    serves(BTreeSet::from(["a", "b"]), "b comes back");
}

/// Every field of the three policies, on an http, a gRPC and a tcp service:
/// Envoy accepts the configuration (`--mode validate`).
#[test]
fn envoy_accepts_every_field() {
    let dir = work_dir("validate");
    let circuit_breaker = json!({
        "connectionLimits": {"maxConnections": 2, "maxConnectionPools": 3, "maxPendingRequests": 4,
            "maxRequests": 5, "maxRetries": 6},
        "outlierDetection": {"interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
            "splitExternalAndLocalErrors": true, "healthyPanicThreshold": "12.5",
            "detectors": {"totalFailures": {"consecutive": 10}, "gatewayFailures": {"consecutive": 7},
                "localOriginFailures": {"consecutive": 3},
                "successRate": {"minimumHosts": 5, "requestVolume": 100, "standardDeviationFactor": "1.9"},
                "failurePercentage": {"minimumHosts": 6, "requestVolume": 50, "threshold": 85}}}});
    let health_check = json!({
        "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 2,
        "initialJitter": "1s", "intervalJitter": "500ms", "intervalJitterPercent": 10,
        "healthyPanicThreshold": 60, "failTrafficOnPanic": true,
        "eventLogPath": dir.join("events.log"), "alwaysLogHealthCheckFailures": true,
        "noTrafficInterval": "3s", "reuseConnection": false,
        "tcp": {"send": "ping", "receive": ["po", "ng"]},
        "http": {"path": "/health", "expectedStatuses": [200, 204],
            "requestHeadersToAdd": {"add": [{"name": "x-a", "value": "1,2"}], "set": [{"name": "x-s", "value": "3"}]}},
        "grpc": {"serviceName": "health", "authority": "orders.mesh"}});
    let hash_policies = json!([
        {"type": "Header", "header": {"name": "x-user"}, "terminal": true},
        {"type": "Cookie", "cookie": {"name": "session", "ttl": "1h", "path": "/app"}},
        {"type": "Connection", "connection": {"sourceIP": true}},
        {"type": "QueryParameter", "queryParameter": {"name": "user"}},
        {"type": "FilterState", "filterState": {"key": "io.example.key"}}]);
    let load_balancers = [
        json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashFunction": "MurmurHash2", "minRingSize": 64,
            "maxRingSize": 1024}}, "hashPolicies": hash_policies}),
        json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3, "activeRequestBias": "0.5"}}}),
        json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 1031, "hashPolicies": hash_policies}}}),
    ];
    let ports = [free_port(), free_port(), free_port()];
    let services_of = [("backend", "http"), ("orders", "grpc"), ("postgres", "tcp")];
    let outbounds: Vec<String> = services_of
        .iter()
        .zip(ports)
        .map(|((service, _), port)| format!("{{port: {port}, tags: {{kuma.io/service: {service}}}}}"))
        .collect();
    let web = dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: web, networking: {{address: 127.0.0.1, inbound: [
            {{port: {}, servicePort: {}, tags: {{kuma.io/service: web}}}}], outbound: [{}]}}}}",
        free_port(),
        free_port(),
        outbounds.join(", ")
    ));
    let instances: Vec<DataplaneView> = services_of
        .iter()
        .map(|(service, protocol)| {
            dataplane(&format!(
                "{{type: Dataplane, mesh: default, name: {service}-1, networking: {{address: 127.0.0.1, inbound: [
                    {{port: {}, tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}}}}}]}}}}",
                free_port()
            ))
        })
        .collect();
    let views = services(&instances);
    let shared: BTreeMap<String, Arc<ServiceResources>> = services_of
        .iter()
        .zip(load_balancers)
        .map(|((service, _), load_balancing)| {
            let policies = Policies {
                load_balancing: Some(load_balancing),
                health_check: Some(health_check.clone()),
                circuit_breaker: Some(circuit_breaker.clone()),
            };
            (service.to_string(), Arc::new(with_policies(service, &views[*service], &policies)))
        })
        .collect();
    // The inbound cluster under a `rules` conf of the circuit breaker.
    let mut resources = proxy_resources(&web, &shared, None);
    for resource in resources.clusters.iter_mut().filter(|resource| resource.name.starts_with("inbound:")) {
        let mut cluster = Cluster::decode(resource.body.value.as_slice()).unwrap();
        mesh_circuit_breaker::apply_to_cluster(&mesh_circuit_breaker::read(&circuit_breaker), &mut cluster);
        *resource = Resource::new(resource.name.clone(), &cluster);
    }
    let config = support::static_config(&resources);
    let rendered = config.to_string();
    for field in [
        "healthChecks",
        "outlierDetection",
        "ringHashLbConfig",
        "leastRequestLbConfig",
        "maglevLbConfig",
        "grpcHealthCheck",
        "tcpHealthCheck",
        "httpHealthCheck",
        "hashPolicy",
        "eventLogger",
    ] {
        assert!(rendered.contains(field), "{field} missing from the configuration");
    }
    let file = dir.join("validate.json");
    std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let validated = Command::new(support::envoy_bin()).args(["--mode", "validate", "-c"]).arg(&file).output().unwrap();
    let output =
        format!("{}{}", String::from_utf8_lossy(&validated.stdout), String::from_utf8_lossy(&validated.stderr));
    assert!(validated.status.success(), "Envoy rejects the configuration:\n{output}");
    std::fs::remove_dir_all(dir).ok();
}

/// A `from`/`rules` conf on the inbound cluster: the proxy in front of a
/// slow application turns away what exceeds the limits.
#[test]
fn inbound_connection_limits_turn_the_overflow_away() {
    let slow = App::start("slow");
    slow.behaviour.delay_ms.store(1500, Ordering::SeqCst);
    let port = free_port();
    let server = dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: backend-1, networking: {{address: 127.0.0.1, inbound: [
            {{port: {port}, servicePort: {}, tags: {{kuma.io/service: backend, kuma.io/protocol: http}}}}]}}}}",
        slow.port
    ));
    let mut resources = proxy_resources(&server, &BTreeMap::new(), None);
    let rules = json!({"connectionLimits": {"maxConnections": 1, "maxPendingRequests": 1, "maxRequests": 1}});
    let inbound = resources.clusters.iter_mut().find(|cluster| cluster.name.starts_with("inbound:")).unwrap();
    let mut cluster = Cluster::decode(inbound.body.value.as_slice()).unwrap();
    mesh_circuit_breaker::apply_to_cluster(&mesh_circuit_breaker::read(&rules), &mut cluster);
    *inbound = Resource::new(inbound.name.clone(), &cluster);
    let proxy = Client::start("inbound-limits", &support::static_config(&resources), port);
    assert_overflow_turned_away(&send_together(&proxy));
}

/// A cookie hash policy with a TTL: the proxy gives a caller without the
/// cookie one, and the caller that sends it back stays on one instance; a
/// query parameter keeps a key on one instance too.
#[test]
fn cookie_and_query_parameter_hashing() {
    let apps = [App::start("a"), App::start("b"), App::start("c")];
    let apps: Vec<&App> = apps.iter().collect();
    let conf = json!({"loadBalancer": {"type": "RingHash"}, "hashPolicies": [
        {"type": "QueryParameter", "queryParameter": {"name": "user"}, "terminal": true},
        {"type": "Cookie", "cookie": {"name": "session", "ttl": "1h", "path": "/"}}]});
    let web = client("cookie-query", &apps, &Policies { load_balancing: Some(conf), ..Default::default() });

    let mut homes: BTreeSet<String> = BTreeSet::new();
    for caller in 0..12 {
        let first = web.get(&[]);
        let cookie = first.set_cookie.clone().unwrap_or_else(|| panic!("no session cookie given: {first:?}"));
        assert!(cookie.starts_with("session="), "{cookie}");
        let again: BTreeSet<String> = (0..4).map(|_| web.get(&[("cookie", &cookie)]).body).collect();
        assert_eq!(again.len(), 1, "caller {caller} with {cookie} moved between instances: {again:?}");
        homes.extend(again);
    }
    assert!(homes.len() >= 2, "12 callers' cookies all landed on one instance: {homes:?}");

    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..3 {
        for user in 0..8 {
            let answer = web.get_path(&format!("/?user=u{user}"), &[]);
            assert_eq!(answer.status, 200, "round {round}: {answer:?}");
            keys.entry(format!("u{user}")).or_default().insert(answer.body);
        }
    }
    assert!(keys.values().all(|home| home.len() == 1), "a user moved between instances: {keys:?}");
    assert!(keys.values().flatten().collect::<BTreeSet<_>>().len() >= 2, "all users on one instance: {keys:?}");
}

/// The example manifests of the user documentation.
const DOC_EXAMPLES: &str = r#"
type: MeshCircuitBreaker
mesh: default
name: backend-circuit-breaker
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      connectionLimits: {maxConnections: 2, maxPendingRequests: 8, maxRequests: 2, maxRetries: 2}
      outlierDetection:
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 20
        detectors:
          totalFailures: {consecutive: 10}
          gatewayFailures: {consecutive: 5}
          successRate: {minimumHosts: 5, requestVolume: 10, standardDeviationFactor: "1.9"}
---
type: MeshCircuitBreaker
mesh: default
name: backend-inbound-limits
spec:
  targetRef: {kind: MeshSubset, tags: {kuma.io/service: backend}}
  rules:
  - default:
      connectionLimits: {maxConnections: 100, maxRequests: 200}
---
type: MeshHealthCheck
mesh: default
name: backend-health
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      http:
        path: /health
        expectedStatuses: [200]
        requestHeadersToAdd:
          set: [{name: x-health-check, value: kodiak}]
      tcp: {}
---
type: MeshLoadBalancingStrategy
mesh: default
name: backend-sticky
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      loadBalancer:
        type: RingHash
        ringHash: {minRingSize: 1024}
      hashPolicies:
      - {type: Header, header: {name: x-user-id}, terminal: true}
      - {type: Connection, connection: {sourceIP: true}}
"#;

/// The documentation's examples pass the API schema and do what the
/// documentation says to the cluster and route of `backend`.
#[test]
fn documentation_examples() {
    let documents = kodiak_api::parse_documents(DOC_EXAMPLES).unwrap();
    let defaults: Vec<Value> = documents
        .iter()
        .map(|document| {
            let resource = ApiResource::from_document(document).unwrap_or_else(|e| panic!("{e}"));
            let spec = &resource.body["spec"];
            spec.pointer("/to/0/default").or_else(|| spec.pointer("/rules/0/default")).unwrap().clone()
        })
        .collect();
    let [outbound_limits, inbound_limits, health, sticky] = &defaults[..] else { panic!("four examples") };
    let policies = Policies {
        load_balancing: Some(sticky.clone()),
        health_check: Some(health.clone()),
        circuit_breaker: Some(outbound_limits.clone()),
    };
    let backend = dataplane(
        "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.1, inbound: [
            {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]}}",
    );
    let resources = with_policies("backend", &services([&backend])["backend"], &policies);
    let cluster = kodiak_xds_gen::render(&resources.cluster);
    assert_eq!(cluster["lbPolicy"], "RING_HASH");
    assert_eq!(cluster["circuitBreakers"]["thresholds"][0]["maxConnections"], 2);
    assert_eq!(cluster["outlierDetection"]["consecutive5xx"], 10);
    assert_eq!(cluster["outlierDetection"]["successRateStdevFactor"], 1900);
    assert_eq!(cluster["healthChecks"][0]["httpHealthCheck"]["path"], "/health");
    let route = kodiak_xds_gen::render(resources.route.as_ref().unwrap());
    let hash = &route["virtualHosts"][0]["routes"][0]["route"]["hashPolicy"];
    assert_eq!(hash[0], json!({"header": {"headerName": "x-user-id"}, "terminal": true}));
    assert_eq!(hash[1], json!({"connectionProperties": {"sourceIp": true}}));
    let inbound = mesh_circuit_breaker::read(inbound_limits);
    assert_eq!(inbound.connection_limits.unwrap().max_requests, Some(200));
}
