//! DeepSeek-V4 DSML tool calls: V3.2's markup with the block renamed `tool_calls` (a
//! V3.2 `function_calls` block is text to this parser). Source: DeepSeek's
//! `deepseek-recipe` (`DeepseekV4Encoding`), vLLM `tool_parsers/deepseekv4_tool_parser.py`.

crate::tools::dsml::dsml_format!("deepseek_v4", "tool_calls", "invoke", "parameter");
