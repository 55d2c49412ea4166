//! braid's OpenAI Responses API driven by Codex CLI (npm `@openai/codex`, `codex exec`)
//! as users run it: a custom model provider with `wire_api = "responses"`, update
//! checks, analytics and plugins off. Codex runs its own shell tool, sends the reasoning
//! item back verbatim (`encrypted_content` included, `store: false`), and answers.

use braid_tests::agents::{self, NOTE};
use braid_tests::families::{agent_recordings, family_folder, serve_family, AgentLoop, FAMILIES};
use braid_tests::shared_dir;

/// Codex's loop: it reads note.txt with its `exec_command` tool.
const CODEX_LOOP: AgentLoop<'static> = AgentLoop {
    prompt: "What does note.txt say?",
    reasoning: "The user asks what note.txt says, so I read it with cat.",
    tool: "exec_command",
    args: &[("cmd", "cat note.txt")],
};

#[test]
fn codex_runs_its_loop_against_braid() {
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
        agent_recordings(f, &dir, &[CODEX_LOOP]);
        // Re-injection off: round 2 sees round 1's reasoning only through the reasoning
        // item Codex sends back (its encrypted_content, or its reasoning_text).
        let flags = ["--reasoning-replay-size", "0", "--signing-key", "test-key"];
        let (serve, port) = serve_family(f, &dir, &flags);
        let work = agents::scratch(&format!("codex-{name}"));
        let run = agents::codex(&format!("http://127.0.0.1:{port}/v1"), &work, CODEX_LOOP.prompt);
        let context = || format!("codex ({name}) {}\nbraid: {}", run.context(), serve.output());
        assert!(run.output.status.success(), "{}", context());
        assert!(
            agents::codex_read_the_note(&run),
            "the tool did not run: {}",
            context()
        );
        // Codex shows the reasoning summary: braid's is the reasoning itself.
        assert!(
            agents::codex_items(&run, "reasoning").iter().any(|r| r["text"]
                .as_str()
                .is_some_and(|t| t.contains(CODEX_LOOP.reasoning))),
            "{}",
            context()
        );
        let answer = agents::codex_answer(&run);
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
