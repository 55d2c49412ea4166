//! Two ingress processes behind nginx (Debian's, on loopback), sharing stage processes
//! over a real nats-server: clients see one service, and killing one ingress loses only
//! the requests it was serving.

use std::time::Duration;

use braid_tests::{free_port, http_full, repo_root, sse_data, wait_healthy, wait_port, NatsServer, Proc};
use serde_json::json;

#[test]
fn killing_one_of_two_ingresses_behind_nginx_loses_only_its_own_requests() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("nginx is missing: run scripts/setup (it installs Debian's nginx)"));
    let dir = std::env::temp_dir().join(format!("braid-scale-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap_or_else(|e| panic!("{e}"));
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let rec = dir.join("recordings.jsonl");
    std::fs::write(&rec, json!({"output": words.join(" ")}).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let tok = repo_root()
        .join(".fixtures/tokenizer-qwen3")
        .display()
        .to_string();
    let replay = format!("replay:{}", rec.display());
    let _stages = Proc::braid(
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
        "scale-stages",
    );
    let (pa, pb) = (free_port(), free_port());
    let ingress = |port: u16, name: &str| {
        Proc::braid(
            &[
                "stage",
                "ingress",
                "--bus",
                &url,
                "--tokenizer",
                &tok,
                "--port",
                &port.to_string(),
            ],
            name,
        )
    };
    let mut a = ingress(pa, "scale-ingress-a");
    let _b = ingress(pb, "scale-ingress-b");
    assert!(wait_healthy(pa, Duration::from_secs(30)) && wait_healthy(pb, Duration::from_secs(30)));
    let lb = free_port();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream braid {{ server 127.0.0.1:{pa}; server 127.0.0.1:{pb}; }}\n\
         server {{ listen 127.0.0.1:{lb}; location / {{ proxy_pass http://braid; proxy_http_version 1.1; proxy_buffering off; proxy_read_timeout 60s; }} }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
    let _lb = Proc::start(
        std::path::Path::new(nginx),
        &[
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ],
        "scale-nginx",
    );
    assert!(wait_port(lb, Duration::from_secs(10)), "nginx did not start");
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
    a.kill();
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
