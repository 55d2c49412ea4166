//! Chat templates against the reference renderers' golden prompts
//! (`../shared/fixtures/<family>/renders.jsonl`), byte for byte, through `braid render`
//! with each model folder laid out as Hugging Face lays it out. Skipped (with a message)
//! when `../shared` is absent.

use std::process::Command;

use braid_tests::{braid_bin, shared_dir};
use serde_json::{json, Value};

#[test]
fn every_golden_render_is_reproduced_byte_for_byte() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is absent");
        return;
    };
    let fixtures = shared.join("fixtures");
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut families: Vec<_> = std::fs::read_dir(&fixtures)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    families.sort();
    for family in families.iter().filter(|p| p.join("renders.jsonl").exists()) {
        let text = std::fs::read_to_string(family.join("renders.jsonl")).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
            let id = case["id"].as_str().unwrap_or("?").to_owned();
            let dir = std::env::temp_dir().join(format!("braid-render-{}-{}", std::process::id(), cases));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let mut specials = case["special_tokens"].clone();
            if case["family"] == "deepseek_v32" {
                let config =
                    json!({"model_type": "deepseek_v32", "architectures": ["DeepseekV32ForCausalLM"]});
                std::fs::write(dir.join("config.json"), config.to_string()).unwrap_or_else(|e| panic!("{e}"));
                specials["bos_token"] = json!("<｜begin▁of▁sentence｜>");
            } else {
                let template = family.join(case["template"].as_str().unwrap_or_default());
                std::fs::copy(&template, dir.join("chat_template.jinja")).unwrap_or_else(|e| panic!("{e}"));
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
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            let got = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || got != case["expected_prompt"].as_str().unwrap_or_default() {
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
    assert!(cases >= 50, "only {cases} golden renders found");
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
