//! Finding the Envoy binary and checking that it is the version Kodiak's
//! configuration is written for (1.40.x).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// The Envoy minor version Kodiak generates configuration for.
pub const SUPPORTED: &str = "1.40";

/// Where scripts/install-envoy.sh links the binary, relative to the repository.
const TOOLS_ENVOY: &str = ".tools/bin/envoy";

const INSTALL_HINT: &str = "run scripts/install-envoy.sh (it installs Envoy 1.40.0 into .tools/bin/envoy of the \
     repository), or point --envoy-binary or ENVOY_BIN at an Envoy 1.40 binary";

/// What the search may look at; passed in so the order is testable.
#[derive(Debug, Default)]
pub struct Search<'a> {
    /// `--envoy-binary` or `ENVOY_BIN`: used alone when given.
    pub explicit: Option<&'a Path>,
    /// kodiak-dp's own executable.
    pub exe: Option<&'a Path>,
    pub current_dir: Option<&'a Path>,
    /// The `PATH` variable.
    pub path: Option<&'a OsStr>,
}

impl Search<'_> {
    /// Every place, in order: the explicit path; `.tools/bin/envoy` in each
    /// folder above the executable (a build in `target/debug` finds the
    /// repository's), then above the current directory; then `envoy` on PATH.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(explicit) = self.explicit {
            return vec![explicit.to_owned()];
        }
        let above_exe = self.exe.and_then(Path::parent).into_iter().flat_map(Path::ancestors);
        let above_cwd = self.current_dir.into_iter().flat_map(Path::ancestors);
        let mut out: Vec<PathBuf> = Vec::new();
        for candidate in above_exe.chain(above_cwd).map(|dir| dir.join(TOOLS_ENVOY)) {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        out.extend(self.path.into_iter().flat_map(std::env::split_paths).map(|dir| dir.join("envoy")));
        out
    }

    /// The first candidate that is an executable file.
    pub fn find(&self) -> anyhow::Result<PathBuf> {
        if let Some(explicit) = self.explicit {
            if is_executable(explicit) {
                return Ok(explicit.to_owned());
            }
            bail!(
                "Envoy binary {} (from --envoy-binary or ENVOY_BIN) does not exist or is not executable; {INSTALL_HINT}",
                explicit.display()
            );
        }
        match self.candidates().into_iter().find(|candidate| is_executable(candidate)) {
            Some(found) => Ok(found),
            None => bail!(
                "no Envoy binary found (looked for --envoy-binary, ENVOY_BIN, {TOOLS_ENVOY} above kodiak-dp and \
                 above the current directory, and envoy on PATH); {INSTALL_HINT}"
            ),
        }
    }
}

/// Looks in this process's real environment, with `--envoy-binary` /
/// `ENVOY_BIN` when given.
pub fn find_with(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().ok();
    let current_dir = std::env::current_dir().ok();
    let path = std::env::var_os("PATH");
    Search { explicit, exe: exe.as_deref(), current_dir: current_dir.as_deref(), path: path.as_deref() }.find()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // metadata follows symlinks, as .tools/bin/envoy is one.
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `envoy --version` and returns the version (e.g. `1.40.0`) when it
/// is a supported one.
pub async fn check_version(binary: &Path) -> anyhow::Result<String> {
    let run = tokio::process::Command::new(binary).arg("--version").kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .with_context(|| format!("`{} --version` did not answer within 30s", binary.display()))?
        .with_context(|| format!("cannot run `{} --version`", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = parse_version(&text) else {
        bail!(
            "`{} --version` did not print an Envoy version (it printed {:?}); {INSTALL_HINT}",
            binary.display(),
            text.trim()
        );
    };
    if !is_supported(&version) {
        bail!("found Envoy {version} at {}, but kodiak-dp needs Envoy {SUPPORTED}.x; {INSTALL_HINT}", binary.display());
    }
    Ok(version)
}

/// Envoy prints `<path>  version: <commit>/<version>/<Clean|Modified>/<RELEASE|DEBUG>/<ssl>`.
pub fn parse_version(output: &str) -> Option<String> {
    let (_, build) = output.split_once("version: ")?;
    let version = build.split('/').nth(1)?.trim();
    let looks_like_a_version = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    looks_like_a_version.then(|| version.to_owned())
}

fn is_supported(version: &str) -> bool {
    version.strip_prefix(SUPPORTED).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envoys_version_line() {
        let output = "\n/x/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n";
        assert_eq!(parse_version(output).as_deref(), Some("1.40.0"));
        assert_eq!(parse_version("envoy version: abc/1.39.2-dev/Modified/DEBUG/BoringSSL"), None);
        assert_eq!(parse_version("hello"), None);
    }

    #[test]
    fn only_1_40_is_supported() {
        assert!(is_supported("1.40.0"));
        assert!(is_supported("1.40.12"));
        assert!(!is_supported("1.39.3"));
        assert!(!is_supported("1.400.0"));
        assert!(!is_supported("1.41.0"));
    }

    #[test]
    fn candidates_in_order_explicit_then_tools_folders_then_path() {
        let search = Search {
            explicit: None,
            exe: Some(Path::new("/repo/target/debug/kodiak-dp")),
            current_dir: Some(Path::new("/work/app")),
            path: Some(OsStr::new("/usr/local/bin:/usr/bin")),
        };
        let candidates: Vec<String> = search.candidates().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            candidates,
            [
                "/repo/target/debug/.tools/bin/envoy",
                "/repo/target/.tools/bin/envoy",
                "/repo/.tools/bin/envoy",
                "/.tools/bin/envoy",
                "/work/app/.tools/bin/envoy",
                "/work/.tools/bin/envoy",
                "/usr/local/bin/envoy",
                "/usr/bin/envoy",
            ]
        );
        let explicit = Search { explicit: Some(Path::new("/opt/envoy")), ..search };
        assert_eq!(explicit.candidates(), [PathBuf::from("/opt/envoy")]);
    }

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn finds_the_first_executable_and_skips_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("repo");
        let exe = repo.join("target/debug/kodiak-dp");
        let on_path = root.path().join("bin");
        executable(&on_path.join("envoy"));
        let path_var = on_path.clone().into_os_string();
        let search = Search { explicit: None, exe: Some(&exe), current_dir: None, path: Some(&path_var) };
        assert_eq!(search.find().unwrap(), on_path.join("envoy"));

        // A tools folder above the executable wins over PATH; a file that is
        // not executable does not count.
        let tools = repo.join(TOOLS_ENVOY);
        std::fs::create_dir_all(tools.parent().unwrap()).unwrap();
        std::fs::write(&tools, "not executable").unwrap();
        assert_eq!(search.find().unwrap(), on_path.join("envoy"));
        executable(&tools);
        assert_eq!(search.find().unwrap(), tools);
    }

    #[test]
    fn nothing_found_says_how_to_install() {
        let root = tempfile::tempdir().unwrap();
        let search = Search { current_dir: Some(root.path()), ..Search::default() };
        let message = search.find().unwrap_err().to_string();
        assert!(message.contains("scripts/install-envoy.sh"), "{message}");

        let missing = root.path().join("nope/envoy");
        let message = Search { explicit: Some(&missing), ..search }.find().unwrap_err().to_string();
        assert!(message.contains(&missing.display().to_string()), "{message}");
        assert!(message.contains("scripts/install-envoy.sh"), "{message}");
    }
}
