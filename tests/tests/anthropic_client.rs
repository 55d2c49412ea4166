//! braid's Anthropic Messages API driven by the official `anthropic` Python SDK (from
//! scripts/setup's venv), as an agent drives it: the interleaved weather loop, the
//! client running the tool and sending the thinking blocks back with their signatures,
//! for MiniMax-M2 and GLM-4.7 (the families whose vendors ship Anthropic endpoints for
//! Claude Code) through their real templates, on the replay executor.

use braid_tests::families::{family_folder, serve_family, Family, FAMILIES, R};
use braid_tests::{http, run_client, shared_dir};

fn family(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

/// Re-injection off (`--reasoning-replay-size 0`) and a fixed signing key: round 2 sees
/// round 1's reasoning only through the thinking block the client sent back. The
/// context is 2048 tokens and the client asks for `max_tokens: 32000`, as Claude Code
/// does: braid lowers it to what fits.
const SEALED_ONLY: [&str; 6] = [
    "--reasoning-replay-size",
    "0",
    "--signing-key",
    "test-key",
    "--max-model-len",
    "2048",
];

#[test]
fn the_anthropic_sdk_drives_the_interleaved_loop_through_messages() {
    let shared = shared_dir();
    let names: &[&str] = if shared.is_some() {
        &["minimax_m2", "glm47"]
    } else {
        eprintln!(
            "../shared is absent: the loop runs on qwen3 (whose template ships with its tokenizer) only"
        );
        &["qwen3"]
    };
    for name in names {
        let f = family(name);
        assert!(f.keeps, "{name}: the loop needs a template that keeps reasoning");
        let dir =
            family_folder(f, shared.as_deref(), "anthropic-sdk").unwrap_or_else(|| panic!("{name} folder"));
        let (_serve, port) = serve_family(f, &dir, &SEALED_ONLY);
        let url = format!("http://127.0.0.1:{port}");
        let run = |extra: &[&str]| {
            let mut args = vec!["--base-url", url.as_str(), "--reasoning", R];
            args.extend(extra);
            let out = run_client("anthropic_loop.py", &args);
            eprintln!("{name} {extra:?}: {out}");
        };
        run(&[]);
        run(&["--stream"]);
        // Thinking withheld from the client: its signature alone brings it back.
        run(&["--omitted"]);
        run(&["--stream", "--omitted"]);
        // A changed signature does not open: the empty block is rendered as sent, so the
        // model does not see the reasoning, and the miss is counted.
        run(&["--omitted", "--tamper", "--expect", "without"]);
        let (_, metrics) = http(port, "GET", "/metrics", "");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("braid_thinking_signature_invalid_total") && !l.ends_with(" 0")),
            "{name}: {metrics}"
        );
        assert!(
            metrics.contains("braid_http_requests_total{protocol=\"messages\",status=\"200\"}"),
            "{name}: {metrics}"
        );
    }
}

#[test]
fn strict_signatures_refuse_a_tampered_thinking_block() {
    let f = family("qwen3");
    let dir = family_folder(f, None, "anthropic-strict").unwrap_or_else(|| panic!("qwen3 folder"));
    let mut flags = SEALED_ONLY.to_vec();
    flags.push("--strict-signatures");
    let (_serve, port) = serve_family(f, &dir, &flags);
    let url = format!("http://127.0.0.1:{port}");
    run_client(
        "anthropic_loop.py",
        &["--base-url", &url, "--reasoning", R, "--omitted"],
    );
    let out = std::process::Command::new(braid_tests::venv_python())
        .arg(braid_tests::repo_root().join("tests/clients/anthropic_loop.py"))
        .args(["--base-url", &url, "--reasoning", R, "--omitted", "--tamper"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a tampered signature was accepted under --strict-signatures:\n{text}"
    );
    assert!(
        text.contains("BadRequestError") && text.contains("signature"),
        "{text}"
    );
}

/// What Claude Code's model reasons in round 1 (round 2's recording looks for it).
const CC_REASONING: &str = "The user asks what note.txt says, so I read it with cat.";
/// What note.txt holds: in the prompt only once the tool really ran.
const NOTE: &str = "ink-42-violet";

/// Claude Code's loop in a family's markup: round 1 reasons and calls Bash to read
/// note.txt; round 2 answers WITH-REASONING only when its prompt holds both round 1's
/// reasoning and the file's text.
fn claude_code_recordings(f: &Family, dir: &std::path::Path) {
    let call = match f.name {
        "minimax_m2" => format!("{CC_REASONING}\n</think>\n\n<minimax:tool_call>\n<invoke name=\"Bash\">\n<parameter name=\"command\">cat note.txt</parameter>\n<parameter name=\"description\">Read the note</parameter>\n</invoke>\n</minimax:tool_call>"),
        "qwen3" => format!("<think>\n{CC_REASONING}\n</think>\n\n<tool_call>\n{{\"name\": \"Bash\", \"arguments\": {{\"command\": \"cat note.txt\", \"description\": \"Read the note\"}}}}\n</tool_call>"),
        other => panic!("no Claude Code recording for {other}"),
    };
    let open = if f.name == "qwen3" { "<think>\n" } else { "" };
    let answer =
        |marker: &str| format!("{open}The note is read.\n</think>\n\n{marker}: note.txt says {NOTE}.");
    let lines = [
        serde_json::json!({"match": [CC_REASONING, NOTE], "output": answer("WITH-REASONING")}),
        serde_json::json!({"match": NOTE, "output": answer("WITHOUT-REASONING")}),
        serde_json::json!({"match": "What does note.txt say?", "output": call}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(dir.join("recordings.jsonl"), text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn claude_code_runs_its_loop_headless_against_braid() {
    let claude = braid_tests::repo_root().join(".fixtures/agents/node_modules/.bin/claude");
    assert!(
        claude.exists(),
        "{} is missing: run scripts/setup",
        claude.display()
    );
    let shared = shared_dir();
    let name = if shared.is_some() {
        "minimax_m2"
    } else {
        eprintln!("../shared is absent: Claude Code runs against qwen3's markup instead of MiniMax-M2's");
        "qwen3"
    };
    let f = family(name);
    let dir = family_folder(f, shared.as_deref(), "claude-code").unwrap_or_else(|| panic!("{name} folder"));
    claude_code_recordings(f, &dir);
    // Claude Code's prompt is ~15k tokens and it asks for max_tokens 32000: more than a
    // 32k context leaves, so braid lowers it.
    let mut flags = SEALED_ONLY[..4].to_vec();
    flags.extend(["--max-model-len", "32768"]);
    let (serve, port) = serve_family(f, &dir, &flags);
    let work = std::env::temp_dir().join(format!("braid-claude-code-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("home")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(work.join("project")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(work.join("project/note.txt"), format!("{NOTE}\n")).unwrap_or_else(|e| panic!("{e}"));
    // `json` asks for omitted thinking (the signature alone brings it back), `stream-json`
    // for thinking shown as it is written.
    for format in [&["json"][..], &["stream-json", "--verbose"]] {
        let out = std::process::Command::new("timeout")
            .arg("300")
            .arg(&claude)
            .args([
                "-p",
                "What does note.txt say?",
                "--model",
                "m",
                "--allowedTools",
                "Bash",
            ])
            .arg("--output-format")
            .args(format)
            .current_dir(work.join("project"))
            .env("HOME", work.join("home"))
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("ANTHROPIC_API_KEY", "braid-test")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run claude: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = || {
            format!(
                "claude {format:?} exited {:?}\nstdout: {stdout}\nstderr: {stderr}\nbraid: {}",
                out.status,
                serve.output()
            )
        };
        assert!(out.status.success(), "{}", context());
        // The last line is the result, in both formats.
        let last = stdout.trim().lines().last().unwrap_or_default();
        let result: serde_json::Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {}", context()));
        let answer = result["result"].as_str().unwrap_or_default();
        eprintln!("Claude Code ({format:?}) answered: {answer}");
        assert!(
            answer.starts_with("WITH-REASONING") && answer.contains(NOTE),
            "{}",
            context()
        );
        assert_eq!(result["is_error"], false, "{}", context());
    }
}
