//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>):
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//!
//! Why not the `standardwebhooks` crate (1.0.1, the specification's own):
//! its `sign` copies every body into a new `String` to format the signed
//! text (this runs once per delivery and secret), refuses non-UTF-8 bodies,
//! and it brings a second major version of `base64` and the `time` crate,
//! for what is here one HMAC over three slices with the `hmac`/`sha2` crates
//! we already use. What we sign is checked against the specification's test
//! vector below and by an independent verifier (the `standardwebhooks`
//! Python package, `tests/it/rules.rs`).

use base64::{
    alphabet,
    engine::{general_purpose::STANDARD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};

/// Reads secrets as any base64 tool writes them: padding required, the
/// unused low bits of the last character not checked (`openssl` and the
/// JSON Schema pattern in the API document do not check them either).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret, `whsec_<base64>`.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Missing the `whsec_` prefix.
    #[error("signing secrets look like whsec_<base64>")]
    Prefix,
    /// The rest is not base64, or too short to be a real key.
    #[error("the part after whsec_ must be base64 of at least 16 bytes")]
    Key,
    /// A sender's secret that is not base64.
    #[error("must be whsec_<base64> (or the bare base64) of a non-empty key")]
    Foreign,
}

impl SigningSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        let b64 = raw.trim().strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let key = LENIENT.decode(b64).map_err(|_| SecretError::Key)?;
        if key.len() < 16 {
            return Err(SecretError::Key);
        }
        Ok(Self(key))
    }

    /// A key someone else chose, to verify with: `whsec_<base64>` or the
    /// bare base64, as the specification's libraries accept it, of any
    /// non-empty length (the sender's rules, not ours).
    pub fn parse_foreign(raw: &str) -> Result<Self, SecretError> {
        let raw = raw.trim();
        let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
        match LENIENT.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(Self(key)),
            _ => Err(SecretError::Foreign),
        }
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<signature>` for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Whether `signature` (the decoded bytes of one `v1,` entry) signs
    /// this message; compared in constant time.
    pub fn verifies(&self, id: &str, timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
        self.mac(id, timestamp, body).verify_slice(signature).is_ok()
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// The `webhook-signature` header value: one `v1,` entry per secret,
/// separated by spaces, so receivers can rotate secrets without downtime.
pub fn signature_header(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_test_vector() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_malformed_secrets() {
        assert_eq!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), SecretError::Prefix);
        assert_eq!(SigningSecret::parse("whsec_!!!").unwrap_err(), SecretError::Key);
        assert_eq!(SigningSecret::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::Key);
    }

    #[test]
    fn one_entry_per_secret() {
        let a = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = SigningSecret::parse("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUE=").unwrap();
        let h = signature_header(&[a, b], "id", 1, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(h.split(' ').all(|e| e.starts_with("v1,")));
    }
}
