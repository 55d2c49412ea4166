//! LiteLLM's proxy (PyPI `litellm[proxy]`, its `hosted_vllm/` route) in front of braid's
//! Chat Completions, as people ran agents on a Chat Completions server before braid
//! spoke their protocols: Claude Code (through LiteLLM's `/v1/messages`) and Codex
//! (through its `/v1/responses`) run their loops with no `additional_drop_params`,
//! since braid accepts every field LiteLLM forwards (`prompt_cache_key`,
//! `web_search_options`, …).

use std::time::Duration;

use braid_tests::agents::{self, NOTE};
use braid_tests::families::{agent_recordings, family_folder, serve_family, AgentLoop, FAMILIES};
use braid_tests::{free_port, repo_root, wait_port, Proc};

const CLAUDE_LOOP: AgentLoop<'static> = AgentLoop {
    prompt: "What does note.txt say?",
    reasoning: "The user asks what note.txt says, so I read it with cat.",
    tool: "Bash",
    args: &[("command", "cat note.txt"), ("description", "Read the note")],
};

const CODEX_LOOP: AgentLoop<'static> = AgentLoop {
    prompt: "Read note.txt to me.",
    reasoning: "The user wants note.txt read aloud, so I cat it.",
    tool: "exec_command",
    args: &[("cmd", "cat note.txt")],
};

#[test]
fn claude_code_and_codex_run_through_litellm_in_front_of_chat_completions() {
    let litellm = repo_root().join(".fixtures/venv/bin/litellm");
    assert!(
        litellm.exists(),
        "{} is missing: run scripts/setup",
        litellm.display()
    );
    let f = &FAMILIES[0];
    assert_eq!(f.name, "qwen3");
    let dir = family_folder(f, None, "litellm").unwrap_or_else(|| panic!("qwen3 folder"));
    agent_recordings(f, &dir, &[CLAUDE_LOOP, CODEX_LOOP]);
    let (serve, port) = serve_family(f, &dir, &["--max-model-len", "65536"]);
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: hosted_vllm/m\n      api_base: http://127.0.0.1:{port}/v1\n      api_key: none\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let lport = free_port();
    let master = format!("LITELLM_MASTER_KEY={}", agents::KEY);
    let args: Vec<String> = [
        &master,
        "LITELLM_LOCAL_MODEL_COST_MAP=True",
        "LITELLM_TELEMETRY=False",
        &litellm.display().to_string(),
        "--config",
        &config.display().to_string(),
        "--host",
        "127.0.0.1",
        "--port",
        &lport.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy = Proc::start(std::path::Path::new("env"), &args, "litellm");
    assert!(
        wait_port(lport, Duration::from_secs(120)),
        "LiteLLM did not start: {}",
        proxy.output()
    );
    let logs = || format!("braid: {}\nlitellm: {}", serve.output(), proxy.output());

    let work = agents::scratch("litellm-claude");
    let run = agents::claude(
        &format!("http://127.0.0.1:{lport}"),
        &work,
        CLAUDE_LOOP.prompt,
        &["json"],
    );
    let context = || format!("claude via LiteLLM {}\n{}", run.context(), logs());
    assert!(run.output.status.success(), "{}", context());
    let (answer, is_error) =
        agents::claude_answer(&run).unwrap_or_else(|| panic!("no result: {}", context()));
    eprintln!("Claude Code through LiteLLM answered: {answer}");
    assert!(answer.contains(NOTE) && !is_error, "{}", context());

    let work = agents::scratch("litellm-codex");
    let run = agents::codex(&format!("http://127.0.0.1:{lport}/v1"), &work, CODEX_LOOP.prompt);
    let context = || format!("codex via LiteLLM {}\n{}", run.context(), logs());
    assert!(run.output.status.success(), "{}", context());
    assert!(
        agents::codex_read_the_note(&run),
        "the tool did not run: {}",
        context()
    );
    let answer = agents::codex_answer(&run);
    eprintln!("Codex through LiteLLM answered: {answer}");
    assert!(answer.contains(NOTE), "{}", context());
}
