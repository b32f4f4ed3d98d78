//! kodiak-dp: the program beside each workload. It registers the workload's
//! Dataplane with the control plane (`POST /bootstrap`), starts Envoy 1.40
//! with the bootstrap it gets back, and drains Envoy on shutdown. See
//! `kodiak-dp run --help`.

mod access_logs;
mod bootstrap_client;
mod cli;
mod dataplane_file;
mod envoy_binary;
mod ports;
mod signals;
mod supervisor;
mod tls;
mod token;
mod work_dir;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kodiak_api::bootstrap::{BootstrapRequest, DrainRequest, Versions};

use crate::bootstrap_client::ControlPlane;
use crate::cli::{Cli, Command, EnvoyArgs, RunArgs};
use crate::signals::Signals;
use crate::tls::Trust;
use crate::work_dir::WorkDir;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version(args) => version(&args),
        Command::Run(args) => {
            if let Err(e) = init_logging(&args.log_level) {
                eprintln!("kodiak-dp: error: invalid --log-level {:?}: {e}", args.log_level);
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("kodiak-dp: error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("kodiak-dp: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(level: &str) -> Result<(), tracing_subscriber::filter::ParseError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

fn version(args: &EnvoyArgs) -> ExitCode {
    println!("kodiak-dp {VERSION}");
    let envoy = envoy_binary::find_with(args.envoy_binary.as_deref());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match (envoy, runtime) {
        (Ok(path), Ok(runtime)) => match runtime.block_on(envoy_binary::check_version(&path)) {
            Ok(version) => println!("envoy {version} ({})", path.display()),
            Err(e) => println!("envoy: {e:#}"),
        },
        (Err(e), _) => println!("envoy: {e:#}"),
        (_, Err(e)) => println!("envoy: {e}"),
    }
    ExitCode::SUCCESS
}

/// Everything `kodiak-dp run` does, in order: local checks first (the
/// dataplane file, Envoy, and with a file its ports), then the control
/// plane, then the ports of the Dataplane it returned, then Envoy.
async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut signals = Signals::install()?;
    let trust = match &args.ca_cert_file {
        Some(path) => Trust::ca_file(path)?,
        None => Trust::SystemRoots,
    };
    let ca_cert = trust.ca_pem().map(str::to_owned);
    let control_plane = ControlPlane::new(&args.cp_address, trust)?;
    let dataplane_token = token::load(args.dataplane_token.as_deref(), args.dataplane_token_file.as_deref())?;

    let local = match &args.dataplane_file {
        // A later value for the same name wins.
        Some(path) => Some(dataplane_file::load(path, &args.dataplane_vars.iter().cloned().collect())?),
        None => None,
    };
    let (mesh, name, file_admin_port) = match &local {
        Some(dataplane) => (dataplane.mesh.clone(), dataplane.name.clone(), dataplane.admin_port),
        None => (args.mesh.clone(), args.name.clone().unwrap_or_default(), None),
    };

    let binary = envoy_binary::find_with(args.envoy.envoy_binary.as_deref())?;
    let envoy_version = envoy_binary::check_version(&binary).await?;
    tracing::info!("using Envoy {envoy_version} at {}", binary.display());
    let setpriv = supervisor::find_setpriv().await;

    // With a file the Dataplane is known here: a sidecar whose ports are
    // taken must not register it with the control plane. The admin port is
    // the one the bootstrap will give: the Dataplane's, else --admin-port.
    if let Some(dataplane) = &local {
        let admin_port = file_admin_port.or(args.admin_port).unwrap_or(0);
        let admin = ports::admin_listen(admin_port);
        let listens: Vec<_> = ports::dataplane_listens(&dataplane.document).into_iter().chain(admin).collect();
        ports::check(&listens)?;
    }

    // The pipe for TCP access logs exists before the control plane is told
    // where it is.
    let work_dir = WorkDir::create(args.work_dir, &mesh, &name)?;
    let access_log_pipe = std::path::absolute(access_logs::start(work_dir.path())?)?;
    let request = BootstrapRequest {
        mesh: mesh.clone(),
        name: name.clone(),
        dataplane_resource: local.map(|dataplane| dataplane.json),
        admin_port: args.admin_port.or(file_admin_port).unwrap_or(0),
        xds_transport: args.xds_transport.into(),
        version: Versions { kodiak_dp: VERSION.to_owned(), envoy: envoy_version },
        dataplane_token: dataplane_token.clone(),
        ca_cert,
        access_log_pipe: Some(access_log_pipe.display().to_string()),
    };
    tracing::info!("requesting a bootstrap for Dataplane {mesh}.{name} from {}", args.cp_address);
    let response = tokio::select! {
        response = control_plane.bootstrap(&request, args.connect_timeout) => response?,
        signal = signals.recv() => {
            tracing::info!("received {signal} before Envoy started; exiting");
            return Ok(0);
        }
    };

    // With --name the Dataplane is known only now. With a file this checks
    // again: something may have taken a port while the control plane was awaited.
    let listens: Vec<_> = ports::dataplane_listens(&response.dataplane)
        .into_iter()
        .chain(ports::bootstrap_admin(&response.bootstrap))
        .collect();
    ports::check(&listens)?;

    let envoy = supervisor::Envoy {
        binary,
        setpriv,
        concurrency: args.concurrency,
        log_level: args.envoy_log_level,
        drain_time: args.drain_time,
    };
    let drain = DrainRequest { mesh, name, dataplane_token };
    // The work directory is dropped (a temporary one removed) after Envoy is gone.
    supervisor::run(&envoy, work_dir.path(), &response.bootstrap, &mut signals, &control_plane, &drain).await
}
