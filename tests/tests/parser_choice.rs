//! Parser choice that checks itself: `braid parsers MODEL_DIR` and `braid serve MODEL_DIR`
//! without parser flags pick each family's parsers from its model folder (the real
//! templates of `../shared/fixtures` and `../shared/next/fixtures`), say so clearly when
//! no family fits, and never override explicit flags.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use braid_tests::families::{family_folder, FAMILIES};
use braid_tests::{braid_bin, free_port, http, shared_dir, wait_healthy, Proc};
use serde_json::{json, Value};

/// The reasoning parser each family is served with (braid's family table).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("qwen3", "qwen3", "hermes"),
    ("deepseek_r1", "deepseek_r1", "deepseek_v3"),
    ("deepseek_v31", "deepseek_v3", "deepseek_v31"),
    ("deepseek_v32", "deepseek_v3", "deepseek_v32"),
    ("deepseek_v4", "deepseek_v4", "deepseek_v4"),
    ("deepseek_v41", "deepseek_v4", "deepseek_v41"),
    ("glm45", "glm45", "glm45"),
    ("glm47", "glm45", "glm47"),
    ("kimi_k2", "kimi_k2", "kimi_k2"),
    ("kimi_k3", "kimi_k3", "kimi_k3"),
    ("minimax_m2", "minimax_m2", "minimax_m2"),
    ("minimax_m3", "minimax_m3", "minimax_m3"),
    ("granite", "granite", "granite"),
    ("hunyuan_a13b", "hunyuan_a13b", "hunyuan_a13b"),
    ("gpt_oss", "openai_gptoss", "openai"),
];

/// A model folder as Hugging Face lays it out for one golden-render case of `family`
/// under `fixtures`: its template (or, for encoder-only DeepSeek releases, its
/// `model_type`) and its special tokens.
fn model_folder(fixtures: &Path, folder: &str, family: &str, with_model_type: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(fixtures.join(folder).join("renders.jsonl")).unwrap_or_default();
    let case = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|c| c["family"] == family)
        .unwrap_or_else(|| panic!("no render case of {family} in {folder}"));
    let dir = std::env::temp_dir().join(format!(
        "braid-choice-{family}-{}-{}",
        with_model_type.is_some(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut specials = case["special_tokens"].clone();
    let template = fixtures
        .join(folder)
        .join(case["template"].as_str().unwrap_or_default());
    let model_type = if template.is_file() {
        std::fs::copy(&template, dir.join("chat_template.jinja")).unwrap_or_else(|e| panic!("{e}"));
        with_model_type
    } else {
        specials["bos_token"] = json!("<｜begin▁of▁sentence｜>");
        Some(family)
    };
    if let Some(t) = model_type {
        std::fs::write(dir.join("config.json"), json!({"model_type": t}).to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(dir.join("tokenizer_config.json"), specials.to_string()).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// `braid parsers DIR`: the exit code, the JSON printed, and stderr.
fn parsers(dir: &Path) -> (i32, Value, String) {
    let out = Command::new(braid_bin())
        .arg("parsers")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_familys_parsers_are_chosen_from_its_model_folder() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: ../shared is absent");
        return;
    };
    let mut checked = 0;
    for (root, folder, family, model_type) in [
        ("fixtures", "qwen3", "qwen3", "qwen3"),
        ("fixtures", "deepseek_r1", "deepseek_r1", "deepseek_v3"),
        ("fixtures", "deepseek_v31", "deepseek_v31", "deepseek_v3"),
        ("fixtures", "deepseek_v32", "deepseek_v32", "deepseek_v32"),
        ("fixtures", "glm45", "glm45", "glm4_moe"),
        ("fixtures", "glm47", "glm47", "glm4_moe"),
        ("fixtures", "kimi_k2", "kimi_k2", "kimi_k2"),
        ("fixtures", "minimax_m2", "minimax_m2", "minimax_m2"),
        ("next/fixtures", "deepseek_v4", "deepseek_v4", "deepseek_v4"),
        ("next/fixtures", "deepseek_v4", "deepseek_v41", "deepseek_v41"),
        ("next/fixtures", "kimi_k3", "kimi_k3", "kimi_k3"),
        ("next/fixtures", "minimax_m3", "minimax_m3", "minimax_m3"),
        ("next/fixtures", "granite", "granite", "granite"),
        ("next/fixtures", "hunyuan_a13b", "hunyuan_a13b", "hunyuan_v1_moe"),
        ("next/fixtures", "gpt_oss", "gpt_oss", "gpt_oss"),
    ] {
        let fixtures = shared.join(root);
        if !fixtures.join(folder).is_dir() {
            eprintln!("skipping {family}: {} is absent", fixtures.join(folder).display());
            continue;
        }
        let (_, reasoning, tools) = EXPECTED
            .iter()
            .find(|(f, _, _)| *f == family)
            .copied()
            .unwrap_or_else(|| panic!("{family} has no expected parsers"));
        // With the model_type config.json gives, and from the template alone.
        for with in [Some(model_type), None] {
            let dir = model_folder(&fixtures, folder, family, with);
            let (code, json, stderr) = parsers(&dir);
            assert_eq!(code, 0, "{family} ({with:?}): {stderr}");
            assert_eq!(
                (
                    json["family"].as_str(),
                    json["reasoning_parser"].as_str(),
                    json["tool_call_parser"].as_str()
                ),
                (Some(family), Some(reasoning), Some(tools)),
                "{family} ({with:?}): {json}"
            );
            let _ = std::fs::remove_dir_all(&dir);
            checked += 1;
        }
    }
    assert!(checked >= 28, "only {checked} folders checked");
}

#[test]
fn a_template_no_family_fits_is_told_with_the_flags_to_set() {
    let dir = std::env::temp_dir().join(format!("braid-choice-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    // A plain template that renders neither tool calls nor reasoning.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap_or_else(|e| panic!("{e}"));
    let (code, json, stderr) = parsers(&dir);
    assert_eq!((code, json), (1, Value::Null), "{stderr}");
    for said in [
        "no parser family fits",
        "model_type llama",
        "--reasoning-parser",
        "--tool-call-parser",
        "hermes parser finds no braid_probe",
    ] {
        assert!(stderr.contains(said), "{said:?} not in {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `braid serve` of the Qwen3 family folder on the replay executor with `flags`; the
/// weather round's reply to a chat request with a tool, and the server's log.
fn serve_and_ask(dir: &Path, flags: &[&str]) -> (Value, String) {
    let port = free_port();
    let (d, p) = (dir.display().to_string(), port.to_string());
    let replay = format!("replay:{}", dir.join("recordings.jsonl").display());
    let mut args = vec![
        "serve",
        &d,
        "--executor",
        &replay,
        "--replay-interval-ms",
        "0",
        "--port",
        &p,
    ];
    args.extend(flags);
    let mut proc = Proc::braid(&args, "parser-choice");
    assert!(wait_healthy(port, Duration::from_secs(30)), "{}", proc.output());
    let body = json!({"messages": [{"role": "user", "content": "What's the weather like in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (status, text) = http(port, "POST", "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let log = proc.output();
    proc.kill();
    (serde_json::from_str(&text).unwrap_or(Value::Null), log)
}

#[test]
fn serve_uses_the_chosen_parsers_and_explicit_flags_win() {
    let Some(f) = FAMILIES.iter().find(|f| f.name == "qwen3") else {
        panic!("no qwen3 family")
    };
    let Some(dir) = family_folder(f, shared_dir().as_deref(), "choice") else {
        panic!("the qwen3 family folder needs no shared fixtures")
    };
    // No flags: Qwen3's template proves qwen3 + hermes, and the round is parsed.
    let (reply, log) = serve_and_ask(&dir, &[]);
    assert!(
        log.contains("parsers: qwen3 (reasoning qwen3, tools hermes)"),
        "{log}"
    );
    let message = &reply["choices"][0]["message"];
    assert_eq!(
        message["tool_calls"][0]["function"]["name"], "get_weather",
        "{reply}"
    );
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|r| r.contains("Paris")),
        "{reply}"
    );
    // A flag names another format: it is used as given (the self-test warns), nothing is
    // chosen over it, and the Hermes markup stays unparsed text.
    let (reply, log) = serve_and_ask(&dir, &["--tool-call-parser", "kimi_k2"]);
    assert!(!log.contains("chosen from the model folder"), "{log}");
    assert!(log.contains("SELF-TEST FAILED"), "{log}");
    let message = &reply["choices"][0]["message"];
    assert!(
        message["tool_calls"].as_array().is_none_or(Vec::is_empty),
        "{reply}"
    );
    assert!(
        message["content"]
            .as_str()
            .is_some_and(|c| c.contains("<tool_call>")),
        "{reply}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
