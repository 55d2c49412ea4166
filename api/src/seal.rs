//! Sealed reasoning: braid's own authenticated encryption of the reasoning it produced.
//! One mechanism serves every protocol that hands reasoning to the client and expects it
//! back: an Anthropic thinking block's `signature` and a Responses reasoning item's
//! `encrypted_content` are both a seal of that reasoning's text. A seal that comes back
//! and opens proves braid wrote that reasoning, and restores it when the client kept only
//! the seal (Anthropic's `display: "omitted"`, Responses' `store: false`), on any
//! replica that shares the key.
//!
//! A seal is URL-safe base64 (no padding) of a version byte, a random 24-byte nonce and
//! XChaCha20-Poly1305's ciphertext of the text. The key is SHA-256 of a domain label and
//! the operator's secret (`--signing-key`), so any passphrase works and the same secret
//! gives the same key everywhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The first byte of every seal: the format, so a later one can be told apart.
const VERSION: u8 = 1;
/// Bytes of an XChaCha20 nonce.
const NONCE: usize = 24;
/// Bound to every seal, so braid's seals open only as reasoning.
const CONTEXT: &[u8] = b"braid reasoning seal";

/// Seals and opens reasoning under one key.
#[derive(Clone)]
pub struct Seal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(<key>)")
    }
}

impl Seal {
    /// The seal keyed by an operator's secret (any string; the same on every replica).
    pub fn from_secret(secret: &str) -> Seal {
        let mut hash = Sha256::new();
        hash.update(b"braid-signing-key-v1\0");
        hash.update(secret.as_bytes());
        Seal {
            cipher: XChaCha20Poly1305::new(&hash.finalize()),
        }
    }

    /// A seal under a random key: seals open only in this process, until it exits.
    pub fn random() -> Seal {
        Seal {
            cipher: XChaCha20Poly1305::new(&XChaCha20Poly1305::generate_key(&mut OsRng)),
        }
    }

    /// `text`, sealed.
    pub fn seal(&self, text: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: text.as_bytes(),
            aad: CONTEXT,
        };
        // Encryption fails only for messages over 256 GiB, which no request carries.
        let sealed = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut bytes = Vec::with_capacity(1 + NONCE + sealed.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The text of a seal this key made; `None` for anything else (another key, a
    /// changed byte, not a seal at all).
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.trim_end_matches('=')).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < NONCE {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE);
        let payload = Payload {
            msg: ciphertext,
            aad: CONTEXT,
        };
        let text = self.cipher.decrypt(XNonce::from_slice(nonce), payload).ok()?;
        String::from_utf8(text).ok()
    }
}

/// How sealed reasoning that comes back is checked: the same rules for an Anthropic
/// thinking block's `signature` and a Responses reasoning item's `encrypted_content`.
pub(crate) struct Signatures<'a> {
    pub(crate) seal: &'a Seal,
    /// Refuse reasoning whose seal does not open, rather than render it as sent.
    pub(crate) strict: bool,
    /// The request field a refusal names (`messages`, `input`).
    pub(crate) param: &'static str,
}

impl Signatures<'_> {
    /// The reasoning of a `what` (`thinking`, …) sent back with its `text` and `sealed`
    /// copy: the sealed text when it opens to `text` (or `text` is empty), else `text`
    /// as sent, counted (or refused when strict; the error names `at`).
    pub(crate) fn restore(
        &self,
        text: &str,
        sealed: Option<&str>,
        what: &'static str,
        at: &str,
    ) -> Result<String, ApiError> {
        match sealed.and_then(|s| self.seal.open(s)) {
            Some(opened) if text.is_empty() || text == opened => Ok(opened),
            _ => {
                self.invalid(what, at)?;
                Ok(text.to_owned())
            }
        }
    }

    /// Counts a `what` whose seal did not open (`braid_thinking_signature_invalid_total`);
    /// when strict, refuses it.
    pub(crate) fn invalid(&self, what: &'static str, at: &str) -> Result<(), ApiError> {
        metrics::counter!("braid_thinking_signature_invalid_total", "block" => what).increment(1);
        if self.strict {
            return Err(ApiError::invalid(
                self.param,
                format!("{at}: this {what} was not sealed by this server for its text (the server runs with --strict-signatures)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Seal;

    #[test]
    fn a_seal_opens_under_its_key_only() {
        let a = Seal::from_secret("one");
        let sealed = a.seal("I should list the files.");
        assert_eq!(a.open(&sealed).as_deref(), Some("I should list the files."));
        assert_eq!(
            Seal::from_secret("one").open(&sealed).as_deref(),
            Some("I should list the files.")
        );
        assert_eq!(Seal::from_secret("two").open(&sealed), None);
        assert_eq!(Seal::random().open(&sealed), None);
        // Two seals of one text differ (fresh nonce), and both open.
        let again = a.seal("I should list the files.");
        assert_ne!(sealed, again);
        assert!(a.open(&again).is_some());
    }

    #[test]
    fn a_changed_or_foreign_seal_does_not_open() {
        let seal = Seal::from_secret("k");
        let sealed = seal.seal("reasoning");
        for i in [0, 5, sealed.len() / 2, sealed.len() - 1] {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap_or_default();
            assert_eq!(seal.open(&changed), None, "byte {i} changed");
        }
        for foreign in ["", "sig-round1-abc", "AAAA", "EqQKPwgCEAE", "not base64 at all!"] {
            assert_eq!(seal.open(foreign), None, "{foreign:?}");
        }
        assert_eq!(seal.open(&seal.seal("")).as_deref(), Some(""));
    }
}
