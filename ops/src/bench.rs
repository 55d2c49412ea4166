//! `braid bench …`: benchmarks that print JSON on stdout (progress goes to stderr).

mod engine;
mod parse;
mod pipeline;
mod protocols;
mod routing;
mod serve;
mod structured;
mod upstream;

use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Parser cost per format: µs per chunk, MB/s and allocations when 4k- and 64k-token
    /// outputs are streamed in 4-char chunks.
    Parse(parse::ParseBenchArgs),
    /// Engine throughput on a model folder: prefill, decode at several batch sizes, the
    /// candle-transformers reference on the same weights, TTFT with and without a cached
    /// prefix, peak memory.
    Engine(engine::EngineBenchArgs),
    /// Pipeline cost: CPU µs per streamed token added by the stages and the bus (replay
    /// executor), in-process and over NATS, at several concurrencies.
    Pipeline(pipeline::PipelineBenchArgs),
    /// What each protocol adapter costs: CPU µs per streamed token through the HTTP
    /// handlers of Chat Completions, Anthropic Messages and OpenAI Responses, at several
    /// numbers of concurrent streams, and each one's cost over Chat Completions'.
    Protocols(protocols::ProtocolsBenchArgs),
    /// What structured outputs cost: decode tok/s at batch 8 with and without a JSON-schema
    /// guide in the same run, mask time per token and how long steps waited for masks.
    Structured(structured::StructuredBenchArgs),
    /// What prefix-aware routing buys: prefix-cache hit rate, TTFT of later rounds and
    /// requests per replica for multi-round conversations on one executor replica, two
    /// routed by prefix, and two in turn, in one run.
    Routing(routing::RoutingBenchArgs),
    /// Load on a running server: streaming chat completions at a concurrency or rate;
    /// requests/s, tokens/s, TTFT and ITL percentiles, errors, cross-talk.
    Serve(serve::ServeBenchArgs),
    /// Latency braid adds per streamed token in front of an upstream engine (a stub on
    /// loopback), at a number of concurrent streams.
    Upstream(upstream::UpstreamBenchArgs),
}

pub(crate) fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Parse(args) => parse::run(args),
        BenchCommand::Engine(args) => engine::run(args),
        BenchCommand::Pipeline(args) => pipeline::run(args),
        BenchCommand::Protocols(args) => protocols::run(args),
        BenchCommand::Routing(args) => routing::run(args),
        BenchCommand::Serve(args) => serve::run(args),
        BenchCommand::Structured(args) => structured::run(args),
        BenchCommand::Upstream(args) => upstream::run(args),
    }
}

/// `x` rounded to `places` decimals, for JSON figures.
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}
