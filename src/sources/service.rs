//! The source operations, one function each, shared by the API and the
//! monitor: the records (create, read, change, delete), and ingest, which
//! turns a provider's request into an event.

use std::time::Duration;

use chrono::Utc;
use poem::http::HeaderMap;
use serde_json::Value;

use crate::{
    config::IntakeSettings,
    domain::{EventId, NewEvent, SourceId, TenantId},
    events::{EventError, EventService, Posted},
    store::{
        endpoints::Saved,
        events::Origin,
        sources::{Activity, Gate},
        IdempotencyClaim, JobStore, StoreError,
    },
};

use super::{input::InputError, Refusal, Source, SourceInput};

/// Why a source operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The request is not a valid source or change.
    #[error(transparent)]
    Invalid(#[from] InputError),
    /// No such source for this tenant.
    #[error("no such source")]
    NotFound,
    /// Others kept changing the source; try again.
    #[error("the source kept changing under this request; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Why an ingested request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No such source.
    #[error("no such source")]
    NotFound,
    /// Over the source's rate limit; try again after this long.
    #[error("too many requests for this source")]
    Limited(Duration),
    /// The signature did not verify.
    #[error("{}", .0.explain())]
    Refused(Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Storing the event failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// An accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The event made of it (for a replay: the first one).
    pub event_id: EventId,
    /// Endpoints it matched.
    pub deliveries: u64,
    /// A replay of a delivery id seen within `IDEMPOTENCY_TTL`: nothing new
    /// is delivered.
    pub duplicate: bool,
}

/// Tries of a read-change-write before giving up on a busy source.
const CHANGE_TRIES: usize = 8;
/// Most sources listed per tenant.
pub const MAX_LISTED: usize = 1_000;
/// Request headers not kept with an ingested request: credentials a
/// provider has no reason to send and a proxy might add.
const UNKEPT_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Source operations over one store.
#[derive(Clone)]
pub struct SourceService {
    store: JobStore,
    events: EventService,
    timeout: Duration,
    default_rate: u32,
    replay_window: Duration,
}

fn parse(json: &str) -> Result<Source, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { id: "source".to_owned(), why: e.to_string() })
}

/// A request's headers as JSON, `[[name, value], ...]` in the order
/// received (repeated headers kept), values as text (bytes outside UTF-8
/// replaced: the body is what signatures cover, and it is kept exactly).
fn headers_json(headers: &HeaderMap) -> String {
    let pairs: Vec<[String; 2]> = headers
        .iter()
        .filter(|(name, _)| !UNKEPT_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| [name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()])
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// The body as JSON: the body itself, or, for a form (GitHub's
/// `application/x-www-form-urlencoded` content type), its `payload` field.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let form = headers
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("application/x-www-form-urlencoded"));
    if form {
        let payload = url::form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v);
        if let Some(v) = payload.and_then(|p| serde_json::from_str(&p).ok()) {
            return Some(v);
        }
    }
    serde_json::from_slice(body).ok()
}

impl SourceService {
    /// Source operations, with `SOURCE_RATE_LIMIT` and `IDEMPOTENCY_TTL`
    /// (the replay window) from `intake`; `timeout` bounds each operation.
    pub fn new(store: JobStore, events: EventService, timeout: Duration, intake: &IntakeSettings) -> Self {
        Self { store, events, timeout, default_rate: intake.source_rate_limit, replay_window: intake.idempotency_ttl }
    }

    /// `SOURCE_RATE_LIMIT`: requests per second a source without its own
    /// `rate_limit` accepts (0: no limit).
    pub fn default_rate_limit(&self) -> u32 {
        self.default_rate
    }

    async fn bounded<T, E: From<StoreError>>(
        &self,
        op: impl std::future::Future<Output = Result<T, E>>,
        timed_out: impl FnOnce(Duration) -> E,
    ) -> Result<T, E> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or_else(|_| Err(timed_out(self.timeout)))
    }

    /// Registers a source.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn create(&self, tenant: TenantId, input: SourceInput) -> Result<Source, SourceError> {
        let source = input.create(self.store.sources().mint(&tenant), tenant, Utc::now());
        let json = serde_json::to_string(&source).map_err(StoreError::from)?;
        self.bounded(
            async {
                match self
                    .store
                    .sources()
                    .save(&source.tenant, &source.id, &json, source.created_at, source.rate_limit, None)
                    .await?
                {
                    Saved::Ok(_) => Ok(()),
                    other => Err(StoreError::Corrupt { id: source.id.to_string(), why: format!("{other:?}") }.into()),
                }
            },
            SourceError::Timeout,
        )
        .await?;
        tracing::info!(source_id = %source.id, scheme = source.verify.scheme_name(), "source created");
        Ok(source)
    }

    async fn read(&self, tenant: &TenantId, id: &SourceId) -> Result<(Source, u64), SourceError> {
        match self.store.sources().get(id).await? {
            Some((owner, json, rev)) if owner == tenant.as_str() => Ok((parse(&json)?, rev)),
            _ => Err(SourceError::NotFound),
        }
    }

    /// Reads a source of `tenant` (another tenant's is not found).
    pub async fn get(&self, tenant: &TenantId, id: &SourceId) -> Result<Source, SourceError> {
        self.bounded(async { Ok(self.read(tenant, id).await?.0) }, SourceError::Timeout).await
    }

    /// A tenant's sources, oldest first (at most [`MAX_LISTED`]).
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<Source>, SourceError> {
        self.bounded(
            async {
                let found = self.store.sources().list(tenant, MAX_LISTED).await?;
                Ok(found.iter().map(|j| parse(j)).collect::<Result<_, _>>()?)
            },
            SourceError::Timeout,
        )
        .await
    }

    /// Changes a source: only the fields given.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, source_id = %id))]
    pub async fn update(&self, tenant: &TenantId, id: &SourceId, input: SourceInput) -> Result<Source, SourceError> {
        self.bounded(
            async {
                for _ in 0..CHANGE_TRIES {
                    let (current, rev) = self.read(tenant, id).await?;
                    let changed = input.clone().apply(current, Utc::now());
                    let json = serde_json::to_string(&changed).map_err(StoreError::from)?;
                    match self
                        .store
                        .sources()
                        .save(tenant, id, &json, changed.created_at, changed.rate_limit, Some(rev))
                        .await?
                    {
                        Saved::Ok(_) => return Ok(changed),
                        Saved::Missing => return Err(SourceError::NotFound),
                        Saved::Conflict | Saved::Exists => continue,
                    }
                }
                Err(SourceError::Busy)
            },
            SourceError::Timeout,
        )
        .await
    }

    /// Deletes a source; the events it made stay.
    pub async fn delete(&self, tenant: &TenantId, id: &SourceId) -> Result<(), SourceError> {
        self.bounded(
            async {
                if self.store.sources().delete(tenant, id).await? {
                    tracing::info!(source_id = %id, "source deleted");
                    Ok(())
                } else {
                    Err(SourceError::NotFound)
                }
            },
            SourceError::Timeout,
        )
        .await
    }

    /// A source's counts over the last hour and its latest requests.
    pub async fn activity(&self, tenant: &TenantId, id: &SourceId) -> Result<Activity, SourceError> {
        self.bounded(
            async {
                self.read(tenant, id).await?;
                Ok(self.store.sources().activity(id, Utc::now()).await?)
            },
            SourceError::Timeout,
        )
        .await
    }

    /// Takes a provider's request: finds the source and checks its rate,
    /// verifies the signature (a refusal is counted and logged, nothing
    /// else kept), then stores the request byte for byte with the event
    /// made of it. Once this returns `Ok` the event is durable.
    #[tracing::instrument(skip_all, fields(source_id = %id))]
    pub async fn ingest(&self, id: &SourceId, headers: &HeaderMap, body: &[u8]) -> Result<Ingested, IngestError> {
        let now = Utc::now();
        let gate = self
            .bounded(async { Ok(self.store.sources().gate(id, now, self.default_rate).await?) }, IngestError::Timeout)
            .await?;
        let source = match gate {
            Gate::Missing => return Err(IngestError::NotFound),
            Gate::Limited(wait) => return Err(IngestError::Limited(wait)),
            Gate::Open(json) => parse(&json)?,
        };
        if let Err(refusal) = source.verify.check(headers, body, now) {
            tracing::info!(reason = refusal.as_str(), "ingest refused");
            self.bounded(
                async { Ok(self.store.sources().refused(id, refusal.as_str(), body.len(), now).await?) },
                IngestError::Timeout,
            )
            .await?;
            return Err(IngestError::Refused(refusal));
        }
        self.accept(&source, headers, body).await
    }

    async fn accept(&self, source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<Ingested, IngestError> {
        let parsed = parse_body(headers, body);
        let delivery_id = source.verify.delivery_id(headers, parsed.as_ref());
        let event = NewEvent {
            event_type: source.event_type(headers, parsed.as_ref()),
            payload: parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned())),
            event_id: None,
            deliver_at: None,
        };
        // A replay of the same delivery id is the first answer again: the
        // claim's fingerprint is the same for every request, so a replay
        // is never a conflict, whatever its body.
        let claim = delivery_id.as_ref().map(|d| IdempotencyClaim {
            key: format!("src:{}:{d}", source.id),
            fingerprint: String::new(),
            ttl: self.replay_window,
        });
        let origin = Origin {
            source: source.id.to_string(),
            raw: body.to_vec(),
            headers: headers_json(headers),
            delivery_id: delivery_id.unwrap_or_default(),
        };
        match self.events.post_from(source.tenant.clone(), event, claim, Some(origin)).await? {
            Posted::Accepted { event_id, deliveries, replay, .. } => {
                tracing::info!(event_id = %event_id, duplicate = replay, "ingested");
                Ok(Ingested { event_id, deliveries, duplicate: replay })
            }
            // Every ingest claim has the same fingerprint: a conflict means
            // the key was written by something else.
            Posted::Conflict => Err(IngestError::Store(StoreError::Corrupt {
                id: source.id.to_string(),
                why: "a replay key with another fingerprint".to_owned(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    #[test]
    fn a_form_bodys_payload_field_is_its_json() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_body(&h, br#"{"a":1}"#), Some(serde_json::json!({"a": 1})));
        assert_eq!(parse_body(&h, b"payload=%7B%22a%22%3A1%7D"), None);
        h.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(parse_body(&h, b"payload=%7B%22a%22%3A1%7D"), Some(serde_json::json!({"a": 1})));
        assert_eq!(parse_body(&h, b"other=1"), None);
    }
}
