//! Chat templates against the reference renderers' golden prompts
//! (`../shared/fixtures/<family>/renders.jsonl`), byte for byte, through `braid render`
//! with each model folder laid out as Hugging Face lays it out. Skipped (with a message)
//! when `../shared` is absent.

use std::path::Path;
use std::process::Command;

use braid_tests::{braid_bin, shared_dir};
use serde_json::{json, Value};

/// The reference renders' pinned clock (2026-11-30 12:00:00 UTC), for templates that
/// write the date (`strftime_now`): braid reads it from `SOURCE_DATE_EPOCH`.
const RENDERED_AT: &str = "1796040000";

/// Numbers the model folders of every check in this process (they run in parallel).
static FOLDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Renders every golden case of the families under `fixtures` (those `only` names, if
/// given) and returns the number of cases and the differences.
fn check_renders(fixtures: &Path, only: Option<&[&str]>) -> (usize, Vec<String>) {
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut families: Vec<_> = std::fs::read_dir(fixtures)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    families.sort();
    let wanted = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        only.is_none_or(|only| only.contains(&name))
    };
    for family in families
        .iter()
        .filter(|p| p.join("renders.jsonl").exists() && wanted(p))
    {
        let text = std::fs::read_to_string(family.join("renders.jsonl")).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            let id = case["id"].as_str().unwrap_or("?").to_owned();
            let n = FOLDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("braid-render-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let mut specials = case["special_tokens"].clone();
            let template = family.join(case["template"].as_str().unwrap_or_default());
            if template.is_file() {
                std::fs::copy(&template, dir.join("chat_template.jinja")).unwrap_or_else(|e| panic!("{e}"));
            } else {
                // No template: the family's own encoder, which braid picks by model_type.
                let config = json!({"model_type": case["family"]});
                std::fs::write(dir.join("config.json"), config.to_string()).unwrap_or_else(|e| panic!("{e}"));
                specials["bos_token"] = json!("<｜begin▁of▁sentence｜>");
            }
            std::fs::write(dir.join("tokenizer_config.json"), specials.to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(dir.join("request.json"), case["request"].to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            let out = Command::new(braid_bin())
                .arg("render")
                .arg("--model")
                .arg(&dir)
                .arg("--request")
                .arg(dir.join("request.json"))
                .arg("--chat-template-kwargs")
                .arg(case["chat_template_kwargs"].to_string())
                .env("SOURCE_DATE_EPOCH", RENDERED_AT)
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            let got = String::from_utf8_lossy(&out.stdout);
            if let Some(error) = case["reference_error"].as_str() {
                // The reference renderer refused this conversation: braid must refuse it
                // too, with the template's own message.
                let message = error.trim_start_matches("TemplateError: ");
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success() || !stderr.contains(message) {
                    failures.push(format!(
                        "{id}: expected the error {message:?}, got {stderr:?} {got:?}"
                    ));
                }
            } else if !out.status.success() || got != case["expected_prompt"].as_str().unwrap_or_default() {
                failures.push(format!(
                    "{id}: {}\n  expected {:?}\n  got      {:?}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    case["expected_prompt"],
                    got
                ));
            }
            let _ = std::fs::remove_dir_all(&dir);
            cases += 1;
        }
    }
    (cases, failures)
}

#[test]
fn every_golden_render_is_reproduced_byte_for_byte() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is absent");
        return;
    };
    let (cases, failures) = check_renders(&shared.join("fixtures"), None);
    assert!(cases >= 50, "only {cases} golden renders found");
    assert!(
        failures.is_empty(),
        "{} of {cases} renders differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The newer families' renders (`../shared/next/fixtures`): their templates through the
/// same renderer, with gpt-oss reading replayed reasoning as `thinking` and Hunyuan
/// writing the date and weekday; DeepSeek-V4 and V4.1 through their native encoder.
#[test]
fn newer_families_golden_renders_are_reproduced_byte_for_byte() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is absent");
        return;
    };
    let next = shared.join("next/fixtures");
    if !next.is_dir() {
        eprintln!("skipped: ../shared/next/fixtures is absent");
        return;
    }
    let families = [
        "granite",
        "hunyuan_a13b",
        "minimax_m3",
        "kimi_k3",
        "gpt_oss",
        "deepseek_v4",
    ];
    let (cases, failures) = check_renders(&next, Some(&families));
    assert!(cases >= 95, "only {cases} golden renders found");
    assert!(
        failures.is_empty(),
        "{} of {cases} renders differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn template_errors_are_messages_not_crashes() {
    let dir = std::env::temp_dir().join(format!("braid-render-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let template = dir.join("t.jinja");
    std::fs::write(
        &template,
        "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}ok",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let request = dir.join("r.json");
    std::fs::write(&request, r#"{"messages": [{"role": "user", "content": "hi"}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(braid_bin())
        .arg("render")
        .arg("--chat-template")
        .arg(&template)
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("System first!"));
    std::fs::write(&template, "{% for m in messages %}{{ m.content }").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(braid_bin())
        .arg("render")
        .arg("--chat-template")
        .arg(&template)
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chat template"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
