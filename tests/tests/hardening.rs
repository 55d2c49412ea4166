//! Unfriendly clients: what they leave behind must not keep the server busy.

use std::time::{Duration, Instant};

use braid_tests::{http_full, qwen3_fixture, run_client, serve_engine, NatsServer};

/// A metric's value on `/metrics` (summed over its series).
fn metric(port: u16, name: &str) -> f64 {
    let (_, _, text) = http_full(port, "GET", "/metrics", "", &[]);
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Three storms of `streams` clients that each read the first event and hang up; after
/// each, nothing may still be generating within 2 s.
fn storms(port: u16, streams: usize) {
    let (p, n) = (port.to_string(), streams.to_string());
    for run in 0..3 {
        let out = run_client(
            "hangups.py",
            &["--port", &p, "--streams", &n, "--max-tokens", "1900"],
        );
        assert!(
            out.contains(&format!("\"hung up\": {streams}")),
            "run {run}: {out}"
        );
        let left = Instant::now();
        loop {
            let (running, inflight) = (
                metric(port, "braid_num_requests_running"),
                metric(port, "braid_requests_inflight"),
            );
            if running == 0.0 && inflight == 0.0 {
                eprintln!(
                    "run {run}: nothing running {:?} after the clients left",
                    left.elapsed()
                );
                break;
            }
            assert!(
                left.elapsed() < Duration::from_secs(2),
                "run {run}: {running} requests still generating and {inflight} in flight 2 s after every client left"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn clients_that_hang_up_stop_their_generation_in_process_and_over_nats() {
    let model = qwen3_fixture("hangups");
    let (_serve, port) = serve_engine(&model, &[], "hangups");
    storms(port, 40);
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let (_over_nats, port) = serve_engine(&model, &["--bus", &url], "hangups-nats");
    storms(port, 40);
}

/// The most memory the process has held so far, in MB.
fn peak_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn a_prompt_of_megabytes_is_refused_without_being_tokenized_whole() {
    let rec = braid_tests::write_recordings("huge-prompt", &[serde_json::json!({"output": "ok"})]);
    let mut flags = vec!["--max-model-len", "4096"];
    flags.extend(braid_tests::QWEN3_CHAT);
    let (serve, port) = braid_tests::serve_replay(&rec, &flags, "huge-prompt");
    let text = "hello world ".repeat(1_300_000);
    let before = peak_mb(serve.pid());
    for (path, body, param) in [
        ("/tokenize", serde_json::json!({"prompt": text}), "prompt"),
        (
            "/v1/chat/completions",
            serde_json::json!({"messages": [{"role": "user", "content": text}], "max_tokens": 5}),
            "messages",
        ),
    ] {
        let (status, _, answer) = http_full(port, "POST", path, &body.to_string(), &[]);
        assert_eq!(status, 400, "{path}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        assert_eq!(error["error"]["param"], param, "{answer}");
        assert!(answer.contains("maximum context length is 4096"), "{answer}");
    }
    // Tokenized whole, 15.6 MB of text took over a gigabyte; refused early, a few copies
    // of the body.
    let grew = peak_mb(serve.pid()).saturating_sub(before);
    assert!(grew < 400, "the process grew by {grew} MB");
}
