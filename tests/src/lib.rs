//! Helpers shared by the end-to-end tests: the built `braid` binary, `../shared`, and
//! running a command with stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `braid` binary of this build profile (built on demand), or `$BRAID_BIN`.
pub fn braid_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BRAID_BIN") {
        return PathBuf::from(bin);
    }
    // Test executables live in target/<profile>/deps/.
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target/debug"));
    let bin = profile_dir.join("braid");
    if !bin.exists() {
        let release = profile_dir.ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args(["build", "-p", "braid-ops", "--bin", "braid"])
            .current_dir(repo_root());
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status();
        assert!(status.is_ok_and(|s| s.success()), "building braid failed");
    }
    bin
}

/// `../shared` beside the repository, if it is there.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = repo_root().parent()?.join("shared");
    dir.join("conformance").is_dir().then_some(dir)
}

/// Runs `cmd` with `stdin` written to it and returns its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A command may exit before reading its input (a bad flag): that is not an error.
        match input.write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"))
}
