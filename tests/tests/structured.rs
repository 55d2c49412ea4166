//! Structured outputs on the real engine: a random-weight Qwen3 (noise unless
//! constrained) with the real tokenizer, driven by the official `openai` client
//! (`tests/clients/structured.py`).

use braid_tests::{qwen3_fixture, repo_root, run_client, serve_engine, Proc};

/// `braid serve` on the fixture with the qwen3 reasoning parser and `flags`; the process
/// and its base URL.
fn serve(model: &std::path::Path, flags: &[&str], name: &str) -> (Proc, String) {
    let mut args = vec!["--served-model-name", "m", "--reasoning-parser", "qwen3"];
    args.extend_from_slice(flags);
    let (proc, port) = serve_engine(model, &args, name);
    (proc, format!("http://127.0.0.1:{port}/v1"))
}

#[test]
fn json_schemas_regexes_and_choices_come_back_valid() {
    let model = qwen3_fixture("structured");
    let (_serve, url) = serve(&model, &["--tool-call-parser", "hermes"], "structured");
    run_client(
        "structured.py",
        &["outputs", "--base-url", &url, "--requests", "100"],
    );
    run_client(
        "structured.py",
        &["tools", "--base-url", &url, "--requests", "30"],
    );
}

#[test]
fn tool_choice_is_enforced_in_kimi_k2_and_qwen3_coder_markup() {
    let model = qwen3_fixture("structured-tools");
    for format in ["kimi_k2", "qwen3_coder"] {
        let (_serve, url) = serve(&model, &["--tool-call-parser", format], format);
        let out = run_client(
            "structured.py",
            &["tools", "--base-url", &url, "--requests", "30"],
        );
        assert!(out.contains("30 required and 30 named calls"), "{format}: {out}");
    }
}

#[test]
fn a_thinking_budget_ends_reasoning_and_the_answer_is_constrained() {
    let model = qwen3_fixture("structured-budget");
    let template = repo_root().join("tests/templates/qwen3-thinking.jinja");
    let t = template.display().to_string();
    let (_serve, url) = serve(
        &model,
        &[
            "--tool-call-parser",
            "hermes",
            "--chat-template",
            &t,
            "--thinking-token-budget",
            "8",
        ],
        "structured-budget",
    );
    run_client(
        "structured.py",
        &["budget", "--base-url", &url, "--default-budget", "8"],
    );
}
