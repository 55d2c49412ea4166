//! DeepSeek-V4.1 DSML tool calls: V4's markup with the tags renamed ` calls`, ` invoke`
//! and ` parameter`, each with a leading space. A named variant, not a flag. Source:
//! DeepSeek's `deepseek-recipe` (`DeepseekV41Encoding`), SGLang's `deepseekv41` detector.

crate::tools::dsml::dsml_format!("deepseek_v41", " calls", " invoke", " parameter");
