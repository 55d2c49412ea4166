//! The `braid` binary. `main` only maps [`run`]'s result to an exit code; each subcommand
//! lives in its own module, and clap's structs become validated configuration there
//! before any library sees them.

mod alloc;
mod bench;
mod config;
mod detect;
mod fixture;
mod formats;
mod metrics;
mod parse;
mod render;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The process allocator (mimalloc, counted).
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// braid: an LLM inference server for interleaved thinking.
#[derive(Debug, Parser)]
#[command(name = "braid", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Split raw model output (stdin) into reasoning_content, content and tool_calls.
    Parse(parse::ParseArgs),
    /// Build random-weight model folders in the real Hugging Face layout.
    #[command(subcommand)]
    Fixture(fixture::FixtureCommand),
    /// Print the prompt a conversation renders to through a chat template.
    Render(render::RenderArgs),
    /// Print the reasoning and tool parsers braid chooses for a model folder (proved
    /// against its chat template), as JSON.
    Parsers(detect::ParsersArgs),
    /// Serve a model over the OpenAI API: every stage in this process.
    Serve(serve::ServeArgs),
    /// Run some stages as their own process on a shared NATS bus.
    Stage(serve::StageArgs),
    /// Benchmarks that print JSON.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// A progress bar on stderr for a long operation a user waits on.
pub(crate) fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// Logs to stderr through `tracing`; `RUST_LOG` sets the filter (default `info`).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse_from(config::expand(std::env::args().collect())?);
    match cli.command {
        Command::Parse(args) => parse::run(&args),
        Command::Bench(cmd) => bench::run(&cmd),
        Command::Parsers(args) => detect::run(&args),
        Command::Fixture(cmd) => fixture::run(&cmd),
        Command::Serve(args) => serve::serve(&args),
        Command::Render(args) => render::run(&args),
        Command::Stage(args) => serve::stage(&args),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("braid: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
