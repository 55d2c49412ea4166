//! The Prometheus recorder every braid process installs: histogram buckets fitted to
//! braid's metrics, the upkeep the exporter needs, and the catalogue of every metric a
//! dashboard or alert reads, registered at zero when the process starts (a series that
//! appears only with its first event shows "no data" and never fires a `rate() > 0`
//! alert).

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const TOKENS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];
const RATIO: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0];

/// What kind of metric a catalogue entry is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric braid exports, with its help text. (`braid_template_selftest_ok` is not
/// here: it exists only where a template and a tool parser are checked, and 0 means the
/// check failed.)
const CATALOGUE: &[(Kind, &str, &str)] = &[
    (
        Kind::Counter,
        "braid_http_requests_total",
        "HTTP requests answered, by protocol (chat_completions, completions, messages, responses, tokenize) and status",
    ),
    (
        Kind::Counter,
        "braid_ignored_fields_total",
        "Request fields accepted and not acted on, by protocol and field",
    ),
    (
        Kind::Counter,
        "braid_thinking_signature_invalid_total",
        "Reasoning sent back whose seal did not open (thinking signature, redacted_thinking, encrypted_content), by block",
    ),
    (
        Kind::Counter,
        "braid_request_success_total",
        "Requests finished, by finished_reason",
    ),
    (
        Kind::Counter,
        "braid_requests_refused_total",
        "Requests refused at admission, by reason",
    ),
    (
        Kind::Counter,
        "braid_requests_cancelled_total",
        "Requests whose client left before the end",
    ),
    (
        Kind::Counter,
        "braid_requests_lost_total",
        "Requests ended because a replica on their route stopped, by stage",
    ),
    (
        Kind::Gauge,
        "braid_requests_inflight",
        "Requests this ingress holds now",
    ),
    (
        Kind::Counter,
        "braid_prompt_tokens_total",
        "Prompt tokens of finished requests",
    ),
    (
        Kind::Counter,
        "braid_generation_tokens_total",
        "Generated tokens of finished requests",
    ),
    (
        Kind::Counter,
        "braid_reasoning_tokens_total",
        "Generated tokens that were reasoning",
    ),
    (
        Kind::Histogram,
        "braid_e2e_request_latency_seconds",
        "Request latency, admission to last chunk",
    ),
    (
        Kind::Histogram,
        "braid_time_to_first_token_seconds",
        "Admission to first output",
    ),
    (
        Kind::Histogram,
        "braid_time_to_answer_seconds",
        "Admission to the first answer text or tool call, by round_end",
    ),
    (
        Kind::Histogram,
        "braid_inter_token_latency_seconds",
        "Mean time between output tokens, per request",
    ),
    (
        Kind::Histogram,
        "braid_request_generation_tokens",
        "Generated tokens per request",
    ),
    (
        Kind::Histogram,
        "braid_reasoning_tokens",
        "Reasoning tokens per request, by round_end",
    ),
    (
        Kind::Histogram,
        "braid_reasoning_answer_ratio",
        "Reasoning tokens over answer tokens, per request",
    ),
    (
        Kind::Counter,
        "braid_tool_calls_total",
        "Tool calls extracted, by format and outcome",
    ),
    (
        Kind::Counter,
        "braid_parser_fallbacks_total",
        "Model output that was not well-formed markup, by format and reason",
    ),
    (
        Kind::Counter,
        "braid_reasoning_reinjections_total",
        "Assistant turns whose reasoning the server put back",
    ),
    (
        Kind::Counter,
        "braid_guide_compiles_total",
        "Structured-output grammars compiled",
    ),
    (
        Kind::Counter,
        "braid_guide_masks_total",
        "Token masks computed for guided sequences",
    ),
    (
        Kind::Counter,
        "braid_guide_mask_microseconds_total",
        "Time spent computing token masks",
    ),
    (
        Kind::Counter,
        "braid_guide_mask_wait_microseconds_total",
        "Time steps waited for masks after the forward pass",
    ),
    (
        Kind::Gauge,
        "braid_num_requests_running",
        "Sequences the engine runs now",
    ),
    (
        Kind::Gauge,
        "braid_num_requests_waiting",
        "Sequences waiting for the engine",
    ),
    (
        Kind::Gauge,
        "braid_kv_cache_usage_perc",
        "Share of KV-cache blocks in use",
    ),
    (
        Kind::Counter,
        "braid_prefix_cache_queries_total",
        "Prompt tokens looked up in the prefix cache",
    ),
    (
        Kind::Counter,
        "braid_prefix_cache_hits_total",
        "Prompt tokens served from the prefix cache",
    ),
    (
        Kind::Counter,
        "braid_routing_decisions_total",
        "Executor replicas chosen by the tokenizer stage's router, by outcome (prefix_hit: the longest cached prefix; load_fallback: the least busy)",
    ),
    (
        Kind::Counter,
        "braid_state_bad_values_total",
        "Values found in a shared-state bucket that braid did not store there (refused, not trusted), by bucket",
    ),
    (
        Kind::Counter,
        "braid_num_preemptions_total",
        "Sequences preempted for cache space",
    ),
    (
        Kind::Counter,
        "braid_bus_messages_total",
        "Bus messages, by stage and direction",
    ),
    (
        Kind::Counter,
        "braid_bus_bytes_total",
        "Bus payload bytes, by stage and direction",
    ),
    (
        Kind::Counter,
        "braid_bus_bad_messages_total",
        "Bus messages dropped as unreadable, by stage and reason",
    ),
    (
        Kind::Histogram,
        "braid_stage_latency_seconds",
        "Time from a message's send to its handling, by stage",
    ),
    (
        Kind::Gauge,
        "braid_stage_queue_depth",
        "Messages waiting in a stage replica's mailbox",
    ),
    (
        Kind::Counter,
        "braid_stage_restarts_total",
        "Stage actors restarted by their supervisor, by stage",
    ),
];

/// Describes every catalogued metric and registers it at zero.
fn register_catalogue() {
    for &(kind, name, help) in CATALOGUE {
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(name, help);
                metrics::counter!(name).increment(0);
            }
            Kind::Gauge => {
                metrics::describe_gauge!(name, help);
                metrics::gauge!(name).increment(0.0);
            }
            Kind::Histogram => {
                metrics::describe_histogram!(name, help);
                let _ = metrics::histogram!(name);
            }
        }
    }
}

/// Installs the recorder; `/metrics` renders the returned handle.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full("braid_reasoning_tokens".into()), TOKENS)?
        .set_buckets_for_metric(Matcher::Full("braid_request_generation_tokens".into()), TOKENS)?
        .set_buckets_for_metric(Matcher::Full("braid_reasoning_answer_ratio".into()), RATIO)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    register_catalogue();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
