//! The control plane's configuration: defaults, then a YAML file, then
//! `KODIAK_*` environment variables, then command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every setting of `kodiak-cp run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub api_server: ApiServerConfig,
    pub diagnostics: DiagnosticsConfig,
    pub dp_server: DpServerConfig,
    pub defaults: DefaultsConfig,
    pub logging: LoggingConfig,
    pub general: GeneralConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (embedded, persistent) or `memory` (lost on exit).
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// Where the SQLite store keeps its database.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiServerConfig {
    pub http: Listen<5681>,
    /// Who may call the API.
    pub authn: ApiAuthnConfig,
    /// The same API over TLS, with the control plane's certificate.
    pub https: HttpsConfig,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiagnosticsConfig {
    pub server: Listen<5680>,
}

/// The REST API over TLS (TLS 1.2 and later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpsConfig {
    pub enabled: bool,
    pub interface: String,
    pub port: u16,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        let Listen::<5682> { interface, port } = Listen::default();
        Self { enabled: true, interface, port }
    }
}

impl HttpsConfig {
    /// Where the HTTPS API listens.
    pub fn listen(&self) -> Listen<5682> {
        Listen { interface: self.interface.clone(), port: self.port }
    }
}

/// The dp-server: sidecars fetch their bootstrap and stream their
/// configuration (ADS) here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpServerConfig {
    pub server: Listen<5678>,
    /// How sidecars prove which Dataplane they are.
    pub authn: DpServerAuthnConfig,
    /// Serve bootstrap and ADS over TLS only (the default). `false` serves
    /// plaintext HTTP/1.1 and h2c instead: tokens and configuration then
    /// cross the network readable by anyone on the path.
    pub tls_enabled: bool,
    /// How long changes are collected before proxies are updated: the
    /// window closes once nothing changed for this long (and at the latest
    /// after ten times as long), so a burst becomes one update.
    pub sync_debounce: String,
    /// A Dataplane that kodiak-dp registered from a dataplane file is
    /// removed this long after its sidecar disconnected (unless it came back).
    pub inline_dataplane_cleanup_delay: String,
}

// Authentication settings: the REST API's users and the dp-server's sidecars.

/// Who may call the REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiAuthnConfig {
    /// A request made straight from this host (loopback, no proxy headers)
    /// is an admin's, whatever token it carries.
    pub localhost_is_admin: bool,
    pub tokens: ApiTokensConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiTokensConfig {
    /// Issue an admin user token at start, kept as the GlobalSecret
    /// `admin-user-token`, when there is none.
    pub bootstrap_admin_token: bool,
}

impl Default for ApiAuthnConfig {
    fn default() -> Self {
        Self { localhost_is_admin: true, tokens: ApiTokensConfig { bootstrap_admin_token: true } }
    }
}

impl Default for ApiTokensConfig {
    fn default() -> Self {
        Self { bootstrap_admin_token: true }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpServerAuthnConfig {
    pub dp_proxy: DpProxyAuthnConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpProxyAuthnConfig {
    #[serde(rename = "type")]
    pub kind: DpProxyAuthn,
}

/// How a sidecar proves which Dataplane it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DpProxyAuthn {
    /// A dataplane token that matches the Dataplane's name, mesh and tags.
    #[default]
    #[serde(rename = "dpToken")]
    DpToken,
    /// Nothing: any process that reaches the dp-server may be any Dataplane.
    #[serde(rename = "none")]
    None,
}

/// An address and port to listen on; `PORT` is the default port, so a
/// config file may set just one of the two.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listen<const PORT: u16> {
    pub interface: String,
    pub port: u16,
}

/// What a config file may say of a [`Listen`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFields {
    interface: Option<String>,
    port: Option<u16>,
}

impl<'de, const PORT: u16> Deserialize<'de> for Listen<PORT> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = ListenFields::deserialize(deserializer)?;
        let default = Self::default();
        Ok(Self { interface: fields.interface.unwrap_or(default.interface), port: fields.port.unwrap_or(default.port) })
    }
}

impl<const PORT: u16> Default for Listen<PORT> {
    fn default() -> Self {
        Self { interface: "127.0.0.1".into(), port: PORT }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultsConfig {
    /// Do not create the `default` mesh when it is missing at start.
    pub skip_mesh_creation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A tracing filter such as `info` or `kodiak_cp=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_timeout: String,
    /// The certificate (PEM, the chain from the server certificate up) of
    /// the dp-server and the HTTPS API. Unset: `kodiak-cp.crt` in the data
    /// directory, generated on first start.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tlsCertFile`; set both or neither.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { kind: StoreKind::Sqlite, data_dir: default_data_dir() }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            http: Listen::default(),
            authn: ApiAuthnConfig::default(),
            https: HttpsConfig::default(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl Default for DpServerConfig {
    fn default() -> Self {
        Self {
            server: Listen::default(),
            authn: DpServerAuthnConfig::default(),
            tls_enabled: true,
            sync_debounce: "10ms".into(),
            inline_dataplane_cleanup_delay: "10s".into(),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

impl Default for GeneralConfig {
    fn default() -> Self {
        Self { shutdown_timeout: "10s".into(), tls_cert_file: None, tls_key_file: None }
    }
}

const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A log filter is a comma-separated list of levels (`info`) or
/// `target=level` pairs (`kodiak_cp=debug`). Anything else is refused:
/// tracing would read a typo such as `verbose` as a target name and
/// silently log nothing.
fn check_log_level(filter: &str) -> Result<(), String> {
    let expected = format!(
        "logging.level {filter:?}: expected levels ({}) or target=level pairs, comma-separated, e.g. \"info\" or \"kodiak_cp=debug,info\"",
        LOG_LEVELS.join(", ")
    );
    for directive in filter.split(',').map(str::trim) {
        let level =
            directive.rsplit_once('=').map_or(directive, |(target, level)| if target.is_empty() { "" } else { level });
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(expected);
        }
    }
    Ok(())
}

/// `$XDG_DATA_HOME/kodiak`, else `~/.local/share/kodiak`, else `./kodiak-data`.
fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kodiak");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/kodiak"),
        None => PathBuf::from("kodiak-data"),
    }
}

/// The environment variables `kodiak-cp` reads, the setting each one
/// overrides (a dotted path into the YAML file) and what it means.
pub const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("KODIAK_STORE_TYPE", "store.type", "sqlite (default, persistent) or memory"),
    ("KODIAK_STORE_DATA_DIR", "store.dataDir", "directory of the SQLite store (default ~/.local/share/kodiak)"),
    (
        "KODIAK_API_SERVER_HTTP_INTERFACE",
        "apiServer.http.interface",
        "address the REST API listens on (default 127.0.0.1)",
    ),
    ("KODIAK_API_SERVER_HTTP_PORT", "apiServer.http.port", "port of the REST API (default 5681)"),
    (
        "KODIAK_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN",
        "apiServer.authn.localhostIsAdmin",
        "true (default): requests straight from this host's loopback are admin's",
    ),
    (
        "KODIAK_API_SERVER_AUTHN_TOKENS_BOOTSTRAP_ADMIN_TOKEN",
        "apiServer.authn.tokens.bootstrapAdminToken",
        "true (default): create the admin user token (GlobalSecret admin-user-token) when missing",
    ),
    ("KODIAK_API_SERVER_HTTPS_ENABLED", "apiServer.https.enabled", "serve the REST API over TLS too (default true)"),
    (
        "KODIAK_API_SERVER_HTTPS_INTERFACE",
        "apiServer.https.interface",
        "address the HTTPS REST API listens on (default 127.0.0.1)",
    ),
    ("KODIAK_API_SERVER_HTTPS_PORT", "apiServer.https.port", "port of the HTTPS REST API (default 5682)"),
    ("KODIAK_API_SERVER_MAX_BODY_BYTES", "apiServer.maxBodyBytes", "largest request body accepted (default 1048576)"),
    (
        "KODIAK_DIAGNOSTICS_SERVER_INTERFACE",
        "diagnostics.server.interface",
        "address of /ready and /healthy (default 127.0.0.1)",
    ),
    ("KODIAK_DIAGNOSTICS_SERVER_PORT", "diagnostics.server.port", "port of /ready and /healthy (default 5680)"),
    (
        "KODIAK_DP_SERVER_INTERFACE",
        "dpServer.server.interface",
        "address sidecars connect to: bootstrap and ADS (default 127.0.0.1)",
    ),
    ("KODIAK_DP_SERVER_PORT", "dpServer.server.port", "port of the dp-server (default 5678)"),
    (
        "KODIAK_DP_SERVER_AUTHN_DP_PROXY_TYPE",
        "dpServer.authn.dpProxy.type",
        "dpToken (default): sidecars need a dataplane token; none: no check",
    ),
    (
        "KODIAK_DP_SERVER_TLS_ENABLED",
        "dpServer.tlsEnabled",
        "true (default): the dp-server speaks TLS only; false: plaintext",
    ),
    (
        "KODIAK_DP_SERVER_SYNC_DEBOUNCE",
        "dpServer.syncDebounce",
        "quiet time that closes a batch of changes before proxies are updated (default 10ms)",
    ),
    (
        "KODIAK_DP_SERVER_INLINE_DATAPLANE_CLEANUP_DELAY",
        "dpServer.inlineDataplaneCleanupDelay",
        "a Dataplane registered by kodiak-dp is removed this long after it disconnects (default 10s)",
    ),
    (
        "KODIAK_DEFAULTS_SKIP_MESH_CREATION",
        "defaults.skipMeshCreation",
        "true: do not create the default mesh at start",
    ),
    ("KODIAK_LOG_LEVEL", "logging.level", "log filter, e.g. info or kodiak_cp=debug (default info)"),
    ("KODIAK_LOG_FORMAT", "logging.format", "text (default) or json"),
    (
        "KODIAK_GENERAL_SHUTDOWN_TIMEOUT",
        "general.shutdownTimeout",
        "grace period for in-flight requests on shutdown (default 10s)",
    ),
    (
        "KODIAK_GENERAL_TLS_CERT_FILE",
        "general.tlsCertFile",
        "certificate (PEM) of the dp-server and HTTPS API (default: generated as <data dir>/kodiak-cp.crt)",
    ),
    ("KODIAK_GENERAL_TLS_KEY_FILE", "general.tlsKeyFile", "private key (PEM) of general.tlsCertFile"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    Environment { name: String, value: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Builds the configuration from an optional YAML file and the
    /// environment (a lookup function, so tests need not touch the real one).
    pub fn load(file: Option<&std::path::Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let from_file = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                // An empty file means "all defaults", like an empty YAML map.
                if text.trim().is_empty() {
                    Config::default()
                } else {
                    serde_yaml::from_str(&text)
                        .map_err(|e| ConfigError::Syntax { path: path.into(), message: e.to_string() })?
                }
            }
            None => Config::default(),
        };
        let mut tree = serde_json::to_value(from_file).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (name, setting, _) in ENVIRONMENT {
            let Some(text) = env(name) else { continue };
            let bad = |message: String| ConfigError::Environment { name: (*name).into(), value: text.clone(), message };
            let value = typed_like(get_path(&tree, setting), &text).map_err(bad)?;
            let mut candidate = tree.clone();
            set_path(&mut candidate, setting, value);
            serde_json::from_value::<Config>(candidate.clone()).map_err(|e| bad(e.to_string()))?;
            tree = candidate;
        }
        let config: Config = serde_json::from_value(tree).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The shutdown grace period as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        duration(&self.general.shutdown_timeout)
    }

    pub fn sync_debounce(&self) -> Duration {
        duration(&self.dp_server.sync_debounce)
    }

    pub fn inline_dataplane_cleanup_delay(&self) -> Duration {
        duration(&self.dp_server.inline_dataplane_cleanup_delay)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (setting, text) in [
            ("general.shutdownTimeout", &self.general.shutdown_timeout),
            ("dpServer.syncDebounce", &self.dp_server.sync_debounce),
            ("dpServer.inlineDataplaneCleanupDelay", &self.dp_server.inline_dataplane_cleanup_delay),
        ] {
            kodiak_api::duration::parse_duration(text).map_err(|e| ConfigError::Invalid(format!("{setting}: {e}")))?;
        }
        check_log_level(&self.logging.level).map_err(ConfigError::Invalid)?;
        if self.general.tls_cert_file.is_some() != self.general.tls_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "general.tlsCertFile and general.tlsKeyFile go together: set both (your own certificate) or neither (one generated in the data directory)".into(),
            ));
        }
        if self.api_server.max_body_bytes == 0 {
            return Err(ConfigError::Invalid("apiServer.maxBodyBytes must be greater than 0".into()));
        }
        Ok(())
    }
}

/// A duration setting that [`Config::check`] has accepted.
fn duration(text: &str) -> Duration {
    kodiak_api::duration::parse_duration(text).expect("durations are checked when the configuration loads")
}

/// Reads an environment value as the type the setting already has: text
/// stays text (no YAML surprises such as `#` starting a comment), numbers
/// and booleans must parse as such.
fn typed_like(current: Option<&Value>, text: &str) -> Result<Value, String> {
    match current {
        Some(Value::Number(_)) => {
            text.trim().parse::<u64>().map(Value::from).map_err(|_| "expected a whole number".to_owned())
        }
        Some(Value::Bool(_)) => match text.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("expected true or false".to_owned()),
        },
        _ => Ok(Value::String(text.to_owned())),
    }
}

fn get_path<'a>(tree: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(tree, |node, part| node.get(part))
}

fn set_path(tree: &mut Value, dotted: &str, value: Value) {
    let mut node = tree;
    for part in dotted.split('.') {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        node = node.as_object_mut().unwrap().entry(part).or_insert(Value::Null);
    }
    *node = value;
}

/// The `--help` text that lists the environment variables.
pub fn environment_help() -> String {
    let mut text = String::from("Environment variables (override the config file; flags override both):\n");
    for (name, setting, meaning) in ENVIRONMENT {
        text.push_str(&format!("  {name:<38} {setting}: {meaning}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_kuma_ports() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.api_server.http.port, 5681);
        assert_eq!(config.diagnostics.server.port, 5680);
        assert_eq!(config.store.kind, StoreKind::Sqlite);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "store:\n  type: memory\napiServer:\n  http:\n    port: 7000\n").unwrap();
        let config = Config::load(Some(&file), env(&[("KODIAK_API_SERVER_HTTP_PORT", "7001")])).unwrap();
        assert_eq!(config.store.kind, StoreKind::Memory);
        assert_eq!(config.api_server.http.port, 7001);
        assert_eq!(config.api_server.http.interface, "127.0.0.1");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Config::load(None, env(&[("KODIAK_API_SERVER_HTTP_PORT", "high")])).unwrap_err();
        assert!(err.to_string().contains("KODIAK_API_SERVER_HTTP_PORT"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "stor:\n  type: memory\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("unknown field `stor`"), "{err}");
        let err = Config::load(None, env(&[("KODIAK_GENERAL_SHUTDOWN_TIMEOUT", "soon")])).unwrap_err();
        assert!(err.to_string().contains("shutdownTimeout"), "{err}");
        std::fs::write(&file, "apiServer:\n  http:\n    port: 99999\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("apiServer.http.port") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn environment_values_keep_their_text() {
        let config = Config::load(None, env(&[("KODIAK_STORE_DATA_DIR", "/srv/kodiak #2")])).unwrap();
        assert_eq!(config.store.data_dir, std::path::PathBuf::from("/srv/kodiak #2"));
        let config = Config::load(None, env(&[("KODIAK_STORE_DATA_DIR", "2024")])).unwrap();
        assert_eq!(config.store.data_dir, std::path::PathBuf::from("2024"));
        let config = Config::load(None, env(&[("KODIAK_DEFAULTS_SKIP_MESH_CREATION", "true")])).unwrap();
        assert!(config.defaults.skip_mesh_creation);
        assert!(Config::load(None, env(&[("KODIAK_DEFAULTS_SKIP_MESH_CREATION", "yes")])).is_err());
    }

    #[test]
    fn tls_is_on_by_default_and_its_files_come_in_pairs() {
        let config = Config::load(None, env(&[])).unwrap();
        assert!(config.dp_server.tls_enabled && config.api_server.https.enabled);
        assert_eq!(config.api_server.https.port, 5682);
        assert_eq!(config.general.tls_cert_file, None);
        let config = Config::load(
            None,
            env(&[
                ("KODIAK_GENERAL_TLS_CERT_FILE", "/etc/kodiak/cp.crt"),
                ("KODIAK_GENERAL_TLS_KEY_FILE", "/etc/kodiak/cp.key"),
                ("KODIAK_DP_SERVER_TLS_ENABLED", "false"),
                ("KODIAK_API_SERVER_HTTPS_PORT", "6682"),
            ]),
        )
        .unwrap();
        assert_eq!(config.general.tls_cert_file, Some(PathBuf::from("/etc/kodiak/cp.crt")));
        assert!(!config.dp_server.tls_enabled);
        assert_eq!(config.api_server.https.listen().port, 6682);
        let err = Config::load(None, env(&[("KODIAK_GENERAL_TLS_CERT_FILE", "/etc/kodiak/cp.crt")])).unwrap_err();
        assert!(err.to_string().contains("general.tlsCertFile and general.tlsKeyFile go together"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "apiServer:\n  https:\n    enabled: false\n").unwrap();
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert!(!config.api_server.https.enabled);
        assert_eq!(config.api_server.https.port, 5682, "unset fields keep their defaults");
    }

    #[test]
    fn log_levels_must_name_levels() {
        for good in ["info", "DEBUG", "kodiak_cp=debug,info", "tower_http=trace, warn"] {
            assert!(check_log_level(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "kodiak_cp=loud", "", "info,", "=info"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }
}
