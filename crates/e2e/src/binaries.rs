//! The programs under test: the workspace's own binaries (built on first
//! use, so `cargo nextest run -p kodiak-e2e` alone works) and Envoy
//! (installed by scripts/install-envoy.sh when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).expect("crates/e2e sits two levels down")
}

/// Set (to anything) when the workspace's binaries are built already, e.g.
/// by `cargo build --workspace --bins` while other targets do not compile.
const PREBUILT: &str = "KODIAK_E2E_PREBUILT";

/// A workspace binary (`kodiak-dp`, `kodiak-test-service`, `kodiakctl`), built once per
/// test process with the profile of the test itself, unless [`PREBUILT`] is set.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let directory = BUILT.get_or_init(|| {
        // A test binary lives in <target>/<profile>/deps, a program using
        // the harness (a benchmark) in <target>/<profile>.
        let exe = std::env::current_exe().expect("the running executable");
        let exe_dir = exe.parent().expect("the executable's directory");
        let profile_dir =
            if exe_dir.file_name().is_some_and(|name| name == "deps") { exe_dir.parent() } else { Some(exe_dir) }
                .expect("target dir")
                .to_owned();
        if std::env::var_os(PREBUILT).is_some() {
            return profile_dir;
        }
        let mut build = Command::new(env!("CARGO"));
        build.current_dir(repository()).args(["build", "--quiet", "--workspace"]);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            // A benchmark: the programs alone.
            build.args(["--release", "--bins"]);
        } else {
            // Tests: every target, so features resolve as in `cargo nextest
            // run --workspace` and nothing it built is built again.
            build.arg("--all-targets");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the workspace (kodiak-dp, kodiak-test-service, kodiakctl) failed");
        profile_dir
    });
    directory.join(name)
}

/// Envoy 1.40: `ENVOY_BIN`, else the repository's `.tools/bin/envoy`,
/// installed by `scripts/install-envoy.sh` if it is not there yet.
pub fn envoy() -> PathBuf {
    static ENVOY: OnceLock<PathBuf> = OnceLock::new();
    ENVOY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("ENVOY_BIN").filter(|path| !path.is_empty()) {
                return PathBuf::from(path);
            }
            let output = Command::new("bash")
                .arg(repository().join("scripts/install-envoy.sh"))
                .output()
                .expect("scripts/install-envoy.sh runs");
            assert!(
                output.status.success(),
                "scripts/install-envoy.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            PathBuf::from(stdout.lines().last().expect("the script prints the path").trim())
        })
        .clone()
}
