//! Endpoint signing secrets: `whsec_<base64>`, generated from 24 random
//! bytes unless the caller brings one, and rotated with a grace period in
//! which the old secret keeps signing beside the new one.

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::delivery::{SecretError, SigningSecret};

/// A checked `whsec_` secret. Stored and shown to the tenant's caller (the
/// API token holder), never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointSecret(String);

impl EndpointSecret {
    /// Random bytes in a generated secret.
    pub const GENERATED_BYTES: usize = 24;

    /// A fresh random secret.
    pub fn generate() -> Self {
        let bytes: [u8; Self::GENERATED_BYTES] = rand::random();
        Self(format!("whsec_{}", STANDARD.encode(bytes)))
    }

    /// Checks a caller's secret.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        SigningSecret::parse(raw)?;
        Ok(Self(raw.trim().to_owned()))
    }

    /// The secret as given, `whsec_...`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key that signs.
    pub fn signing(&self) -> SigningSecret {
        SigningSecret::parse(&self.0).expect("checked when parsed")
    }
}

impl TryFrom<String> for EndpointSecret {
    type Error = SecretError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}

impl From<EndpointSecret> for String {
    fn from(s: EndpointSecret) -> Self {
        s.0
    }
}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(***)")
    }
}

/// A secret replaced by a rotation, signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: EndpointSecret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let s = EndpointSecret::generate();
        assert!(s.expose().starts_with("whsec_"));
        let key = STANDARD.decode(&s.expose()[6..]).unwrap();
        assert_eq!(key.len(), 24);
        assert!(EndpointSecret::parse(s.expose()).is_ok());
        assert_ne!(s, EndpointSecret::generate());
        assert!(!format!("{s:?}").contains("whsec"));
    }
}
