//! The agent CLIs as users run them, headless, against a base URL on loopback: Claude
//! Code (`claude -p`) and Codex (`codex exec`), from scripts/setup's npm install, with
//! telemetry, update checks and non-essential traffic off. Each runs in a scratch
//! project holding `note.txt` (its text is [`NOTE`]), so a test can tell the agent's
//! tool really ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::repo_root;

/// What `note.txt` holds: in a model's prompt only once the agent's tool read it.
pub const NOTE: &str = "ink-42-violet";

/// The API key the agents send (a proxy in front of braid may check it).
pub const KEY: &str = "sk-braid-test-5f0c2a8e91d34b7aa6e0c3d1b2f49e87";

/// An agent's run: its output, as text for assertions and failure messages.
pub struct Run {
    /// The process's exit and output.
    pub output: Output,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }

    /// Exit, stdout and stderr, for a failure message.
    pub fn context(&self) -> String {
        format!(
            "exited {:?}\nstdout: {}\nstderr: {}",
            self.output.status, self.stdout, self.stderr
        )
    }
}

fn binary(name: &str) -> PathBuf {
    let bin = repo_root().join(".fixtures/agents/node_modules/.bin").join(name);
    assert!(bin.exists(), "{} is missing: run scripts/setup", bin.display());
    bin
}

/// A scratch folder `name` with `home/` and `project/note.txt`.
pub fn scratch(name: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("braid-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("home")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(work.join("project")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(work.join("project/note.txt"), format!("{NOTE}\n")).unwrap_or_else(|e| panic!("{e}"));
    work
}

/// `claude -p PROMPT --model m --allowedTools Bash --output-format FORMAT…` against the
/// Anthropic endpoint at `base` (`http://127.0.0.1:PORT`), in `work`'s project.
pub fn claude(base: &str, work: &Path, prompt: &str, format: &[&str]) -> Run {
    let out = Command::new("timeout")
        .arg("300")
        .arg(binary("claude"))
        .args([
            "-p",
            prompt,
            "--model",
            "m",
            "--allowedTools",
            "Bash",
            "--output-format",
        ])
        .args(format)
        .current_dir(work.join("project"))
        .env("HOME", work.join("home"))
        .env("ANTHROPIC_BASE_URL", base)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run claude: {e}"));
    Run::of(out)
}

/// Claude Code's final answer (the last line of `json` and `stream-json` output alike),
/// and whether it reported an error.
pub fn claude_answer(run: &Run) -> Option<(String, bool)> {
    let last = run.stdout.trim().lines().last()?;
    let result: serde_json::Value = serde_json::from_str(last).ok()?;
    Some((
        result["result"].as_str()?.to_owned(),
        result["is_error"].as_bool().unwrap_or(true),
    ))
}

/// `codex exec --json PROMPT` against the Responses endpoint at `base`
/// (`http://127.0.0.1:PORT/v1`), as a custom model provider with `wire_api =
/// "responses"`, in `work`'s project, stdin from `/dev/null`.
pub fn codex(base: &str, work: &Path, prompt: &str) -> Run {
    let home = work.join("codex");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        r#"model = "m"
model_provider = "braid"
check_for_update_on_startup = false

[model_providers.braid]
name = "braid"
base_url = "{base}"
env_key = "BRAID_TEST_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
"#
    );
    std::fs::write(home.join("config.toml"), config).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("timeout")
        .arg("300")
        .arg(binary("codex"))
        .args(["exec", "--json", "--skip-git-repo-check", prompt])
        .current_dir(work.join("project"))
        .env("CODEX_HOME", &home)
        .env("HOME", work.join("home"))
        .env("BRAID_TEST_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run codex: {e}"));
    Run::of(out)
}

/// Whether Codex's shell tool ran and printed [`NOTE`] (the tool really read note.txt).
pub fn codex_read_the_note(run: &Run) -> bool {
    codex_items(run, "command_execution")
        .iter()
        .any(|c| c["aggregated_output"].as_str().is_some_and(|o| o.contains(NOTE)))
}

/// Codex's final answer: its last agent message.
pub fn codex_answer(run: &Run) -> String {
    codex_items(run, "agent_message")
        .last()
        .and_then(|a| a["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The items Codex completed of `kind` (`command_execution`, `reasoning`,
/// `agent_message`), from its `--json` events.
pub fn codex_items(run: &Run, kind: &str) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
        .map(|e| e["item"].clone())
        .collect()
}
