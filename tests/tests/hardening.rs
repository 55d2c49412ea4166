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
