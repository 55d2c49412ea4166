//! `--reasoning-parser` and `--tool-call-parser` take a built-in format's name or a format
//! file (`FILE.toml`, see `braid_parsers::format_file` and `ops/examples/formats/`): the
//! file is read and checked when the flag is, and its format is registered under its
//! `name` for this process.

use braid_parsers::format_file::{register_reasoning, register_tools};
use braid_parsers::{ReasoningParser, ToolParser};

/// Whether a flag's value names a format file rather than a format.
fn is_file(arg: &str) -> bool {
    arg.ends_with(".toml")
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the format file {path}: {e}"))
}

/// A reasoning parser flag's value.
pub(crate) fn reasoning(arg: &str) -> Result<ReasoningParser, String> {
    if !is_file(arg) {
        return arg.parse().map_err(|e| format!("{e}"));
    }
    let format = register_reasoning(&read(arg)?).map_err(|e| format!("{arg}: {e}"))?;
    format.name.parse().map_err(|e| format!("{e}"))
}

/// A tool-call parser flag's value.
pub(crate) fn tools(arg: &str) -> Result<ToolParser, String> {
    if !is_file(arg) {
        return arg.parse().map_err(|e| format!("{e}"));
    }
    let format = register_tools(&read(arg)?).map_err(|e| format!("{arg}: {e}"))?;
    format.name.parse().map_err(|e| format!("{e}"))
}
