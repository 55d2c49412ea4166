//! The bus's one error type.

use thiserror::Error;

/// What can go wrong on the bus.
#[derive(Debug, Error)]
pub enum Error {
    /// The NATS server could not be reached or refused us.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL (credentials removed).
        url: String,
        /// Why.
        reason: String,
    },
    /// A bus URL that is not `inproc`, `nats://…` or `tls://…`.
    #[error("bad bus URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// Publishing or subscribing failed.
    #[error("bus {verb} on {subject} failed: {reason}")]
    Transport {
        /// publish, subscribe, request.
        verb: &'static str,
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// Nobody listens on a request subject.
    #[error("no replica listens on {subject}")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// A request got no reply in time.
    #[error("no reply on {subject} within {millis} ms")]
    Timeout {
        /// The subject.
        subject: String,
        /// The time waited.
        millis: u64,
    },
    /// A message of another schema version.
    #[error("message of schema version {got} on {subject}; this build speaks version {expected}")]
    Version {
        /// The subject.
        subject: String,
        /// The sender's version.
        got: u16,
        /// Ours.
        expected: u16,
    },
    /// A message that does not decode as the subject's type.
    #[error("malformed message on {subject}: {reason}")]
    Malformed {
        /// The subject.
        subject: String,
        /// The decoder's complaint.
        reason: String,
    },
}

/// The bus's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
