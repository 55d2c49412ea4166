//! Bad requests get OpenAI-shaped 4xx errors that name the problem, and the server stays
//! up: bad JSON, wrong types, unknown fields, oversized bodies and prompts, invalid tool
//! schemas, unknown tool_choice names, another model's name, a missing API key, and a
//! tool_choice the model did not honour.

use std::time::Duration;

use braid_tests::{http, http_with};
use serde_json::{json, Value};

const KEY: &str = "sk-test-123";

fn post(port: u16, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    let (status, text) = http_with(port, "POST", path, body, &[("Authorization", &auth)]);
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn expect_error(port: u16, body: &str, status: u16, param: Option<&str>, says: &str) {
    let (got, v) = post(port, "/v1/chat/completions", body);
    assert_eq!(got, status, "{body}: {v}");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an OpenAI error: {v}"));
    assert!(message.contains(says), "{body}: {message}");
    assert!(
        v["error"]["type"].is_string() && v["error"]["code"] == status,
        "{v}"
    );
    if let Some(p) = param {
        assert_eq!(v["error"]["param"], p, "{v}");
    }
}

#[test]
fn malformed_requests_get_clear_4xx_errors_and_the_server_stays_up() {
    let rec = braid_tests::write_recordings(
        "api-errors",
        &[json!({"output": "<think>\nhmm\n</think>\n\nJust text, no call."})],
    );
    let (_serve, port) = braid_tests::serve_replay(
        &rec,
        &[
            "--replay-interval-ms",
            "0",
            "--reasoning-parser",
            "qwen3",
            "--tool-call-parser",
            "hermes",
            "--served-model-name",
            "m",
            "--api-key",
            KEY,
            "--max-body-bytes",
            "65536",
            "--max-model-len",
            "256",
        ],
        "api-errors",
    );
    let user = json!([{"role": "user", "content": "hi"}]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);

    // No key: 401 on /v1, while /health stays open.
    let (status, text) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &json!({"messages": user}).to_string(),
    );
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("API key"), "{text}");

    expect_error(port, "{not json", 400, None, "not valid");
    expect_error(port, r#"{"messages": "hi"}"#, 400, Some("messages"), "array");
    expect_error(port, r#"{"messages": []}"#, 400, Some("messages"), "empty");
    expect_error(
        port,
        &json!({"messages": [{"role": "wizard", "content": "x"}]}).to_string(),
        400,
        Some("messages"),
        "wizard",
    );
    expect_error(
        port,
        &json!({"messages": user, "temprature": 0.5}).to_string(),
        400,
        None,
        "temprature",
    );
    expect_error(
        port,
        &json!({"messages": user, "temperature": "hot"}).to_string(),
        400,
        None,
        "temperature",
    );
    expect_error(
        port,
        &json!({"messages": user, "top_p": 0}).to_string(),
        400,
        Some("top_p"),
        "top_p",
    );
    expect_error(
        port,
        &json!({"messages": user, "n": 2}).to_string(),
        400,
        Some("n"),
        "n = 1",
    );
    expect_error(
        port,
        &json!({"messages": user, "model": "gpt-9"}).to_string(),
        404,
        Some("model"),
        "gpt-9",
    );
    let bad_tool = json!([{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}]);
    expect_error(
        port,
        &json!({"messages": user, "tools": bad_tool}).to_string(),
        400,
        Some("tools"),
        "parameters",
    );
    let nameless = json!([{"type": "function", "function": {"name": "has space"}}]);
    expect_error(
        port,
        &json!({"messages": user, "tools": nameless}).to_string(),
        400,
        Some("tools"),
        "name",
    );
    expect_error(
        port,
        &json!({"messages": user, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}).to_string(),
        400,
        Some("tool_choice"),
        "nope",
    );
    expect_error(
        port,
        &json!({"messages": user, "tools": tools, "tool_choice": "sometimes"}).to_string(),
        400,
        Some("tool_choice"),
        "sometimes",
    );
    expect_error(
        port,
        &json!({"messages": user, "tool_choice": "required"}).to_string(),
        400,
        Some("tool_choice"),
        "needs tools",
    );
    // Too big a body: 413; too long a prompt for --max-model-len: 400.
    let huge = json!({"messages": [{"role": "user", "content": "x".repeat(100_000)}]}).to_string();
    expect_error(port, &huge, 413, None, "too large");
    let long = json!({"messages": [{"role": "user", "content": "word ".repeat(400)}]}).to_string();
    expect_error(port, &long, 400, None, "maximum context length");
    let (status, v) = post(port, "/v1/completions", &json!({"prompt": {"a": 1}}).to_string());
    assert_eq!(
        (status, v["error"]["param"].clone()),
        (400, json!("prompt")),
        "{v}"
    );

    // tool_choice required on the replay executor, which cannot enforce it: a 400 that
    // says so, streamed or not (the engine enforces it; see the structured tests).
    let required = json!({"messages": user, "tools": tools, "tool_choice": "required"});
    expect_error(
        port,
        &required.to_string(),
        400,
        None,
        "replay executor cannot enforce",
    );
    let mut streamed = required;
    streamed["stream"] = json!(true);
    let (status, v) = post(port, "/v1/chat/completions", &streamed.to_string());
    let text = v.to_string();
    assert!(
        text.contains("cannot enforce") && (status == 400 || text.contains(r#"\"code\":400"#)),
        "{status} {text}"
    );

    // Still serving.
    let (status, v) = post(
        port,
        "/v1/chat/completions",
        &json!({"messages": user}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "\n\nJust text, no call.");
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "\nhmm\n");
    assert_eq!(http(port, "GET", "/health", "").0, 200);
}

#[test]
fn a_client_that_disconnects_cancels_its_request_in_the_engine() {
    use std::io::{Read, Write};
    let model = braid_tests::qwen3_fixture("disconnect");
    let (_serve, port) = braid_tests::serve_engine(&model, &["--served-model-name", "m"], "disconnect");
    let body = json!({"messages": [{"role": "user", "content": "go"}], "max_tokens": 3000, "ignore_eos": true, "stream": true}).to_string();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap_or(0);
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    let metric = |name: &str| -> f64 {
        let (_, text) = http(port, "GET", "/metrics", "");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        metric("braid_num_requests_running"),
        1.0,
        "the request runs in the engine"
    );
    drop(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric("braid_num_requests_running") != 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric("braid_num_requests_running"),
        0.0,
        "the engine still runs the abandoned request"
    );
    assert_eq!(metric("braid_requests_cancelled_total"), 1.0);
}
