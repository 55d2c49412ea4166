//! braid's pipeline stages as `ractor` actors: ingress, tokenizer, batch executor,
//! detokenizer, reasoning splitter and tool extractor.
//!
//! Placeholder for the pipeline issue. Actors only translate between bus messages and
//! engine or parser calls.
