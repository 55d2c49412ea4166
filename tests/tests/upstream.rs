//! The upstream executor: braid in front of another OpenAI-compatible server. Against a
//! tiny recorded-output stub (random weights cannot produce tool calls): the interleaved
//! weather loop through the official `openai` client, the upstream's usage, failover
//! between upstreams, cancellation reaching the upstream, and an upstream killed
//! mid-stream.

use std::path::PathBuf;
use std::time::Duration;

use braid_tests::{free_port, http, repo_root, sse_data, venv_python, wait_healthy, wait_port, Proc};
use serde_json::{json, Value};

const R: &str = "The user wants the weather in Paris, so I call get_weather for Paris.";

struct Stub {
    proc: Proc,
    port: u16,
    log: PathBuf,
}

fn stub(name: &str, recordings: &[Value], delay_ms: u32) -> Stub {
    let dir = std::env::temp_dir().join(format!("braid-upstream-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rec = dir.join("recordings.jsonl");
    let lines: Vec<String> = recordings.iter().map(Value::to_string).collect();
    std::fs::write(&rec, lines.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    let log = dir.join("stub.log");
    let port = free_port();
    let script = repo_root()
        .join("tests/clients/upstream_stub.py")
        .display()
        .to_string();
    let proc = Proc::start(
        &venv_python(),
        &[
            script,
            "--port".into(),
            port.to_string(),
            "--recordings".into(),
            rec.display().to_string(),
            "--log".into(),
            log.display().to_string(),
            "--delay-ms".into(),
            delay_ms.to_string(),
        ],
        &format!("stub-{name}"),
    );
    assert!(wait_port(port, Duration::from_secs(10)), "the stub did not start");
    Stub { proc, port, log }
}

fn braid(upstreams: &[String], name: &str) -> (Proc, u16) {
    let port = free_port();
    let tok = repo_root()
        .join(".fixtures/tokenizer-qwen3")
        .display()
        .to_string();
    let mut args: Vec<String> = [
        "serve",
        &tok,
        "--reasoning-parser",
        "qwen3",
        "--tool-call-parser",
        "hermes",
        "--served-model-name",
        "m",
        "--upstream-prompt",
        "text",
        "--upstream-timeout",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for u in upstreams {
        args.push("--executor".into());
        args.push(format!("upstream:{u}"));
    }
    args.extend(["--port".into(), port.to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::braid(&refs, name);
    assert!(wait_healthy(port, Duration::from_secs(30)), "{}", proc.output());
    (proc, port)
}

fn weather_recordings() -> Vec<Value> {
    vec![
        json!({"match": R, "output": "<think>\nIt is sunny.\n</think>\n\nWITH-REASONING: 21 °C and sunny."}),
        json!({"match": "sunny", "output": "<think>\nIt is sunny.\n</think>\n\nWITHOUT-REASONING: 21 °C."}),
        json!({"match": "weather like in Paris", "output": format!("<think>\n{R}\n</think>\n\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Paris\"}}}}\n</tool_call>")}),
        json!({"output": "word ".repeat(400)}),
    ]
}

#[test]
fn the_weather_loop_through_an_upstream_with_failover_usage_cancel_and_kill() {
    let s = stub("main", &weather_recordings(), 5);
    // The first upstream is down: requests fail over to the second (a connection that
    // was never made is safe to retry).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (_braid, port) = braid(&[dead, format!("http://127.0.0.1:{}", s.port)], "upstream-main");
    let url = format!("http://127.0.0.1:{port}/v1");
    let out = std::process::Command::new(venv_python())
        .arg(repo_root().join("tests/clients/interleaved.py"))
        .args([
            "--base-url",
            &url,
            "--reasoning",
            R,
            "--expect",
            "with",
            "--stream",
            "--drop-reasoning",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Usage comes from the upstream (the stub reports 700 + chunks).
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "What's the weather like in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (status, text) = http(port, "POST", "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    assert!(completion > 700, "usage should be the upstream's: {v}");
    assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .is_some_and(|r| r > 0 && r < completion));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    // A client that goes away cancels the upstream request.
    {
        use std::io::{Read, Write};
        let long = json!({"model": "m", "messages": [{"role": "user", "content": "talk"}], "stream": true})
            .to_string();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
        let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}", long.len());
        conn.write_all(req.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf);
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&s.log)
        .unwrap_or_default()
        .contains("client gone")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never saw the cancel: {:?}",
            std::fs::read_to_string(&s.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The upstream killed mid-stream: the client gets a clear error, not a hang.
    let client = std::thread::spawn(move || {
        let long = json!({"model": "m", "messages": [{"role": "user", "content": "talk"}], "stream": true});
        http(port, "POST", "/v1/chat/completions", &long.to_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut s = s;
    s.proc.kill();
    let (status, text) = client.join().unwrap_or_else(|_| panic!("client"));
    assert_eq!(status, 200);
    let events = sse_data(&text);
    let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap_or(Value::Null);
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("upstream"), "{text}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // With every upstream gone, requests fail at once with a clear error.
    let (status, text) = http(port, "POST", "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("no upstream can be reached"), "{text}");
}

/// A storm of clients that read the first event and hang up: every upstream stream that
/// had started is dropped (the upstream sees its client go; a request cancelled before it
/// reached the upstream is never sent), none runs to its end, and nothing stays in
/// flight.
#[test]
fn clients_that_hang_up_in_a_storm_cancel_every_upstream_request() {
    // 2,000 chunks of 3 bytes at 5 ms: 10 s a stream unless it is cancelled.
    let s = stub("storm", &[json!({"output": "word ".repeat(1200)})], 5);
    let (_braid, port) = braid(&[format!("http://127.0.0.1:{}", s.port)], "upstream-storm");
    let p = port.to_string();
    let count = |what: &str| {
        let log = std::fs::read_to_string(&s.log).unwrap_or_default();
        log.lines().filter(|l| l.starts_with(what)).count()
    };
    for run in 0..2 {
        let out = braid_tests::run_client(
            "hangups.py",
            &["--port", &p, "--streams", "60", "--max-tokens", "1900"],
        );
        assert!(out.contains("\"hung up\": 60"), "run {run}: {out}");
        let left = std::time::Instant::now();
        while count("client gone") < count("start") || inflight(port).is_none_or(|n| n > 0.0) {
            assert!(
                left.elapsed() < Duration::from_secs(2),
                "run {run}: {} upstream streams started, {} dropped; {:?} in flight",
                count("start"),
                count("client gone"),
                inflight(port)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "run {run}: all {} upstream streams started dropped {:?} after the clients left",
            count("start"),
            left.elapsed()
        );
    }
    // Had any stream gone on, it would have ended by now (10 s each).
    std::thread::sleep(Duration::from_secs(10));
    assert!(count("start") > 0, "no request reached the upstream");
    assert_eq!(
        count("done"),
        0,
        "an upstream stream ran to its end after its client left"
    );
    assert_eq!(count("client gone"), count("start"));
}

/// `braid_requests_inflight` on `/metrics` (`None` if it is not there).
fn inflight(port: u16) -> Option<f64> {
    let (_, text) = http(port, "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix("braid_requests_inflight "))
        .and_then(|v| v.trim().parse().ok())
}
