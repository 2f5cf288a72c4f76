//! The names of the fan-out model: tenants, endpoints, event types and
//! event ids. Each travels in URL paths and Redis keys, so each alphabet
//! is kept to characters that need no escaping there.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Too long.
    #[error("must be at most {0} characters")]
    TooLong(usize),
    /// A character outside the alphabet.
    #[error("may only contain {0}")]
    BadCharacter(&'static str),
    /// Not one of the ids we mint.
    #[error("not an endpoint id: expected ep_ followed by 32 hex digits")]
    NotOurs,
    /// Not one of the source ids we mint.
    #[error("not a source id: expected src_ followed by 32 hex digits")]
    NotASource,
}

fn check(raw: &str, max: usize, allowed: fn(char) -> bool, alphabet: &'static str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > max {
        return Err(NameError::TooLong(max));
    }
    if !raw.chars().all(allowed) {
        return Err(NameError::BadCharacter(alphabet));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> Self {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type! {
    /// A tenant: 1 to 64 of `A-Z a-z 0-9 - _ .`. Tenants need no creation;
    /// one exists while it has an endpoint.
    TenantId
}

impl TenantId {
    /// Parses a tenant id from a URL path.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(
            raw,
            64,
            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'),
            "letters, digits, '-', '_' and '.'",
        )?;
        Ok(Self(raw.to_owned()))
    }
}

name_type! {
    /// An endpoint's id: `ep_` and 32 hex digits, minted by us.
    EndpointId
}

impl EndpointId {
    /// A fresh id.
    pub fn mint() -> Self {
        Self(format!("ep_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Parses an id from a URL path.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let hex = raw.strip_prefix("ep_").ok_or(NameError::NotOurs)?;
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Err(NameError::NotOurs);
        }
        Ok(Self(raw.to_owned()))
    }
}

name_type! {
    /// A source's id: `src_` and 32 hex digits, minted by us. It is the
    /// only name in an ingest URL, so the store places a source by its id
    /// (see `store::sources`).
    SourceId
}

impl SourceId {
    /// A fresh id.
    pub fn mint() -> Self {
        Self(format!("src_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Parses an id from a URL path.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let hex = raw.strip_prefix("src_").ok_or(NameError::NotASource)?;
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Err(NameError::NotASource);
        }
        Ok(Self(raw.to_owned()))
    }
}

name_type! {
    /// An event type such as `order.created`: 1 to 128 of
    /// `A-Z a-z 0-9 - _ . : /`.
    EventType
}

impl EventType {
    /// Parses an event type.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(
            raw,
            128,
            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'),
            "letters, digits, '-', '_', '.', ':' and '/'",
        )?;
        Ok(Self(raw.to_owned()))
    }
}

name_type! {
    /// An event's id, the caller's idempotency key for the event and the
    /// `webhook-id` every delivery of it carries: 1 to 256 printable ASCII
    /// characters without spaces, or `evt_` and 32 hex digits when we mint
    /// it.
    EventId
}

impl EventId {
    /// A fresh id.
    pub fn mint() -> Self {
        Self(format!("evt_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Parses a caller's event id.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check(raw, 256, |c| c.is_ascii_graphic(), "printable ASCII characters without spaces")?;
        Ok(Self(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_their_alphabets() {
        assert!(TenantId::parse("acme-1.eu_west").is_ok());
        assert_eq!(TenantId::parse(""), Err(NameError::Empty));
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
        assert!(EventType::parse("order.created").is_ok());
        assert!(EventType::parse("order created").is_err());
        assert!(EventId::parse("msg 1").is_err());
        assert!(EventId::parse("stripe:evt_1/2").is_ok());
        let ep = EndpointId::mint();
        assert_eq!(EndpointId::parse(ep.as_str()), Ok(ep));
        assert_eq!(EndpointId::parse("ep_xyz"), Err(NameError::NotOurs));
    }
}
