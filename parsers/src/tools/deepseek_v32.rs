//! DeepSeek-V3.2 DSML tool calls:
//!
//! ```text
//! <｜DSML｜function_calls>
//! <｜DSML｜invoke name="get_weather">
//! <｜DSML｜parameter name="location" string="true">SF</｜DSML｜parameter>
//! </｜DSML｜invoke>
//! </｜DSML｜function_calls>
//! ```
//!
//! `string="true"` marks a string value; `string="false"` a JSON value (typed by the
//! schema). An `<invoke>` body may be one JSON object instead of parameters. The `｜` is
//! U+FF5C. Source: DeepSeek's `encoding_dsv32.py`, vLLM
//! `tool_parsers/deepseekv32_tool_parser.py`.

crate::tools::dsml::dsml_format!("deepseek_v32", "function_calls", "invoke", "parameter");
