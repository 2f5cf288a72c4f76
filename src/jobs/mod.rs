//! What a job is once accepted: its stored spec, its state machine, its
//! attempt log, and the task that travels through the apalis queue.
//!
//! These types are a wire format shared by the app, the worker and the
//! monitor; change them only in backwards-compatible ways (new optional
//! fields, new enum variants), because records written by an older version
//! are still in Redis when a newer one reads them.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{EndpointId, EventId, EventType, JobId, Label, NewJob, TargetUrl, TenantId};

/// Where a job is in its life.
///
/// ```text
/// queued ──> delivering ──> succeeded
///   ^            │  ^
///   │            v  │
///   │        scheduled (retry at next_attempt_at)
///   │            │
///   └─ requeue ─ failed (after the last retry)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is sending it now.
    Delivering,
    /// Waiting for its next attempt at `next_attempt_at`.
    Scheduled,
    /// A 2xx answer was received.
    Succeeded,
    /// Every attempt of the current cycle failed; waits for a requeue.
    Failed,
    /// A delivery kept while its endpoint is disabled: it goes out when the
    /// endpoint is enabled again, or on a requeue or recover.
    Held,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 6] =
        [Self::Queued, Self::Delivering, Self::Scheduled, Self::Succeeded, Self::Failed, Self::Held];

    /// The name used in Redis keys, JSON and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivering => "delivering",
            Self::Scheduled => "scheduled",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Held => "held",
        }
    }

    /// True once nothing more will happen without a person acting.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// The immutable part of a job: what to send where. Stored once, as JSON,
/// when the job is accepted.
///
/// A job posted to `/hook_slinger/` names its destination and payload. A
/// delivery of an event is a job too, written by the expansion script
/// (`store/lua/expand.lua`): its `delivery` names the event and the
/// endpoint, `to_url` is the endpoint's URL when the event was fanned out
/// (for listings; each attempt goes to the endpoint's URL at that moment),
/// and `payload` is empty, because the body is the event's envelope, kept
/// once with the event rather than once per endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// Format version of this record.
    pub v: u8,
    /// Where to POST.
    pub to_url: TargetUrl,
    /// Outbound `Authorization` header; stored as is (the worker sends it),
    /// never shown in `Debug` output or logs.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::serialize_exposed")]
    pub to_auth: Option<SecretString>,
    /// Optional group label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Label>,
    /// Optional tag label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Label>,
    /// The JSON object POSTed.
    pub payload: Map<String, Value>,
    /// Retries this job asked for (instead of `MAX_RETRIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The event and endpoint, for a delivery of an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryRef>,
    /// An operational event for the operator (`OPERATIONAL_WEBHOOK_URL`),
    /// signed with `OPERATIONAL_WEBHOOK_SECRET` (see `operational`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operational: bool,
}

/// What a delivery delivers: one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRef {
    /// The tenant both belong to.
    pub tenant: TenantId,
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The endpoint.
    pub endpoint_id: EndpointId,
}

impl JobSpec {
    /// The current record format.
    pub const VERSION: u8 = 1;
}

impl From<NewJob> for JobSpec {
    fn from(job: NewJob) -> Self {
        Self {
            v: Self::VERSION,
            to_url: job.to_url,
            to_auth: job.to_auth,
            group: job.group,
            tag: job.tag,
            payload: job.payload,
            max_retries: job.max_retries,
            delivery: None,
            operational: false,
        }
    }
}

/// One delivery attempt, as recorded in the job's attempt log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based number over the job's whole life (requeues continue it).
    pub attempt: u32,
    /// Which retry cycle this attempt belongs to (0 before any requeue).
    pub cycle: u32,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long until the answer or the error.
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, when it did (never contains the payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker that made the attempt.
    pub worker: String,
    /// Selected response headers, when the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<std::collections::BTreeMap<String, String>>,
    /// The first 4 KiB of the response body, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// True when the response body was longer than what was kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub response_truncated: bool,
}

/// A job as stored: its spec, where it is, and what happened so far.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// What to send where.
    pub spec: JobSpec,
    /// Current state.
    pub state: JobState,
    /// When the job was accepted.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// Attempts made over the job's whole life.
    pub attempts: u32,
    /// Retry cycle: 0, then +1 on each requeue.
    pub cycle: u32,
    /// Attempts made in the current cycle.
    pub cycle_attempts: u32,
    /// When the next attempt is due (state `scheduled`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last HTTP status received.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
    /// Why the job stopped without being delivered (state `failed`).
    pub stop_reason: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<Attempt>,
}

/// What travels through the apalis queue: only a pointer into our job
/// record, never the payload, so the queue stays small and the record stays
/// the single source of truth.
///
/// `cycle` and `attempt` make every queue task unique and let the handler
/// recognise a stale or duplicated task (one whose attempt was already
/// made) and skip it: handlers are idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum QueueTask {
    /// Make attempt number `attempt` (1-based within `cycle`) of `job_id`.
    DeliverV1 {
        /// The job.
        job_id: JobId,
        /// The retry cycle this attempt belongs to.
        cycle: u32,
        /// The attempt number within the cycle.
        attempt: u32,
    },
    /// Expand an event into its deliveries, page by page (see
    /// `crate::events`). Any worker may also take over an expansion whose
    /// expander went quiet, so this task is a prompt, not the only way.
    ExpandV1 {
        /// A unique task id.
        id: String,
        /// The tenant.
        tenant: TenantId,
        /// The event.
        event_id: EventId,
        /// Endpoints it matched when accepted (sizes the first page).
        #[serde(default)]
        expected: u64,
    },
    /// Make several attempts (of different jobs). apalis-redis spends about
    /// ten Redis commands on each task whatever it carries, so the attempts
    /// accepted or falling due together travel as one task (at most
    /// [`QueueTask::MAX_ATTEMPTS`]). Each job records the id of the task
    /// that carries its attempt (the reconciler looks for it).
    DeliverBatchV1 {
        /// The task id, unique per batch.
        id: String,
        /// The attempts.
        attempts: Vec<AttemptRef>,
    },
}

/// One attempt of one job, as a queue task names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The job.
    pub job_id: JobId,
    /// The retry cycle this attempt belongs to.
    pub cycle: u32,
    /// The attempt number within the cycle.
    pub attempt: u32,
}

impl QueueTask {
    /// Attempts per batch task at most: large enough that the queue's cost
    /// per job is small, small enough that a burst spreads over workers.
    pub const MAX_ATTEMPTS: usize = 32;

    /// The apalis task id: deterministic, so that pushing the same task
    /// twice is a no-op in apalis-redis (`HSETNX`).
    pub fn task_id(&self) -> String {
        match self {
            Self::DeliverV1 { job_id, cycle, attempt } => format!("{job_id}.{cycle}.{attempt}"),
            Self::DeliverBatchV1 { id, .. } | Self::ExpandV1 { id, .. } => id.clone(),
        }
    }

    /// How many attempts this task makes.
    pub fn len(&self) -> usize {
        match self {
            Self::DeliverV1 { .. } => 1,
            Self::DeliverBatchV1 { attempts, .. } => attempts.len(),
            Self::ExpandV1 { .. } => 0,
        }
    }

    /// Whether it makes no attempt at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch tasks from attempts, each named with the id of the task that
    /// is to carry it (the id its job records); attempts with the same id
    /// go into one task, in order.
    pub fn batches(attempts: impl IntoIterator<Item = (String, AttemptRef)>) -> Vec<Self> {
        let mut tasks: Vec<Self> = Vec::new();
        for (task, attempt) in attempts {
            let same = tasks.iter_mut().rev().find_map(|t| match t {
                Self::DeliverBatchV1 { id, attempts } if *id == task => Some(attempts),
                _ => None,
            });
            match same {
                Some(attempts) => attempts.push(attempt),
                None => tasks.push(Self::DeliverBatchV1 { id: task, attempts: vec![attempt] }),
            }
        }
        tasks
    }

    /// The attempts this task makes.
    pub fn attempts(self) -> Vec<AttemptRef> {
        match self {
            Self::DeliverV1 { job_id, cycle, attempt } => vec![AttemptRef { job_id, cycle, attempt }],
            Self::DeliverBatchV1 { attempts, .. } => attempts,
            Self::ExpandV1 { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_named_alike_share_one_batch_task_in_order() {
        let at = |n: u32| AttemptRef { job_id: JobId::mint(None, None), cycle: 0, attempt: n };
        let (a, b, c) = (at(1), at(2), at(3));
        let tasks = QueueTask::batches([
            ("t.0".to_owned(), a.clone()),
            ("t.1".to_owned(), b.clone()),
            ("t.0".to_owned(), c.clone()),
        ]);
        assert_eq!(
            tasks,
            [
                QueueTask::DeliverBatchV1 { id: "t.0".to_owned(), attempts: vec![a, c] },
                QueueTask::DeliverBatchV1 { id: "t.1".to_owned(), attempts: vec![b] },
            ]
        );
    }

    #[test]
    fn to_auth_is_stored_but_never_shown() {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "v": 1, "to_url": "http://a/", "to_auth": "Bearer s3cret", "payload": {}
        }))
        .unwrap();
        assert!(!format!("{spec:?}").contains("s3cret"));
        let stored = serde_json::to_value(&spec).unwrap();
        assert_eq!(stored["to_auth"], "Bearer s3cret", "the worker reads it back to send it");
    }

    #[test]
    fn queue_task_wire_format_is_stable() {
        let id = JobId::parse("g_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11").unwrap();
        let task = QueueTask::DeliverV1 { job_id: id, cycle: 1, attempt: 2 };
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(
            json,
            r#"{"type":"DeliverV1","job_id":"g_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11","cycle":1,"attempt":2}"#
        );
        assert_eq!(task.task_id(), "g_6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11.1.2");
    }

    #[test]
    fn states_round_trip() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>().unwrap(), st);
        }
    }
}
