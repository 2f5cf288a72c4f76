//! A source's request counts, read from the store's counters, as the API
//! and the monitor show them.

use std::collections::BTreeMap;

use super::Refusal;

/// A source's requests over the last hour (in 5-minute steps), by result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Accepted and stored as events.
    pub accepted: u64,
    /// Replays of a delivery id already accepted (not delivered again).
    pub duplicate: u64,
    /// Answered 429 (over the source's rate limit).
    pub rate_limited: u64,
    /// Answered 401, per reason: every one of [`Refusal::ALL`] in that
    /// order (zeros included), then any other reason found in the counters.
    pub refused: Vec<(String, u64)>,
}

impl SourceCounts {
    /// The counts in a [`crate::store::sources::Activity`]'s `last_hour`
    /// (keys `accepted`, `duplicate`, `rate_limited`, `refused:<reason>`).
    pub fn of(last_hour: &BTreeMap<String, u64>) -> Self {
        let get = |k: &str| last_hour.get(k).copied().unwrap_or_default();
        let mut refused: Vec<(String, u64)> =
            Refusal::ALL.iter().map(|r| (r.as_str().to_owned(), get(&format!("refused:{}", r.as_str())))).collect();
        for (k, n) in last_hour {
            if let Some(reason) = k.strip_prefix("refused:") {
                if !refused.iter().any(|(r, _)| r == reason) {
                    refused.push((reason.to_owned(), *n));
                }
            }
        }
        Self { accepted: get("accepted"), duplicate: get("duplicate"), rate_limited: get("rate_limited"), refused }
    }

    /// Refused requests, whatever the reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.accepted + self.duplicate + self.rate_limited + self.refused_total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_counts_name_every_reason_in_order_and_keep_unknown_ones() {
        let hour: BTreeMap<String, u64> = [
            ("accepted", 4),
            ("duplicate", 1),
            ("refused:wrong_signature", 2),
            ("refused:stale_timestamp", 1),
            ("refused:something_new", 5),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        let c = SourceCounts::of(&hour);
        assert_eq!((c.accepted, c.duplicate, c.rate_limited), (4, 1, 0));
        let reasons: Vec<(&str, u64)> = c.refused.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert_eq!(
            reasons,
            [
                ("missing_signature", 0),
                ("malformed_signature", 0),
                ("wrong_signature", 2),
                ("stale_timestamp", 1),
                ("something_new", 5)
            ]
        );
        assert_eq!((c.refused_total(), c.total()), (8, 13));
        assert_eq!(SourceCounts::of(&BTreeMap::new()).total(), 0);
    }
}
