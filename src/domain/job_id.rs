use std::fmt;

use super::Label;

/// A job's id: `<group>_<tag>_<uuid>`, leaving out absent labels.
///
/// The shape is the original Hook Slinger's, minus its `None_None_` prefix
/// for missing labels. Ids are minted once and never change: retries and
/// requeues keep them, and receivers deduplicate on them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

/// Why a string is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobIdError {
    /// Does not end in a UUID, or carries characters ids never contain.
    #[error("not a job id: expected `[<group>_][<tag>_]<uuid>`")]
    Malformed,
}

impl JobId {
    /// Mints a fresh id for a job with these labels.
    pub fn mint(group: Option<&Label>, tag: Option<&Label>) -> Self {
        let uuid = uuid::Uuid::new_v4();
        let mut id = String::with_capacity(2 * Label::MAX_LEN + 38);
        for label in [group, tag].into_iter().flatten() {
            id.push_str(label.as_str());
            id.push('_');
        }
        id.push_str(&uuid.hyphenated().to_string());
        Self(id)
    }

    /// Parses an id received from a caller (a URL path, a CLI argument).
    pub fn parse(raw: &str) -> Result<Self, JobIdError> {
        let uuid_len = 36;
        // Ids are ASCII; checking first also keeps the split below on a
        // character boundary.
        if !raw.is_ascii() || raw.len() < uuid_len || raw.len() > 2 * (Label::MAX_LEN + 1) + uuid_len {
            return Err(JobIdError::Malformed);
        }
        let (prefix, uuid) = raw.split_at(raw.len() - uuid_len);
        if uuid::Uuid::try_parse(uuid).is_err() {
            return Err(JobIdError::Malformed);
        }
        if !(prefix.is_empty() || prefix.ends_with('_')) {
            return Err(JobIdError::Malformed);
        }
        if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
            return Err(JobIdError::Malformed);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = JobIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(s: &str) -> Label {
        Label::parse_optional(s).unwrap().unwrap()
    }

    #[test]
    fn leaves_out_absent_labels() {
        let bare = JobId::mint(None, None);
        assert_eq!(bare.as_str().len(), 36);
        assert!(!bare.as_str().contains("None"));
        let tagged = JobId::mint(None, Some(&label("dhl")));
        assert!(tagged.as_str().starts_with("dhl_"));
        let both = JobId::mint(Some(&label("shop")), Some(&label("dhl")));
        assert!(both.as_str().starts_with("shop_dhl_"));
    }

    #[test]
    fn minted_ids_parse_back() {
        let id = JobId::mint(Some(&label("g")), Some(&label("t")));
        assert_eq!(JobId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn refuses_garbage() {
        assert!(JobId::parse("nope").is_err());
        assert!(JobId::parse("a/b_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11").is_err());
        assert!(JobId::parse("ab6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11").is_err());
        assert!(JobId::parse("\u{80}6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11").is_err(), "no panic on non-ASCII");
    }
}
