//! MeshFaultInjection, MeshRateLimit and MeshAccessLog in a real Envoy,
//! configured with what Kodiak generates (loaded statically, see `support`)
//! plus the policies' functions laid on the built listeners, as generation
//! does: fault and rate-limit HTTP filters before the router of an inbound,
//! the network rate limit first on its chain, access logs on the inbound and
//! outbound listeners.
//!
//! The server proxy `backend-1` has several inbounds, one per case, all
//! served by one small HTTP application (and a TCP echo) on 127.0.0.1; a
//! client proxy `web-1` calls them through its outbound listeners.
//! Timing is only ever checked as "took at least".

mod support;

use support::dataplane;
use support::running::echo_app;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier,
};
use kodiak_api::dataplane_view::{DataplaneView, Protocol};
use kodiak_xds_gen::policies::{mesh_access_log, mesh_fault_injection, mesh_rate_limit};
use kodiak_xds_gen::{ProxyResources, names, proxy_resources, service_resources, services};
use kodiak_xds_server::Resource;
use prost::Message;
use serde_json::{Value, json};
use support::running::{exchange, serve};
use support::{Envoy, free_port, static_config};

const MESH: &str = "default";
/// The size of the body `/big` answers with.
const BIG: usize = 256 * 1024;
/// The header the application answers with when it received `x-kuma-tags`.
const SAW_TAGS: &str = "x-saw-tags";

// ---- Applications ----------------------------------------------------------

/// An HTTP/1.1 application (keep-alive): `/big` answers [`BIG`] bytes,
/// anything else `hello`; a request carrying `x-kuma-tags` gets its value
/// back in [`SAW_TAGS`].
fn http_app(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(line.trim_end().to_owned()),
            }
        }
        let path = head.first().and_then(|request| request.split(' ').nth(1)).unwrap_or("/").to_owned();
        let tags = head.iter().find_map(|header| {
            let (name, value) = header.split_once(':')?;
            name.eq_ignore_ascii_case("x-kuma-tags").then(|| value.trim().to_owned())
        });
        let body = if path == "/big" { "x".repeat(BIG) } else { "hello".to_owned() };
        let saw = tags.map(|tags| format!("{SAW_TAGS}: {tags}\r\n")).unwrap_or_default();
        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{saw}\r\n{body}", body.len());
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

// ---- Dataplanes and resources ----------------------------------------------

/// The server `backend-1` with one inbound per `(service, protocol, port)`,
/// the HTTP ones served by `http`, the TCP ones by `tcp`.
fn server(inbounds: &[(&str, &str, u16)], http: u16, tcp: u16) -> DataplaneView {
    let inbounds: Vec<String> = inbounds
        .iter()
        .map(|(service, protocol, port)| {
            let app = if *protocol == "tcp" { tcp } else { http };
            format!("{{port: {port}, servicePort: {app}, tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}}}}}")
        })
        .collect();
    dataplane(&format!(
        "{{type: Dataplane, mesh: {MESH}, name: backend-1, networking: {{address: 127.0.0.1, inbound: [{}]}}}}",
        inbounds.join(", ")
    ))
}

/// The client `web-1` (service `web`, tag `team: blue`) with one outbound per `(service, port)`.
fn client(outbounds: &[(&str, u16)]) -> DataplaneView {
    let outbounds: Vec<String> = outbounds
        .iter()
        .map(|(service, port)| format!("{{port: {port}, tags: {{kuma.io/service: {service}}}}}"))
        .collect();
    dataplane(&format!(
        "{{type: Dataplane, mesh: {MESH}, name: web-1, networking: {{address: 127.0.0.1, inbound: [
            {{port: {}, servicePort: {}, tags: {{kuma.io/service: web, team: blue}}}}], outbound: [{}]}}}}",
        free_port(),
        free_port(),
        outbounds.join(", ")
    ))
}

/// The resources of `proxy`, which calls the services of `servers`.
fn resources(proxy: &DataplaneView, servers: &[&DataplaneView]) -> ProxyResources {
    let shared: BTreeMap<String, Arc<_>> = services(servers.iter().copied())
        .iter()
        .map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view))))
        .collect();
    proxy_resources(proxy, &shared, None)
}

/// Changes the listener named `name` of `resources` with `change`.
fn change_listener(resources: &mut ProxyResources, name: &str, change: impl FnOnce(&mut Listener)) {
    let slot = resources.listeners.iter_mut().find(|resource| resource.name == name);
    let slot = slot.unwrap_or_else(|| panic!("no listener {name}"));
    let mut listener = Listener::decode(slot.body.value.as_slice()).unwrap();
    change(&mut listener);
    *slot = Resource::new(name, &listener);
}

/// Changes the HTTP connection manager of every filter chain of `listener`.
fn change_managers(listener: &mut Listener, change: impl Fn(&mut HttpConnectionManager)) {
    let mut changed = 0;
    for filter in listener.filter_chains.iter_mut().flat_map(|chain| chain.filters.iter_mut()) {
        let Some(filter::ConfigType::TypedConfig(config)) = &mut filter.config_type else { continue };
        if config.type_url.ends_with(".HttpConnectionManager") {
            let mut manager = HttpConnectionManager::decode(config.value.as_slice()).unwrap();
            change(&mut manager);
            config.value = manager.encode_to_vec();
            changed += 1;
        }
    }
    assert!(changed > 0, "listener {} has no HTTP connection manager", listener.name);
}

/// Inserts inbound HTTP `filters` the way generation does: before the router.
fn before_router(manager: &mut HttpConnectionManager, filters: Vec<HttpFilter>) {
    let router = manager.http_filters.len() - 1;
    assert_eq!(manager.http_filters[router].name, "envoy.filters.http.router");
    manager.http_filters.splice(router..router, filters);
}

/// Puts network `filters` first on every chain of `listener`.
fn first_on_chains(listener: &mut Listener, filters: &[Filter]) {
    for chain in &mut listener.filter_chains {
        chain.filters.splice(0..0, filters.iter().cloned());
    }
}

fn inbound_listener(port: u16) -> String {
    names::inbound_listener("127.0.0.1", port)
}

fn outbound_listener(port: u16) -> String {
    names::outbound_listener("127.0.0.1", port)
}

// ---- Envoy and clients -----------------------------------------------------

/// Where a test keeps its Envoy configurations, logs and access logs.
fn work_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kodiak-inbound-policies-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HTTP response as the client sees it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body_len: usize,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// GETs `path` from 127.0.0.1:`port` with `headers` over a new connection;
/// the answer must come within 20 s. The body is read by its length, not
/// until the connection closes: Envoy holds a connection it answered
/// itself open for a while, waiting for the client to close first.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: service\r\nuser-agent: kodiak-test\r\n{extra}connection: close\r\n\r\n");
    (&stream).write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(&stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).unwrap();
        assert!(read > 0, "no complete HTTP response from {port}: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok());
    let mut response = Response { status: status.unwrap_or_else(|| panic!("no status: {head:?}")), head, body_len: 0 };
    let mut body = Vec::new();
    match response.header("content-length").and_then(|length| length.parse::<usize>().ok()) {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    response.body_len = body.len();
    response
}

/// Waits (10 s at most) until `file` holds at least `count` lines, and returns them.
fn lines(file: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} has {} lines, not {count}:\n{text}", file.display(), lines.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- MeshFaultInjection ----------------------------------------------------

fn faults(conf: Value) -> mesh_fault_injection::Conf {
    mesh_fault_injection::read(&conf)
}

#[test]
fn fault_injection_aborts_delays_and_limits_bandwidth() {
    let (http, echo) = (serve(http_app), serve(echo_app));
    let ports: [u16; 6] = std::array::from_fn(|_| free_port());
    let backend = server(
        &[
            ("abort-all", "http", ports[0]),
            ("abort-half", "http", ports[1]),
            ("delayed", "http", ports[2]),
            ("throttled", "http", ports[3]),
            ("callers", "http", ports[4]),
            ("plain", "http", ports[5]),
        ],
        http,
        echo,
    );
    let confs = [
        (ports[0], faults(json!({"http": [{"abort": {"httpStatus": 418, "percentage": 100}}]}))),
        (ports[1], faults(json!({"http": [{"abort": {"httpStatus": 500, "percentage": "50.0"}}]}))),
        (ports[2], faults(json!({"http": [{"delay": {"value": "1500ms", "percentage": 100}}]}))),
        (ports[3], faults(json!({"http": [{"responseBandwidth": {"limit": "64kbps", "percentage": 100}}]}))),
    ];
    let mut server_resources = resources(&backend, &[]);
    for (port, conf) in &confs {
        change_listener(&mut server_resources, &inbound_listener(*port), |listener| {
            change_managers(listener, |manager| before_router(manager, mesh_fault_injection::http_filters(conf)));
        });
    }
    // "callers" picks callers by tags, as `from` entries of kind MeshService
    // and MeshSubset do: web callers of team blue get 503, other callers of
    // team blue 502, everyone else 500 (each only its own fault).
    let abort = |status: u16| faults(json!({"http": [{"abort": {"httpStatus": status, "percentage": 100}}]}));
    let tags = |pairs: &[(&str, &str)]| -> mesh_fault_injection::CallerTags {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    };
    let selectors = mesh_fault_injection::InboundConf {
        every_caller: Some(abort(500)),
        callers: vec![
            (tags(&[("kuma.io/service", "web"), ("team", "blue")]), abort(503)),
            (tags(&[("team", "blue")]), abort(502)),
        ],
    };
    change_listener(&mut server_resources, &inbound_listener(ports[4]), |listener| {
        change_managers(listener, |manager| {
            before_router(manager, mesh_fault_injection::inbound_http_filters(&selectors));
        });
    });
    for port in [ports[4], ports[5]] {
        change_listener(&mut server_resources, &inbound_listener(port), |listener| {
            change_managers(listener, |manager| {
                if let Some(RouteSpecifier::RouteConfig(route)) = &mut manager.route_specifier {
                    mesh_fault_injection::strip_tags_header(route);
                }
            });
        });
    }
    // web-1 calls "callers" and "plain" with its tags header.
    let outbound: [u16; 2] = std::array::from_fn(|_| free_port());
    let web = client(&[("callers", outbound[0]), ("plain", outbound[1])]);
    let mut client_resources = resources(&web, &[&backend]);
    let tags = mesh_fault_injection::tags_header_value(&mesh_fault_injection::dataplane_tags(&web));
    assert_eq!(tags, "&kuma.io/service=web&&team=blue&");
    for port in outbound {
        change_listener(&mut client_resources, &outbound_listener(port), |listener| {
            change_managers(listener, |manager| {
                before_router(manager, vec![mesh_fault_injection::tags_header_filter(&tags)])
            });
        });
    }
    let _server = Envoy::start("faults-backend", &static_config(&server_resources), &ports);
    let _client = Envoy::start("faults-web", &static_config(&client_resources), &outbound);

    // Abort 100%: every request gets the status, none reaches the application.
    for _ in 0..5 {
        assert_eq!(get(ports[0], "/", &[]).status, 418);
    }

    // Abort 50% of 400 requests: binomially 200 ± 10; 6 standard deviations either side.
    let aborted = (0..400).filter(|_| get(ports[1], "/", &[]).status == 500).count();
    assert!((140..=260).contains(&aborted), "{aborted} of 400 requests aborted, expected about 200");

    // Delay 1.5 s: a request takes at least that long, and is then served.
    let started = Instant::now();
    let delayed = get(ports[2], "/", &[]);
    assert_eq!(delayed.status, 200);
    // Envoy's timers may fire up to a millisecond early.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1495), "the delayed request took {took:?}");

    // 64 KiB/s: 256 KiB take about 4 s (the first second's worth may go at
    // once, so at least 3 s); the whole body arrives.
    let started = Instant::now();
    let throttled = get(ports[3], "/big", &[]);
    let took = started.elapsed();
    assert_eq!((throttled.status, throttled.body_len), (200, BIG));
    assert!(took >= Duration::from_secs(3), "256 KiB at 64 KiB/s took {took:?}");

    // Callers: web-1's proxy adds its tags (web, team blue): the most specific
    // selector's fault, and only it. Plain serves web-1's calls, and its
    // application never sees the header.
    let via_web = get(outbound[0], "/", &[]);
    assert_eq!(via_web.status, 503, "{via_web:?}");
    let plain = get(outbound[1], "/", &[]);
    assert_eq!((plain.status, plain.header(SAW_TAGS)), (200, None), "{plain:?}");
    // Straight to the inbound: another blue caller (among its teams) gets 502;
    // a caller without tags, of another team, or of a team that only
    // contains "blue" gets the every-caller fault.
    let other_blue = get(ports[4], "/", &[("x-kuma-tags", "&kuma.io/service=other&&team=blue,red&")]);
    assert_eq!(other_blue.status, 502, "{other_blue:?}");
    for header in [None, Some("&kuma.io/service=web&&team=red&"), Some("&kuma.io/service=web&&team=blueish&")] {
        let headers: Vec<(&str, &str)> = header.map(|value| ("x-kuma-tags", value)).into_iter().collect();
        assert_eq!(get(ports[4], "/", &headers).status, 500, "{header:?}");
    }
}

// ---- MeshRateLimit ---------------------------------------------------------

#[test]
fn rate_limits_answer_past_the_limit_and_close_extra_connections() {
    let (http, echo) = (serve(http_app), serve(echo_app));
    let ports: [u16; 3] = std::array::from_fn(|_| free_port());
    let backend =
        server(&[("limited", "http", ports[0]), ("custom", "http", ports[1]), ("echo", "tcp", ports[2])], http, echo);
    let default_reply = mesh_rate_limit::read(&json!({"local": {"http": {
        "requestRate": {"num": 5, "interval": "10s"},
        "onRateLimit": {"headers": {"set": [{"name": "x-limited", "value": "yes"}], "add": [{"name": "x-why", "value": "busy"}]}}}}}));
    let custom_status = mesh_rate_limit::read(&json!({"local": {"http": {
        "requestRate": {"num": 2, "interval": "10s"}, "onRateLimit": {"status": 503}}}}));
    let connections =
        mesh_rate_limit::read(&json!({"local": {"tcp": {"connectionRate": {"num": 2, "interval": "10s"}}}}));
    let mut server_resources = resources(&backend, &[]);
    for (port, conf) in [(ports[0], &default_reply), (ports[1], &custom_status)] {
        change_listener(&mut server_resources, &inbound_listener(port), |listener| {
            change_managers(listener, |manager| before_router(manager, mesh_rate_limit::http_filters(conf)));
        });
    }
    change_listener(&mut server_resources, &inbound_listener(ports[2]), |listener| {
        first_on_chains(listener, &mesh_rate_limit::network_filters(&connections));
    });
    let _server = Envoy::start("limits-backend", &static_config(&server_resources), &ports[..1]);

    // 5 requests per 10 s: five quick ones pass, the sixth gets 429 with the headers.
    for i in 0..5 {
        let response = get(ports[0], "/", &[]);
        assert_eq!(response.status, 200, "request {}: {response:?}", i + 1);
        assert_eq!(response.header("x-limited"), None);
    }
    let limited = get(ports[0], "/", &[]);
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!((limited.header("x-limited"), limited.header("x-why")), (Some("yes"), Some("busy")), "{limited:?}");

    // The configured status replaces 429.
    assert_eq!([get(ports[1], "/", &[]).status, get(ports[1], "/", &[]).status], [200, 200]);
    assert_eq!(get(ports[1], "/", &[]).status, 503);

    // 2 connections per 10 s: the first two are echoed, the third is closed unanswered.
    assert_eq!(exchange(ports[2], "one"), "one");
    assert_eq!(exchange(ports[2], "two"), "two");
    assert_eq!(exchange(ports[2], "three"), "", "the third connection must be closed");
}

// ---- MeshAccessLog ---------------------------------------------------------

/// A named pipe at `path`, as kodiak-dp makes it (here with mkfifo(1)),
/// and the lines written to it, read on a thread of their own.
fn pipe_lines(path: &Path) -> std::sync::mpsc::Receiver<String> {
    let made = Command::new("mkfifo").arg("-m").arg("600").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    // Opened for reading and writing, as kodiak-dp does: no wait for a writer.
    let pipe = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

fn logs(conf: Value) -> mesh_access_log::Conf {
    mesh_access_log::read(&conf)
}

#[test]
fn access_logs_reach_files_the_tcp_pipe_and_an_open_telemetry_collector() {
    let (http, echo) = (serve(http_app), serve(echo_app));
    let ports: [u16; 2] = std::array::from_fn(|_| free_port());
    let backend = server(&[("backend", "http", ports[0]), ("echo", "tcp", ports[1])], http, echo);
    let outbound = free_port();
    let web = client(&[("backend", outbound)]);
    let dir = work_dir("access-logs");
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let pipe = dir.join("kodiak-access-logs.pipe");
    let pipe_lines = pipe_lines(&pipe);
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let collector_port = collector.local_addr().unwrap().port();

    // backend-1's HTTP inbound (`from`): the default format, a plain and a JSON
    // one, a TCP collector and OpenTelemetry; its TCP inbound: the default format.
    let http_conf = logs(json!({"backends": [
        {"type": "File", "file": {"path": file("in-default.log")}},
        {"type": "File", "file": {"path": file("in-plain.log"), "format": {"type": "Plain",
            "plain": "%KUMA_SOURCE_SERVICE% -> %KUMA_DESTINATION_SERVICE% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %KUMA_TRAFFIC_DIRECTION% %KUMA_MESH%"}}},
        {"type": "File", "file": {"path": file("in-json.log"), "format": {"type": "Json", "json": [
            {"key": "to", "value": "%KUMA_DESTINATION_SERVICE%"}, {"key": "path", "value": "%REQ(:PATH)%"},
            {"key": "status", "value": "%RESPONSE_CODE%"}, {"key": "mesh", "value": "%KUMA_MESH%"}]}}},
        {"type": "Tcp", "tcp": {"address": "127.0.0.1:5999"}},
        {"type": "Tcp", "tcp": {"address": "127.0.0.1:5998", "format": {"type": "Json", "json": [{"key": "path", "value": "%REQ(:PATH)%"}]}}},
        {"type": "OpenTelemetry", "openTelemetry": {"endpoint": format!("127.0.0.1:{collector_port}")}}
    ]}));
    let tcp_conf = logs(json!({"backends": [{"type": "File", "file": {"path": file("in-tcp.log")}}]}));
    let mut server_resources = resources(&backend, &[]);
    let pipe_path = Some(pipe.to_string_lossy().into_owned());
    for (inbound, conf) in backend.inbounds.iter().zip([&http_conf, &tcp_conf]) {
        let context = mesh_access_log::LogContext::inbound(&backend, inbound, pipe_path.clone());
        change_listener(&mut server_resources, &inbound_listener(inbound.port), |listener| {
            mesh_access_log::apply_to_listener(conf, &context, listener);
        });
    }
    for cluster in mesh_access_log::clusters(&http_conf) {
        server_resources.clusters.push(Resource::new(cluster.name.clone(), &cluster));
    }
    // web-1's outbound to backend (`to`): the default format.
    let to_conf = logs(json!({"backends": [{"type": "File", "file": {"path": file("out-default.log")}}]}));
    let mut client_resources = resources(&web, &[&backend]);
    let context = mesh_access_log::LogContext::outbound(&web, "backend", Protocol::Http, None);
    change_listener(&mut client_resources, &outbound_listener(outbound), |listener| {
        mesh_access_log::apply_to_listener(&to_conf, &context, listener);
    });
    let _server = Envoy::start("logs-backend", &static_config(&server_resources), &ports[..1]);
    let _client = Envoy::start("logs-web", &static_config(&client_resources), &[outbound]);

    assert_eq!(get(outbound, "/through-web", &[]).status, 200);
    assert_eq!(get(ports[0], "/direct", &[]).status, 200);
    assert_eq!(exchange(ports[1], "ping"), "ping");

    // One line per request in each file, with the fields of its format.
    let default_lines = lines(Path::new(&file("in-default.log")), 2);
    assert_eq!(default_lines.len(), 2, "{default_lines:?}");
    for (line, path) in default_lines.iter().zip(["/through-web", "/direct"]) {
        assert!(line.contains(&format!(r#"] default "GET {path} HTTP/1.1" 200 "#)), "{line}");
        assert!(line.contains(r#""kodiak-test""#) && line.contains(r#""unknown" "backend" "127.0.0.1""#), "{line}");
        assert!(line.contains(&format!(r#""127.0.0.1:{http}""#)), "upstream host in {line}");
    }
    assert_eq!(
        lines(Path::new(&file("in-plain.log")), 2),
        [
            "unknown -> backend GET /through-web 200 INBOUND default",
            "unknown -> backend GET /direct 200 INBOUND default"
        ]
    );
    let json_lines: Vec<Value> =
        lines(Path::new(&file("in-json.log")), 2).iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    for (entry, path) in json_lines.iter().zip(["/through-web", "/direct"]) {
        assert_eq!(entry["to"], "backend", "{entry}");
        assert_eq!(entry["path"], path, "{entry}");
        assert_eq!(entry["mesh"], "default", "{entry}");
        assert_eq!(entry["status"].to_string().trim_matches('"'), "200", "{entry}");
    }
    let out = lines(Path::new(&file("out-default.log")), 1);
    assert!(out[0].contains(r#"] default "GET /through-web HTTP/1.1" 200 "#), "{}", out[0]);
    assert!(out[0].contains(&format!(r#""web" "backend" "127.0.0.1" "127.0.0.1:{}""#, ports[0])), "{}", out[0]);
    let tcp = lines(Path::new(&file("in-tcp.log")), 1);
    assert!(tcp[0].contains(&format!("default 127.0.0.1(unknown)->127.0.0.1:{echo}(echo) took ")), "{}", tcp[0]);
    assert!(tcp[0].contains("sent 4 bytes, received: 4 bytes"), "{}", tcp[0]);

    // The tcp backends: one addressed entry per request in the pipe,
    // which kodiak-dp sends on to the addresses.
    let mut entries: Vec<Value> = (0..4)
        .map(|_| pipe_lines.recv_timeout(Duration::from_secs(10)).expect("an entry in the pipe"))
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect();
    entries.sort_by_key(|entry| entry["address"].to_string());
    assert_eq!(entries[0]["message"], json!({"path": "/through-web"}));
    assert_eq!(entries[1]["message"], json!({"path": "/direct"}));
    assert_eq!(entries[0]["address"], "127.0.0.1:5998");
    let text = entries[2]["message"].as_str().unwrap();
    assert_eq!(entries[2]["address"], "127.0.0.1:5999");
    assert!(text.ends_with('\n') && text.contains(r#""GET /through-web HTTP/1.1" 200"#), "{text:?}");

    // OpenTelemetry: Envoy opens an HTTP/2 (gRPC) connection to the collector.
    let (mut stream, _) = accept_within(&collector, Duration::from_secs(10));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut preface = [0u8; 24];
    stream.read_exact(&mut preface).unwrap();
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

/// The first connection `listener` accepts within `limit` (panics otherwise).
fn accept_within(listener: &TcpListener, limit: Duration) -> (TcpStream, std::net::SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                return (stream, peer);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection within {limit:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("accept: {error}"),
        }
    }
}
