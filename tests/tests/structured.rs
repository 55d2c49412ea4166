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

#[test]
fn constraints_the_grammar_engine_cannot_enforce_are_400s_that_name_the_field() {
    let model = qwen3_fixture("structured-limits");
    let (_serve, url) = serve(&model, &[], "structured-limits");
    let port: u16 = url
        .trim_end_matches("/v1")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    let schema = |s: serde_json::Value| serde_json::json!({"type": "json_schema", "json_schema": {"name": "x", "schema": s}});
    let cases = [
        (
            "response_format",
            schema(serde_json::json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}})),
        ),
        (
            "response_format",
            schema(
                serde_json::json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}),
            ),
        ),
        (
            "response_format",
            schema(
                serde_json::json!({"$ref": "#/$defs/a", "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}}),
            ),
        ),
        (
            "response_format",
            schema(
                serde_json::json!({"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]}),
            ),
        ),
        (
            "structured_outputs",
            serde_json::json!({"regex": "(a{1000}){1000}"}),
        ),
    ];
    for (field, value) in cases {
        let mut body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20});
        body[field] = value.clone();
        let started = std::time::Instant::now();
        let (status, _, text) =
            braid_tests::http_full(port, "POST", "/v1/chat/completions", &body.to_string(), &[]);
        let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(status, 400, "{value}: {text}");
        assert_eq!(error["error"]["param"], field, "{text}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() < 400 && !message.contains("<state>") && !message.contains("internal"),
            "told in words, without the parser's state: {message}"
        );
        assert!(
            started.elapsed().as_secs() < 2,
            "{value} took {:?}",
            started.elapsed()
        );
    }
}
