//! `braid bench …`: benchmarks that print JSON.

use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Parser throughput per format (µs per chunk, MB/s) at 4k and 64k tokens.
    Parse,
}

pub(crate) fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Parse => anyhow::bail!("not yet"),
    }
}
