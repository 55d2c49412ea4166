//! The one door: an ingress process with no model and no tokenizer serves chat,
//! `/tokenize` and `/detokenize`, and refuses a bad constraint naming the field, all
//! through a tokenizer stage in another process over a real nats-server; a constraint
//! is compiled once per request; and every metric a dashboard reads is on `/metrics`
//! from the start.

use std::time::Duration;

use braid_tests::{free_port, http, qwen3_fixture, wait_healthy, wait_port, NatsServer, Proc};
use serde_json::{json, Value};

fn post(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(port, "POST", path, &body.to_string());
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

/// The value of an unlabelled series in Prometheus text (summed over labels otherwise).
fn metric(port: u16, name: &str) -> f64 {
    let (status, text) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resident memory of a process, KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn an_ingress_without_a_model_serves_through_a_tokenizer_in_another_process() {
    let model = qwen3_fixture("one-door");
    let model = model.display().to_string();
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let port = free_port();
    let metrics_port = free_port();
    let parsers = ["--reasoning-parser", "qwen3", "--tool-call-parser", "hermes"];
    let mut ingress_args = vec!["stage", "ingress", "--bus", &url];
    let port_arg = port.to_string();
    ingress_args.extend(["--port", &port_arg]);
    ingress_args.extend(parsers);
    let ingress = Proc::braid(&ingress_args, "door-ingress");
    let metrics_arg = metrics_port.to_string();
    let mut rest = vec![
        "stage",
        "tokenizer,executor,detokenizer,splitter,extractor",
        "--bus",
        &url,
    ];
    rest.extend(["--model", &model, "--metrics-port", &metrics_arg]);
    rest.extend(parsers);
    let stages = Proc::braid(&rest, "door-stages");
    assert!(
        wait_healthy(port, Duration::from_secs(60)),
        "the ingress did not come up: {}\n{}",
        ingress.output(),
        stages.output()
    );
    assert!(wait_port(metrics_port, Duration::from_secs(10)));
    if let Some(kib) = rss_kib(ingress.pid()) {
        eprintln!("ingress-only process: {kib} KiB resident");
    }

    let messages = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]);
    let chat = json!({"messages": messages, "max_tokens": 6, "seed": 3, "chat_template_kwargs": {"enable_thinking": false}});
    let (status, answer) = post(port, "/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{answer}");
    let prompt_tokens = answer["usage"]["prompt_tokens"].as_u64().unwrap_or_default();

    // /tokenize renders what the chat request sent to the model.
    let (status, tokenized) = post(
        port,
        "/tokenize",
        &json!({"messages": messages, "chat_template_kwargs": {"enable_thinking": false}}),
    );
    assert_eq!(status, 200, "{tokenized}");
    assert_eq!(tokenized["count"].as_u64(), Some(prompt_tokens), "{tokenized}");
    let (status, text) = post(port, "/detokenize", &json!({"tokens": tokenized["tokens"]}));
    assert_eq!(status, 200, "{text}");
    let text = text["prompt"].as_str().unwrap_or_default().to_owned();
    assert!(
        text.starts_with("<|im_start|>system\nBe brief.<|im_end|>")
            && text.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{text:?}"
    );
    let (status, e) = post(port, "/detokenize", &json!({"tokens": [999_999_999u32]}));
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("tokens")),
        "{e}"
    );

    // A bad constraint is refused by the tokenizer stage, naming the field.
    let compiles_before = metric(metrics_port, "braid_guide_compiles_total");
    let bad = json!({"messages": messages, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}}});
    let (status, e) = post(port, "/v1/chat/completions", &bad);
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["param"], "response_format", "{e}");
    assert!(
        e["error"]["message"].as_str().is_some_and(|m| m.contains("frob")),
        "{e}"
    );

    // A good one is compiled once (by the tokenizer stage; the engine beside it takes the
    // compiled guide) and holds.
    for i in 0..3 {
        let choice = json!({"messages": messages, "max_tokens": 8, "seed": i,
            "chat_template_kwargs": {"enable_thinking": false},
            "structured_outputs": {"choice": ["sunny", "rainy"]}});
        let (status, answer) = post(port, "/v1/chat/completions", &choice);
        assert_eq!(status, 200, "{answer}");
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(["sunny", "rainy"].contains(&content), "{answer}");
    }
    let compiles = metric(metrics_port, "braid_guide_compiles_total") - compiles_before;
    assert_eq!(
        compiles, 4.0,
        "one compile per constrained request (1 refused + 3)"
    );
}

/// Every metric the Grafana dashboard reads, by name, from its queries.
fn dashboard_metrics() -> Vec<String> {
    let path = braid_tests::repo_root().join("ops/grafana/braid-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("braid_") {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches("_bucket").to_owned();
        if !names.contains(&name) && name != "braid_template_selftest_ok" && name.len() > "braid_".len() {
            names.push(name);
        }
        rest = &rest[end..];
    }
    names
}

#[test]
fn every_dashboard_metric_is_on_metrics_right_after_start() {
    let names = dashboard_metrics();
    assert!(names.len() > 20, "{names:?}");
    for stages in ["ingress", "tokenizer"] {
        let nats = NatsServer::start(&[]);
        let url = nats.url(None);
        let port = free_port();
        let port_arg = port.to_string();
        let tok = braid_tests::repo_root()
            .join(".fixtures/tokenizer-qwen3")
            .display()
            .to_string();
        let args = [
            "stage",
            stages,
            "--bus",
            &url,
            "--tokenizer",
            &tok,
            "--port",
            &port_arg,
            "--metrics-port",
            &port_arg,
        ];
        let proc = Proc::braid(&args, &format!("metrics-{stages}"));
        assert!(wait_port(port, Duration::from_secs(30)), "{}", proc.output());
        let (status, text) = http(port, "GET", "/metrics", "");
        assert_eq!(status, 200);
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !text
                    .lines()
                    .any(|l| l.starts_with(n.as_str()) && !l.starts_with('#'))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{stages}: not on /metrics at start: {missing:?}"
        );
    }
}
