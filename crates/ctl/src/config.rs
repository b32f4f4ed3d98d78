//! kodiakctl's own configuration: the control planes it knows and which one
//! is current, kept in a small YAML file, plus `kodiakctl config ...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use kodiak_client::{CaCerts, Client, Trust};
use serde::{Deserialize, Serialize};

use crate::Global;
use crate::table::Table;

/// Where the API is when nothing says otherwise: `kodiak-cp run` on this host.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:5681";

const EXAMPLES: &str = "\
Examples:
  kodiakctl config control-planes add --name prod --address http://10.0.0.5:5681
  kodiakctl config control-planes add --name prod --address https://10.0.0.5:5682 \
      --ca-cert-file kodiak-cp.crt --auth-type tokens --auth-conf token=$(cat admin.token)
  kodiakctl config control-planes list
  kodiakctl config control-planes use local
  kodiakctl config control-planes remove prod";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Manage the control planes kodiakctl talks to
    #[command(subcommand, name = "control-planes", after_help = EXAMPLES)]
    ControlPlanes(ControlPlanesCommand),
}

#[derive(Debug, Subcommand)]
enum ControlPlanesCommand {
    /// Add a control plane and make it the current one
    #[command(
        after_help = "Examples:\n  kodiakctl config control-planes add --name local --address http://127.0.0.1:5681\n  \
                            kodiakctl config control-planes add --name prod --address http://10.0.0.5:5681 --overwrite\n  \
                            kodiakctl config control-planes add --name prod --address https://10.0.0.5:5682 \\\n      \
                            --ca-cert-file kodiak-cp.crt --auth-type tokens --auth-conf token=$(cat admin.token)"
    )]
    Add {
        /// A name to refer to it by
        #[arg(long)]
        name: String,
        /// Its REST API address, e.g. http://127.0.0.1:5681
        #[arg(long)]
        address: String,
        /// Replace a control plane of the same name
        #[arg(long)]
        overwrite: bool,
        /// How kodiakctl authenticates to it: `tokens` (a user token sent as
        /// `Authorization: Bearer <token>`)
        #[arg(long, value_name = "TYPE")]
        auth_type: Option<String>,
        /// Settings of the auth type: `token=<user token>` for `tokens`
        #[arg(long, value_name = "KEY=VALUE", requires = "auth_type")]
        auth_conf: Vec<String>,
        /// PEM file of the CA certificates to trust for an https:// address instead of the system's
        /// roots, e.g. the control plane's generated kodiak-cp.crt (in its data directory). Its
        /// certificates are copied into kodiakctl's configuration, so the file may move or go away
        /// afterwards; add the control plane again with --overwrite when its CA changes
        #[arg(long, value_name = "FILE")]
        ca_cert_file: Option<PathBuf>,
        /// Do not verify the control plane's TLS certificate at all (insecure: anyone on the way can
        /// read and change the traffic, tokens included); every command then warns
        #[arg(long, conflicts_with = "ca_cert_file")]
        skip_verify: bool,
    },
    /// List the known control planes; `*` marks the current one
    #[command(after_help = "Examples:\n  kodiakctl config control-planes list")]
    List,
    /// Make a known control plane the current one
    #[command(after_help = "Examples:\n  kodiakctl config control-planes use prod")]
    Use { name: String },
    /// Forget a control plane
    #[command(after_help = "Examples:\n  kodiakctl config control-planes remove prod")]
    Remove { name: String },
}

/// The file's contents. Unknown fields are refused, so a misspelt
/// `currentControlPlane` is an error rather than a silent fall back to the
/// default address.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_control_plane: Option<String>,
    #[serde(default)]
    control_planes: Vec<ControlPlane>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ControlPlane {
    name: String,
    address: String,
    /// `tokens`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_type: Option<String>,
    /// For `tokens`: `token`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    auth_conf: BTreeMap<String, String>,
    /// The CA certificates (PEM) trusted for it instead of the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<String>,
    /// Its certificate is not verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    skip_verify: bool,
}

impl ControlPlane {
    /// The user token kodiakctl sends to it, if any.
    fn token(&self) -> Option<String> {
        match self.auth_type.as_deref() {
            Some(AUTH_TYPE_TOKENS) => self.auth_conf.get("token").cloned(),
            _ => None,
        }
    }

    /// Whose certificates kodiakctl accepts for it.
    fn trust(&self) -> anyhow::Result<Trust> {
        if self.skip_verify {
            return Ok(Trust::SkipVerify);
        }
        match &self.ca_cert {
            Some(pem) => Ok(Trust::CaCerts(
                CaCerts::from_pem(pem).with_context(|| format!("control plane {:?}: caCert", self.name))?,
            )),
            None => Ok(Trust::SystemRoots),
        }
    }
}

/// Reads `--ca-cert-file`: an unreadable file, or one without a usable
/// certificate, is an error naming it.
fn read_ca_cert_file(path: &Path) -> anyhow::Result<CaCerts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read --ca-cert-file {}", path.display()))?;
    CaCerts::from_pem(&text).map_err(|error| anyhow::anyhow!("--ca-cert-file {} {error}", path.display()))
}

/// The warning every command prints for a control plane added with `--skip-verify`.
fn skip_verify_warning(name: &str) -> String {
    format!(
        "Warning: the TLS certificate of control plane {name:?} is not verified (added with --skip-verify): \
         anyone between kodiakctl and it can read and change the traffic, tokens included"
    )
}

const AUTH_TYPE_TOKENS: &str = "tokens";

/// Checks `--auth-type` and `--auth-conf` together.
fn auth_settings(auth_type: Option<String>, auth_conf: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut settings = BTreeMap::new();
    for pair in auth_conf {
        let (key, value) = pair
            .split_once('=')
            .filter(|(key, value)| !key.is_empty() && !value.is_empty())
            .with_context(|| format!("--auth-conf {pair:?}: expected KEY=VALUE, e.g. token=<user token>"))?;
        settings.insert(key.to_owned(), value.trim().to_owned());
    }
    match auth_type.as_deref() {
        None => {}
        Some(AUTH_TYPE_TOKENS) => {
            if let Some(unknown) = settings.keys().find(|key| *key != "token") {
                anyhow::bail!("--auth-conf {unknown}: the tokens auth type takes only token=<user token>");
            }
            anyhow::ensure!(settings.contains_key("token"), "--auth-type tokens needs --auth-conf token=<user token>");
        }
        Some(other) => anyhow::bail!("--auth-type {other:?} is not known; use tokens"),
    }
    Ok(settings)
}

impl ConfigFile {
    fn find(&self, name: &str) -> anyhow::Result<&ControlPlane> {
        self.control_planes.iter().find(|cp| cp.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.control_planes.iter().map(|cp| cp.name.as_str()).collect();
            anyhow::anyhow!(
                "no control plane named {name:?}; known: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )
        })
    }
}

/// A client for `--cp-address`, else the config file's current control
/// plane, else [`DEFAULT_ADDRESS`].
pub fn client(global: &Global) -> anyhow::Result<Client> {
    let (address, token, trust) = match &global.cp_address {
        Some(address) => (address.clone(), None, Trust::SystemRoots),
        None => {
            let path = config_path(global)?;
            let config = load(&path)?;
            match &config.current_control_plane {
                Some(name) => {
                    let cp = config.find(name).with_context(|| format!("in {}", path.display()))?;
                    if cp.skip_verify {
                        eprintln!("{}", skip_verify_warning(name));
                    }
                    (cp.address.clone(), cp.token(), cp.trust().with_context(|| format!("in {}", path.display()))?)
                }
                None => (DEFAULT_ADDRESS.to_owned(), None, Trust::SystemRoots),
            }
        }
    };
    Ok(Client::trusting(&address, trust)?.with_token(token))
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    let path = config_path(global)?;
    let mut config = load(&path)?;
    let ConfigCommand::ControlPlanes(command) = args.command;
    match command {
        ControlPlanesCommand::Add { name, address, overwrite, auth_type, auth_conf, ca_cert_file, skip_verify } => {
            let https = Client::new(&address)?.base_url().scheme() == "https";
            let ca_certs = ca_cert_file.as_deref().map(read_ca_cert_file).transpose()?;
            if let Some(path) = ca_cert_file.as_deref().filter(|_| !https) {
                anyhow::bail!(
                    "--ca-cert-file {} is given but the address {address} is plaintext http://; use https://",
                    path.display()
                );
            }
            anyhow::ensure!(https || !skip_verify, "--skip-verify applies to https:// addresses only, not {address}");
            let trust = match &ca_certs {
                Some(certs) => Trust::CaCerts(certs.clone()),
                None if skip_verify => Trust::SkipVerify,
                None => Trust::SystemRoots,
            };
            Client::trusting(&address, trust)?;
            let auth_conf = auth_settings(auth_type.clone(), &auth_conf)?;
            let ca_cert = ca_certs.map(|certs| certs.pem().to_owned());
            let entry = ControlPlane {
                name: name.clone(),
                address: address.clone(),
                auth_type,
                auth_conf,
                ca_cert,
                skip_verify,
            };
            let existing = config.control_planes.iter().position(|cp| cp.name == name);
            match existing {
                Some(_) if !overwrite => {
                    anyhow::bail!("a control plane named {name:?} already exists; pass --overwrite to replace it")
                }
                Some(index) => config.control_planes[index] = entry,
                None => config.control_planes.push(entry),
            }
            config.current_control_plane = Some(name.clone());
            save(&path, &config)?;
            println!("Added control plane {name:?} ({address}); it is now the current one");
            if skip_verify {
                eprintln!("{}", skip_verify_warning(&name));
            }
        }
        ControlPlanesCommand::List => {
            let mut table = Table::new(&["CURRENT", "NAME", "ADDRESS"]);
            for cp in &config.control_planes {
                let current = config.current_control_plane.as_deref() == Some(cp.name.as_str());
                table.push(vec![if current { "*" } else { "" }.to_owned(), cp.name.clone(), cp.address.clone()]);
            }
            print!("{table}");
        }
        ControlPlanesCommand::Use { name } => {
            config.find(&name)?;
            config.current_control_plane = Some(name.clone());
            save(&path, &config)?;
            println!("Switched to control plane {name:?}");
        }
        ControlPlanesCommand::Remove { name } => {
            config.find(&name)?;
            config.control_planes.retain(|cp| cp.name != name);
            let was_current = config.current_control_plane.as_deref() == Some(name.as_str());
            if was_current {
                config.current_control_plane = None;
            }
            save(&path, &config)?;
            println!("Removed control plane {name:?}");
            if was_current {
                println!(
                    "No control plane is current now: kodiakctl uses {DEFAULT_ADDRESS} until you run \
                     `kodiakctl config control-planes use NAME`"
                );
            }
        }
    }
    Ok(())
}

/// `--config-file`, else `$XDG_CONFIG_HOME/kodiak/kodiakctl.yaml`, else
/// `~/.config/kodiak/kodiakctl.yaml` (the XDG base directory rules).
fn config_path(global: &Global) -> anyhow::Result<PathBuf> {
    if let Some(path) = &global.config_file {
        return Ok(path.clone());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = non_empty("XDG_CONFIG_HOME")
        .or_else(|| non_empty("HOME").map(|home| home.join(".config")))
        .context("cannot find a place for the configuration: set --config-file, XDG_CONFIG_HOME or HOME")?;
    Ok(base.join("kodiak").join("kodiakctl.yaml"))
}

/// Reads the file; a missing file is an empty configuration.
fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid kodiakctl configuration", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a temporary file beside the target and renames it over the
/// target, so an interrupted write never leaves a half-written config.
fn save(path: &Path, config: &ConfigFile) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = path.file_name().context("the config file path names no file")?.to_string_lossy();
    let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        // Owner-only: the file may hold a user token.
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
        serde_yaml::to_writer(&file, config).map_err(std::io::Error::other)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        anyhow::Error::new(error).context(format!("cannot write {}", path.display()))
    })
}
