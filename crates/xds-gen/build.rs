//! Compiles the Envoy protos shipped inside the envoy-types package into a
//! descriptor set, so `render` can print resources as Envoy's JSON without
//! any .proto file living in this repository.

use std::env;
use std::path::{Path, PathBuf};

/// The envoy-types release whose protos match the generated Rust types.
const ENVOY_TYPES: &str = "envoy-types-0.7.7";

/// The resource types Kodiak generates and the extensions they embed (in
/// `Any` fields); imports come along.
const FILES: &[&str] = &[
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/access_loggers/filters/cel/v3/cel.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/resource_monitors/downstream_connections/v3/downstream_connections.proto",
    // What policies add.
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
    "envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/grpc/v3/als.proto",
    "envoy/extensions/access_loggers/open_telemetry/v3/logs_service.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/retry/host/omit_host_metadata/v3/omit_host_metadata_config.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
    "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
    "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
    "envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto",
    "envoy/extensions/load_balancing_policies/random/v3/random.proto",
    "envoy/extensions/load_balancing_policies/maglev/v3/maglev.proto",
    "envoy/extensions/health_check/event_sinks/file/v3/file.proto",
];

/// Files whose relative names resolve wrongly beside `FILES` (they name
/// `common.ratelimit...`, which would find the `envoy.extensions.filters.common`
/// package of the fault filter first), so they are compiled on their own and
/// added to the same descriptor set.
const SEPARATE_FILES: &[&str] = &[
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/network/local_ratelimit/v3/local_rate_limit.proto",
];

/// Include roots inside the package's `proto` folder.
const ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
    "ratelimit",
];

const OVERRIDE: &str = "KODIAK_ENVOY_PROTO_DIR";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={OVERRIDE}");
    println!("cargo::rerun-if-env-changed=CARGO_HOME");
    let proto_dir = match find_proto_dir() {
        Ok(dir) => dir,
        Err(message) => {
            println!("cargo::error={message}");
            return;
        }
    };
    let includes: Vec<PathBuf> = ROOTS.iter().map(|root| proto_dir.join(root)).collect();
    let compile = |files: &[&str]| {
        protox::Compiler::new(&includes)
            .and_then(|mut compiler| {
                compiler.include_imports(true).open_files(files)?;
                Ok(compiler.descriptor_pool())
            })
            .unwrap_or_else(|error| panic!("compiling Envoy's protos from {}: {error:?}", proto_dir.display()))
    };
    let mut pool = compile(FILES);
    for file in compile(SEPARATE_FILES).files() {
        if pool.get_file_by_name(file.name()).is_none() {
            pool.add_file_descriptor_proto(file.file_descriptor_proto().clone())
                .unwrap_or_else(|error| panic!("adding {}: {error:?}", file.name()));
        }
    }
    let descriptors = pool.encode_to_vec();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("envoy_descriptors.bin");
    std::fs::write(&out, descriptors).unwrap_or_else(|error| panic!("writing {}: {error}", out.display()));
}

/// `$KODIAK_ENVOY_PROTO_DIR`, else the `proto` folder of the envoy-types
/// package in Cargo's registry (`$CARGO_HOME`, default `~/.cargo`).
fn find_proto_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os(OVERRIDE) {
        let dir = PathBuf::from(dir);
        return if dir.join("data-plane-api").is_dir() {
            Ok(dir)
        } else {
            Err(format!("{OVERRIDE}={} has no data-plane-api folder; point it at {ENVOY_TYPES}/proto", dir.display()))
        };
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set, so Cargo's registry cannot be found")?;
    let registry = cargo_home.join("registry").join("src");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&registry)
        .map_err(|error| format!("reading {}: {error}", registry.display()))?
        .filter_map(|entry| Some(entry.ok()?.path().join(ENVOY_TYPES).join("proto")))
        .filter(|dir| dir.join("data-plane-api").is_dir())
        .collect();
    candidates.sort();
    candidates.pop().ok_or_else(|| {
        format!(
            "Envoy's .proto files were not found in {}/*/{ENVOY_TYPES}/proto (run `cargo fetch`), \
             or set {OVERRIDE} to that proto folder",
            registry.display()
        )
    })
}
