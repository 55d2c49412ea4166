//! The public conformance cases in `../shared/conformance`, run by their own runner
//! through `braid parse` — whole, at every split point, and in random chunks.

use std::process::Command;

use braid_tests::{braid_bin, shared_dir};

fn run_cases(extra: &[&str]) {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance is absent");
        return;
    };
    let runner = shared.join("conformance/run_cases.py");
    let out = Command::new("python3")
        .arg(&runner)
        .arg("--braid")
        .arg(braid_bin())
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", runner.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        out.status.success() && last.ends_with(" 0 failed"),
        "conformance {extra:?}: {stdout}"
    );
    let passed: usize = last.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed > 100, "too few cases ran: {last}");
}

#[test]
fn public_cases_pass_whole() {
    run_cases(&[]);
}

#[test]
fn public_cases_pass_at_every_split_point() {
    run_cases(&["--chunks", "all"]);
}

#[test]
fn public_cases_pass_in_random_chunks() {
    run_cases(&["--chunks", "random:7"]);
    run_cases(&["--chunks", "1"]);
}
