//! The command line: `kodiak-dp run ...` and `kodiak-dp version`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use kodiak_api::bootstrap::XdsTransport;

/// Where the control plane's dp-server listens by default (Kuma's port).
pub const DEFAULT_CP_ADDRESS: &str = "https://127.0.0.1:5678";

#[derive(Debug, Parser)]
#[command(
    name = "kodiak-dp",
    version,
    about = "Runs Envoy beside a workload: registers the Dataplane with the Kodiak control plane, \
             starts Envoy with the bootstrap it gets back, and drains it on shutdown"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a bootstrap from the control plane, then run and supervise Envoy until SIGINT/SIGTERM.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Print kodiak-dp's version and the Envoy it would run.
    Version(EnvoyArgs),
}

const RUN_EXAMPLES: &str = "\
Examples:
  # Register the Dataplane from a file (a template: {{ name }} is filled from -v name=...),
  # trusting the control plane's generated certificate
  kodiak-dp run --dataplane-file web.yaml -v name=web-1 -v address=127.0.0.2 \\
      --ca-cert-file ~/.local/share/kodiak/kodiak-cp.crt --dataplane-token-file web-1.token

  # Run the sidecar of a Dataplane applied beforehand (kodiakctl apply -f web-1.yaml)
  kodiak-dp run --name web-1 --mesh default

  # Another control plane, state-of-the-world xDS, a fixed admin port, chatty Envoy
  kodiak-dp run --cp-address https://cp.internal:5678 --name web-1 --xds-transport sotw \\
      --admin-port 9901 --envoy-log-level debug

Envoy 1.40.x is needed; kodiak-dp looks for it in --envoy-binary / ENVOY_BIN, then in
.tools/bin/envoy of the folders above kodiak-dp's executable and above the current
directory (scripts/install-envoy.sh puts it there), then on PATH.

The dp-server speaks TLS: kodiak-dp and Envoy trust only the CA certificates of
--ca-cert-file (the control plane's generated certificate is kodiak-cp.crt in its data
directory), else the system's trusted roots. A certificate that does not verify stops
kodiak-dp at once: retrying would not change it.

On SIGINT or SIGTERM kodiak-dp tells the control plane the instance is going away (so
callers stop choosing it), drains Envoy's inbound listeners for --drain-time, then stops
Envoy and exits 0. A second signal stops Envoy at once. When Envoy exits by itself,
kodiak-dp exits with Envoy's status.";

/// Where the Dataplane comes from: a file, or a name applied beforehand.
/// One of the two is required; a group so that clap names both when
/// neither is given.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("dataplane").required(true).args(["dataplane_file", "name"])))]
pub struct RunArgs {
    /// The control plane's dp-server (bootstrap and xDS).
    #[arg(long, env = "KODIAK_DP_CP_ADDRESS", default_value = DEFAULT_CP_ADDRESS, value_name = "URL")]
    pub cp_address: String,

    /// The CA certificates (PEM) to trust for the control plane instead of the system's roots:
    /// its kodiak-cp.crt, or the CA that signed its general.tlsCertFile. Envoy trusts them too.
    #[arg(long, env = "KODIAK_CONTROL_PLANE_CA_CERT_FILE", value_name = "FILE")]
    pub ca_cert_file: Option<PathBuf>,

    /// A file holding the dataplane token (kodiakctl generate dataplane-token) that lets this
    /// sidecar serve its Dataplane.
    #[arg(long, env = "KODIAK_DATAPLANE_TOKEN_PATH", value_name = "FILE", conflicts_with = "dataplane_token")]
    pub dataplane_token_file: Option<PathBuf>,

    /// The dataplane token itself (prefer --dataplane-token-file: a command line is visible to
    /// other users of the host).
    #[arg(long, env = "KODIAK_DATAPLANE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub dataplane_token: Option<String>,

    /// A Dataplane resource (YAML or JSON) that kodiak-dp registers; it may use `{{ name }}`
    /// placeholders filled from --dataplane-var.
    #[arg(long, short = 'd', value_name = "FILE", conflicts_with_all = ["name", "mesh"])]
    pub dataplane_file: Option<PathBuf>,

    /// A value for a `{{ NAME }}` placeholder of --dataplane-file (repeatable).
    #[arg(
        long = "dataplane-var",
        short = 'v',
        value_name = "NAME=VALUE",
        conflicts_with = "name",
        value_parser = kodiak_api::template::parse_assignment
    )]
    pub dataplane_vars: Vec<(String, String)>,

    /// The name of a Dataplane applied beforehand (instead of --dataplane-file).
    #[arg(long)]
    pub name: Option<String>,

    /// The mesh of the Dataplane named by --name.
    #[arg(long, requires = "name", default_value = "default")]
    pub mesh: String,

    /// Which ADS flavour Envoy speaks: delta (incremental) or sotw (state of the world).
    #[arg(long, value_enum, default_value_t = Transport::Delta, value_name = "TRANSPORT")]
    pub xds_transport: Transport,

    /// Envoy's admin port on 127.0.0.1 [default: the Dataplane's networking.admin.port, else
    /// 0: the kernel picks a free one, so several sidecars never collide].
    #[arg(long, value_name = "PORT")]
    pub admin_port: Option<u16>,

    /// Where bootstrap.json and Envoy's admin address file go [default: a fresh directory
    /// under $TMPDIR named after MESH.NAME, removed on exit; a given one is kept].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    #[command(flatten)]
    pub envoy: EnvoyArgs,

    /// How long inbound listeners drain on shutdown before Envoy is stopped: long enough for
    /// requests in flight to finish (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub drain_time: Duration,

    /// Give up when the control plane cannot be reached for this long [default: keep
    /// trying until SIGINT/SIGTERM, as a sidecar started before its control plane should].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,

    /// Envoy worker threads. Two serve one workload well; every worker adds memory and
    /// connection pools of its own.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// kodiak-dp's log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "KODIAK_DP_LOG_LEVEL", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Envoy's log level (trace, debug, info, warning, error, critical, off).
    #[arg(long, default_value = "warning", value_name = "LEVEL", value_parser = ENVOY_LOG_LEVELS)]
    pub envoy_log_level: String,
}

const ENVOY_LOG_LEVELS: [&str; 7] = ["trace", "debug", "info", "warning", "error", "critical", "off"];

/// Where to find Envoy; shared by `run` and `version`.
#[derive(Debug, Args)]
pub struct EnvoyArgs {
    /// The Envoy binary to run.
    #[arg(long, env = "ENVOY_BIN", value_name = "PATH")]
    pub envoy_binary: Option<PathBuf>,
}

/// `--xds-transport`, mapped onto the wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Delta,
    Sotw,
}

impl From<Transport> for XdsTransport {
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::Delta => XdsTransport::Delta,
            Transport::Sotw => XdsTransport::Sotw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["kodiak-dp", "run"], args].concat())?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            Command::Version(_) => unreachable!(),
        }
    }

    #[test]
    fn defaults() {
        let args = run(&["--name", "web-1"]).unwrap();
        assert_eq!(args.cp_address, DEFAULT_CP_ADDRESS);
        assert_eq!(args.mesh, "default");
        assert_eq!(args.xds_transport, Transport::Delta);
        assert_eq!(args.admin_port, None);
        assert_eq!(args.drain_time, Duration::from_secs(5));
        assert_eq!(args.connect_timeout, None);
        assert_eq!(args.concurrency, 2);
        assert!(args.cp_address.starts_with("https://"));
        assert_eq!((args.ca_cert_file, args.dataplane_token_file, args.dataplane_token), (None, None, None));
    }

    #[test]
    fn one_token_source_at_a_time() {
        let args = run(&["--name", "a", "--dataplane-token-file", "t", "--ca-cert-file", "ca.crt"]).unwrap();
        assert_eq!(args.dataplane_token_file, Some(PathBuf::from("t")));
        assert_eq!(args.ca_cert_file, Some(PathBuf::from("ca.crt")));
        assert!(run(&["--name", "a", "--dataplane-token-file", "t", "--dataplane-token", "x"]).is_err());
    }

    #[test]
    fn a_dataplane_comes_from_a_file_or_a_name_not_both() {
        assert!(run(&[]).is_err());
        assert!(run(&["--dataplane-file", "dp.yaml", "--name", "web-1"]).is_err());
        assert!(run(&["--dataplane-file", "dp.yaml", "--mesh", "m"]).is_err());
        assert!(run(&["--name", "web-1", "-v", "a=b"]).is_err(), "variables need a file");
        let args = run(&["-d", "dp.yaml", "-v", "name=web-1", "--dataplane-var", "port=1"]).unwrap();
        assert_eq!(args.dataplane_vars, [("name".into(), "web-1".into()), ("port".into(), "1".into())]);
        assert!(run(&["-d", "dp.yaml", "-v", "novalue"]).is_err());
    }

    #[test]
    fn durations_read_like_humans_write_them() {
        let args = run(&["--name", "a", "--drain-time", "500ms", "--connect-timeout", "1m"]).unwrap();
        assert_eq!(args.drain_time, Duration::from_millis(500));
        assert_eq!(args.connect_timeout, Some(Duration::from_secs(60)));
        assert!(run(&["--name", "a", "--drain-time", "5"]).is_err(), "a unit is required");
        assert!(run(&["--name", "a", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn envoy_log_levels_are_envoys() {
        assert!(run(&["--name", "a", "--envoy-log-level", "warn"]).is_err());
        assert_eq!(run(&["--name", "a", "--envoy-log-level", "debug"]).unwrap().envoy_log_level, "debug");
    }
}
