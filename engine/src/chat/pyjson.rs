//! JSON text exactly as Python's `json.dumps` writes it (what Hugging Face's `tojson`
//! gives templates): `", "` and `": "` separators, optional `ensure_ascii`, `indent` and
//! `sort_keys`. Byte-exact prompts depend on it.

use serde_json::Value;

/// How to write.
#[derive(Debug, Clone, Copy, Default)]
pub struct PyJson {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// Pretty-print with this many spaces.
    pub indent: Option<usize>,
    /// Sort object keys.
    pub sort_keys: bool,
}

impl PyJson {
    /// `json.dumps(value, …)`.
    pub fn dumps(&self, value: &Value) -> String {
        let mut out = String::new();
        self.write(value, 0, &mut out);
        out
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }

    fn write(&self, value: &Value, depth: usize, out: &mut String) {
        let item_sep = if self.indent.is_some() { "," } else { ", " };
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&py_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.string(s, out),
            Value::Array(items) => {
                if items.is_empty() {
                    return out.push_str("[]");
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Value::Object(map) => {
                if map.is_empty() {
                    return out.push_str("{}");
                }
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.string(k, out);
                    out.push_str(": ");
                    self.write(v, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        braid_parsers::escape_json_string(s, self.ensure_ascii, out);
        out.push('"');
    }
}

/// A float as Python's `repr` writes it (`1.0`, `0.1`, `1e+16`, `NaN`).
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let exp = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    if (-4..16).contains(&exp) {
        let s = format!("{f:?}");
        if s.contains('.') || s.contains('e') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Python: shortest repr in exponent form, e.g. 1e+16, 1.5e-05.
        let s = format!("{f:e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_as_python_does() {
        let v =
            json!({"b": [1, 2.5, true, null], "a": "é\n\"x\"", "c": {}, "d": 1.0, "e": 1e16, "f": 0.0001});
        assert_eq!(
            PyJson::default().dumps(&v),
            r#"{"b": [1, 2.5, true, null], "a": "é\n\"x\"", "c": {}, "d": 1.0, "e": 1e+16, "f": 0.0001}"#
        );
        let ascii = PyJson {
            ensure_ascii: true,
            sort_keys: true,
            ..PyJson::default()
        };
        assert_eq!(
            ascii.dumps(&json!({"z": "🦀", "a": "é"})),
            r#"{"a": "\u00e9", "z": "\ud83e\udd80"}"#
        );
        let pretty = PyJson {
            indent: Some(2),
            ..PyJson::default()
        };
        assert_eq!(pretty.dumps(&json!({"a": [1]})), "{\n  \"a\": [\n    1\n  ]\n}");
    }
}
