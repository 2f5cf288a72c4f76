use std::fmt;

/// A `group` or `tag`: 1 to 64 characters from `A-Z a-z 0-9 - _ . :`.
///
/// Labels become part of job ids, which travel in URL paths and Redis keys,
/// so the alphabet is kept to characters that need no escaping anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty where a label is required.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`Label::MAX_LEN`].
    #[error("must be at most {} characters", Label::MAX_LEN)]
    TooLong,
    /// Contains a character outside the allowed alphabet.
    #[error("may only contain letters, digits, '-', '_', '.' and ':'")]
    BadCharacter,
}

impl Label {
    /// The longest label accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a label; an empty string means "no label" and gives `Ok(None)`.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, LabelError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(LabelError::TooLong);
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
            return Err(LabelError::BadCharacter);
        }
        Ok(Some(Self(raw.to_owned())))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Label {
    type Error = LabelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_optional(&value)?.ok_or(LabelError::Empty)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> Self {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert_eq!(Label::parse_optional("shop.eu-1:orders_v2").unwrap().unwrap().as_str(), "shop.eu-1:orders_v2");
    }

    #[test]
    fn empty_means_absent() {
        assert_eq!(Label::parse_optional(""), Ok(None));
    }

    #[test]
    fn refuses_slashes_spaces_and_long_labels() {
        assert_eq!(Label::parse_optional("a/b"), Err(LabelError::BadCharacter));
        assert_eq!(Label::parse_optional("a b"), Err(LabelError::BadCharacter));
        assert_eq!(Label::parse_optional(&"x".repeat(65)), Err(LabelError::TooLong));
    }
}
