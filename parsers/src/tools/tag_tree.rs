//! Arguments as elements named after the parameters, nested (MiniMax-M3):
//!
//! ```text
//! P<city>Paris P</city> P<shipping> P<zip>018956 P</zip> P</shipping>
//! P<items> P<item> P<sku>b1 P</sku> P</item> P</items>
//! ```
//!
//! (`P` is the family's tag prefix, written before every tag.) An element holding
//! elements is an object, or a list when its schema says so or its children are all
//! `item`s; a name repeated among siblings collects its values into a list. Text is typed
//! by the schema at its place in the tree, so `018956` under an integer is 18956. The
//! whole body is read when the call closes: a value's type may depend on elements that
//! come after it, so arguments are not streamed.

use serde_json::{Map, Value};

use super::Call;
use crate::event::Sink;
use crate::schema::{convert_value, ToolSchemas, TypeSet};

/// A nested-element body format.
#[derive(Debug)]
pub struct TagTree {
    /// Written before every tag.
    pub prefix: &'static str,
    /// The element name of a list's items.
    pub item: &'static str,
}

/// An element's content.
#[derive(Debug)]
enum Node {
    Text(String),
    Elements(Vec<(String, Node)>),
}

/// The raw text of one call's body, read when it closes.
#[derive(Debug)]
pub(crate) struct TreeBody {
    format: &'static TagTree,
    raw: String,
}

impl TreeBody {
    pub(crate) fn new(format: &'static TagTree) -> TreeBody {
        TreeBody {
            format,
            raw: String::new(),
        }
    }

    pub(crate) fn text(&mut self, text: &str) {
        self.raw.push_str(text);
    }

    /// Reads the body and writes the call's arguments.
    pub(crate) fn close(&mut self, call: &mut Call, schemas: &ToolSchemas, sink: &mut dyn Sink) {
        let elements = parse(&self.raw, self.format.prefix);
        let tool = schemas.get(call.name());
        let mut args = Map::new();
        for (name, node) in elements {
            let ty = tool.map(|t| t.param(&name)).unwrap_or_default();
            let schema = tool.and_then(|t| t.nested_param(&name));
            let value = typed(&node, ty, schema, self.format.item);
            insert(&mut args, name, value);
        }
        call.arguments(&Value::Object(args).to_string(), sink);
    }
}

/// An element being read: its name, its children and its text so far.
#[derive(Debug, Default)]
struct Open {
    name: String,
    children: Vec<(String, Node)>,
    text: String,
}

/// The elements of a body. Tags that do not match are closed leniently: a close tag
/// ends the innermost open element, and elements still open at the end are closed.
fn parse(raw: &str, prefix: &str) -> Vec<(String, Node)> {
    let mut stack = vec![Open::default()];
    for piece in raw.split(prefix).skip(1) {
        let Some((tag, text)) = piece.strip_prefix('<').and_then(|p| p.split_once('>')) else {
            // Not a tag after all: text of the open element.
            if let Some(top) = stack.last_mut() {
                top.text.push_str(prefix);
                top.text.push_str(piece);
            }
            continue;
        };
        if tag.starts_with('/') {
            close_top(&mut stack);
            if let Some(top) = stack.last_mut() {
                top.text.push_str(text);
            }
        } else {
            stack.push(Open {
                name: tag.trim().to_owned(),
                children: Vec::new(),
                text: text.to_owned(),
            });
        }
    }
    while stack.len() > 1 {
        close_top(&mut stack);
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

/// Ends the innermost element (never the root) and hands it to its parent.
fn close_top(stack: &mut Vec<Open>) {
    if stack.len() < 2 {
        return;
    }
    if let Some(Open { name, children, text }) = stack.pop() {
        let node = match children.is_empty() {
            true => Node::Text(text),
            false => Node::Elements(children),
        };
        if let Some(parent) = stack.last_mut() {
            parent.children.push((name, node));
        }
    }
}

/// Adds a member; a repeated name collects its values into a list.
fn insert(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        None => {
            map.insert(name, value);
        }
        Some(Value::Array(list)) => list.push(value),
        Some(first) => {
            let first = first.take();
            map.insert(name, Value::Array(vec![first, value]));
        }
    }
}

/// A node as JSON, typed by its schema (`ty`, and the schema itself for members).
fn typed(node: &Node, ty: TypeSet, schema: Option<&Value>, item: &str) -> Value {
    match node {
        Node::Text(text) if ty.is_string() => Value::String(text.clone()),
        Node::Text(text) if ty.is_container() && text.trim().is_empty() => match ty.is_list() {
            true => Value::Array(Vec::new()),
            false => Value::Object(Map::new()),
        },
        Node::Text(text) => convert_value(text.trim(), ty),
        Node::Elements(children) => {
            let all_items = children.iter().all(|(name, _)| name == item);
            if ty.is_list() || (all_items && (ty.allows_list() || !ty.is_container())) {
                let items = schema.and_then(|s| s.get("items"));
                return Value::Array(children.iter().map(|(_, c)| member(c, items, item)).collect());
            }
            let mut map = Map::new();
            for (name, child) in children {
                let sub = schema.and_then(|s| {
                    s.get("properties")
                        .and_then(|p| p.get(name))
                        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
                });
                insert(&mut map, name.clone(), member(child, sub, item));
            }
            Value::Object(map)
        }
    }
}

fn member(node: &Node, schema: Option<&Value>, item: &str) -> Value {
    let ty = schema.map(TypeSet::from_schema).unwrap_or_default();
    typed(node, ty, schema, item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(raw: &str, schema: &Value) -> Value {
        let nodes = parse(raw, "P");
        let mut map = Map::new();
        for (name, node) in nodes {
            let sub = schema["properties"].get(&name);
            insert(&mut map, name, member(&node, sub, "item"));
        }
        Value::Object(map)
    }

    #[test]
    fn nested_elements_are_typed_where_they_sit() {
        let schema = json!({"properties": {
            "zip": {"type": "integer"}, "items": {"type": "array", "items": {"type": "object",
                "properties": {"qty": {"type": "integer"}, "sku": {"type": "string"}}}}}});
        let raw = "P<zip>018956P</zip>P<items>P<item>P<sku>007P</sku>P<qty>2P</qty>P</item>P</items>";
        assert_eq!(
            read(raw, &schema),
            json!({"zip": 18956, "items": [{"sku": "007", "qty": 2}]})
        );
    }

    #[test]
    fn without_a_schema_items_are_lists_and_repeats_collect() {
        let raw = "P<a>P<item>1P</item>P<item>xP</item>P</a>P<t>P<k>1P</k>P<k>2P</k>P</t>P<e>P</e>";
        assert_eq!(
            read(raw, &json!({})),
            json!({"a": [1, "x"], "t": {"k": [1, 2]}, "e": ""})
        );
    }

    #[test]
    fn unclosed_elements_are_closed_at_the_end() {
        assert_eq!(read("P<a>P<b>1", &json!({})), json!({"a": {"b": 1}}));
    }
}
