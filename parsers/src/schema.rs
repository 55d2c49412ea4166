//! The request's tools, indexed once per request, and the typing of argument values that
//! formats carry as text (qwen3_coder, minimax_m2, glm4x, DSML).
//!
//! Policy: where the schema declares a parameter, its type decides (`"42"` stays a string
//! for a string parameter, becomes 42 for an integer one); where it does not (or the
//! request has no tools), JSON literals are inferred: numbers, true/false/null, objects,
//! arrays, and Python's True/False/None.

use std::collections::HashMap;

use serde_json::Value;

/// A set of JSON Schema types a parameter accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeSet(u8);

impl TypeSet {
    const STRING: u8 = 1;
    const INTEGER: u8 = 2;
    const NUMBER: u8 = 4;
    const BOOLEAN: u8 = 8;
    const OBJECT: u8 = 16;
    const ARRAY: u8 = 32;
    const NULL: u8 = 64;

    fn bit(name: &str) -> u8 {
        match name {
            "string" | "str" | "text" | "varchar" | "char" | "enum" => Self::STRING,
            "integer" | "int" => Self::INTEGER,
            "number" | "float" | "double" => Self::NUMBER,
            "boolean" | "bool" => Self::BOOLEAN,
            "object" | "dict" => Self::OBJECT,
            "array" | "list" => Self::ARRAY,
            "null" => Self::NULL,
            _ => 0,
        }
    }

    /// The types a type name stands for (`"number"`, `"string"`, …; unknown names none).
    pub fn named(name: &str) -> TypeSet {
        TypeSet(Self::bit(name))
    }

    /// Reads `type`, `anyOf`/`oneOf`, and string `enum`s from a property schema.
    pub fn from_schema(schema: &Value) -> TypeSet {
        let mut bits = 0;
        match schema.get("type") {
            Some(Value::String(t)) => bits |= Self::bit(t),
            Some(Value::Array(ts)) => {
                for t in ts.iter().filter_map(Value::as_str) {
                    bits |= Self::bit(t);
                }
            }
            _ => {}
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(alts)) = schema.get(key) {
                for alt in alts {
                    bits |= TypeSet::from_schema(alt).0;
                }
            }
        }
        if bits == 0 {
            if let Some(Value::Array(values)) = schema.get("enum") {
                if values.iter().all(Value::is_string) {
                    bits |= Self::STRING;
                }
            }
        }
        TypeSet(bits)
    }

    /// True when the parameter is only ever a string (or null): its text can stream as-is.
    pub fn is_string(self) -> bool {
        self.0 & Self::STRING != 0 && self.0 & !(Self::STRING | Self::NULL) == 0
    }

    /// True when the parameter is a string and cannot be null: `null` is then the text.
    pub fn is_only_string(self) -> bool {
        self.0 == Self::STRING
    }

    /// True when the parameter may be null.
    pub fn allows_null(self) -> bool {
        self.has(Self::NULL)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Whether the value may be a list and not an object (its elements are items).
    pub fn is_list(self) -> bool {
        self.has(Self::ARRAY) && !self.has(Self::OBJECT)
    }

    /// Whether the value may be a list.
    pub fn allows_list(self) -> bool {
        self.has(Self::ARRAY)
    }

    /// Whether the value may be an object or a list.
    pub fn is_container(self) -> bool {
        self.has(Self::OBJECT) || self.has(Self::ARRAY)
    }

    /// Whether no type is known (undeclared parameter or untyped schema).
    pub fn is_unknown(self) -> bool {
        self.0 == 0
    }
}

/// One tool's parameters.
#[derive(Debug, Clone, Default)]
pub struct ToolSchema {
    params: HashMap<String, TypeSet>,
    /// The schemas of object and array parameters, for formats that nest values.
    nested: HashMap<String, Value>,
    required: Vec<String>,
}

impl ToolSchema {
    /// The declared type of a parameter (unknown if undeclared).
    pub fn param(&self, name: &str) -> TypeSet {
        self.params.get(name).copied().unwrap_or_default()
    }

    /// The declared schema of an object or array parameter (what its members are).
    pub fn nested_param(&self, name: &str) -> Option<&Value> {
        self.nested.get(name)
    }

    /// Whether these argument keys fit this tool: all declared, all required present.
    pub fn accepts_keys(&self, keys: &[&str]) -> bool {
        keys.iter().all(|k| self.params.contains_key(*k))
            && self.required.iter().all(|r| keys.contains(&r.as_str()))
    }
}

/// The request's tools by function name.
#[derive(Debug, Clone, Default)]
pub struct ToolSchemas {
    tools: HashMap<String, ToolSchema>,
    order: Vec<String>,
}

impl ToolSchemas {
    /// Indexes an OpenAI `tools` array (`[{"type":"function","function":{…}}]`; bare
    /// function objects are accepted too). Entries without a name are skipped.
    pub fn from_tools(tools: &Value) -> ToolSchemas {
        let mut out = ToolSchemas::default();
        for tool in tools.as_array().into_iter().flatten() {
            let func = tool.get("function").unwrap_or(tool);
            if let Some(name) = func.get("name").and_then(Value::as_str) {
                out.add(name, func.get("parameters"));
            }
        }
        out
    }

    /// Indexes declared tools, as the API decoded them.
    pub fn from_specs(tools: &[crate::tools::grammar::ToolSpec]) -> ToolSchemas {
        let mut out = ToolSchemas::default();
        for t in tools {
            out.add(&t.name, t.parameters.as_ref());
        }
        out
    }

    fn add(&mut self, name: &str, params: Option<&Value>) {
        let mut schema = ToolSchema::default();
        if let Some(params) = params {
            if let Some(Value::Object(props)) = params.get("properties") {
                for (k, v) in props {
                    let ty = TypeSet::from_schema(v);
                    if ty.has(TypeSet::OBJECT) || ty.has(TypeSet::ARRAY) {
                        schema.nested.insert(k.clone(), v.clone());
                    }
                    schema.params.insert(k.clone(), ty);
                }
            }
            if let Some(Value::Array(req)) = params.get("required") {
                schema.required = req.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect();
            }
        }
        self.order.push(name.to_owned());
        self.tools.insert(name.to_owned(), schema);
    }

    /// Whether the request declared any tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&ToolSchema> {
        self.tools.get(name)
    }

    /// The type of `param` of `tool` (unknown if either is undeclared).
    pub fn param_type(&self, tool: &str, param: &str) -> TypeSet {
        self.get(tool).map(|t| t.param(param)).unwrap_or_default()
    }

    /// The request's tool, if it declared exactly one.
    pub fn only_tool(&self) -> Option<&str> {
        match self.order.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }

    /// The one declared tool whose parameters fit these argument keys, if exactly one does.
    pub fn infer_name(&self, keys: &[&str]) -> Option<&str> {
        let mut fits = self
            .order
            .iter()
            .filter(|n| self.tools.get(*n).is_some_and(|t| t.accepts_keys(keys)));
        match (fits.next(), fits.next()) {
            (Some(one), None) => Some(one.as_str()),
            _ => None,
        }
    }
}

/// Types a textual argument value by its declared type (see the module doc).
pub fn convert_value(raw: &str, ty: TypeSet) -> Value {
    if raw == "null" && !ty.is_only_string() {
        return Value::Null;
    }
    if ty.is_unknown() {
        return infer_literal(raw);
    }
    if ty.is_string() {
        return Value::String(raw.to_owned());
    }
    if ty.has(TypeSet::BOOLEAN) {
        match raw.to_ascii_lowercase().as_str() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if ty.has(TypeSet::INTEGER) {
        if let Ok(i) = raw.parse::<i64>() {
            return Value::from(i);
        }
    }
    if ty.has(TypeSet::NUMBER) || ty.has(TypeSet::INTEGER) {
        if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(raw) {
            return Value::Number(n);
        }
    }
    if ty.has(TypeSet::OBJECT) || ty.has(TypeSet::ARRAY) {
        if let Ok(v @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(raw) {
            return v;
        }
    }
    if ty.has(TypeSet::STRING) {
        return Value::String(raw.to_owned());
    }
    infer_literal(raw)
}

/// Infers a JSON literal from text; anything that is not one stays a string.
pub fn infer_literal(raw: &str) -> Value {
    match raw {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    let first = raw.as_bytes().first().copied().unwrap_or(b' ');
    if matches!(first, b'-' | b'0'..=b'9' | b'{' | b'[' | b't' | b'f' | b'n') {
        if let Ok(v) = serde_json::from_str::<Value>(raw) {
            return v;
        }
    }
    Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_decides_declared_params() {
        let tools = json!([{"type": "function", "function": {"name": "t", "parameters": {
            "properties": {"s": {"type": "string"}, "i": {"type": "integer"},
                           "n": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                           "o": {"type": "object"}, "b": {"type": "boolean"}}}}}]);
        let s = ToolSchemas::from_tools(&tools);
        assert_eq!(convert_value("42", s.param_type("t", "s")), json!("42"));
        assert_eq!(convert_value("null", s.param_type("t", "s")), json!("null"));
        assert_eq!(convert_value("42", s.param_type("t", "i")), json!(42));
        assert_eq!(convert_value("null", s.param_type("t", "n")), json!(null));
        assert_eq!(convert_value("Alice", s.param_type("t", "n")), json!("Alice"));
        assert_eq!(
            convert_value("{\"a\": 1}", s.param_type("t", "o")),
            json!({"a": 1})
        );
        assert_eq!(convert_value("True", s.param_type("t", "b")), json!(true));
        assert!(s.param_type("t", "s").is_string());
        assert!(!s.param_type("t", "n").is_unknown());
    }

    #[test]
    fn undeclared_params_infer_literals() {
        assert_eq!(convert_value("5", TypeSet::default()), json!(5));
        assert_eq!(convert_value("1.5", TypeSet::default()), json!(1.5));
        assert_eq!(convert_value("None", TypeSet::default()), json!(null));
        assert_eq!(convert_value("[1, 2]", TypeSet::default()), json!([1, 2]));
        assert_eq!(
            convert_value("string value", TypeSet::default()),
            json!("string value")
        );
        assert_eq!(convert_value("nope", TypeSet::default()), json!("nope"));
    }

    #[test]
    fn infers_a_name_only_when_exactly_one_tool_fits() {
        let one =
            ToolSchemas::from_tools(&json!([{"name": "w", "parameters": {"properties": {"city": {}}}}]));
        assert_eq!(one.infer_name(&["city"]), Some("w"));
        let two = ToolSchemas::from_tools(&json!([
            {"name": "a", "parameters": {"properties": {"city": {}}}},
            {"name": "b", "parameters": {"properties": {"city": {}}}}]));
        assert_eq!(two.infer_name(&["city"]), None);
    }
}
