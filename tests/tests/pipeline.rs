//! The pipeline as users deploy it: `braid serve` in one process, and `braid stage`
//! processes sharing a real nats-server — same outputs, faults survived, streams kept
//! apart, credentials enforced.

use std::time::{Duration, Instant};

use braid_tests::{
    free_port, http, qwen3_fixture, repo_root, sse_data, wait_healthy, write_recordings, NatsServer, Proc,
};
use serde_json::{json, Value};

fn tokenizer_dir() -> String {
    repo_root()
        .join(".fixtures/tokenizer-qwen3")
        .display()
        .to_string()
}

/// `braid serve` over `bus` with the replay executor playing `outputs`.
fn serve_replay(bus: &str, outputs: &[&str], name: &str) -> (Proc, u16) {
    let lines: Vec<Value> = outputs.iter().map(|o| json!({"output": o})).collect();
    braid_tests::serve_replay(&write_recordings(name, &lines), &["--bus", bus], name)
}

fn completion(port: u16, body: &Value) -> Value {
    let (status, text) = http(port, "POST", "/v1/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The streamed text and the final event (a chunk with finish_reason, or an error).
fn stream(port: u16, body: &Value) -> (String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (status, text) = http(port, "POST", "/v1/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let mut out = String::new();
    let mut last = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}"));
        if let Some(t) = v["choices"][0]["text"].as_str() {
            out.push_str(t);
        }
        last = v;
    }
    (out, last)
}

/// Stage processes on `nats`: ingress on `port`; the rest split over three processes,
/// the splitter and extractor with two replicas each.
fn deployment(nats: &str, port: u16, model: &[&str], name: &str) -> Vec<Proc> {
    let p = port.to_string();
    let with = |stages: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["stage", stages, "--bus", nats]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(model.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let start = |args: Vec<String>, n: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::braid(&refs, &format!("{name}-{n}"))
    };
    vec![
        start(with("ingress", &["--port", &p]), "ingress"),
        start(with("tokenizer,detokenizer", &[]), "tok"),
        start(with("executor", &[]), "exec"),
        start(with("splitter,extractor", &["--replicas", "2"]), "post"),
    ]
}

#[test]
fn separate_processes_over_nats_give_the_outputs_of_one_process() {
    let model = qwen3_fixture("pipeline");
    let model = model.display().to_string();
    let one_port = free_port();
    let _one = Proc::braid(&["serve", &model, "--port", &one_port.to_string()], "one-process");
    let nats = NatsServer::start(&[]);
    let many_port = free_port();
    let _many = deployment(&nats.url(None), many_port, &["--model", &model], "many");
    assert!(
        wait_healthy(one_port, Duration::from_secs(60)),
        "braid serve did not come up"
    );
    assert!(
        wait_healthy(many_port, Duration::from_secs(60)),
        "the NATS deployment did not come up"
    );
    for (i, prompt) in [
        "Hello there",
        "The weather in Paris is",
        "<|im_start|>user\nhi<|im_end|>",
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"prompt": prompt, "max_tokens": 12, "temperature": 0.9, "seed": 7 + i, "ignore_eos": true});
        let a = completion(one_port, &body);
        let b = completion(many_port, &body);
        assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"], "{prompt}");
        assert_eq!(a["usage"], b["usage"], "{prompt}");
        assert_eq!(a["usage"]["completion_tokens"], 12);
        let (streamed, last) = stream(many_port, &body);
        assert_eq!(
            json!(streamed),
            a["choices"][0]["text"],
            "{prompt}: streamed over NATS"
        );
        assert_eq!(last["choices"][0]["finish_reason"], "length");
    }
}

#[test]
fn a_stage_killed_mid_stream_fails_its_requests_fast_and_serves_again_once_back() {
    let words: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
    let rec = write_recordings("kill", &[json!({"output": words.join(" ")})]);
    let words = &words;
    let replay = format!("replay:{}", rec.display());
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let port = free_port();
    let tok = tokenizer_dir();
    let common = [
        "--bus",
        url.as_str(),
        "--tokenizer",
        tok.as_str(),
        "--executor",
        replay.as_str(),
    ];
    let stage = |stages: &str, name: &str, extra: &[&str]| {
        let mut args = vec!["stage", stages];
        args.extend(common);
        args.extend(extra);
        Proc::braid(&args, name)
    };
    let _ingress = stage("ingress", "kill-ingress", &["--port", &port.to_string()]);
    let _tok = stage("tokenizer", "kill-tok", &[]);
    let mut victims = vec![
        ("executor", stage("executor", "kill-exec", &[])),
        ("detokenizer", stage("detokenizer", "kill-detok", &[])),
        ("splitter", stage("splitter,extractor", "kill-post", &[])),
    ];
    assert!(wait_healthy(port, Duration::from_secs(30)));
    let body = json!({"prompt": "go", "max_tokens": 3000, "stream": true});
    for (name, victim) in &mut victims {
        let name: &str = name;
        let body = body.clone();
        let client = std::thread::spawn(move || {
            let (status, text) = http(port, "POST", "/v1/completions", &body.to_string());
            (status, text, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(800));
        victim.kill();
        let killed = Instant::now();
        let (status, text, ended) = client.join().unwrap_or_else(|_| panic!("client thread"));
        let waited = ended.saturating_duration_since(killed);
        eprintln!("{name} killed: the in-flight client waited {waited:?}");
        assert_eq!(status, 200);
        let events = sse_data(&text);
        assert!(events.len() > 3, "text streamed before the kill: {text}");
        let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap_or(Value::Null);
        assert_eq!(error["error"]["code"], 503, "{text}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{message}");
        assert!(
            waited < Duration::from_secs(3),
            "{name}: the client waited {waited:?}"
        );
        // While it is down, new requests are refused at once, and say why.
        std::thread::sleep(Duration::from_millis(1200));
        let (status, text) = http(
            port,
            "POST",
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 3}).to_string(),
        );
        assert_eq!(status, 503, "{text}");
        // Started again, it serves.
        let stages = if name == "splitter" {
            "splitter,extractor"
        } else {
            name
        };
        *victim = stage(stages, &format!("kill-{name}-again"), &[]);
        assert!(
            wait_healthy(port, Duration::from_secs(30)),
            "{name} did not come back"
        );
        let done = completion(port, &json!({"prompt": "x", "max_tokens": 3}));
        let text = done["choices"][0]["text"].as_str().unwrap_or_default();
        assert!(!text.is_empty() && words.join(" ").starts_with(text), "{done}");
        assert_eq!(done["choices"][0]["finish_reason"], "length");
    }
}

#[test]
fn stages_reconnect_after_the_nats_server_restarts() {
    let mut nats = NatsServer::start(&[]);
    let (_all, port) = serve_replay(&nats.url(None), &["back again"], "restart");
    assert_eq!(
        completion(port, &json!({"prompt": "x"}))["choices"][0]["text"],
        "back again"
    );
    nats.restart(Duration::from_millis(500));
    let back = Instant::now();
    assert!(
        wait_healthy(port, Duration::from_secs(30)),
        "stages did not reconnect"
    );
    eprintln!("serving again {:?} after nats-server restarted", back.elapsed());
    assert_eq!(
        completion(port, &json!({"prompt": "x"}))["choices"][0]["text"],
        "back again"
    );
}

#[test]
fn two_hundred_concurrent_streams_over_nats_each_get_their_own_output() {
    let lines: Vec<Value> = (0..200)
        .map(|i| json!({"match": format!("[req {i}]"), "output": format!("answer {i}: {}", "ok ".repeat(i % 13))}))
        .collect();
    let rec = write_recordings("concurrent", &lines);
    let nats = NatsServer::start(&[]);
    let port = free_port();
    let replay = format!("replay:{}", rec.display());
    let tok = tokenizer_dir();
    let model = [
        "--tokenizer",
        tok.as_str(),
        "--executor",
        replay.as_str(),
        "--replay-interval-ms",
        "2",
    ];
    let _procs = deployment(&nats.url(None), port, &model, "concurrent");
    assert!(wait_healthy(port, Duration::from_secs(30)));
    let clients: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("question [req {i}]"), "max_tokens": 100});
                (i, stream(port, &body))
            })
        })
        .collect();
    for c in clients {
        let (i, (text, last)) = c.join().unwrap_or_else(|_| panic!("client thread"));
        assert_eq!(
            text,
            format!("answer {i}: {}", "ok ".repeat(i % 13)),
            "stream {i}"
        );
        assert_eq!(last["choices"][0]["finish_reason"], "stop", "stream {i}");
    }
}

#[test]
fn a_nats_server_that_requires_credentials_turns_away_stages_without_them() {
    let nats = NatsServer::start(&["--user", "braid", "--pass", "s3cret"]);
    let tok = tokenizer_dir();
    let mut without = Proc::braid(
        &["stage", "splitter", "--bus", &nats.url(None), "--tokenizer", &tok],
        "creds-none",
    );
    let status = without
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("it kept running"));
    assert!(!status.success());
    let log = without.output();
    assert!(
        log.contains("cannot connect to NATS") && log.contains("authorization violation"),
        "{log}"
    );
    let mut wrong = Proc::braid(
        &[
            "stage",
            "splitter",
            "--bus",
            &nats.url(Some("braid:nope")),
            "--tokenizer",
            &tok,
        ],
        "creds-wrong",
    );
    assert!(wrong
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| !s.success()));
    assert!(
        !wrong.output().contains("nope"),
        "the password leaked into the log"
    );
    let (_ok, port) = serve_replay(&nats.url(Some("braid:s3cret")), &["authorised"], "creds-ok");
    assert_eq!(
        completion(port, &json!({"prompt": "x"}))["choices"][0]["text"],
        "authorised"
    );
}

#[test]
fn the_example_subscriber_reads_token_streams_and_bad_messages_kill_nothing() {
    let Some(python) = [repo_root().join(".fixtures/venv/bin/python")]
        .into_iter()
        .find(|p| p.exists())
    else {
        panic!("the test venv is missing: run scripts/setup");
    };
    let nats = NatsServer::start(&[]);
    let (_all, port) = serve_replay(
        &nats.url(None),
        &["<think>plan</think>streamed to anyone allowed"],
        "subscriber-serve",
    );
    let script = repo_root()
        .join("ops/examples/subscribe.py")
        .display()
        .to_string();
    let mut sub = Proc::start(
        &python,
        &[
            script,
            "--url".into(),
            nats.url(None),
            "--requests".into(),
            "1".into(),
        ],
        "subscriber",
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Garbage, and a message of another schema version, on the bus first.
    let publish = "import asyncio, nats, sys\nasync def main():\n    nc = await nats.connect(sys.argv[1])\n    await nc.publish('braid.tokenizer.in', b'\\x93garbage')\n    await nc.publish('braid.beat', b'\\x95\\x63\\xcf')\n    await nc.flush(); await nc.close()\nasyncio.run(main())\n";
    let status = std::process::Command::new(&python)
        .args(["-c", publish, &nats.url(None)])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let done = completion(port, &json!({"prompt": "x", "max_tokens": 50}));
    assert_eq!(
        done["choices"][0]["text"],
        "<think>plan</think>streamed to anyone allowed"
    );
    let exited = sub.wait_exit(Duration::from_secs(10));
    let out = sub.output();
    assert!(exited.is_some_and(|s| s.success()), "subscriber: {out}");
    let lines: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let text: String = lines.iter().filter_map(|l| l["content"].as_str()).collect();
    assert_eq!(text, "<think>plan</think>streamed to anyone allowed", "{out}");
    assert_eq!(
        lines.last().map(|l| l["finish"].clone()),
        Some(json!("stop")),
        "{out}"
    );
    let (_, metrics) = http(port, "GET", "/metrics", "");
    assert!(metrics.contains("braid_bus_bad_messages_total"), "{metrics}");
}

#[test]
fn nats_over_tls_needs_the_servers_ca() {
    let dir = std::env::temp_dir().join(format!("braid-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl (scripts/setup installs it): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=braid-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let cert = dir.join("server.pem").display().to_string();
    let key = dir.join("server.key").display().to_string();
    let nats = NatsServer::start(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let tok = tokenizer_dir();
    let mut untrusted = Proc::braid(
        &["stage", "splitter", "--bus", &url, "--tokenizer", &tok],
        "tls-untrusted",
    );
    let status = untrusted
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("it kept running"));
    assert!(!status.success());
    assert!(
        untrusted.output().contains("invalid peer certificate"),
        "{}",
        untrusted.output()
    );
    let ca = dir.join("ca.pem").display().to_string();
    let rec = write_recordings("tls", &[json!({"output": "over tls"})]);
    let (_serve, port) = braid_tests::serve_replay(&rec, &["--bus", &url, "--nats-ca", &ca], "tls-serve");
    assert_eq!(
        completion(port, &json!({"prompt": "x"}))["choices"][0]["text"],
        "over tls"
    );
}
