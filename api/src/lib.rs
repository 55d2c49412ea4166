//! braid's OpenAI-compatible HTTP surface (axum).
//!
//! Placeholder for the API issue.
