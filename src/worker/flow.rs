//! What a recorded attempt means beyond its job: the breaker's news, an
//! endpoint disabled after too many failures in a row, and the operator's
//! `message.attempt.*` events. The gate itself lives in the store
//! (`store::flows`); this is the worker's side of the story.

use std::sync::Arc;

use crate::{
    delivery::Outcome,
    domain::JobId,
    jobs::{Attempt, JobSpec},
    operational::{AttemptNews, OperationalEvent},
    store::{
        flows::{BreakerChange, Recorded, Verdict},
        NextStep,
    },
};

use super::Runtime;

/// What an attempt says about its receiver. Nothing sent (the endpoint is
/// gone, the destination not allowed) says nothing, so it neither trips a
/// breaker nor disables an endpoint.
pub fn verdict(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Delivered { .. } => Verdict::Ok,
        Outcome::Refused { .. } | Outcome::Unreachable { .. } => Verdict::Fail,
        Outcome::Blocked { .. } | Outcome::Undeliverable { .. } => Verdict::Neutral,
    }
}

/// Acts on a recorded attempt of job `id`. Failures here are logged, never
/// returned: the attempt is recorded, and that is what counts.
pub async fn after_attempt(
    rt: &Arc<Runtime>,
    spec: &JobSpec,
    id: &JobId,
    record: &Attempt,
    next: &NextStep,
    verdict: Verdict,
    recorded: Recorded,
) {
    match recorded.breaker {
        BreakerChange::Opened => {
            rt.metrics.flow_event("breaker_opened");
            tracing::warn!(failures = recorded.consecutive_failures, "circuit breaker opened");
        }
        BreakerChange::Closed => {
            rt.metrics.flow_event("breaker_closed");
            tracing::info!("circuit breaker closed");
        }
        BreakerChange::None => {}
    }
    // Only deliveries of events raise the rest; operational jobs and plain
    // jobs never do, which is what keeps operational events from feeding
    // each other.
    let Some(to) = &spec.delivery else { return };
    let limits = &rt.flow;
    if verdict == Verdict::Fail
        && limits.disable_after > 0
        && recorded.consecutive_failures >= u64::from(limits.disable_after)
    {
        match rt.endpoints.disable_after_failures(&to.tenant, &to.endpoint_id, recorded.consecutive_failures).await {
            Ok(true) => rt.metrics.flow_event("endpoint_disabled"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, "could not disable a failing endpoint; the next failure tries again")
            }
        }
    }
    let failing_after = limits.failing_after;
    let news = || AttemptNews {
        tenant: to.tenant.clone(),
        endpoint_id: to.endpoint_id.clone(),
        event_id: to.event_id.clone(),
        delivery_id: id.to_string(),
        attempts: record.attempt,
        last_status: record.status,
        last_error: record.error.clone(),
    };
    let event = match next {
        NextStep::RetryAt(_) if failing_after > 0 && record.attempt == failing_after => {
            OperationalEvent::AttemptFailing(news())
        }
        NextStep::Failed(_) if verdict == Verdict::Fail => OperationalEvent::AttemptExhausted(news()),
        NextStep::Succeeded if failing_after > 0 && record.attempt > failing_after => {
            OperationalEvent::AttemptRecovered(news())
        }
        _ => return,
    };
    let kind = event.kind();
    if rt.operator.tell(event).await {
        rt.metrics.operational(kind);
    }
}
