//! DSML, DeepSeek's tool-call markup since V3.2, written once for every release that
//! uses it: the releases differ only in the tag names (V3.2 `function_calls`, V4
//! `tool_calls`, V4.1 ` calls`, ` invoke` and ` parameter` with a leading space).
//!
//! ```text
//! <｜DSML｜SECTION>
//! <｜DSML｜INVOKE name="get_weather">
//! <｜DSML｜PARAMETER name="location" string="true">SF</｜DSML｜PARAMETER>
//! </｜DSML｜INVOKE>
//! </｜DSML｜SECTION>
//! ```
//!
//! `string="true"` marks a string value; `string="false"` a JSON value (typed by the
//! schema). An invoke body may be one JSON object instead of parameters. The `｜` is
//! U+FF5C.

/// Defines `SECTION_OPEN`, `SECTION_CLOSE`, `PARAMS` and `FORMAT` for one DSML release:
/// the parser name, then the section, invoke and parameter tag names.
macro_rules! dsml_format {
    ($name:literal, $section:literal, $invoke:literal, $param:literal) => {
        use $crate::tools::markup::{Args, Markup, Name, Tags};
        use $crate::tools::xml_params::{ValueTrim, XmlParams};
        use $crate::tools::{Body, Header, ToolFormat};

        /// Opens the tool-call block.
        pub const SECTION_OPEN: &str = concat!("<\u{ff5c}DSML\u{ff5c}", $section, ">");
        /// Closes the tool-call block.
        pub const SECTION_CLOSE: &str = concat!("</\u{ff5c}DSML\u{ff5c}", $section, ">");
        const CALL_OPEN: &str = concat!("<\u{ff5c}DSML\u{ff5c}", $invoke, " name=");
        const CALL_CLOSE: &str = concat!("</\u{ff5c}DSML\u{ff5c}", $invoke, ">");
        const PARAM_OPEN: &str = concat!("<\u{ff5c}DSML\u{ff5c}", $param, " name=");
        const PARAM_CLOSE: &str = concat!("</\u{ff5c}DSML\u{ff5c}", $param, ">");

        /// The parameter tags.
        pub const PARAMS: XmlParams = XmlParams {
            param_open: PARAM_OPEN,
            value_close: PARAM_CLOSE,
            between: &[PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE, "{"],
            key_end: &[">"],
            value_open: None,
            in_value: &[PARAM_CLOSE, PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE],
            trim: ValueTrim::Whitespace,
            escaped_keys: false,
        };

        /// The format.
        pub const FORMAT: ToolFormat = ToolFormat {
            name: $name,
            opens: &[SECTION_OPEN],
            section_open: &[SECTION_OPEN],
            in_section: &[CALL_OPEN, SECTION_CLOSE],
            section_close: &[SECTION_CLOSE],
            separators: &[],
            header: Header::Name {
                ends: &[">"],
                kept: &[],
            },
            body: Body::Params(&PARAMS),
            call_close: &[CALL_CLOSE, SECTION_CLOSE],
            markup: Markup {
                begin: concat!("<\u{ff5c}DSML\u{ff5c}", $section, ">\n"),
                end: SECTION_CLOSE,
                between: "",
                call_open: concat!("<\u{ff5c}DSML\u{ff5c}", $invoke, " name=\""),
                name: Name::Plain,
                name_end: "\">\n",
                args: Args::Tags(Tags {
                    open: concat!("<\u{ff5c}DSML\u{ff5c}", $param, " name=\""),
                    key_end: "\" string=\"true\">",
                    key_end_typed: Some("\" string=\"false\">"),
                    close: concat!("</\u{ff5c}DSML\u{ff5c}", $param, ">\n"),
                }),
                call_close: concat!("</\u{ff5c}DSML\u{ff5c}", $invoke, ">\n"),
            },
        };
    };
}

pub(crate) use dsml_format;
