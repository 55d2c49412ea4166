//! braid's bus: the message types exchanged between pipeline stages and one bus interface
//! with an in-process and a NATS transport.
//!
//! Placeholder for the pipeline issue.
