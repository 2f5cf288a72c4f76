//! The endpoint operations, one function each, shared by the API, the
//! monitor and the CLI.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    delivery::DestinationPolicy,
    domain::{EndpointId, TenantId},
    jobs::{JobRecord, JobState},
    operational::{EndpointRef, OperationalEvent, Operator},
    store::{
        endpoints::{EndpointWrite, FlowFields, Saved},
        flows::{EndpointStats, FlowNow},
        JobStore, Requeue, StoreError,
    },
};

use super::{Endpoint, EndpointInput, EndpointSecret, InputError, PreviousSecret};

/// Why an endpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The request is not a valid endpoint or change.
    #[error(transparent)]
    Invalid(#[from] InputError),
    /// The URL points where the SSRF guard refuses to deliver.
    #[error("url: not allowed: {0}")]
    Refused(String),
    /// No such endpoint for this tenant.
    #[error("no such endpoint")]
    NotFound,
    /// Others kept changing the endpoint; try again.
    #[error("the endpoint kept changing under this request; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// What a recover did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Failed deliveries given a fresh retry cycle.
    pub recovered: u64,
}

/// Endpoint operations over one store.
#[derive(Clone)]
pub struct EndpointService {
    store: JobStore,
    destinations: DestinationPolicy,
    timeout: Duration,
    operator: Option<Operator>,
}

/// Tries of a read-change-write before giving up on a busy endpoint.
const CHANGE_TRIES: usize = 8;
/// Deliveries requeued per round trip by a recover (and released per round
/// trip when an endpoint is enabled).
const RECOVER_PAGE: usize = 500;
/// Pages of held deliveries released by the call that enables an endpoint;
/// the workers' sweep releases the rest.
const RELEASE_PAGES: usize = 20;

fn write_of(ep: &Endpoint) -> Result<EndpointWrite<'_>, StoreError> {
    let subs = ep.subscriptions();
    let kind = if subs.filtered { "f" } else { "u" };
    let entries = match subs.types {
        None => vec![format!("{kind}:*")],
        Some(types) => types.iter().map(|t| format!("{kind}:{t}")).collect(),
    };
    Ok(EndpointWrite {
        tenant: &ep.tenant,
        id: &ep.id,
        json: serde_json::to_string(ep)?,
        url: ep.url.as_url().as_str(),
        host: ep.url.host(),
        filter: ep.filter.as_ref().map(|f| serde_json::Value::Object(f.as_json().clone()).to_string()),
        created_ms: ep.created_at.timestamp_millis(),
        flow: FlowFields {
            disabled: ep.disabled,
            ordered: ep.ordered,
            rate_limit: ep.rate_limit,
            max_in_flight: ep.max_in_flight,
        },
        entries,
    })
}

fn parse(json: &str) -> Result<Endpoint, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { id: "endpoint".to_owned(), why: e.to_string() })
}

impl EndpointService {
    /// Endpoint operations; `destinations` is the SSRF guard URLs must
    /// pass, `timeout` bounds each operation.
    pub fn new(store: JobStore, destinations: DestinationPolicy, timeout: Duration) -> Self {
        Self { store, destinations, timeout, operator: None }
    }

    /// The same, telling the operator when an endpoint is disabled or
    /// enabled.
    pub fn with_operator(self, operator: Operator) -> Self {
        Self { operator: Some(operator), ..self }
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, EndpointError>>,
    ) -> Result<T, EndpointError> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(EndpointError::Timeout(self.timeout)))
    }

    fn guard(&self, input: &EndpointInput) -> Result<(), EndpointError> {
        if let Some(host) = input.url.as_ref().and_then(|u| u.as_url().host()) {
            self.destinations.check_host(&host).map_err(|b| EndpointError::Refused(b.to_string()))?;
        }
        Ok(())
    }

    /// Registers an endpoint.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn create(&self, tenant: TenantId, input: EndpointInput) -> Result<Endpoint, EndpointError> {
        self.guard(&input)?;
        let ep = input.create(tenant, Utc::now());
        self.bounded(async {
            match self.store.endpoints().save(&write_of(&ep)?, None).await? {
                Saved::Ok(_) => Ok(()),
                // A fresh random id already taken: not in this universe.
                other => Err(StoreError::Corrupt { id: ep.id.to_string(), why: format!("{other:?}") }.into()),
            }
        })
        .await?;
        tracing::info!(endpoint_id = %ep.id, url = %ep.url, "endpoint created");
        Ok(ep)
    }

    /// Reads an endpoint of a tenant.
    pub async fn get(&self, tenant: &TenantId, id: &EndpointId) -> Result<Endpoint, EndpointError> {
        self.bounded(async { Ok(self.read(tenant, id).await?.0) }).await
    }

    /// Reads an endpoint with its flow now (breaker, failures in a row).
    pub async fn get_with_flow(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
    ) -> Result<(Endpoint, FlowNow), EndpointError> {
        self.bounded(async {
            let ep = self.read(tenant, id).await?.0;
            Ok((ep, self.store.flows().endpoint_now(tenant, id).await?))
        })
        .await
    }

    /// An endpoint's delivery statistics.
    pub async fn stats(&self, tenant: &TenantId, id: &EndpointId) -> Result<EndpointStats, EndpointError> {
        self.bounded(async {
            self.read(tenant, id).await?;
            Ok(self.store.flows().endpoint_stats(tenant, id).await?)
        })
        .await
    }

    async fn read(&self, tenant: &TenantId, id: &EndpointId) -> Result<(Endpoint, u64), EndpointError> {
        let read = self.store.endpoints().get(tenant, id).await?.ok_or(EndpointError::NotFound)?;
        Ok((parse(&read.json)?, read.rev))
    }

    /// A page of a tenant's endpoints, oldest first, after the endpoint
    /// `after`.
    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&EndpointId>,
        limit: usize,
    ) -> Result<Vec<Endpoint>, EndpointError> {
        self.bounded(async {
            let page = self.store.endpoints().list(tenant, after, limit).await?;
            Ok(page.iter().map(|json| parse(json)).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Changes an endpoint: read, apply, write if nobody changed it
    /// meanwhile (else again).
    #[tracing::instrument(skip_all, fields(tenant = %tenant, endpoint_id = %id))]
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        input: EndpointInput,
    ) -> Result<Endpoint, EndpointError> {
        self.guard(&input)?;
        let (ep, was_disabled) = self
            .change(tenant, id, move |ep, now| {
                input.clone().apply(ep, now);
            })
            .await?;
        self.disabled_changed(&ep, was_disabled, "manual", None).await;
        Ok(ep)
    }

    /// Disables an endpoint that failed `failures` attempts in a row (the
    /// worker calls this past `ENDPOINT_DISABLE_AFTER_FAILURES`). Returns
    /// whether this call disabled it: of several workers seeing the same
    /// streak, one does, and the operator hears once.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, endpoint_id = %id))]
    pub async fn disable_after_failures(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        failures: u64,
    ) -> Result<bool, EndpointError> {
        // Attempts still out when it was disabled fail too: no write then.
        if self.get(tenant, id).await?.disabled {
            return Ok(false);
        }
        let (ep, was_disabled) = self
            .change(tenant, id, |ep, now| {
                if !ep.disabled {
                    ep.disabled = true;
                    ep.updated_at = now;
                }
            })
            .await?;
        if was_disabled {
            return Ok(false);
        }
        tracing::warn!(failures, "endpoint disabled after consecutive failed attempts");
        self.disabled_changed(&ep, was_disabled, "consecutive_failures", Some(failures)).await;
        Ok(true)
    }

    /// After `disabled` flipped: enabled again, its held deliveries go out
    /// (the first pages now, the rest by the workers' sweep); either way,
    /// the operator hears.
    async fn disabled_changed(&self, ep: &Endpoint, was: bool, reason: &'static str, failures: Option<u64>) {
        if ep.disabled == was {
            return;
        }
        let flows = self.store.flows();
        if !ep.disabled {
            for _ in 0..RELEASE_PAGES {
                match flows.release_held(&ep.tenant, &ep.id, RECOVER_PAGE).await {
                    Ok((n, left)) if n > 0 && left > 0 => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error.message = %e, "could not release held deliveries; the sweep will");
                        break;
                    }
                }
            }
        }
        let Some(operator) = &self.operator else { return };
        let endpoint = EndpointRef { tenant: ep.tenant.clone(), endpoint_id: ep.id.clone() };
        let event = if ep.disabled {
            let consecutive_failures = match failures {
                Some(n) => n,
                None => flows.endpoint_now(&ep.tenant, &ep.id).await.map(|f| f.consecutive_failures).unwrap_or(0),
            };
            OperationalEvent::EndpointDisabled { endpoint, reason, consecutive_failures }
        } else {
            OperationalEvent::EndpointEnabled { endpoint }
        };
        let _ = operator.tell(event).await;
    }

    /// Replaces the signing secret (with `secret`, or a fresh one); the old
    /// one keeps signing for `grace`.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, endpoint_id = %id))]
    pub async fn rotate(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        grace: Duration,
        secret: Option<EndpointSecret>,
    ) -> Result<Endpoint, EndpointError> {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let ep = self
            .change(tenant, id, move |ep, now| {
                let new = secret.clone().unwrap_or_else(EndpointSecret::generate);
                let old = std::mem::replace(&mut ep.secret, new);
                ep.previous_secrets.retain(|p| p.expires_at > now);
                if grace > chrono::Duration::zero() {
                    ep.previous_secrets.push(PreviousSecret { secret: old, expires_at: now + grace });
                }
                ep.updated_at = now;
            })
            .await?
            .0;
        tracing::info!("endpoint secret rotated");
        Ok(ep)
    }

    /// Read, apply, write unless someone changed it meanwhile (else again).
    /// Returns the endpoint written and whether it was disabled before.
    async fn change(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        apply: impl Fn(&mut Endpoint, DateTime<Utc>),
    ) -> Result<(Endpoint, bool), EndpointError> {
        self.bounded(async {
            for _ in 0..CHANGE_TRIES {
                let (mut ep, rev) = self.read(tenant, id).await?;
                let was_disabled = ep.disabled;
                apply(&mut ep, Utc::now());
                match self.store.endpoints().save(&write_of(&ep)?, Some(rev)).await? {
                    Saved::Ok(_) => return Ok((ep, was_disabled)),
                    Saved::Missing => return Err(EndpointError::NotFound),
                    Saved::Conflict | Saved::Exists => continue,
                }
            }
            Err(EndpointError::Busy)
        })
        .await
    }

    /// Deletes an endpoint.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, endpoint_id = %id))]
    pub async fn delete(&self, tenant: &TenantId, id: &EndpointId) -> Result<(), EndpointError> {
        let found = self.bounded(async { Ok(self.store.endpoints().delete(tenant, id).await?) }).await?;
        if !found {
            return Err(EndpointError::NotFound);
        }
        tracing::info!("endpoint deleted");
        Ok(())
    }

    /// Gives every failed delivery to this endpoint whose event was created
    /// in `[since, until]` a fresh retry cycle. Not bounded by the request
    /// timeout: it pages through the endpoint's deliveries, each page one
    /// round trip.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, endpoint_id = %id))]
    pub async fn recover(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Recovered, EndpointError> {
        self.get(tenant, id).await?;
        let window = (since.timestamp_millis(), until.timestamp_millis());
        let mut recovered = 0u64;
        let mut offset = 0;
        loop {
            let page = self.store.endpoints().deliveries(tenant, id, window, offset, RECOVER_PAGE).await?;
            let last_page = page.len() < RECOVER_PAGE;
            offset += page.len();
            let states = self.store.states(&page).await?;
            // Held deliveries too: they go out if the endpoint is enabled by
            // now; while it is disabled the gate holds them again.
            let failed: Vec<_> = page
                .into_iter()
                .zip(states)
                .filter(|(_, s)| matches!(s, Some(JobState::Failed | JobState::Held)))
                .map(|(j, _)| j)
                .collect();
            let outcomes = self.store.requeue_many(&failed, Duration::ZERO, 0).await?;
            recovered += outcomes.iter().filter(|o| **o == Requeue::Requeued).count() as u64;
            if last_page {
                break;
            }
        }
        tracing::info!(recovered, "recovered failed deliveries");
        Ok(Recovered { recovered })
    }

    /// Every tenant with endpoints, with how many.
    pub async fn tenants(&self) -> Result<Vec<(String, u64)>, EndpointError> {
        self.bounded(async { Ok(self.store.endpoints().tenants().await?) }).await
    }

    /// An endpoint's latest deliveries, newest first.
    pub async fn recent_deliveries(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        limit: usize,
    ) -> Result<Vec<JobRecord>, EndpointError> {
        self.bounded(async {
            let ids = self.store.endpoints().recent_deliveries(tenant, id, limit).await?;
            Ok(self.store.get_many(&ids).await?)
        })
        .await
    }
}
