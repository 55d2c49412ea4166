//! A chat request as every stage reads it: decoded and checked once at the edge (each
//! HTTP protocol maps its own shape into these), never parsed again downstream.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use braid_parsers::tools::grammar::{Pick, ToolSpec};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name; templates see `developer`).
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// Every role, in the order errors list them.
    pub const ALL: [Role; 5] = [
        Role::System,
        Role::Developer,
        Role::User,
        Role::Assistant,
        Role::Tool,
    ];

    /// The role as chat templates and OpenAI name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// The role called `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A tool call in an earlier assistant turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (`tool_call_id` of its result).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as the client sent them (a JSON string, for templates that
    /// concatenate it).
    pub arguments: String,
    /// The same arguments as a JSON object, when they are one (for templates that iterate
    /// them); decoded once at the edge.
    pub parsed: Option<Value>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// The text (parts joined); `None` when the client sent none or `null`.
    pub content: Option<String>,
    /// The reasoning behind an assistant turn (`reasoning_content`, `reasoning`, or
    /// thinking blocks), verbatim.
    pub reasoning: Option<String>,
    /// An assistant turn's tool calls (`None`: the client sent no list).
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A tool result's call id.
    pub tool_call_id: Option<String>,
    /// The sender's name, when given.
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message of `role` with `content` and nothing else.
    pub fn text(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: Some(content.into()),
            reasoning: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// A conversation to render through the model's chat template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The messages, reasoning already re-injected where the edge had it.
    pub messages: Vec<ChatMessage>,
    /// The declared tools (empty: none).
    pub tools: Vec<ToolSpec>,
    /// `chat_template_kwargs`: the server's defaults with the request's over them.
    pub kwargs: Map<String, Value>,
    /// End with the assistant's turn opened.
    pub add_generation_prompt: bool,
}

/// What the answer must match (structured outputs and enforced tool calls). The edge
/// checks the shape; the tokenizer stage writes the grammar and compiles it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Constrain {
    /// A JSON schema.
    Json(Value),
    /// A regular expression.
    Regex(String),
    /// One of these strings.
    Choice(Vec<String>),
    /// A Lark grammar (llguidance's dialect), as given.
    Grammar(String),
    /// Tool calls in the tool parser's markup, among the conversation's tools.
    Calls {
        /// Which calls.
        pick: Pick,
    },
}

/// A constraint and the request field it came from (a refusal names that field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// The request field (`response_format`, `structured_outputs`, `tool_choice`, …).
    pub param: String,
    /// What it asks for.
    pub kind: Constrain,
}
