//! MessagePack encoding of envelopes, with the schema version checked on the way in.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::message::SCHEMA_VERSION;

/// Encodes a message once into the bytes every transport sends.
pub fn encode<T: Serialize>(message: &T) -> Bytes {
    // Serialising plain data into a Vec cannot fail; an empty payload would be refused
    // by the receiver as malformed, never misread.
    let mut buf = Vec::with_capacity(128);
    match rmp_serde::encode::write(&mut buf, message) {
        Ok(()) => Bytes::from(buf),
        Err(_) => Bytes::new(),
    }
}

/// Decodes a message that arrived on `subject`. A payload of another schema version is
/// [`Error::Version`]; anything else that does not decode is [`Error::Malformed`].
pub fn decode<T: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<T> {
    match rmp_serde::from_slice::<T>(payload) {
        Ok(v) => match version_of(payload) {
            Some(got) if got != SCHEMA_VERSION => Err(version_error(subject, got)),
            _ => Ok(v),
        },
        Err(e) => match version_of(payload) {
            Some(got) if got != SCHEMA_VERSION => Err(version_error(subject, got)),
            _ => Err(Error::Malformed {
                subject: subject.to_owned(),
                reason: e.to_string(),
            }),
        },
    }
}

fn version_error(subject: &str, got: u16) -> Error {
    Error::Version {
        subject: subject.to_owned(),
        got,
        expected: SCHEMA_VERSION,
    }
}

/// The version field of an envelope, `[[version, ...], body]`, whatever the rest holds
/// (`None` for anything not shaped like an envelope).
fn version_of(mut payload: &[u8]) -> Option<u16> {
    if rmp::decode::read_array_len(&mut payload).ok()? != 2 {
        return None;
    }
    rmp::decode::read_array_len(&mut payload).ok()?;
    rmp::decode::read_int(&mut payload).ok()
}

/// Logs and counts a message that could not be used (`braid_bus_bad_messages_total`);
/// never fatal.
pub fn count_bad_message(stage: crate::Stage, e: &Error) {
    let reason = match e {
        Error::Version { .. } => "version",
        _ => "malformed",
    };
    metrics::counter!("braid_bus_bad_messages_total", "stage" => stage.as_str(), "reason" => reason)
        .increment(1);
    tracing::warn!("{stage}: dropped a message: {e}");
}
