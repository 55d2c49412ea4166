//! Two ingress processes behind nginx (Debian's, on loopback), sharing stage processes
//! over a real nats-server: clients see one service, killing one ingress loses only the
//! requests it was serving, and conversation state (replayable reasoning) is shared, so a
//! round may land on either ingress.

use std::path::{Path, PathBuf};
use std::time::Duration;

use braid_tests::{
    free_port, http_full, repo_root, run_client, sse_data, wait_healthy, wait_port, write_recordings,
    NatsServer, Proc, QWEN3_CHAT,
};
use serde_json::json;

/// Stage processes over `nats` replaying `recordings`, two ingresses (ports returned)
/// with `ingress_flags`, and nginx in front of them on the returned port.
struct Deployment {
    _stages: Proc,
    a: Proc,
    _b: Proc,
    _nginx: Proc,
    pa: u16,
    pb: u16,
    lb: u16,
}

fn deploy(
    dir: &Path,
    nats: &NatsServer,
    recordings: &Path,
    ingress_flags: &[&str],
    name: &str,
) -> Deployment {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("nginx is missing: run scripts/setup (it installs Debian's nginx)"));
    std::fs::create_dir_all(dir.join("logs")).unwrap_or_else(|e| panic!("{e}"));
    let url = nats.url(None);
    let tok = repo_root()
        .join(".fixtures/tokenizer-qwen3")
        .display()
        .to_string();
    let replay = format!("replay:{}", recordings.display());
    let stages = Proc::braid(
        &[
            "stage",
            "tokenizer,executor,detokenizer,splitter,extractor",
            "--bus",
            &url,
            "--tokenizer",
            &tok,
            "--executor",
            &replay,
            "--replay-interval-ms",
            "5",
        ],
        &format!("{name}-stages"),
    );
    let (pa, pb) = (free_port(), free_port());
    let ingress = |port: u16, who: &str| {
        let port = port.to_string();
        let mut args = vec!["stage", "ingress", "--bus", url.as_str(), "--port", port.as_str()];
        args.extend(ingress_flags);
        Proc::braid(&args, &format!("{name}-ingress-{who}"))
    };
    let a = ingress(pa, "a");
    let b = ingress(pb, "b");
    assert!(
        wait_healthy(pa, Duration::from_secs(30)) && wait_healthy(pb, Duration::from_secs(30)),
        "{}\n{}",
        a.output(),
        b.output()
    );
    let lb = free_port();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream braid {{ server 127.0.0.1:{pa}; server 127.0.0.1:{pb}; }}\n\
         server {{ listen 127.0.0.1:{lb}; location / {{ proxy_pass http://braid; proxy_http_version 1.1; proxy_buffering off; proxy_read_timeout 60s; }} }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
    let nginx = Proc::start(
        Path::new(nginx),
        &[
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ],
        &format!("{name}-nginx"),
    );
    assert!(wait_port(lb, Duration::from_secs(10)), "nginx did not start");
    Deployment {
        _stages: stages,
        a,
        _b: b,
        _nginx: nginx,
        pa,
        pb,
        lb,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn killing_one_of_two_ingresses_behind_nginx_loses_only_its_own_requests() {
    let dir = scratch("scale-out");
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let rec = dir.join("recordings.jsonl");
    std::fs::write(&rec, json!({"output": words.join(" ")}).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let nats = NatsServer::start(&[]);
    let mut d = deploy(&dir, &nats, &rec, &[], "scale");
    let (pa, lb) = (d.pa, d.lb);
    // One service: 16 streams through the balancer, spread over both ingresses.
    let body = json!({"prompt": "go", "max_tokens": 400, "stream": true}).to_string();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || http_full(lb, "POST", "/v1/completions", &body, &[]))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let a_id = {
        let (_, head, _) = http_full(pa, "GET", "/health", "", &[]);
        head.lines()
            .find_map(|l| l.strip_prefix("x-braid-ingress: "))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(a_id.len(), 16, "ingress A names itself");
    d.a.kill();
    let (mut lost, mut served) = (0, 0);
    for c in clients {
        let (status, head, body) = c.join().unwrap_or_else(|_| panic!("client thread"));
        assert_eq!(status, 200, "{head}");
        let via_a = head.contains(&a_id);
        let events = sse_data(&body);
        let complete = events.last().map(String::as_str) == Some("[DONE]");
        let text: String = events
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
            .collect();
        if via_a {
            assert!(
                !complete,
                "a stream through the killed ingress cannot have finished"
            );
            lost += 1;
        } else {
            let whole = words.join(" ");
            assert!(
                complete && text.len() > 300 && whole.starts_with(&text),
                "a stream through the surviving ingress is whole: {text:?}"
            );
            served += 1;
        }
    }
    eprintln!(
        "through nginx: {served} streams finished via the surviving ingress, {lost} lost with the killed one"
    );
    assert!(
        lost > 0 && served > 0,
        "both ingresses should have had streams ({lost} lost, {served} served)"
    );
    // After the kill, the service still answers through the balancer.
    for _ in 0..4 {
        let (status, _, body) = http_full(
            lb,
            "POST",
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 3}).to_string(),
            &[],
        );
        assert_eq!(status, 200, "{body}");
    }
}

/// The reasoning round 1 gives; round 2's recording matches only when it is in the prompt.
const R: &str = "The user wants the weather in Paris, so I call get_weather for Paris.";

/// Qwen3 recordings of the weather loop: round 1 reasons ({R}) and calls get_weather;
/// round 2 answers WITH-REASONING only when {R} is in its prompt.
fn weather_recordings(name: &str) -> PathBuf {
    let round1 = format!("<think>\n{R}\n</think>\n\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Paris\"}}}}\n</tool_call>");
    let round2 = |answer: &str| format!("<think>\nIt is sunny.\n</think>\n\n{answer}: 21 °C and sunny.");
    write_recordings(
        name,
        &[
            json!({"match": R, "output": round2("WITH-REASONING")}),
            json!({"match": "sunny", "output": round2("WITHOUT-REASONING")}),
            json!({"match": "weather like in Paris", "output": round1}),
        ],
    )
}

#[test]
fn a_round_on_the_other_ingress_gets_the_reasoning_the_first_one_kept() {
    let dir = scratch("shared-state");
    let rec = weather_recordings("shared-state");
    let mut nats = NatsServer::start(&[]);
    let mut d = deploy(&dir, &nats, &rec, &QWEN3_CHAT, "shared");
    let v1 = |port: u16| format!("http://127.0.0.1:{port}/v1");
    let (a, b, lb) = (v1(d.pa), v1(d.pb), v1(d.lb));
    // Round 1 on one ingress, round 2 on the other, the client dropping reasoning_content
    // every time: round 2 gets the reasoning only through the shared store.
    let loop_across = |first: &str, second: &str| {
        run_client(
            "interleaved.py",
            &[
                "--base-url",
                first,
                "--round2-base-url",
                second,
                "--reasoning",
                R,
                "--expect",
                "with",
                "--stream",
                "--drop-reasoning",
            ],
        )
    };
    for _ in 0..3 {
        loop_across(&a, &b);
        loop_across(&b, &a);
    }
    // Through nginx, as one service.
    loop_across(&lb, &lb);
    // The state is on the nats-server's disk: it survives a restart.
    nats.restart(Duration::from_millis(300));
    assert!(
        wait_healthy(d.lb, Duration::from_secs(30)),
        "the deployment did not come back"
    );
    loop_across(&a, &b);
    let reinjected = |port: u16| counter(port, "braid_reasoning_reinjections_total");
    let (on_a, on_b) = (reinjected(d.pa), reinjected(d.pb));
    assert_eq!(
        on_a + on_b,
        8.0,
        "one re-injection per round 2 ({on_a} on A, {on_b} on B)"
    );
    assert!(on_a >= 3.0 && on_b >= 4.0, "{on_a} on A, {on_b} on B");

    // Conversations whose first round A served outlive A and a nats-server restart: their
    // second rounds, on B, still get the reasoning.
    let saved: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("round1-{i}.json"))).collect();
    for file in &saved {
        let file = file.display().to_string();
        run_client("interleaved.py", &round1_only(&a, &file));
    }
    d.a.kill();
    nats.restart(Duration::from_millis(300));
    assert!(
        wait_healthy(d.pb, Duration::from_secs(30)),
        "ingress B did not come back"
    );
    for file in &saved {
        let file = file.display().to_string();
        run_client("interleaved.py", &round2_only(&b, &file, "with"));
    }
    assert_eq!(
        reinjected(d.pb),
        on_b + 2.0,
        "B re-injected both conversations A began"
    );
}

/// `interleaved.py` arguments for round 1 alone (dropping reasoning), saved to `file`.
fn round1_only<'a>(base: &'a str, file: &'a str) -> Vec<&'a str> {
    vec![
        "--base-url",
        base,
        "--reasoning",
        R,
        "--expect",
        "with",
        "--stream",
        "--drop-reasoning",
        "--save",
        file,
    ]
}

/// `interleaved.py` arguments for round 2 alone, from `file`, expecting `expect`.
fn round2_only<'a>(base: &'a str, file: &'a str, expect: &'a str) -> Vec<&'a str> {
    vec![
        "--base-url",
        base,
        "--reasoning",
        R,
        "--expect",
        expect,
        "--stream",
        "--resume",
        file,
    ]
}

/// Sums a counter's samples on an ingress's `/metrics`.
fn counter(port: u16, name: &str) -> f64 {
    let (_, _, metrics) = http_full(port, "GET", "/metrics", "", &[]);
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_foreign_value_in_the_shared_bucket_is_refused_and_counted() {
    let rec = weather_recordings("state-foreign");
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let mut flags = vec!["--bus", url.as_str()];
    flags.extend(QWEN3_CHAT);
    let (_serve, port) = braid_tests::serve_replay(&rec, &flags, "state-foreign");
    let base = format!("http://127.0.0.1:{port}/v1");
    let file = std::env::temp_dir()
        .join(format!("braid-state-foreign-{}.json", std::process::id()))
        .display()
        .to_string();
    run_client("interleaved.py", &round1_only(&base, &file));
    // Another program on the same NATS account overwrites braid's entry with text that
    // even holds the reasoning round 2 looks for: trusted, it would be re-injected.
    let planted = run_client(
        "kv_plant.py",
        &[
            "--url",
            &url,
            "--bucket",
            "braid_reasoning",
            "--value",
            &format!("forged: {R}"),
        ],
    );
    assert_eq!(planted.trim(), "1", "the bucket held round 1's entry");
    run_client("interleaved.py", &round2_only(&base, &file, "without"));
    assert_eq!(
        counter(port, "braid_state_bad_values_total"),
        1.0,
        "the foreign value was counted"
    );
    assert_eq!(counter(port, "braid_reasoning_reinjections_total"), 0.0);
}

#[test]
fn a_flood_of_conversations_never_grows_the_shared_bucket_past_its_bound() {
    let rec = weather_recordings("state-bound");
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let mut flags = vec!["--bus", url.as_str(), "--reasoning-replay-size", "5"];
    flags.extend(QWEN3_CHAT);
    let (_serve, port) = braid_tests::serve_replay(&rec, &flags, "state-bound");
    let base = format!("http://127.0.0.1:{port}/v1");
    // Twelve conversations, each leaving one turn's reasoning in the bucket.
    for _ in 0..12 {
        run_client(
            "interleaved.py",
            &[
                "--base-url",
                &base,
                "--reasoning",
                R,
                "--expect",
                "with",
                "--stream",
            ],
        );
    }
    let count = run_client("kv_count.py", &["--url", &url, "--bucket", "braid_reasoning"]);
    let count: u64 = count.trim().parse().unwrap_or_else(|e| panic!("{e}: {count}"));
    assert!(
        (1..=5).contains(&count),
        "the bucket holds {count} entries; its bound is 5"
    );
}

/// `prompt` (token ids) completed through `/v1/completions` on `port`, two tokens.
fn complete(port: u16, prompt: &[u32]) -> serde_json::Value {
    let body = json!({"prompt": prompt, "max_tokens": 2}).to_string();
    let (status, _, body) = http_full(port, "POST", "/v1/completions", &body, &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Conversation `c`'s first round: six full blocks of 16 tokens of its own.
fn first_round(c: u32) -> Vec<u32> {
    (0..96).map(|i| 1000 + c * 997 + i * 13).collect()
}

/// The routing decisions with `outcome` counted by the tokenizer whose `/metrics` is on
/// `metrics`.
fn decisions(metrics: u16, outcome: &str) -> f64 {
    let label = format!("outcome=\"{outcome}\"");
    let (_, _, text) = http_full(metrics, "GET", "/metrics", "", &[]);
    text.lines()
        .filter(|l| l.starts_with("braid_routing_decisions_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
}

/// Braid stages over a fresh nats-server on `model`: `stage(stages, flags, name)`.
struct Stages {
    nats: NatsServer,
    model: String,
    name: &'static str,
}

impl Stages {
    fn new(name: &'static str) -> Stages {
        Stages {
            nats: NatsServer::start(&[]),
            model: braid_tests::qwen3_fixture(name).display().to_string(),
            name,
        }
    }

    fn start(&self, stages: &str, extra: &[&str], who: &str) -> Proc {
        let url = self.nats.url(None);
        let mut args = vec![
            "stage",
            stages,
            "--bus",
            url.as_str(),
            "--model",
            self.model.as_str(),
        ];
        args.extend(extra);
        Proc::braid(&args, &format!("{}-{who}", self.name))
    }

    /// The ingress (on `port`) with the detokenizer, splitter and extractor, once it is
    /// healthy and every process has had a second (the beat timeout) to hear every
    /// replica: the ingress is healthy once it has heard every stage, but a tokenizer
    /// routes only among the executors it has heard (they beat every 200 ms).
    fn front(&self, port: u16) -> Proc {
        let p = port.to_string();
        let front = self.start("ingress,detokenizer,splitter,extractor", &["--port", &p], "front");
        assert!(
            wait_healthy(port, Duration::from_secs(60)),
            "the deployment did not come up"
        );
        std::thread::sleep(Duration::from_secs(1));
        front
    }
}

#[test]
fn each_round_goes_to_the_executor_replica_that_cached_its_conversation() {
    let stages = Stages::new("routing");
    let (port, metrics) = (free_port(), free_port());
    let _executors = stages.start("executor", &["--replicas", "2"], "executors");
    // The router's view comes from the executors' news over NATS and from its own
    // decisions. One tokenizer keeps the count exact; the next test covers a tokenizer
    // that knows a conversation from the news alone.
    let m_port = metrics.to_string();
    let _tokenizer = stages.start("tokenizer", &["--metrics-port", &m_port], "tokenizer");
    let _front = stages.front(port);
    for c in 0..6u32 {
        let mut prompt = first_round(c);
        let first = complete(port, &prompt);
        assert_eq!(
            first["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
            "{first}"
        );
        // The tool runs (agents take tens of milliseconds at least) while the executor's
        // news of its cache travels to the router.
        std::thread::sleep(Duration::from_millis(200));
        prompt.extend(5000..5016);
        let second = complete(port, &prompt);
        assert_eq!(
            second["usage"]["prompt_tokens_details"]["cached_tokens"], 96,
            "conversation {c}'s second round found its first round's blocks: {second}"
        );
    }
    assert_eq!(decisions(metrics, "prefix_hit"), 6.0, "every second round");
    assert_eq!(decisions(metrics, "load_fallback"), 6.0, "every first round");
}

/// Tokenizers are a queue group, so a round may reach one that never routed its
/// conversation. Here every second round does: the tokenizer that routed the first rounds
/// is replaced by one started after them, which knows the executors' caches only from
/// their news (each announces its whole cache every 2 s).
#[test]
fn a_tokenizer_that_knows_a_conversation_only_from_the_news_routes_it_to_its_cache() {
    let stages = Stages::new("routing-news");
    let (port, metrics_a, metrics_b) = (free_port(), free_port(), free_port());
    let _executors = stages.start("executor", &["--replicas", "2"], "executors");
    let m_a = metrics_a.to_string();
    let mut a = stages.start("tokenizer", &["--metrics-port", &m_a], "tokenizer-a");
    let _front = stages.front(port);
    let mut prompts: Vec<Vec<u32>> = (0..6).map(first_round).collect();
    for prompt in &prompts {
        let first = complete(port, prompt);
        assert_eq!(
            first["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
            "{first}"
        );
    }
    assert_eq!(decisions(metrics_a, "load_fallback"), 6.0, "every first round");
    let m_b = metrics_b.to_string();
    let _b = stages.start("tokenizer", &["--metrics-port", &m_b], "tokenizer-b");
    assert!(
        wait_port(metrics_b, Duration::from_secs(30)),
        "the second tokenizer did not start"
    );
    a.kill();
    // Two whole-cache announcements' time for the new tokenizer to hear both executors
    // and what they hold.
    std::thread::sleep(Duration::from_secs(4));
    for (c, prompt) in prompts.iter_mut().enumerate() {
        prompt.extend(5000..5016);
        let second = complete(port, prompt);
        assert_eq!(
            second["usage"]["prompt_tokens_details"]["cached_tokens"], 96,
            "conversation {c}'s second round, routed by the news alone: {second}"
        );
    }
    assert_eq!(decisions(metrics_b, "prefix_hit"), 6.0, "every second round");
}
