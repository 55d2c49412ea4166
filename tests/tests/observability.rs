//! The Grafana dashboard against a real Prometheus (Debian's `prometheus`, installed by
//! scripts/setup) scraping a running braid: after a short load, every panel's query
//! returns data — so every metric the dashboard names is one braid really exports.

use std::time::Duration;

use braid_tests::{free_port, http, repo_root, wait_port, Proc};
use serde_json::{json, Value};

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("prometheus is missing: run scripts/setup (it installs Debian's prometheus)")
        });
    let dir = std::env::temp_dir().join(format!("braid-observability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let recordings = [
        json!({"match": "<tool_response>", "output": "<think>\nDone.\n</think>\n\nIt is sunny."}),
        json!({"match": "broken", "output": "<think>\nhmm\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "}),
        json!({"match": "weather", "output": "<think>\nCall the tool.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}),
    ];
    let rec = braid_tests::write_recordings("observability", &recordings);
    let (_braid, port) = braid_tests::serve_replay(
        &rec,
        &[
            "--replay-interval-ms",
            "1",
            "--reasoning-parser",
            "qwen3",
            "--tool-call-parser",
            "hermes",
        ],
        "observability-braid",
    );
    let prom_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: braid\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap_or_else(|e| panic!("{e}"));
    let _prom = Proc::start(
        std::path::Path::new(prometheus),
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        "observability-prometheus",
    );
    assert!(
        wait_port(prom_port, Duration::from_secs(30)),
        "prometheus did not start"
    );

    // A short load: tool rounds, a round whose client dropped the reasoning (re-injected),
    // and a broken tool call (a parser fallback).
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    for _ in 0..6 {
        let ask = json!({"messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools});
        let (status, text) = http(port, "POST", "/v1/chat/completions", &ask.to_string());
        assert_eq!(status, 200, "{text}");
        let r1: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let calls = r1["choices"][0]["message"]["tool_calls"].clone();
        let id = calls[0]["id"].clone();
        let round2 = json!({"messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": id, "content": "sunny"}], "tools": tools, "stream": true});
        assert_eq!(
            http(port, "POST", "/v1/chat/completions", &round2.to_string()).0,
            200
        );
        let broken = json!({"messages": [{"role": "user", "content": "broken"}], "tools": tools});
        assert_eq!(
            http(port, "POST", "/v1/chat/completions", &broken.to_string()).0,
            200
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    // Wait until Prometheus holds a few scrapes of the loaded counters (on a busy machine
    // its first scrapes can come late), so every rate() has samples to work with.
    let ready = urlencode("min(count_over_time(braid_generation_tokens_total[1m]))");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http(prom_port, "GET", &format!("/api/v1/query?query={ready}"), "");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let scrapes = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if scrapes >= 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prometheus scraped braid {scrapes} times in 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let text =
        std::fs::read_to_string(repo_root().join("ops/grafana/braid-dashboard.json")).unwrap_or_default();
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("dashboard JSON: {e}"));
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    assert!(panels.len() >= 20, "{} panels", panels.len());
    let mut empty = Vec::new();
    for panel in &panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let (status, body) = http(
                prom_port,
                "GET",
                &format!("/api/v1/query?query={}", urlencode(expr)),
                "",
            );
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert_eq!(
                (status, v["status"].as_str()),
                (200, Some("success")),
                "{expr}: {body}"
            );
            if v["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                empty.push(format!("{}: {expr}", panel["title"]));
            }
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
}

#[test]
fn bench_serve_reports_no_errors_no_crosstalk_and_metrics_that_agree_with_usage() {
    let dir = std::env::temp_dir().join(format!("braid-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rec = dir.join("recordings.jsonl");
    let n = "300";
    let wrote = std::process::Command::new(braid_tests::braid_bin())
        .args([
            "bench",
            "serve",
            "--requests",
            n,
            "--max-tokens",
            "48",
            "--write-recordings",
        ])
        .arg(&rec)
        .status();
    assert!(wrote.is_ok_and(|s| s.success()));
    let (_braid, port) = braid_tests::serve_replay(
        &rec,
        &["--replay-interval-ms", "5", "--reasoning-parser", "qwen3"],
        "bench-serve",
    );
    let out = std::process::Command::new(braid_tests::braid_bin())
        .args([
            "bench",
            "serve",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            n,
            "--requests",
            n,
        ])
        .args(["--max-tokens", "48"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["crosstalk"], 0, "{report}");
    assert_eq!(report["output_tokens"], 300 * 48, "{report}");
    assert!(
        report["reasoning_tokens"].as_u64().is_some_and(|r| r > 0),
        "{report}"
    );
    assert_eq!(report["metrics"]["agree_with_usage"], true, "{report}");
    assert!(
        report["ttft_ms"]["p99"].as_f64().is_some_and(|t| t > 0.0),
        "{report}"
    );
}

#[test]
fn the_sample_config_names_only_real_flags() {
    let out = std::process::Command::new(braid_tests::braid_bin())
        .args(["serve", "--config"])
        .arg(repo_root().join("ops/deploy/braid.toml"))
        .args(["--bus", "inproc", "--executor", "nonsense", "--tokenizer"])
        .arg(repo_root().join(".fixtures/tokenizer-qwen3"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Everything in the config parsed: the one bad value is the command line's, refused
    // by clap before anything loads.
    assert!(
        err.contains("invalid value 'nonsense' for '--executor") && err.contains("is not an executor"),
        "the config did not parse: {err}"
    );
}
