//! braid's OpenAI Responses API driven by Codex CLI (npm `@openai/codex`, `codex exec`)
//! as users run it: a custom model provider with `wire_api = "responses"`, update
//! checks, analytics and plugins off. Codex runs its own shell tool, sends the reasoning
//! item back verbatim (`encrypted_content` included, `store: false`), and answers.

use std::path::Path;

use braid_tests::families::{family_folder, serve_family, Family, FAMILIES};
use braid_tests::{repo_root, shared_dir};

/// What the model reasons in round 1 (round 2's recording looks for it).
const REASONING: &str = "The user asks what note.txt says, so I read it with cat.";
/// What note.txt holds: in the prompt only once the tool really ran.
const NOTE: &str = "ink-42-violet";

/// Codex's loop in a family's markup: round 1 reasons and calls `exec_command` to read
/// note.txt; round 2 answers WITH-REASONING only when its prompt holds both round 1's
/// reasoning and the file's text.
fn codex_recordings(f: &Family, dir: &Path) {
    let args = "{\"cmd\": \"cat note.txt\"}";
    let (call, open) = match f.name {
        "qwen3" => (
            format!("<think>\n{REASONING}\n</think>\n\n<tool_call>\n{{\"name\": \"exec_command\", \"arguments\": {args}}}\n</tool_call>"),
            "<think>\n",
        ),
        "kimi_k2" => (
            format!("<think>{REASONING}</think><|tool_calls_section_begin|><|tool_call_begin|>functions.exec_command:0<|tool_call_argument_begin|>{args}<|tool_call_end|><|tool_calls_section_end|>"),
            "<think>",
        ),
        other => panic!("no Codex recording for {other}"),
    };
    let answer =
        |marker: &str| format!("{open}The note is read.\n</think>\n\n{marker}: note.txt says {NOTE}.");
    let lines = [
        serde_json::json!({"match": [REASONING, NOTE], "output": answer("WITH-REASONING")}),
        serde_json::json!({"match": NOTE, "output": answer("WITHOUT-REASONING")}),
        serde_json::json!({"match": "What does note.txt say?", "output": call}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(dir.join("recordings.jsonl"), text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
}

/// Codex's home: a config with braid as its model provider and nothing else reached.
fn codex_home(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        r#"model = "m"
model_provider = "braid"
check_for_update_on_startup = false

[model_providers.braid]
name = "braid"
base_url = "http://127.0.0.1:{port}/v1"
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
    std::fs::write(dir.join("config.toml"), config).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn codex_runs_its_loop_against_braid() {
    let codex = repo_root().join(".fixtures/agents/node_modules/.bin/codex");
    assert!(
        codex.exists(),
        "{} is missing: run scripts/setup",
        codex.display()
    );
    let shared = shared_dir();
    let mut names = vec!["qwen3"];
    if shared.is_some() {
        names.push("kimi_k2");
    } else {
        eprintln!("../shared is absent: Codex runs against qwen3's markup only (not Kimi-K2's)");
    }
    for name in names {
        let f = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}"));
        let dir = family_folder(f, shared.as_deref(), "codex").unwrap_or_else(|| panic!("{name} folder"));
        codex_recordings(f, &dir);
        // Re-injection off: round 2 sees round 1's reasoning only through the reasoning
        // item Codex sends back (its encrypted_content, or its reasoning_text).
        let flags = ["--reasoning-replay-size", "0", "--signing-key", "test-key"];
        let (serve, port) = serve_family(f, &dir, &flags);
        let work = std::env::temp_dir().join(format!("braid-codex-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        codex_home(&work.join("codex"), port);
        std::fs::create_dir_all(work.join("project")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(work.join("project/note.txt"), format!("{NOTE}\n")).unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new("timeout")
            .arg("300")
            .arg(&codex)
            .args([
                "exec",
                "--json",
                "--skip-git-repo-check",
                "What does note.txt say?",
            ])
            .current_dir(work.join("project"))
            .env("CODEX_HOME", work.join("codex"))
            .env("HOME", &work)
            .env("BRAID_TEST_KEY", "braid-test")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run codex: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = || {
            format!(
                "codex ({name}) exited {:?}\nstdout: {stdout}\nstderr: {stderr}\nbraid: {}",
                out.status,
                serve.output()
            )
        };
        assert!(out.status.success(), "{}", context());
        let events: Vec<serde_json::Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let item = |kind: &str| {
            events
                .iter()
                .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
                .map(|e| e["item"].clone())
                .collect::<Vec<_>>()
        };
        let ran = item("command_execution");
        assert!(
            ran.iter()
                .any(|c| c["aggregated_output"].as_str().is_some_and(|o| o.contains(NOTE))),
            "the tool did not run: {}",
            context()
        );
        // Codex shows the reasoning summary: braid's is the reasoning itself.
        assert!(
            item("reasoning")
                .iter()
                .any(|r| r["text"].as_str().is_some_and(|t| t.contains(REASONING))),
            "{}",
            context()
        );
        let answers = item("agent_message");
        let answer = answers
            .last()
            .and_then(|a| a["text"].as_str())
            .unwrap_or_default();
        eprintln!("Codex ({name}) answered: {answer}");
        assert!(
            answer.starts_with("WITH-REASONING") && answer.contains(NOTE),
            "{}",
            context()
        );
    }
}

#[test]
fn the_openai_sdk_drives_the_interleaved_loop_through_responses() {
    use braid_tests::families::R;
    let shared = shared_dir();
    let mut names = vec!["qwen3"];
    if shared.is_some() {
        names.push("kimi_k2");
    } else {
        eprintln!("../shared is absent: the loop runs on qwen3's markup only (not Kimi-K2's)");
    }
    for name in names {
        let f = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}"));
        let dir =
            family_folder(f, shared.as_deref(), "responses-sdk").unwrap_or_else(|| panic!("{name} folder"));
        // Re-injection off: round 2 sees round 1's reasoning only through what the client
        // sent back, or through the stored response.
        let flags = ["--reasoning-replay-size", "0", "--signing-key", "test-key"];
        let (_serve, port) = serve_family(f, &dir, &flags);
        let url = format!("http://127.0.0.1:{port}/v1");
        for extra in [
            &[][..],
            &["--stream"],
            &["--strip-reasoning-text"],
            &["--stream", "--strip-reasoning-text"],
            &["--stored"],
            &["--stored", "--stream"],
        ] {
            let mut args = vec!["--base-url", url.as_str(), "--reasoning", R];
            args.extend(extra);
            let out = braid_tests::run_client("responses_loop.py", &args);
            eprintln!("{name} {extra:?}: {}", out.lines().last().unwrap_or_default());
        }
    }
}
