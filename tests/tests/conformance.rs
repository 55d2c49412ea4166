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

/// Formats read from files (`ops/examples/formats/`) pass the cases of the built-in formats
/// they copy, at every split point: a file-defined format runs on the same machines.
#[test]
fn file_defined_formats_pass_the_built_in_formats_cases() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance is absent");
        return;
    };
    let formats = braid_tests::repo_root().join("ops/examples/formats");
    let file = |kind: &str, name: &str| -> Option<String> {
        let file = match (kind, name) {
            ("reasoning", "qwen3") => "qwen3_think",
            ("reasoning", "minimax_m2") => "minimax_m2_think",
            ("reasoning", "granite") => "granite_think",
            ("reasoning", "hunyuan_a13b") => "hunyuan_think",
            ("tool", "hermes") => "hermes_calls",
            ("tool", "minimax_m2") => "minimax_m2_calls",
            ("tool", "granite") => "granite_calls",
            ("tool", "hunyuan_a13b") => "hunyuan_calls",
            _ => return None,
        };
        Some(formats.join(format!("{file}.toml")).display().to_string())
    };
    let dir = std::env::temp_dir().join(format!("braid-file-formats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = Vec::new();
    for family in ["qwen3", "minimax_m2"] {
        let text = std::fs::read_to_string(shared.join(format!("conformance/cases/{family}.jsonl")))
            .unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut case: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            let mut usable = true;
            for (key, kind) in [("reasoning_parser", "reasoning"), ("tool_parser", "tool")] {
                if let Some(name) = case[key].as_str() {
                    match file(kind, name) {
                        Some(path) => case[key] = serde_json::Value::String(path),
                        None => usable = false,
                    }
                }
            }
            if usable {
                lines.push(case.to_string());
            }
        }
    }
    assert!(
        lines.len() >= 30,
        "only {} cases use the filed formats",
        lines.len()
    );
    std::fs::write(dir.join("from_files.jsonl"), lines.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    run_folder(&shared, Some(&dir), &["--chunks", "all"], lines.len());
    let _ = std::fs::remove_dir_all(&dir);
}
