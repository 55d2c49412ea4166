//! The sampling and stop fields OpenAI's Chat Completions and Completions share (with
//! vLLM's extensions): read from the body and checked in one place for both endpoints.
//!
//! A request body is read in two passes. These shared fields are taken out of the JSON
//! object first and decoded into [`SamplingFields`]; the rest must decode into the
//! endpoint's own struct. A key that neither knows is refused with a 400 naming it, so a
//! misspelt parameter is never silently ignored. (serde's `flatten` would do this in one
//! pass, but it loses the field path in error messages.)

use std::collections::BTreeMap;

use braid_bus::{Sampling, Setup};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The most a bias moves a logit, either way (OpenAI's range; vLLM clamps to it).
const MAX_LOGIT_BIAS: f32 = 100.0;

/// The most stop strings a request may give (OpenAI allows 4; vLLM more).
const MAX_STOP_STRINGS: usize = 16;

/// The fields both OpenAI text endpoints take that decide how tokens are chosen and where
/// the output stops.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct SamplingFields {
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    pub(crate) top_k: Option<i64>,
    pub(crate) min_p: Option<f32>,
    pub(crate) seed: Option<u64>,
    pub(crate) presence_penalty: Option<f32>,
    pub(crate) frequency_penalty: Option<f32>,
    pub(crate) repetition_penalty: Option<f32>,
    pub(crate) logit_bias: Option<Value>,
    pub(crate) n: Option<u32>,
    pub(crate) best_of: Option<u32>,
    pub(crate) stop: Option<Value>,
    #[serde(default)]
    pub(crate) stop_token_ids: Vec<u32>,
    #[serde(default)]
    pub(crate) ignore_eos: bool,
    #[serde(default)]
    pub(crate) include_stop_str_in_output: bool,
    pub(crate) skip_special_tokens: Option<bool>,
}

impl SamplingFields {
    /// The bus's sampling settings, every value range-checked; an error names the field.
    /// `max_tokens` 0 means whatever the model's context leaves (see [`at_least_one`]).
    pub(crate) fn sampling(&self, max_tokens: u32) -> Result<Sampling, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        if self.best_of.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("best_of", "only best_of = 1 is supported"));
        }
        let d = Sampling::default();
        let s = Sampling {
            max_tokens,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k: match self.top_k {
                None | Some(-1) | Some(0) => 0,
                Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
                Some(_) => return Err(ApiError::invalid("top_k", "top_k must be -1 (off) or positive")),
            },
            min_p: self.min_p.unwrap_or(d.min_p),
            seed: self.seed,
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            logit_bias: logit_bias(self.logit_bias.as_ref())?,
            stop_token_ids: self.stop_token_ids.clone(),
            ignore_eos: self.ignore_eos,
            ..d
        };
        if !(0.0..=100.0).contains(&s.temperature) {
            return Err(ApiError::invalid(
                "temperature",
                "temperature must be between 0 and 100",
            ));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", "top_p must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&s.min_p) {
            return Err(ApiError::invalid("min_p", "min_p must be in [0, 1]"));
        }
        for (name, v) in [
            ("presence_penalty", s.presence_penalty),
            ("frequency_penalty", s.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::invalid(name, format!("{name} must be in [-2, 2]")));
            }
        }
        if !(s.repetition_penalty > 0.0 && s.repetition_penalty.is_finite()) {
            return Err(ApiError::invalid(
                "repetition_penalty",
                "repetition_penalty must be positive",
            ));
        }
        Ok(s)
    }

    /// `base` with the request's stop strings and detokenizer choices.
    pub(crate) fn setup(&self, base: Setup) -> Result<Setup, ApiError> {
        Ok(Setup {
            stop: stop_list(self.stop.as_ref())?,
            include_stop_str: self.include_stop_str_in_output,
            skip_special_tokens: self.skip_special_tokens.unwrap_or(base.skip_special_tokens),
            ..base
        })
    }
}

/// A token count the client may leave out but not set to 0, checked under its name.
pub(crate) fn at_least_one(v: Option<u32>, param: &'static str) -> Result<Option<u32>, ApiError> {
    match v {
        Some(0) => Err(ApiError::invalid(param, format!("{param} must be at least 1"))),
        v => Ok(v),
    }
}

/// `logit_bias` as the bus carries it: token ids (JSON object keys, so strings of
/// digits) with their bias, clamped to ±100 as vLLM does, sorted, each token once (the
/// last given wins). The tokenizer stage checks the ids against the vocabulary.
fn logit_bias(v: Option<&Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::invalid(
                "logit_bias",
                "logit_bias must be an object mapping token ids to numbers",
            ))
        }
    };
    // A map by token: sorted, and of two keys naming one token ("7", "07") the last wins.
    let mut bias = BTreeMap::new();
    for (key, value) in map {
        let token = key.trim().parse::<u32>().map_err(|_| {
            ApiError::invalid(
                "logit_bias",
                format!("logit_bias key {key:?} is not a token id (a non-negative integer)"),
            )
        })?;
        let Some(b) = value.as_f64() else {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("logit_bias[{key:?}] must be a number"),
            ));
        };
        bias.insert(token, (b as f32).clamp(-MAX_LOGIT_BIAS, MAX_LOGIT_BIAS));
    }
    Ok(bias.into_iter().collect())
}

/// `stop` as a list: a string, or up to 16 strings.
pub(crate) fn stop_list(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "stop",
            format!("stop must be a string or a list of at most {MAX_STOP_STRINGS} strings"),
        )
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.len() <= MAX_STOP_STRINGS => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Reads a JSON body, turning any problem into an OpenAI-shaped 400 that names the field
/// at fault.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    decode(json(body)?)
}

/// A body as JSON, or a 400 that says it is not.
fn json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the request body is not valid JSON: {e}")))
}

/// A JSON value as `T`; an error names the path to the field at fault.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_body(format!("the request body is not valid: {inner}"))
        } else {
            ApiError::bad_body(format!("the request body is not valid: {path}: {inner}"))
        }
    })
}

/// Reads a body of an endpoint that takes [`SamplingFields`]: those out first, the rest
/// as `T`. A key neither knows is refused, named.
pub(crate) fn parse_with_sampling<T: DeserializeOwned>(body: &[u8]) -> Result<(T, SamplingFields), ApiError> {
    let Value::Object(mut rest) = json(body)? else {
        return Err(ApiError::bad_body(
            "the request body is not valid: expected a JSON object",
        ));
    };
    let (own, shared) = (field_names::<T>(), field_names::<SamplingFields>());
    if let Some(unknown) = rest
        .keys()
        .find(|k| !own.contains(&k.as_str()) && !shared.contains(&k.as_str()))
    {
        return Err(ApiError::bad_body(format!(
            "the request body is not valid: unknown field `{unknown}`"
        )));
    }
    let mut taken = Map::new();
    for name in shared {
        if let Some(v) = rest.remove(*name) {
            taken.insert((*name).to_owned(), v);
        }
    }
    Ok((decode(Value::Object(rest))?, decode(Value::Object(taken))?))
}

/// The field names a struct's `Deserialize` reads, as serde hands them to
/// `deserialize_struct` (empty for anything that is not a struct).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that answers nothing and remembers the fields it was asked for.
    struct Names<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Names<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("names only"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut names));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct R {
            prompt: String,
        }
        let e = parse_with_sampling::<R>(br#"{"prompt": "x", "temperature": "hot"}"#)
            .err()
            .map(|e| e.message);
        assert!(e.as_deref().is_some_and(|m| m.contains("temperature")), "{e:?}");
        let e = parse_with_sampling::<R>(br#"{"prompt": "x", "temprature": 1}"#)
            .err()
            .map(|e| e.message);
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("unknown field `temprature`")),
            "{e:?}"
        );
        let (r, s) =
            parse_with_sampling::<R>(br#"{"prompt": "x", "top_p": 0.5}"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((r.prompt.as_str(), s.top_p), ("x", Some(0.5)));
        assert!(field_names::<R>() == ["prompt"]);
    }

    #[test]
    fn logit_bias_is_clamped_sorted_and_checked() {
        let got = logit_bias(Some(&serde_json::json!({"7": 300, "2": -5.5, "07": 1})));
        assert_eq!(got, Ok(vec![(2, -5.5), (7, 1.0)]));
        let got = logit_bias(Some(&serde_json::json!({"9": -1000})));
        assert_eq!(got, Ok(vec![(9, -100.0)]));
        for bad in [
            serde_json::json!({"x": 1}),
            serde_json::json!({"-1": 1}),
            serde_json::json!({"1": "a"}),
            serde_json::json!([1]),
        ] {
            let e = logit_bias(Some(&bad)).err();
            assert_eq!(e.and_then(|e| e.param).as_deref(), Some("logit_bias"), "{bad}");
        }
    }
}
