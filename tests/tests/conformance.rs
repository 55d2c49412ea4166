//! The public conformance cases in `../shared/conformance` (and the newer families' in
//! `../shared/next/conformance`), run by their own runner
//! through `braid parse` — whole, at every split point, and in random chunks.

use std::path::Path;
use std::process::Command;

use braid_tests::{braid_bin, shared_dir};

fn run_cases(extra: &[&str]) {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance is absent");
        return;
    };
    run_folder(&shared, None, extra, 100);
    // The newer families (`../shared/next`), through the same runner.
    match shared.join("next/conformance") {
        next if next.is_dir() => run_folder(&shared, Some(&next), extra, 80),
        _ => eprintln!("skipping the newer families: ../shared/next/conformance is absent"),
    }
}

/// Runs the cases in `cases` (the runner's own folder if `None`) and asserts that none
/// fails and at least `min` ran.
fn run_folder(shared: &Path, cases: Option<&Path>, extra: &[&str], min: usize) {
    let runner = shared.join("conformance/run_cases.py");
    let out = Command::new("python3")
        .arg(&runner)
        .arg("--braid")
        .arg(braid_bin())
        .args(
            cases
                .map(|c| [std::ffi::OsStr::new("--cases"), c.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", runner.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        out.status.success() && last.ends_with(" 0 failed"),
        "conformance {cases:?} {extra:?}: {stdout}"
    );
    let passed: usize = last.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= min, "too few cases ran: {last}");
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
