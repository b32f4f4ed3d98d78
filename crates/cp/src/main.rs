//! `kodiak-cp`: the Kodiak control plane.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kodiak_cp::config::{Config, LogFormat, StoreKind, environment_help};

#[derive(Parser)]
#[command(name = "kodiak-cp", version, about = "The Kodiak service-mesh control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the REST API (HTTP 5681, HTTPS 5682), the dp-server for sidecars (TLS, 5678)
    /// and diagnostics (5680).
    ///
    /// Settings come from defaults, then the config file, then KODIAK_*
    /// environment variables, then these flags.
    #[command(after_long_help = run_help())]
    Run(RunArgs),
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A YAML config file (print the full form with `--print-config`).
    #[arg(short = 'c', long, env = "KODIAK_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Where resources live: sqlite (persistent, the default) or memory.
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// Directory of the SQLite store and of the generated TLS certificate (kodiak-cp.crt).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Port of the REST API.
    #[arg(long)]
    api_port: Option<u16>,
    /// Port of the REST API over TLS.
    #[arg(long)]
    api_https_port: Option<u16>,
    /// Port of the diagnostics server (/ready, /healthy).
    #[arg(long)]
    diagnostics_port: Option<u16>,
    /// Port of the dp-server (sidecars' bootstrap and ADS).
    #[arg(long)]
    dp_server_port: Option<u16>,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    print_config: bool,
}

fn run_help() -> String {
    format!(
        "{}\nTLS: the dp-server and the HTTPS API present general.tlsCertFile, else kodiak-cp.crt in the data\ndirectory, generated on the first start and reused after; give that file to kodiak-dp --ca-cert-file.\n\nExamples:\n  kodiak-cp run\n  kodiak-cp run --store memory\n  KODIAK_API_SERVER_HTTP_PORT=6681 kodiak-cp run --data-dir /var/lib/kodiak\n  KODIAK_GENERAL_TLS_CERT_FILE=cp.crt KODIAK_GENERAL_TLS_KEY_FILE=cp.key kodiak-cp run\n",
        environment_help()
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("kodiak-cp {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config_file.as_deref(), |name| std::env::var(name).ok())?;
    if let Some(store) = args.store {
        config.store.kind = store;
    }
    if let Some(dir) = args.data_dir {
        config.store.data_dir = dir;
    }
    if let Some(port) = args.api_port {
        config.api_server.http.port = port;
    }
    if let Some(port) = args.api_https_port {
        config.api_server.https.port = port;
    }
    if let Some(port) = args.diagnostics_port {
        config.diagnostics.server.port = port;
    }
    if let Some(port) = args.dp_server_port {
        config.dp_server.server.port = port;
    }
    if args.print_config {
        print!("{}", serde_yaml::to_string(&config)?);
        return Ok(());
    }
    init_logging(&config);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = kodiak_cp::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.logging.level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = interrupt.recv() => tracing::info!("received SIGINT"),
    }
    Ok(())
}
