//! The model families braid serves: which reasoning and tool parsers go together, and
//! the `config.json` `model_type`s that suggest them. Written once, read by parser
//! auto-selection (which proves a choice by rendering a probe call and reading it back),
//! the benchmarks and the property tests.

/// A model family as braid serves it.
#[derive(Debug)]
pub struct Family {
    /// The family's name.
    pub name: &'static str,
    /// Its reasoning parser.
    pub reasoning: &'static str,
    /// Its tool parser.
    pub tools: &'static str,
    /// `config.json` `model_type`s of its models (several families may share one: the
    /// probe decides among them).
    pub model_types: &'static [&'static str],
}

/// Every family, most specific first within a shared `model_type`.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "qwen3_coder",
        reasoning: "qwen3",
        tools: "qwen3_coder",
        model_types: &["qwen3_moe", "qwen3", "qwen3_next"],
    },
    Family {
        name: "qwen3",
        reasoning: "qwen3",
        tools: "hermes",
        model_types: &["qwen3", "qwen3_moe", "qwen3_next", "qwen2"],
    },
    Family {
        name: "deepseek_r1",
        reasoning: "deepseek_r1",
        tools: "deepseek_v3",
        model_types: &["deepseek_v3"],
    },
    Family {
        name: "deepseek_v31",
        reasoning: "deepseek_v3",
        tools: "deepseek_v31",
        model_types: &["deepseek_v3"],
    },
    Family {
        name: "deepseek_v32",
        reasoning: "deepseek_v3",
        tools: "deepseek_v32",
        model_types: &["deepseek_v32"],
    },
    Family {
        name: "deepseek_v4",
        reasoning: "deepseek_v4",
        tools: "deepseek_v4",
        model_types: &["deepseek_v4"],
    },
    Family {
        name: "deepseek_v41",
        reasoning: "deepseek_v4",
        tools: "deepseek_v41",
        model_types: &["deepseek_v41"],
    },
    Family {
        name: "kimi_k2",
        reasoning: "kimi_k2",
        tools: "kimi_k2",
        model_types: &["kimi_k2", "deepseek_v3"],
    },
    Family {
        name: "kimi_k3",
        reasoning: "kimi_k3",
        tools: "kimi_k3",
        model_types: &["kimi_k3"],
    },
    Family {
        name: "minimax_m2",
        reasoning: "minimax_m2",
        tools: "minimax_m2",
        model_types: &["minimax_m2", "minimax"],
    },
    Family {
        name: "minimax_m3",
        reasoning: "minimax_m3",
        tools: "minimax_m3",
        model_types: &["minimax_m3"],
    },
    Family {
        name: "glm47",
        reasoning: "glm45",
        tools: "glm47",
        model_types: &["glm4_moe", "glm5"],
    },
    Family {
        name: "glm45",
        reasoning: "glm45",
        tools: "glm45",
        model_types: &["glm4_moe"],
    },
    Family {
        name: "granite",
        reasoning: "granite",
        tools: "granite",
        model_types: &["granite", "granitemoe"],
    },
    Family {
        name: "hunyuan_a13b",
        reasoning: "hunyuan_a13b",
        tools: "hunyuan_a13b",
        model_types: &["hunyuan_v1_moe"],
    },
    Family {
        name: "gpt_oss",
        reasoning: "openai_gptoss",
        tools: "openai",
        model_types: &["gpt_oss"],
    },
];

/// The family a tool parser belongs to.
pub fn of_tools(tools: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.tools == tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_names_known_parsers_and_every_tool_parser_has_a_family() {
        for f in FAMILIES {
            assert!(crate::reasoning_format(f.reasoning).is_ok(), "{}", f.name);
            assert!(crate::tool_format(f.tools).is_ok(), "{}", f.name);
        }
        for name in crate::tool_names() {
            assert!(of_tools(name).is_some(), "{name} has no family");
        }
    }
}
