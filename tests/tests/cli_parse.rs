//! `braid parse` and `braid bench parse` as a user runs them: output shape, and clear
//! errors with a non-zero exit for bad input.

use std::process::Command;

use braid_tests::{braid_bin, run_with_stdin};
use serde_json::Value;

fn parse(args: &[&str], stdin: &str) -> (i32, Value, String) {
    let out = run_with_stdin(
        Command::new(braid_bin()).arg("parse").args(args),
        stdin.as_bytes(),
    );
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const KIMI: &str = "<think>Two cities.</think>Checking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>";

#[test]
fn parse_prints_the_openai_shape() {
    for chunks in [None, Some("3"), Some("all"), Some("random:11")] {
        let mut args = vec!["--reasoning-parser", "kimi_k2", "--tool-parser", "kimi_k2"];
        if let Some(c) = chunks {
            args.extend(["--chunks", c]);
        }
        let (code, json, err) = parse(&args, KIMI);
        assert_eq!(code, 0, "{err}");
        assert_eq!(json["reasoning_content"], "Two cities.");
        assert_eq!(json["content"], "Checking.");
        let call = &json["tool_calls"][0];
        assert_eq!(call["id"], "functions.get_weather:0");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], "{\"city\": \"Paris\"}");
    }
}

#[test]
fn empty_fields_are_null_and_no_parser_means_plain_content() {
    let (code, json, _) = parse(&[], "<think>x</think>y");
    assert_eq!(code, 0);
    assert_eq!(json["reasoning_content"], Value::Null);
    assert_eq!(json["content"], "<think>x</think>y");
    assert_eq!(json["tool_calls"], serde_json::json!([]));
}

#[test]
fn tools_file_types_arguments() {
    let dir = std::env::temp_dir().join(format!("braid-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    let tools = dir.join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type":"function","function":{"name":"f","parameters":{"properties":{"id":{"type":"string"},"n":{"type":"integer"}}}}}]"#,
    )
    .unwrap_or_default();
    let text = "<minimax:tool_call><invoke name=\"f\"><parameter name=\"id\">7</parameter><parameter name=\"n\">7</parameter></invoke></minimax:tool_call>";
    let tools_arg = tools.to_string_lossy().into_owned();
    let (code, json, err) = parse(&["--tool-parser", "minimax_m2", "--tools", &tools_arg], text);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json["tool_calls"][0]["function"]["arguments"],
        "{\"id\": \"7\", \"n\": 7}"
    );
}

#[test]
fn bad_input_is_a_clear_error_with_a_non_zero_exit() {
    let cases: &[(&[&str], &[u8], &str)] = &[
        (&["--reasoning-parser", "deepseek"], b"x", "known: deepseek_r1"),
        (&["--tool-parser", "nope"], b"x", "known: hermes"),
        (&["--chunks", "0"], b"x", "--chunks"),
        (&["--chunks", "random:x"], b"x", "random:SEED"),
        (&["--chat-template-kwargs", "[1]"], b"x", "JSON object"),
        (&["--chat-template-kwargs", "{"], b"x", "not valid JSON"),
        (&["--tools", "/nonexistent/tools.json"], b"x", "reading --tools"),
        (&[], b"\xff\xfe", "UTF-8"),
    ];
    for (args, stdin, needle) in cases {
        let out = run_with_stdin(Command::new(braid_bin()).arg("parse").args(*args), stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?} succeeded");
        assert!(out.status.code().is_some(), "{args:?} crashed");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn bench_parse_prints_a_row_per_parser_and_size() {
    let out = Command::new(braid_bin())
        .args(["bench", "parse", "--tokens", "64,256", "--min-ms", "1"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run braid: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let rows = json["results"].as_array().cloned().unwrap_or_default();
    // 13 reasoning + 16 tool parsers, at two sizes.
    assert_eq!(rows.len(), 58, "{json}");
    for row in &rows {
        for key in [
            "parser",
            "kind",
            "tokens",
            "bytes",
            "chunks",
            "us_per_chunk",
            "mb_per_s",
        ] {
            assert!(!row[key].is_null(), "row lacks {key}: {row}");
        }
        assert!(row["chunks"].as_u64() > Some(10));
    }
    for (kind, parser) in [
        ("tool", "kimi_k2"),
        ("tool", "openai"),
        ("reasoning", "openai_gptoss"),
        ("tool", "minimax_m3"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r["kind"] == kind && r["parser"] == parser && r["tokens"] == 256),
            "no {kind} row for {parser}"
        );
    }
}

#[test]
fn bench_protocols_prints_each_adapters_cost_over_chat_completions() {
    let out = Command::new(braid_bin())
        .args([
            "bench",
            "protocols",
            "--streams",
            "1,8",
            "--tokens",
            "64",
            "--total-tokens",
            "2048",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run braid: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let rows = json["results"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["protocol"].as_str()).collect();
    assert_eq!(
        names,
        [
            "chat_completions",
            "messages",
            "responses",
            "chat_completions",
            "messages",
            "responses"
        ],
        "{json}"
    );
    for row in &rows {
        assert_eq!(row["tokens"], 2048.0, "{row}");
        assert!(
            row["cpu_us_per_token"].as_f64().is_some_and(|us| us >= 0.0),
            "{row}"
        );
        // Every protocol streamed the whole output: tens of bytes a token at least.
        assert!(row["bytes_per_token"].as_f64().is_some_and(|b| b > 20.0), "{row}");
        let over = &row["over_chat_completions_us_per_token"];
        assert_eq!(over.is_null(), row["protocol"] == "chat_completions", "{row}");
    }
}
