//! MiniMax-M3 tool calls: MiniMax-M2's shape with every tag prefixed `]<]minimax[>[` and
//! the parameters as elements named after them:
//!
//! ```text
//! ]<]minimax[>[<tool_call>
//! ]<]minimax[>[<invoke name="get_weather">]<]minimax[>[<city>Paris]<]minimax[>[</city>]<]minimax[>[</invoke>
//! ]<]minimax[>[</tool_call>
//! ```
//!
//! Objects nest as child elements, lists as repeated `<item>`s (see [`super::tag_tree`]);
//! values are typed by the schema where they sit. Source: MiniMax-M3's chat template,
//! vLLM `tool_parsers/minimax_m3_tool_parser.py`, SGLang `MinimaxM3Detector`.

use super::markup::{Args, Markup, Name};
use super::tag_tree::TagTree;
use super::{Body, Header, ToolFormat};

/// Written before every tool-call tag.
pub const PREFIX: &str = "]<]minimax[>[";
const SECTION_OPEN: &str = "]<]minimax[>[<tool_call>";
const SECTION_CLOSE: &str = "]<]minimax[>[</tool_call>";
const CALL_OPEN: &str = "]<]minimax[>[<invoke name=";
const CALL_CLOSE: &str = "]<]minimax[>[</invoke>";

/// MiniMax-M3's parameter elements.
pub const TREE: TagTree = TagTree {
    prefix: PREFIX,
    item: "item",
};

/// The `minimax_m3` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "minimax_m3",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &[],
    header: Header::Name {
        ends: &[">"],
        kept: &[],
    },
    body: Body::TagTree(&TREE),
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup {
        begin: "]<]minimax[>[<tool_call>\n",
        end: SECTION_CLOSE,
        between: "",
        call_open: "]<]minimax[>[<invoke name=\"",
        name: Name::Plain,
        name_end: "\">",
        args: Args::Elements(&TREE),
        call_close: "]<]minimax[>[</invoke>\n",
    },
};
