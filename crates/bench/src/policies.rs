//! `kodiak-bench-policies`: how long it takes to compute what every policy
//! type says for one proxy (`kodiak_policy::rules::proxy_rules`), and the
//! proxy's whole Envoy configuration under them, in a mesh of many services
//! and policies. Pure CPU, no network: the mesh is built in memory, the
//! policies are read once (`MeshPolicies::new`, timed on its own), then
//! every proxy is computed one after the other, over several rounds, each
//! computation timed. "Generation" is what the control plane does per
//! proxy: the rules, their typed reading, and the proxy's resources built
//! and encoded, with services' clusters and routes taken from the mesh's
//! shared cache; the first round fills that cache (cold), the later ones
//! find it filled (warm, as in a running control plane).
//!
//! The mesh: `--services` services, one Dataplane each with one inbound
//! (`kuma.io/service: svc-N`, `version: v0..v2`) and `--outbounds`
//! outbounds, and `--policies` policies of mixed types and kinds: mesh-wide
//! defaults, policies of one service toward other services, mesh-wide
//! policies toward one service, MeshSubset ones by version, Dataplane ones,
//! HTTP and TCP routes, proxy patches, traces and traffic permissions.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kodiak_api::Resource;
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_bench::percentile;
use kodiak_policy::rules::{MeshPolicies, proxy_rules};
use kodiak_xds_gen::policies::proxy_policies;
use kodiak_xds_gen::{SharedServices, proxy_resources_with_policies};
use serde_json::{Value, json};

const MESH: &str = "default";

#[derive(Parser)]
#[command(
    about = "Benchmark computing the policies that apply to one proxy in a large mesh",
    after_help = "Run it as measured in BENCHMARKS.md:\n  cargo build --release -p kodiak-bench --bin kodiak-bench-policies\n  target/release/kodiak-bench-policies --services 1000 --policies 500 --rounds 5"
)]
struct Args {
    /// Services in the mesh, one Dataplane each.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Outbounds of each Dataplane.
    #[arg(long, default_value_t = 5)]
    outbounds: usize,
    /// Policies in the mesh.
    #[arg(long, default_value_t = 500)]
    policies: usize,
    /// How many times every proxy's rules are computed.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn resource(document: Value) -> anyhow::Result<Resource> {
    Resource::from_document(&document).map_err(|violations| anyhow::anyhow!("{violations} in {document}"))
}

fn service(i: usize) -> String {
    format!("svc-{i}")
}

fn dataplane(i: usize, services: usize, outbounds: usize) -> Value {
    let outbound: Vec<Value> = (1..=outbounds)
        .map(|k| json!({"port": 20000 + k, "tags": {"kuma.io/service": service((i + k * 7) % services)}}))
        .collect();
    json!({
        "type": "Dataplane", "mesh": MESH, "name": format!("dp-{i}"),
        "labels": {"team": format!("team-{}", i % 10)},
        "networking": {
            "address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
            "inbound": [{"port": 10000, "tags": {"kuma.io/service": service(i), "version": format!("v{}", i % 3)}}],
            "outbound": outbound,
        }
    })
}

/// A `to`/`from` conf of each type that takes `default` entries, varied by `n`.
fn conf(kind: &str, n: usize) -> Value {
    match kind {
        "MeshTimeout" => {
            json!({"connectionTimeout": format!("{}s", 1 + n % 9), "http": {"requestTimeout": format!("{}s", 5 + n % 20)}})
        }
        "MeshRetry" => json!({"http": {"numRetries": 1 + n % 5, "retryOn": ["5xx", "Reset"]}}),
        "MeshCircuitBreaker" => json!({"connectionLimits": {"maxConnections": 100 + n, "maxRequests": 200 + n}}),
        "MeshHealthCheck" => {
            json!({"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1 + n % 3, "http": {"path": "/health"}})
        }
        _ => {
            let balancer = ["RoundRobin", "LeastRequest", "Random"][n % 3];
            json!({"loadBalancer": {"type": balancer}})
        }
    }
}

const TO_TYPES: [&str; 5] =
    ["MeshTimeout", "MeshRetry", "MeshCircuitBreaker", "MeshHealthCheck", "MeshLoadBalancingStrategy"];

fn policy(kind: &str, name: String, spec: Value) -> Value {
    json!({"type": kind, "mesh": MESH, "name": name, "spec": spec})
}

fn to_entry(kind: &str, destination: Option<String>, n: usize) -> Value {
    let target = destination.map_or(json!({"kind": "Mesh"}), |name| json!({"kind": "MeshService", "name": name}));
    json!({"targetRef": target, "default": conf(kind, n)})
}

/// `count` policies over `services` services, in the mix the module
/// documentation describes.
fn policies(count: usize, services: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let svc = |i: usize| service(i % services);
    // Mesh-wide defaults, as a new mesh gets.
    for kind in TO_TYPES {
        let mut spec = json!({"targetRef": {"kind": "Mesh"}, "to": [to_entry(kind, None, 0)]});
        if matches!(kind, "MeshTimeout" | "MeshCircuitBreaker") {
            spec["from"] = json!([{"targetRef": {"kind": "Mesh"}, "default": conf(kind, 1)}]);
        }
        out.push(policy(kind, format!("{}-all", kind.to_lowercase()), spec));
    }
    out.push(policy(
        "MeshTrafficPermission",
        "allow-all".into(),
        json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
    ));
    let mut n = 0;
    while out.len() < count {
        let kind = TO_TYPES[n % TO_TYPES.len()];
        let name = format!("p-{n}");
        let document = match n % 50 {
            // One service's policies toward two other services: 60%.
            0..30 => policy(
                kind,
                name,
                json!({"targetRef": {"kind": "MeshService", "name": svc(n * 3)},
                    "to": [to_entry(kind, Some(svc(n * 7 + 1)), n), to_entry(kind, Some(svc(n * 11 + 2)), n)]}),
            ),
            // Mesh-wide policies toward one service: 20%, on every proxy.
            30..40 => {
                policy(kind, name, json!({"targetRef": {"kind": "Mesh"}, "to": [to_entry(kind, Some(svc(n * 13)), n)]}))
            }
            // One version's proxies toward the whole mesh: 8%.
            40..44 => policy(
                kind,
                name,
                json!({"targetRef": {"kind": "MeshSubset", "tags": {"version": format!("v{}", n % 3)}},
                    "to": [to_entry(kind, None, n)]}),
            ),
            // One Dataplane's timeouts: 2%.
            44 => policy(
                "MeshTimeout",
                name,
                json!({"targetRef": {"kind": "Dataplane", "name": format!("dp-{}", n % services)},
                    "to": [to_entry("MeshTimeout", None, n)], "from": [{"targetRef": {"kind": "Mesh"}, "default": conf("MeshTimeout", n)}]}),
            ),
            // HTTP routes of one service: 4%.
            45 | 46 => policy(
                "MeshHTTPRoute",
                name,
                json!({"targetRef": {"kind": "MeshService", "name": svc(n * 3)},
                "to": [{"targetRef": {"kind": "MeshService", "name": svc(n * 7 + 1)}, "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                     "default": {"backendRefs": [{"kind": "MeshService", "name": svc(n * 7 + 1), "weight": 90},
                                                 {"kind": "MeshService", "name": svc(n * 7 + 2), "weight": 10}]}},
                    {"matches": [{"path": {"type": "Exact", "value": "/health"}}],
                     "default": {"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-bench", "value": "1"}]}}]}}
                ]}]}),
            ),
            // TCP routes of one service: 2%.
            47 => policy(
                "MeshTCPRoute",
                name,
                json!({"targetRef": {"kind": "MeshService", "name": svc(n * 3)},
                    "to": [{"targetRef": {"kind": "MeshService", "name": svc(n * 5 + 3)}, "rules": [
                        {"default": {"backendRefs": [{"kind": "MeshService", "name": svc(n * 5 + 4), "weight": 1}]}}]}]}),
            ),
            // Proxy patches, mesh-wide or of one service: 2%.
            48 => policy(
                "MeshProxyPatch",
                name,
                json!({"targetRef": if n % 100 == 48 { json!({"kind": "Mesh"}) } else { json!({"kind": "MeshService", "name": svc(n)}) },
                    "default": {"appendModifications": [{"cluster": {"operation": "Patch", "match": {"name": svc(n + 1)},
                        "value": "connectTimeout: 3s"}}]}}),
            ),
            // Traces of one service: 2%.
            _ => policy(
                "MeshTrace",
                name,
                json!({"targetRef": {"kind": "MeshService", "name": svc(n)},
                    "default": {"backends": [{"type": "Zipkin", "zipkin": {"url": "http://zipkin:9411/api/v2/spans"}}],
                                "sampling": {"overall": n % 100}}}),
            ),
        };
        out.push(document);
        n += 1;
    }
    out
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let services = args.services.max(1);
    let dataplanes: Vec<Resource> = (0..services)
        .map(|i| resource(dataplane(i, services, args.outbounds)))
        .collect::<anyhow::Result<_>>()
        .context("building Dataplanes")?;
    let resources: Vec<Resource> = policies(args.policies, services)
        .into_iter()
        .map(resource)
        .collect::<anyhow::Result<_>>()
        .context("building policies")?;

    let start = Instant::now();
    let mesh = MeshPolicies::new(MESH, &resources);
    let read = start.elapsed();
    anyhow::ensure!(mesh.unreadable().is_empty(), "unreadable policies: {:?}", mesh.unreadable());

    let mut latencies = Vec::with_capacity(services * args.rounds);
    let (mut types, mut confs) = (0usize, 0usize);
    for round in 0..args.rounds.max(1) {
        for dataplane in &dataplanes {
            let begin = Instant::now();
            let rules = proxy_rules(dataplane, &mesh);
            latencies.push(begin.elapsed());
            if round == 0 {
                types += rules.types.len();
                confs += rules
                    .types
                    .values()
                    .map(|t| {
                        let to = usize::from(t.to.mesh.is_some()) + t.to.services.len() + t.to.routes.len();
                        let from: usize = t.from.iter().map(|i| usize::from(i.conf.is_some()) + i.callers.len()).sum();
                        to + from + usize::from(t.proxy.is_some())
                    })
                    .sum::<usize>();
            }
            std::hint::black_box(rules);
        }
    }
    let views: Vec<DataplaneView> = dataplanes.iter().map(DataplaneView::from_resource).collect();
    let mut shared = SharedServices::default();
    shared.update(kodiak_xds_gen::services(&views));
    let (mut cold, mut warm) = (Vec::with_capacity(services), Vec::with_capacity(services * args.rounds));
    let mut resources_per_proxy = 0usize;
    for round in 0..=args.rounds.max(1) {
        for (dataplane, view) in dataplanes.iter().zip(&views) {
            let begin = Instant::now();
            let policies = proxy_policies(&proxy_rules(dataplane, &mesh), view.outbound_services());
            let (generated, problems) = proxy_resources_with_policies(view, &mut shared, None, &policies);
            let took = begin.elapsed();
            anyhow::ensure!(problems.is_empty(), "{} does not generate cleanly: {problems:?}", view.name);
            if round == 0 {
                cold.push(took);
                resources_per_proxy += generated.by_type().iter().map(|(_, list)| list.len()).sum::<usize>();
            } else {
                warm.push(took);
            }
            std::hint::black_box(generated);
        }
    }
    println!(
        "mesh: {services} services (1 inbound, {} outbounds each), {} policies; read once in {:.2} ms",
        args.outbounds,
        resources.len(),
        read.as_secs_f64() * 1e3
    );
    println!(
        "per proxy: {:.1} policy types and {:.1} merged confs on average; {:.1} Envoy resources",
        types as f64 / services as f64,
        confs as f64 / services as f64,
        resources_per_proxy as f64 / services as f64
    );
    println!("{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}", "", "samples", "p50 µs", "p99 µs", "mean µs", "max µs");
    for (what, samples) in [
        ("matched policies (proxy_rules)", latencies),
        ("generation, shared cache warm (aim < 1000)", warm),
        ("generation, first round (cache cold)", cold),
    ] {
        report(what, samples);
    }
    Ok(())
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;
    println!(
        "{what:<44} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        latencies.len(),
        micros(percentile(&latencies, 0.50)),
        micros(percentile(&latencies, 0.99)),
        micros(mean),
        micros(latencies.last().copied().unwrap_or_default()),
    );
}
