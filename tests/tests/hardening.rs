//! Unfriendly clients: what they leave behind must not keep the server busy.

use std::time::{Duration, Instant};

use braid_tests::{http_full, qwen3_fixture, run_client, serve_engine, NatsServer};

/// A metric's value on `/metrics` (summed over its series).
fn metric(port: u16, name: &str) -> f64 {
    metric_where(port, name, "")
}

/// The sum of a metric's series whose line contains `needle` (e.g. a label).
fn metric_where(port: u16, name: &str, needle: &str) -> f64 {
    let (_, _, text) = http_full(port, "GET", "/metrics", "", &[]);
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A storm's size: clients, how many of them read to the end (the rest hang up after
/// the first event), each asking for `max_tokens` with `ignore_eos`; `runs` storms.
struct Storm {
    streams: usize,
    keep: usize,
    max_tokens: u32,
    runs: usize,
}

/// Storms on the server at `port`; after each, once the clients that stayed have their
/// answers, nothing may still be generating or in flight within 2 s.
fn storms(port: u16, storm: &Storm) {
    let (p, n, k, m) = (
        port.to_string(),
        storm.streams.to_string(),
        storm.keep.to_string(),
        storm.max_tokens.to_string(),
    );
    for run in 0..storm.runs {
        let started = Instant::now();
        let out = run_client(
            "hangups.py",
            &["--port", &p, "--streams", &n, "--keep", &k, "--max-tokens", &m],
        );
        let hung_up = storm.streams - storm.keep;
        assert!(
            out.contains(&format!("\"hung up\": {hung_up}")),
            "run {run}: {out}"
        );
        if storm.keep > 0 {
            assert!(
                out.contains(&format!("\"finished\": {}", storm.keep)),
                "run {run}: {out}"
            );
        }
        let left = Instant::now();
        loop {
            let (running, inflight) = (
                metric(port, "braid_num_requests_running"),
                metric(port, "braid_requests_inflight"),
            );
            if running == 0.0 && inflight == 0.0 {
                eprintln!(
                    "run {run}: {out} in {:?}; nothing running {:?} after the last client left",
                    left - started,
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

/// The same storms on the engine in one process and with every stage on NATS.
fn storms_in_process_and_over_nats(name: &str, storm: &Storm) {
    let model = qwen3_fixture(name);
    let (_serve, port) = serve_engine(&model, &[], name);
    storms(port, storm);
    let nats = NatsServer::start(&[]);
    let url = nats.url(None);
    let (_over_nats, port) = serve_engine(&model, &["--bus", &url], &format!("{name}-nats"));
    storms(port, storm);
}

#[test]
fn clients_that_hang_up_stop_their_generation_in_process_and_over_nats() {
    // All 40 leave at once; then 200 with half of them reading to the end (short answers
    // here, so the suite stays affordable; the full-size storm is the ignored test below).
    let all_leave = Storm {
        streams: 40,
        keep: 0,
        max_tokens: 1900,
        runs: 2,
    };
    storms_in_process_and_over_nats("hangups", &all_leave);
    let half_stay = Storm {
        streams: 200,
        keep: 100,
        max_tokens: 48,
        runs: 2,
    };
    storms_in_process_and_over_nats("hangups-half", &half_stay);
}

/// The storm as the hardening issue sizes it: 200 streams of 1,900 tokens, half of the
/// clients hanging up, ten runs in process and ten over NATS. On two cores one run takes
/// over ten minutes (100 streams generate 190,000 tokens), so it is run by hand:
/// `cargo test -p braid-tests --test e2e -- --ignored full_size --nocapture`;
/// `BRAID_STORM_MAX_TOKENS` and `BRAID_STORM_RUNS` shrink it to fit a machine.
#[test]
#[ignore = "an hour or more on two cores; run by hand, see the doc comment"]
fn full_size_cancel_storm() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let storm = Storm {
        streams: 200,
        keep: 100,
        max_tokens: env("BRAID_STORM_MAX_TOKENS", 1900) as u32,
        runs: env("BRAID_STORM_RUNS", 10) as usize,
    };
    storms_in_process_and_over_nats("hangups-full", &storm);
}
