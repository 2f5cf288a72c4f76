//! Paging through jobs newest first, filtered by state, labels, destination
//! host or id, for the monitor, its CLI and the API's listing endpoint.
//!
//! A page is one Lua call (`monitor_page.lua`) that walks the most selective
//! index by rank and looks at a bounded number of entries, so a page costs
//! the same with a thousand jobs stored or a million. The cursor is the last
//! entry a page looked at (`<creation ms>:<job id>`): jobs created later
//! land before it and jobs that change state leave the indexes without
//! shifting it, so paging on while jobs arrive neither repeats nor skips a
//! job.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use redis::Script;

use crate::{
    domain::{JobId, Label},
    jobs::JobState,
};

use super::{from_ms, JobStore, StoreError};

/// The largest page a caller may ask for.
pub const MAX_PAGE: usize = 500;

/// Index entries one page may look at. With filters that match rarely a
/// page can come back short (even empty) with a cursor to continue from;
/// that is the price of never scanning everything.
const PAGE_BUDGET: usize = 5_000;

static PAGE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/monitor_page.lua")));

/// Which jobs to list; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs with this group.
    pub group: Option<Label>,
    /// Only jobs with this tag.
    pub tag: Option<Label>,
    /// Only jobs sent to this host (as stored: lower case, no port).
    pub host: Option<String>,
    /// Only this job (a direct lookup).
    pub id: Option<JobId>,
}

/// Where the next page starts: the last index entry the previous page
/// looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    score: i64,
    id: String,
}

/// A cursor string that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: expected `<number>:<job id>` as returned in `next_cursor`")]
pub struct CursorError;

impl FromStr for Cursor {
    type Err = CursorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Ids may contain ':' (labels allow it); the score never does.
        let (score, id) = s.split_once(':').ok_or(CursorError)?;
        let score = score.parse().map_err(|_| CursorError)?;
        if id.is_empty() || id.len() > 256 {
            return Err(CursorError);
        }
        Ok(Self { score, id: id.to_owned() })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.score, self.id)
    }
}

/// One row of a listing: a job without its spec and attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The id.
    pub id: String,
    /// Current state.
    pub state: JobState,
    /// Group label.
    pub group: Option<String>,
    /// Tag label.
    pub tag: Option<String>,
    /// Destination host.
    pub host: String,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// Attempts over the job's life.
    pub attempts: u32,
    /// Last HTTP status received.
    pub last_status: Option<u16>,
    /// Last error.
    pub last_error: Option<String>,
    /// When the next attempt is due (state `scheduled`).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<JobSummary>,
    /// Pass this to get the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

const FIELDS: [&str; 10] = [
    "state",
    "group",
    "tag",
    "host",
    "created_at",
    "updated_at",
    "attempts",
    "last_status",
    "last_error",
    "next_attempt_at",
];

fn summary(id: &str, f: &[Option<String>]) -> Result<Option<JobSummary>, StoreError> {
    let text = |i: usize| f.get(i).cloned().flatten().filter(|v| !v.is_empty());
    let num = |i: usize| text(i).and_then(|v| v.parse::<i64>().ok());
    let Some(state) = text(0) else { return Ok(None) };
    let state = state
        .parse()
        .map_err(|e: crate::jobs::UnknownState| StoreError::Corrupt { id: id.to_owned(), why: e.to_string() })?;
    Ok(Some(JobSummary {
        id: id.to_owned(),
        state,
        group: text(1),
        tag: text(2),
        host: text(3).unwrap_or_default(),
        created_at: from_ms(num(4).unwrap_or_default()),
        updated_at: from_ms(num(5).unwrap_or_default()),
        attempts: num(6).unwrap_or_default() as u32,
        last_status: num(7).map(|s| s as u16),
        last_error: text(8),
        next_attempt_at: num(9).map(from_ms),
    }))
}

impl JobFilter {
    fn matches(&self, job: &JobSummary) -> bool {
        self.state.is_none_or(|s| s == job.state)
            && self.group.as_ref().is_none_or(|g| job.group.as_deref() == Some(g.as_str()))
            && self.tag.as_ref().is_none_or(|t| job.tag.as_deref() == Some(t.as_str()))
            && self.host.as_ref().is_none_or(|h| job.host == *h)
    }
}

impl JobStore {
    /// One page of jobs matching `filter`, newest first, starting after
    /// `after`. `limit` is clamped to 1..=[`MAX_PAGE`].
    #[tracing::instrument(skip_all, fields(limit))]
    pub async fn list(&self, filter: &JobFilter, after: Option<&Cursor>, limit: usize) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        if let Some(id) = &filter.id {
            let fields: Vec<Option<String>> =
                redis::cmd("HMGET").arg(self.job_key(id)).arg(&FIELDS[..]).query_async(&mut self.connection()).await?;
            let jobs = summary(id.as_str(), &fields)?.filter(|j| filter.matches(j)).into_iter().collect();
            return Ok(Page { jobs, next: None });
        }
        let pages =
            futures::future::try_join_all(self.parts.iter().map(|part| self.page_in(part, filter, after, limit)))
                .await?;
        Ok(merge(pages, limit))
    }

    /// One shard's page: its jobs after `after`, and where it stopped
    /// looking (`None`: it has nothing more).
    async fn page_in(
        &self,
        part: &super::Part,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let label = |l: &Option<Label>| l.as_ref().map(|l| l.as_str().to_owned()).unwrap_or_default();
        let flat: Vec<String> = PAGE
            .key(&part.all)
            .arg(&part.prefix)
            .arg(after.map(|c| c.score.to_string()).unwrap_or_default())
            .arg(after.map(|c| c.id.as_str()).unwrap_or_default())
            .arg(limit)
            .arg(PAGE_BUDGET)
            .arg(filter.state.map(JobState::as_str).unwrap_or_default())
            .arg(label(&filter.group))
            .arg(label(&filter.tag))
            .arg(filter.host.clone().unwrap_or_default())
            .invoke_async(&mut self.connection())
            .await?;
        let next = match (flat.first(), flat.get(1)) {
            (Some(score), Some(id)) if !score.is_empty() => {
                Some(Cursor { score: score.parse().unwrap_or_default(), id: id.clone() })
            }
            _ => None,
        };
        let mut jobs = Vec::with_capacity(limit);
        for row in flat.get(2..).unwrap_or_default().chunks_exact(FIELDS.len() + 1) {
            let fields: Vec<Option<String>> = row[1..].iter().cloned().map(Some).collect();
            jobs.extend(summary(&row[0], &fields)?);
        }
        Ok(Page { jobs, next })
    }
}

/// Listing order, newest first: creation time, then id, both descending
/// (as `ZRANGE ... REV` orders equal scores, byte-wise).
fn key_of(job: &JobSummary) -> (i64, &[u8]) {
    (job.created_at.timestamp_millis(), job.id.as_bytes())
}

/// One page from every shard's page. A shard that stopped early (its page
/// budget or its limit) has looked only as far as its cursor; jobs past the
/// least advanced such cursor are left for the next page, so none is
/// skipped. One shard's page passes through unchanged.
fn merge(pages: Vec<Page>, limit: usize) -> Page {
    let frontier: Option<Cursor> = pages
        .iter()
        .filter_map(|p| p.next.clone())
        .max_by(|a, b| (a.score, a.id.as_bytes()).cmp(&(b.score, b.id.as_bytes())));
    let mut jobs: Vec<JobSummary> = pages.into_iter().flat_map(|p| p.jobs).collect();
    jobs.sort_by(|a, b| key_of(b).cmp(&key_of(a)));
    if let Some(f) = &frontier {
        jobs.retain(|j| key_of(j) >= (f.score, f.id.as_bytes()));
    }
    if jobs.len() > limit {
        jobs.truncate(limit);
        let last = jobs.last().map(|j| Cursor { score: j.created_at.timestamp_millis(), id: j.id.clone() });
        return Page { jobs, next: last };
    }
    Page { jobs, next: frontier }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_ids_with_colons() {
        let c: Cursor = "1700000000123:g:1_t_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11".parse().unwrap();
        assert_eq!(c.score, 1_700_000_000_123);
        assert_eq!(c.id, "g:1_t_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11");
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
    }

    fn job(ms: i64, id: &str) -> JobSummary {
        JobSummary {
            id: id.to_owned(),
            state: JobState::Queued,
            group: None,
            tag: None,
            host: String::new(),
            created_at: from_ms(ms),
            updated_at: from_ms(ms),
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at: None,
        }
    }

    #[test]
    fn merging_shards_never_passes_a_shard_that_stopped_early() {
        // Shard A ran out of budget after looking at (50, "m"); shard B is
        // done. B's older jobs wait for the next page, which starts at A's cursor.
        let a = Page { jobs: vec![job(90, "a")], next: Some(Cursor { score: 50, id: "m".to_owned() }) };
        let b = Page { jobs: vec![job(80, "b"), job(50, "n"), job(40, "c")], next: None };
        let page = merge(vec![a, b], 10);
        let ids: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "n"]);
        assert_eq!(page.next, Some(Cursor { score: 50, id: "m".to_owned() }));
        // A full page ends at its last job, newest first across shards.
        let a = Page { jobs: vec![job(90, "a"), job(70, "x")], next: None };
        let b = Page { jobs: vec![job(80, "b"), job(70, "y")], next: None };
        let page = merge(vec![a, b], 3);
        let ids: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "y"]);
        assert_eq!(page.next, Some(Cursor { score: 70, id: "y".to_owned() }));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["", "abc", "12", "x:id", "12:"] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad}");
        }
    }
}
