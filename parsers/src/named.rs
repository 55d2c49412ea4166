//! A format chosen by name, checked once: [`ReasoningParser`] and [`ToolParser`] hold the
//! format itself, so a stage that receives one reads its table without looking the name
//! up again. On the wire (and in flags) it is the name; an unknown name fails to decode.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ConfigError, ReasoningFormat, ToolFormat};

/// A family of formats that can be looked up by name.
pub trait Format: Sync + 'static {
    /// The format's name (vLLM's).
    fn name(&self) -> &'static str;
    /// The format called `name`.
    fn lookup(name: &str) -> Result<&'static Self, ConfigError>;
}

impl Format for ReasoningFormat {
    fn name(&self) -> &'static str {
        self.name
    }
    fn lookup(name: &str) -> Result<&'static Self, ConfigError> {
        crate::reasoning_format(name)
    }
}

impl Format for ToolFormat {
    fn name(&self) -> &'static str {
        self.name
    }
    fn lookup(name: &str) -> Result<&'static Self, ConfigError> {
        crate::tool_format(name)
    }
}

/// A checked format name.
pub struct Named<F: 'static>(pub &'static F);

/// A reasoning parser, checked when it was named.
pub type ReasoningParser = Named<ReasoningFormat>;

/// A tool-call parser, checked when it was named.
pub type ToolParser = Named<ToolFormat>;

impl<F: Format> Named<F> {
    /// The format's table.
    pub fn format(&self) -> &'static F {
        self.0
    }

    /// The format's name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl<F> Clone for Named<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Named<F> {}

impl<F: Format> PartialEq for Named<F> {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl<F: Format> Eq for Named<F> {}

impl<F: Format> fmt::Debug for Named<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<F: Format> fmt::Display for Named<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<F: Format> FromStr for Named<F> {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Self, ConfigError> {
        F::lookup(name).map(Named)
    }
}

impl<F: Format> Serialize for Named<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de, F: Format> Deserialize<'de> for Named<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_checked_once_and_carries_its_table() {
        let r: ReasoningParser = "qwen3".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.format().close, "</think>");
        assert_eq!(r.to_string(), "qwen3");
        let t: Result<ToolParser, _> = "hermez".parse();
        assert!(t.is_err_and(|e| e.to_string().contains("known: hermes")));
    }
}
