//! Constraints to grammars: the one place a request's [`Constraint`] becomes a Lark
//! grammar (llguidance's dialect) and is compiled against the vocabulary. The tokenizer
//! stage calls it at admission, so a bad schema is refused (naming the request field)
//! before any stream starts, and the compiled guide is handed to an engine in the same
//! process ([`GuideHandoff`]) instead of being compiled again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_bus::{Constrain, Constraint, ToolSpec};
use braid_engine::{Guide, Guides, Tokenizer};
use braid_parsers::grammar::{self, Specials};
use braid_parsers::tools::grammar::calls_grammar;
use braid_parsers::ToolParser;

/// Why a constraint cannot be used, naming the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct Refusal {
    /// The request field at fault.
    pub param: String,
    /// What is wrong, for the client.
    pub message: String,
}

/// What grammars are written and compiled with: the vocabulary index and the special
/// tokens tool markup must name as tokens.
#[derive(Debug, Clone)]
pub struct Grammars {
    guides: Option<Guides>,
    specials: Specials,
}

impl Grammars {
    /// Grammars for `tokenizer`'s vocabulary; `guides` is `None` when it has no
    /// byte-level BPE table (then every constraint is refused).
    pub fn new(guides: Option<Guides>, tokenizer: &Tokenizer) -> Grammars {
        Grammars {
            guides,
            specials: Specials::new(tokenizer.special_tokens()),
        }
    }

    /// The grammar text of a constraint and its compiled guide.
    pub fn compile(
        &self,
        constraint: &Constraint,
        tools: &[ToolSpec],
        tool_parser: Option<ToolParser>,
    ) -> Result<(String, Guide), Refusal> {
        let refuse = |message: String| Refusal {
            param: constraint.param.clone(),
            message,
        };
        let lark = match &constraint.kind {
            Constrain::Json(schema) => grammar::json_schema(schema),
            Constrain::Regex(rx) => {
                check_regex_size(rx).map_err(refuse)?;
                grammar::regex(rx)
            }
            Constrain::Choice(options) => grammar::choice(options),
            Constrain::Grammar(g) => g.clone(),
            Constrain::Calls { pick } => {
                let parser = tool_parser.ok_or_else(|| {
                    refuse("enforcing tool calls needs a tool-call parser (start the server with --tool-call-parser)".into())
                })?;
                calls_grammar(parser.format(), tools, pick, &self.specials).map_err(refuse)?
            }
        };
        let guides = self.guides.as_ref().ok_or_else(|| {
            refuse(
                "structured outputs are not available on this server (it has no byte-level BPE tokenizer)"
                    .into(),
            )
        })?;
        metrics::counter!("braid_guide_compiles_total").increment(1);
        let guide = guides.compile(&lark).map_err(|e| {
            let said = match e {
                braid_engine::Error::Grammar(said) => said,
                other => other.to_string(),
            };
            refuse(format!("{}: {said}", constraint.param))
        })?;
        Ok((lark, guide))
    }
}

/// Positions a regex may expand to. Counted repetitions multiply (`(a{1000}){1000}` is
/// a million), and the grammar engine builds them all before it can refuse, for seconds;
/// past this a regex is refused at once.
const MAX_REGEX_POSITIONS: u64 = 100_000;

/// Refuses a regex whose counted repetitions expand past [`MAX_REGEX_POSITIONS`]. A
/// regex this parser cannot read is left to the grammar engine, which names the fault.
fn check_regex_size(rx: &str) -> Result<(), String> {
    use regex_syntax::hir::{Hir, HirKind};
    fn positions(h: &Hir) -> u64 {
        match h.kind() {
            HirKind::Empty | HirKind::Look(_) => 0,
            HirKind::Literal(l) => l.0.len() as u64,
            HirKind::Class(_) => 1,
            HirKind::Capture(c) => positions(&c.sub),
            HirKind::Repetition(r) => {
                positions(&r.sub).saturating_mul(u64::from(r.max.unwrap_or(r.min).max(1)))
            }
            HirKind::Concat(parts) | HirKind::Alternation(parts) => {
                parts.iter().fold(0u64, |n, p| n.saturating_add(positions(p)))
            }
        }
    }
    let Ok(hir) = regex_syntax::Parser::new().parse(rx) else {
        return Ok(());
    };
    let n = positions(&hir);
    if n > MAX_REGEX_POSITIONS {
        return Err(format!(
            "the regex expands to {n} positions (counted repetitions multiply); at most {MAX_REGEX_POSITIONS} can be enforced: use smaller or fewer {{n}} counts"
        ));
    }
    Ok(())
}

/// How long a compiled guide waits for its engine before it is dropped (the request
/// went to an engine in another process, which compiles from the grammar text).
const HANDOFF_TTL: Duration = Duration::from_secs(60);

/// Compiled guides on their way from this process's tokenizer stage to its engine, by
/// request. Matchers cannot travel on the bus; an engine elsewhere compiles the text.
#[derive(Clone, Default)]
pub struct GuideHandoff {
    waiting: Arc<Mutex<HashMap<u64, (Instant, Guide)>>>,
}

impl std::fmt::Debug for GuideHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuideHandoff").finish_non_exhaustive()
    }
}

impl GuideHandoff {
    /// Leaves `guide` for request `id`'s engine.
    pub fn put(&self, id: u64, guide: Guide) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|_, (at, _)| at.elapsed() < HANDOFF_TTL);
        waiting.insert(id, (Instant::now(), guide));
    }

    /// Takes request `id`'s guide, if this process compiled it.
    pub fn take(&self, id: u64) -> Option<Guide> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.remove(&id).map(|(_, g)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_that_expand_past_the_bound_are_refused_before_compiling() {
        assert!(check_regex_size("(a{1000}){1000}").is_err_and(|e| e.contains("1000000 positions")));
        assert!(check_regex_size("[0-9]{3}-[0-9]{4}").is_ok());
        assert!(check_regex_size(r"\w+@\w+\.com").is_ok());
        assert!(
            check_regex_size("(unbalanced").is_ok(),
            "left to the grammar engine"
        );
    }
}
