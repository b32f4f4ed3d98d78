//! MeshHTTPRoute and MeshTCPRoute in a real Envoy: a caller's proxy
//! configured with exactly what Kodiak generates for it (loaded statically,
//! see `support`), in front of small applications on 127.0.0.1 that say
//! which instance answered and what request reached them.
//!
//! HTTP services: `backend` (instances `backend-v1` and `backend-v2`,
//! tagged `version: v1` and `v2`) and `other` (`other-1`). TCP services:
//! `db` (`db-v1`, `db-v2`) and `db-next` (`db-next-1`), whose applications
//! send their instance name and close.

mod support;

use support::dataplane;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_xds_gen::policies::{mesh_http_route, mesh_tcp_route};
use kodiak_xds_gen::{ProxyResources, ServiceResources, ServiceView, proxy_resources, service_resources, services};
use kodiak_xds_server::Resource;
use prost::{Message, Name};
use serde_json::{Value, json};
use support::Envoy;
use support::free_port;
use support::running::Response;

/// What an application received: each request's head, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// An application on a free port of 127.0.0.1; `answer` gets each
/// connection on a thread of its own.
fn serve(answer: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

/// An HTTP/1.1 application `instance`: it answers every request with 200,
/// a header `x-app` and the body `instance: <instance>` followed by the
/// request's head, then closes the connection.
fn http_app(instance: &'static str, seen: Seen) -> u16 {
    serve(move |mut stream| {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        seen.lock().unwrap().push(head.clone());
        let body = format!("instance: {instance}\n{head}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nx-app: {instance}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
    })
}

/// A TCP application that sends its instance name and closes.
fn tcp_app(instance: &'static str) -> u16 {
    serve(move |mut stream| {
        let _ = stream.write_all(instance.as_bytes());
    })
}

/// A Dataplane whose inbound is the application on `port` itself (the
/// caller's proxy sends straight to it).
fn instance(name: &str, port: u16, service: &str, protocol: &str, version: &str) -> DataplaneView {
    dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: 127.0.0.1, inbound: [
            {{port: {port}, tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}, version: {version}}}}}]}}}}"
    ))
}

/// The caller `web`, reaching `service` on 127.0.0.1:`port`.
fn caller(service: &str, port: u16) -> DataplaneView {
    dataplane(&format!(
        "{{type: Dataplane, mesh: default, name: web, networking: {{address: 127.0.0.1,
            inbound: [{{port: {}, tags: {{kuma.io/service: web}}}}],
            outbound: [{{port: {port}, tags: {{kuma.io/service: {service}}}}}]}}}}",
        free_port()
    ))
}

/// The mesh's services and their shared resources.
struct Mesh {
    views: BTreeMap<String, ServiceView>,
    shared: BTreeMap<String, Arc<ServiceResources>>,
}

impl Mesh {
    fn new(dataplanes: &[DataplaneView]) -> Mesh {
        let views = services(dataplanes);
        let shared = views.iter().map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view)))).collect();
        Mesh { views, shared }
    }

    /// Adds to `resources` the clusters and endpoints of `clusters`, as the
    /// caller's proxy needs them: a service's shared ones, or a subset's own.
    fn add_clusters(&self, resources: &mut ProxyResources, clusters: &[mesh_http_route::BackendCluster]) {
        for backend in clusters {
            let shared = &self.shared[&backend.service];
            let (cluster, endpoints) = if backend.is_subset() {
                mesh_http_route::subset_resources(backend, &shared.cluster, &self.views[&backend.service])
            } else {
                (shared.cluster.clone(), shared.endpoints.clone())
            };
            if !resources.clusters.iter().any(|known| known.name == cluster.name) {
                resources.clusters.push(cluster);
                resources.endpoints.push(endpoints);
            }
        }
    }
}

/// What the applications' answers tell.
trait Echoed {
    /// The instance that answered.
    fn instance(&self) -> &str;
    /// The request line the application got.
    fn request_line(&self) -> &str;
    /// The values of a request header the application got.
    fn request_header(&self, name: &str) -> Vec<&str>;
}

impl Echoed for Response {
    fn instance(&self) -> &str {
        self.body.lines().next().and_then(|line| line.strip_prefix("instance: ")).unwrap_or("")
    }

    fn request_line(&self) -> &str {
        self.body.lines().nth(1).unwrap_or("")
    }

    fn request_header(&self, name: &str) -> Vec<&str> {
        self.body
            .lines()
            .skip(2)
            .filter_map(|line| line.split_once(':'))
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
            .collect()
    }
}

/// Sends `method path` to `port` with Host `backend` and `headers`, and
/// reads the whole response (the connection closes after it).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let text =
        format!("{method} {path} HTTP/1.1\r\nhost: backend\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap_or_else(|e| panic!("{method} {path}: {e} (got {bytes:?})"));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: no response: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect();
    Response { status, headers, body: body.to_owned() }
}

fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[])
}

/// The HTTP mesh, `web`'s proxy with its routes toward `backend` under the
/// MeshHTTPRoute conf `rules`, started; the port of its outbound, and
/// what `other-1` received.
fn http_setup(test: &str, rules: Value) -> (Envoy, u16, Seen) {
    let other_seen = Seen::default();
    let apps = [
        instance("backend-v1", http_app("backend-v1", Seen::default()), "backend", "http", "v1"),
        instance("backend-v2", http_app("backend-v2", Seen::default()), "backend", "http", "v2"),
        instance("other-1", http_app("other-1", other_seen.clone()), "other", "http", "v1"),
    ];
    let outbound = free_port();
    let web = caller("backend", outbound);
    let mesh = Mesh::new(&apps);
    let mut resources = proxy_resources(&web, &mesh.shared, None);
    let conf = mesh_http_route::read(&json!({ "rules": rules }));
    let (routes, clusters) = mesh_http_route::route_configuration(&conf, "backend", &mesh.views);
    let route = resources.routes.iter_mut().find(|route| route.name == routes.name).expect("the outbound's routes");
    *route = Resource::new(routes.name.clone(), &routes);
    mesh.add_clusters(&mut resources, &clusters);
    let envoy = Envoy::start(&format!("routes-{test}"), &support::static_config(&resources), &[outbound]);
    (envoy, outbound, other_seen)
}

fn rule(matches: Value, default: Value) -> Value {
    json!({"matches": matches, "default": default})
}

fn to_service(name: &str) -> Value {
    json!({"backendRefs": [{"kind": "MeshService", "name": name}]})
}

fn subset(version: &str, weight: u32) -> Value {
    json!({"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": version}, "weight": weight})
}

#[test]
fn matches_pick_the_backend_and_subsets_reach_only_their_instances() {
    let (_envoy, port, _) = http_setup(
        "matches",
        json!([
            rule(json!([{"path": {"type": "Exact", "value": "/exact"}}]), to_service("other")),
            rule(json!([{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}}]), to_service("other")),
            rule(json!([{"method": "POST"}]), to_service("other")),
            rule(json!([{"headers": [{"name": "x-pick", "value": "other"}]}]), to_service("other")),
            rule(json!([{"queryParams": [{"type": "Exact", "name": "pick", "value": "other"}]}]), to_service("other")),
            rule(json!([{"path": {"type": "PathPrefix", "value": "/v2"}}]), json!({"backendRefs": [subset("v2", 1)]})),
        ]),
    );
    let answered = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let response = request(port, method, path, headers);
        assert_eq!(response.status, 200, "{method} {path} {headers:?}: {response:?}");
        response.instance().to_owned()
    };
    for (method, path, headers) in [
        ("GET", "/exact", &[][..]),
        ("GET", "/re/42", &[]),
        ("POST", "/anything", &[]),
        ("GET", "/anything", &[("x-pick", "other")]),
        ("GET", "/anything?a=1&pick=other", &[]),
    ] {
        assert_eq!(answered(method, path, headers), "other-1", "{method} {path} {headers:?}");
    }
    // Near misses fall through to the catch-all: the service itself.
    for (method, path, headers) in [
        ("GET", "/exact/more", &[][..]),
        ("GET", "/re/abc", &[]),
        ("PUT", "/anything", &[]),
        ("GET", "/anything", &[("x-pick", "others")]),
        ("GET", "/anything?pick=others", &[]),
        ("GET", "/v2x", &[]),
    ] {
        assert!(answered(method, path, headers).starts_with("backend-"), "{method} {path} {headers:?}");
    }

    // The subset: only version v2, for the prefix and below it.
    let mut seen = BTreeMap::<String, u32>::new();
    for i in 0..20 {
        let path = if i % 2 == 0 { "/v2".to_owned() } else { format!("/v2/item/{i}") };
        *seen.entry(answered("GET", &path, &[])).or_default() += 1;
    }
    assert_eq!(seen, BTreeMap::from([("backend-v2".to_owned(), 20)]));
    // The whole service: both instances.
    let mut seen = BTreeMap::<String, u32>::new();
    for _ in 0..20 {
        *seen.entry(answered("GET", "/", &[])).or_default() += 1;
    }
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["backend-v1", "backend-v2"], "{seen:?}");
}

#[test]
fn a_weighted_split_sends_each_backend_its_share() {
    let (_envoy, port, _) = http_setup(
        "split",
        json!([rule(
            json!([{"path": {"type": "PathPrefix", "value": "/split"}}]),
            json!({"backendRefs": [subset("v1", 90), subset("v2", 10)]})
        )]),
    );
    let requests = 400;
    let mut counts = BTreeMap::<String, u32>::new();
    for i in 0..requests {
        let response = get(port, &format!("/split/{i}"));
        assert_eq!(response.status, 200, "{response:?}");
        *counts.entry(response.instance().to_owned()).or_default() += 1;
    }
    // 90% of 400 is 360; the binomial standard deviation is 6, so +-30 is
    // five of them: a correct split stays inside all but never.
    let v1 = counts.get("backend-v1").copied().unwrap_or(0);
    assert!((330..=390).contains(&v1), "backend-v1 got {v1} of {requests}: {counts:?}");
    assert_eq!(counts.values().sum::<u32>(), requests);
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["backend-v1", "backend-v2"], "{counts:?}");
}

#[test]
fn filters_modify_redirect_and_mirror() {
    let header_rules = rule(
        json!([{"path": {"type": "PathPrefix", "value": "/headers"}}]),
        json!({"backendRefs": [subset("v1", 1)], "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "x-set", "value": "by-route"}, {"name": "host", "value": "set-by-route"}],
                "add": [{"name": "x-add", "value": "by-route"}],
                "remove": ["x-drop"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "x-resp", "value": "by-route"}], "remove": ["x-app"]}}
        ]}),
    );
    let rewrite = rule(
        json!([{"path": {"type": "PathPrefix", "value": "/old"}}]),
        json!({"backendRefs": [subset("v1", 1)], "filters": [{"type": "URLRewrite", "urlRewrite": {
            "hostname": "rewritten.example", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]}),
    );
    let full_rewrite = rule(
        json!([{"path": {"type": "Exact", "value": "/full"}}]),
        json!({"backendRefs": [subset("v1", 1)], "filters": [{"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}}}]}),
    );
    let redirect = rule(
        json!([{"path": {"type": "PathPrefix", "value": "/redirect"}}]),
        json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https",
            "hostname": "new.example", "port": 8443, "statusCode": 301,
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/landing"}}}]}),
    );
    let found = rule(
        json!([{"path": {"type": "Exact", "value": "/go"}}]),
        json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/gone"}}}]}),
    );
    let mirror = rule(
        json!([{"path": {"type": "PathPrefix", "value": "/mirror"}}]),
        json!({"backendRefs": [subset("v1", 1)], "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"kind": "MeshService", "name": "other"}}}]}),
    );
    let (_envoy, port, other_seen) =
        http_setup("filters", json!([header_rules, rewrite, full_rewrite, redirect, found, mirror]));

    let response =
        request(port, "GET", "/headers", &[("x-set", "by-client"), ("x-add", "by-client"), ("x-drop", "by-client")]);
    assert_eq!((response.status, response.instance()), (200, "backend-v1"), "{response:?}");
    assert_eq!(response.request_header("x-set"), ["by-route"], "set overwrites: {response:?}");
    let added = response.request_header("x-add").join(",");
    let mut added: Vec<&str> = added.split(',').map(str::trim).collect();
    added.sort();
    assert_eq!(added, ["by-client", "by-route"], "add appends: {response:?}");
    assert!(response.request_header("x-drop").is_empty(), "remove drops: {response:?}");
    assert_eq!(response.request_header("host"), ["set-by-route"], "Host is rewritten: {response:?}");
    assert_eq!(response.header("x-resp"), Some("by-route"), "{response:?}");
    assert_eq!(response.header("x-app"), None, "the response header is removed: {response:?}");

    // Rewrites reach the application rewritten; the query string stays.
    for (path, expected) in [
        ("/old/thing?a=1", "GET /new/thing?a=1 HTTP/1.1"),
        ("/old", "GET /new HTTP/1.1"),
        ("/old/", "GET /new/ HTTP/1.1"),
        ("/full?b=2", "GET /replaced?b=2 HTTP/1.1"),
    ] {
        let response = get(port, path);
        assert_eq!((response.status, response.request_line()), (200, expected), "{path}: {response:?}");
    }
    let response = get(port, "/old/thing");
    assert_eq!(response.request_header("host"), ["rewritten.example"], "{response:?}");
    let response = get(port, "/full");
    assert_eq!(response.request_header("host"), ["backend"], "no hostname, no host rewrite: {response:?}");

    // Redirects answer the client themselves.
    let response = get(port, "/redirect/x?q=1");
    assert_eq!(response.status, 301, "{response:?}");
    assert_eq!(response.header("location"), Some("https://new.example:8443/landing/x?q=1"), "{response:?}");
    let response = get(port, "/go");
    assert_eq!(response.status, 302, "{response:?}");
    assert_eq!(response.header("location"), Some("http://backend/gone"), "{response:?}");

    // A mirrored request: the client gets backend-v1's answer, other-1 a copy.
    assert!(other_seen.lock().unwrap().is_empty(), "nothing reached other-1 yet");
    let response = get(port, "/mirror/copy-me");
    assert_eq!((response.status, response.instance()), (200, "backend-v1"), "{response:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = other_seen.lock().unwrap().clone();
        if let Some(copy) = seen.iter().find(|head| head.starts_with("GET /mirror/copy-me ")) {
            assert!(copy.to_ascii_lowercase().contains("host: backend-shadow"), "{copy}");
            break;
        }
        assert!(Instant::now() < deadline, "other-1 got no copy of the request: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tcp_route_splits_connections_by_weight() {
    let apps = [
        instance("db-v1", tcp_app("db-v1"), "db", "tcp", "v1"),
        instance("db-v2", tcp_app("db-v2"), "db", "tcp", "v2"),
        instance("db-next-1", tcp_app("db-next-1"), "db-next", "tcp", "v1"),
    ];
    let outbound = free_port();
    let web = caller("db", outbound);
    let mesh = Mesh::new(&apps);
    let mut resources = proxy_resources(&web, &mesh.shared, None);
    let conf = mesh_tcp_route::read(&json!({"rules": [{"default": {"backendRefs": [
        {"kind": "MeshServiceSubset", "name": "db", "tags": {"version": "v2"}, "weight": 80},
        {"kind": "MeshService", "name": "db-next", "weight": 20}
    ]}}]}));

    // The outbound listener's TCP proxy gets the split.
    let listener = resources.listeners.iter_mut().find(|l| l.name == format!("outbound:127.0.0.1:{outbound}")).unwrap();
    let mut decoded = Listener::decode(listener.body.value.as_slice()).unwrap();
    let Some(filter::ConfigType::TypedConfig(config)) = &mut decoded.filter_chains[0].filters[0].config_type else {
        panic!("the outbound listener has a typed filter")
    };
    assert_eq!(config.type_url, TcpProxy::type_url());
    let mut proxy = TcpProxy::decode(config.value.as_slice()).unwrap();
    let clusters = mesh_tcp_route::apply_to_tcp_proxy(&conf, "db", &mut proxy);
    config.value = proxy.encode_to_vec();
    *listener = Resource::new(listener.name.clone(), &decoded);
    mesh.add_clusters(&mut resources, &clusters);
    let _envoy = Envoy::start("routes-tcp", &support::static_config(&resources), &[outbound]);

    let connections = 300;
    let mut counts = BTreeMap::<String, u32>::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(("127.0.0.1", outbound)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        *counts.entry(answer).or_default() += 1;
    }
    // 80% of 300 is 240, with a binomial standard deviation of about 7:
    // +-35 is five of them.
    let v2 = counts.get("db-v2").copied().unwrap_or(0);
    assert!((205..=275).contains(&v2), "db-v2 got {v2} of {connections}: {counts:?}");
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["db-next-1", "db-v2"], "db-v1 is not in the split: {counts:?}");
}
