//! Running kodiakctl in a sandbox: its own config file in a temporary
//! directory, no address from the environment.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns standard output.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "kodiakctl failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout
    }

    /// Asserts exit code 1 and returns standard error.
    #[track_caller]
    pub fn fails(self) -> String {
        assert_eq!(self.code, 1, "kodiakctl should have failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(self.stderr.starts_with("Error: "), "{}", self.stderr);
        self.stderr
    }
}

/// A Mesh with a Dataplane and a MeshTimeout, all valid.
pub const DEMO: &str = "\
type: Mesh
name: demo
---
type: Dataplane
mesh: demo
name: web-1
networking:
  address: 127.0.0.2
  inbound:
  - port: 10001
    servicePort: 8080
    tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1}
---
type: MeshTimeout
mesh: demo
name: backend-timeouts
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {connectionTimeout: 2s}
";

/// A kodiakctl user with a private config file and scratch directory.
pub struct Kodiakctl {
    dir: tempfile::TempDir,
    address: Option<String>,
}

impl Kodiakctl {
    /// A user who names no control plane on the command line.
    pub fn new() -> Kodiakctl {
        Kodiakctl { dir: tempfile::tempdir().unwrap(), address: None }
    }

    /// A user who passes `--cp-address address` to every command.
    pub fn against(address: &str) -> Kodiakctl {
        Kodiakctl { address: Some(address.to_owned()), ..Kodiakctl::new() }
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("kodiakctl.yaml")
    }

    /// Writes a file in the scratch directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Runs `kodiakctl <command line>`; arguments are split at whitespace,
    /// so the tests read like the shell lines a user types.
    pub fn run(&self, command_line: &str) -> Run {
        self.run_with_stdin(command_line, "")
    }

    pub fn run_with_stdin(&self, command_line: &str, stdin: &str) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kodiakctl"));
        command
            .arg("--config-file")
            .arg(self.config_file())
            .args(self.address.iter().flat_map(|a| ["--cp-address", a]))
            .args(command_line.split_whitespace())
            .env_remove("KODIAKCTL_CONFIG")
            .env_remove("KODIAKCTL_CP_ADDRESS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("kodiakctl starts");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}
