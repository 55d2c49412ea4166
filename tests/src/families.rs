//! The model families' chat markup for end-to-end tests on the replay executor: each
//! family's real template (from `../shared/fixtures`) with the real Qwen3 tokenizer, and
//! recordings of the interleaved weather loop in its own output markup. Round 2 answers
//! WITH-REASONING only when the prompt braid rendered holds round 1's reasoning [`R`], so
//! a client test proves what the model saw.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{free_port, repo_root, wait_healthy, Proc};

/// The reasoning round 1 gives (and the marker round 2 looks for in its prompt).
pub const R: &str = "The user wants the weather in Paris, so I call get_weather for Paris.";

/// One family's markup and how its template treats earlier reasoning.
pub struct Family {
    /// The fixture folder's name under `../shared/fixtures`.
    pub name: &'static str,
    /// `--reasoning-parser`.
    pub reasoning: &'static str,
    /// `--tool-call-parser`.
    pub tools: &'static str,
    /// `--default-chat-template-kwargs`.
    pub kwargs: &'static str,
    /// Round 1's raw output ({R} is the reasoning).
    pub round1: &'static str,
    /// Round 2's raw output ({A} is the answer).
    pub round2: &'static str,
    /// Whether the family's template keeps round 1's reasoning in round 2's prompt.
    pub keeps: bool,
}

/// Every family the client tests run.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "qwen3",
        reasoning: "qwen3",
        tools: "hermes",
        kwargs: "{}",
        round1: "<think>\n{R}\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        round2: "<think>\nIt is sunny.\n</think>\n\n{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "deepseek_r1",
        reasoning: "deepseek_r1",
        tools: "deepseek_v3",
        kwargs: "{}",
        round1: "{R}</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        round2: "It is sunny.</think>{A}: 21 °C and sunny.",
        keeps: false,
    },
    Family {
        name: "kimi_k2",
        reasoning: "kimi_k2",
        tools: "kimi_k2",
        kwargs: "{}",
        round1: "<think>{R}</think><|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
        round2: "<think>It is sunny.</think>{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "minimax_m2",
        reasoning: "minimax_m2",
        tools: "minimax_m2",
        kwargs: "{}",
        round1: "{R}\n</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>\n</minimax:tool_call>",
        round2: "It is sunny.\n</think>\n\n{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "deepseek_v32",
        reasoning: "deepseek_v3",
        tools: "deepseek_v32",
        kwargs: "{\"thinking\": true}",
        round1: "{R}</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
        round2: "It is sunny.</think>{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "glm47",
        reasoning: "glm45",
        tools: "glm47",
        kwargs: "{}",
        round1: "{R}</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
        round2: "It is sunny.</think>{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "deepseek_v4",
        reasoning: "deepseek_v4",
        tools: "deepseek_v4",
        kwargs: "{\"thinking\": true}",
        round1: "{R}\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
        round2: "It is sunny.</think>{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "kimi_k3",
        reasoning: "kimi_k3",
        tools: "kimi_k3",
        kwargs: "{\"thinking\": true}",
        round1: "{R}<|close|>think<|sep|><|open|>tools<|sep|><|open|>call tool=\"get_weather\" index=\"1\"<|sep|><|open|>argument key=\"city\" type=\"string\"<|sep|>Paris<|close|>argument<|sep|><|close|>call<|sep|><|close|>tools<|sep|>",
        round2: "It is sunny.<|close|>think<|sep|><|open|>response<|sep|>{A}: 21 °C and sunny.<|close|>response<|sep|>",
        keeps: true,
    },
    Family {
        name: "minimax_m3",
        reasoning: "minimax_m3",
        tools: "minimax_m3",
        kwargs: "{}",
        round1: "<mm:think>{R}</mm:think>]<]minimax[>[<tool_call>\n]<]minimax[>[<invoke name=\"get_weather\">]<]minimax[>[<city>Paris]<]minimax[>[</city>]<]minimax[>[</invoke>\n]<]minimax[>[</tool_call>",
        round2: "<mm:think>It is sunny.</mm:think>{A}: 21 °C and sunny.",
        keeps: true,
    },
    Family {
        name: "gpt_oss",
        reasoning: "openai_gptoss",
        tools: "openai",
        kwargs: "{}",
        round1: "<|channel|>analysis<|message|>{R}<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
        round2: "<|channel|>analysis<|message|>It is sunny.<|end|><|start|>assistant<|channel|>final<|message|>{A}: 21 °C and sunny.<|return|>",
        keeps: true,
    },
    Family {
        name: "hunyuan_a13b",
        reasoning: "hunyuan_a13b",
        tools: "hunyuan_a13b",
        kwargs: "{}",
        round1: "<think>\n{R}\n</think>\n<answer>\n<tool_calls>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]</tool_calls>\n</answer>",
        round2: "<think>\nIt is sunny.\n</think>\n<answer>\n{A}: 21 °C and sunny.\n</answer>",
        keeps: false,
    },
    Family {
        name: "granite",
        reasoning: "granite",
        tools: "granite",
        kwargs: "{\"thinking\": true}",
        round1: "Here is my thought process:{R}Here is my response:<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
        round2: "Here is my thought process:It is sunny.Here is my response:{A}: 21 °C and sunny.",
        keeps: false,
    },
];

/// A model folder for a family: the real Qwen3 tokenizer (the replay executor tokenizes
/// recordings with it) and the family's real template (or, for DeepSeek-V3.2, its
/// `model_type`), with the weather loop's recordings. `user` names the test that uses it:
/// tests run at once in one process, and each gets a folder of its own.
pub fn family_folder(f: &Family, shared: Option<&Path>, user: &str) -> Option<PathBuf> {
    let tok = repo_root().join(".fixtures/tokenizer-qwen3");
    let dir = std::env::temp_dir().join(format!("braid-family-{}-{user}-{}", f.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(tok.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap_or_else(|e| panic!("{e}"));
    let write =
        |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    match f.name {
        "qwen3" => {
            std::fs::copy(
                tok.join("tokenizer_config.json"),
                dir.join("tokenizer_config.json"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        name @ ("deepseek_v32" | "deepseek_v4") => {
            write("config.json", json!({"model_type": name}).to_string());
            write("tokenizer_config.json", "{}".into());
        }
        name => {
            // The seed families' fixtures, else the newer families' (`../shared/next`).
            let shared = shared?;
            let template = ["fixtures", "next/fixtures"]
                .iter()
                .map(|root| shared.join(root).join(name).join("chat_template.jinja"))
                .find(|t| t.exists())?;
            std::fs::copy(&template, dir.join("chat_template.jinja")).unwrap_or_else(|e| panic!("{e}"));
            let specials = if name.starts_with("deepseek") {
                json!({"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"})
            } else {
                json!({})
            };
            write("tokenizer_config.json", specials.to_string());
        }
    }
    let round2 = |answer: &str| f.round2.replace("{A}", answer);
    let lines = [
        json!({"match": R, "output": round2("WITH-REASONING")}),
        json!({"match": "sunny", "output": round2("WITHOUT-REASONING")}),
        json!({"match": "weather like in Paris", "output": f.round1.replace("{R}", R)}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    write("recordings.jsonl", text.join("\n"));
    Some(dir)
}

/// What the golden renders say: does this family's template keep round 1's reasoning?
pub fn golden_keeps(shared: &Path, family: &str) -> Option<bool> {
    let text = ["fixtures", "next/fixtures"].iter().find_map(|root| {
        std::fs::read_to_string(shared.join(root).join(family).join("renders.jsonl")).ok()
    })?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|case| {
            if case["conversation"] != "interleaved_round2" {
                return None;
            }
            let reasoning = case["request"]["messages"][1]["reasoning_content"]
                .as_str()?
                .to_owned();
            Some(case["expected_prompt"].as_str()?.contains(&reasoning))
        })
}

/// `braid serve` of a family folder on the replay executor, as model `m`, with `extra`
/// flags; returns the process and its port once healthy.
pub fn serve_family(f: &Family, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let d = dir.display().to_string();
    let replay = format!("replay:{}", dir.join("recordings.jsonl").display());
    let mut args = vec![
        "serve",
        &d,
        "--executor",
        &replay,
        "--replay-interval-ms",
        "0",
        "--reasoning-parser",
        f.reasoning,
        "--tool-call-parser",
        f.tools,
        "--default-chat-template-kwargs",
        f.kwargs,
        "--served-model-name",
        "m",
    ];
    let port_s = port.to_string();
    args.extend(["--port", &port_s]);
    args.extend(extra);
    let proc = Proc::braid(&args, &format!("family-{}", f.name));
    assert!(
        wait_healthy(port, Duration::from_secs(30)),
        "{}: {}",
        f.name,
        proc.output()
    );
    let log = proc.output();
    assert!(!log.contains("SELF-TEST FAILED"), "{}: {log}", f.name);
    (proc, port)
}

/// One agent loop to record: the user's `prompt` gets `reasoning` and a call of `tool`
/// with `args` (string arguments, in order).
pub struct AgentLoop<'a> {
    /// Text of the user's prompt the first round's recording matches.
    pub prompt: &'a str,
    /// The first round's reasoning (the second round's recording looks for it).
    pub reasoning: &'a str,
    /// The tool the model calls.
    pub tool: &'a str,
    /// Its arguments, all strings.
    pub args: &'a [(&'a str, &'a str)],
}

/// A call of `l.tool` after `l.reasoning`, in the family's own output markup.
fn call_markup(f: &Family, l: &AgentLoop<'_>) -> String {
    let json = serde_json::Value::Object(l.args.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect());
    let (r, tool) = (l.reasoning, l.tool);
    match f.name {
        "qwen3" => format!("<think>\n{r}\n</think>\n\n<tool_call>\n{{\"name\": \"{tool}\", \"arguments\": {json}}}\n</tool_call>"),
        "kimi_k2" => format!("<think>{r}</think><|tool_calls_section_begin|><|tool_call_begin|>functions.{tool}:0<|tool_call_argument_begin|>{json}<|tool_call_end|><|tool_calls_section_end|>"),
        "minimax_m2" => {
            let params: String = l
                .args
                .iter()
                .map(|(k, v)| format!("<parameter name=\"{k}\">{v}</parameter>\n"))
                .collect();
            format!("{r}\n</think>\n\n<minimax:tool_call>\n<invoke name=\"{tool}\">\n{params}</invoke>\n</minimax:tool_call>")
        }
        other => panic!("no agent-call markup for {other}"),
    }
}

/// Writes `dir/recordings.jsonl` for agent loops in the family's markup: each loop's
/// first round calls its tool; the round after answers `WITH-REASONING: note.txt says
/// NOTE.` when its prompt holds both that loop's reasoning and [`crate::agents::NOTE`]
/// (the tool really ran), else `WITHOUT-REASONING…`.
pub fn agent_recordings(f: &Family, dir: &Path, loops: &[AgentLoop<'_>]) {
    let note = crate::agents::NOTE;
    // The family's markup before its answer (reasoning closed), from its weather round 2.
    let before = f.round2.split("{A}").next().unwrap_or_default();
    let answer = |marker: &str| format!("{before}{marker}: note.txt says {note}.");
    let mut lines: Vec<Value> = loops
        .iter()
        .map(|l| json!({"match": [l.reasoning, note], "output": answer("WITH-REASONING")}))
        .collect();
    lines.push(json!({"match": note, "output": answer("WITHOUT-REASONING")}));
    lines.extend(
        loops
            .iter()
            .map(|l| json!({"match": l.prompt, "output": call_markup(f, l)})),
    );
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("recordings.jsonl"), text.join("\n")).unwrap_or_else(|e| panic!("{e}"));
}
