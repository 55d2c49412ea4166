//! braid's Anthropic Messages API driven by the official `anthropic` Python SDK (from
//! scripts/setup's venv), as an agent drives it: the interleaved weather loop, the
//! client running the tool and sending the thinking blocks back with their signatures,
//! for MiniMax-M2 and GLM-4.7 (the families whose vendors ship Anthropic endpoints for
//! Claude Code) through their real templates, on the replay executor.

use braid_tests::agents::{self, NOTE};
use braid_tests::families::{agent_recordings, family_folder, serve_family, AgentLoop, Family, FAMILIES, R};
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
    let (ok, text) = braid_tests::try_client(
        "anthropic_loop.py",
        &["--base-url", &url, "--reasoning", R, "--omitted", "--tamper"],
    );
    assert!(
        !ok,
        "a tampered signature was accepted under --strict-signatures:\n{text}"
    );
    assert!(
        text.contains("BadRequestError") && text.contains("signature"),
        "{text}"
    );
}

/// Claude Code's loop: it reads note.txt with its Bash tool.
const CLAUDE_LOOP: AgentLoop<'static> = AgentLoop {
    prompt: "What does note.txt say?",
    reasoning: "The user asks what note.txt says, so I read it with cat.",
    tool: "Bash",
    args: &[("command", "cat note.txt"), ("description", "Read the note")],
};

#[test]
fn claude_code_runs_its_loop_headless_against_braid() {
    let shared = shared_dir();
    let name = if shared.is_some() {
        "minimax_m2"
    } else {
        eprintln!("../shared is absent: Claude Code runs against qwen3's markup instead of MiniMax-M2's");
        "qwen3"
    };
    let f = family(name);
    let dir = family_folder(f, shared.as_deref(), "claude-code").unwrap_or_else(|| panic!("{name} folder"));
    agent_recordings(f, &dir, &[CLAUDE_LOOP]);
    // Claude Code's prompt is ~15k tokens and it asks for max_tokens 32000: more than a
    // 32k context leaves, so braid lowers it.
    let mut flags = SEALED_ONLY[..4].to_vec();
    flags.extend(["--max-model-len", "32768"]);
    let (serve, port) = serve_family(f, &dir, &flags);
    let work = agents::scratch("claude-code");
    let base = format!("http://127.0.0.1:{port}");
    // `json` asks for omitted thinking (the signature alone brings it back), `stream-json`
    // for thinking shown as it is written.
    for format in [&["json"][..], &["stream-json", "--verbose"]] {
        let run = agents::claude(&base, &work, CLAUDE_LOOP.prompt, format);
        let context = || format!("claude {format:?} {}\nbraid: {}", run.context(), serve.output());
        assert!(run.output.status.success(), "{}", context());
        let (answer, is_error) =
            agents::claude_answer(&run).unwrap_or_else(|| panic!("no result: {}", context()));
        eprintln!("Claude Code ({format:?}) answered: {answer}");
        assert!(
            answer.starts_with("WITH-REASONING") && answer.contains(NOTE),
            "{}",
            context()
        );
        assert!(!is_error, "{}", context());
    }
}
