//! braid's engine: candle models, paged KV cache, continuous batching and sampling.
//!
//! Placeholder for the engine issue. It will know nothing of the bus or HTTP: the batch
//! executor actor wraps it.
