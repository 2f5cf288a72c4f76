//! One queue task: claim the attempt, send, record, schedule what is next.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;

use crate::{
    delivery::{Outcome, Verdict},
    jobs::{Attempt, AttemptRef, QueueTask},
    metrics::AttemptOutcome,
    store::{Claim, NextStep, StoreError},
};

use super::Runtime;

/// The apalis handler. Delivery failures never become handler errors: our
/// retry schedule lives in our records (`store`), because apalis-redis
/// 1.0.0 re-runs every failed task at `now + attempt` seconds up to 25
/// times whatever the policy says (WORKAROUND(apalis-redis 1.0.0,
/// APALIS.md #1)). Only infrastructure errors (Redis) are returned, so
/// apalis runs the task again; the claim step makes that safe. A job never
/// waits on apalis for its way forward: before the claim it is `queued` or
/// `scheduled` (if apalis gives up on the task, the reconciler finds the job
/// without one); after it, the claim's lease runs out and the reconciler
/// makes the attempt due again.
///
/// A task may carry several attempts (see [`QueueTask::DeliverBatchV1`]);
/// each waits for one of the worker's `WORKER_CONCURRENCY` delivery slots,
/// then is claimed, so its lease starts when it can run. The task ends when
/// all of them have. If any hit an infrastructure error, the task fails and
/// apalis runs it again; attempts already recorded are then skipped as
/// stale.
///
/// Each attempt runs on its own tokio task, so deliveries spread over every
/// core. (apalis's `.parallelize(tokio::spawn)` does the same, but its
/// executor bound trips the compiler's higher-ranked lifetime inference
/// once the worker future must be `Send`.)
pub async fn deliver(task: QueueTask, rt: Data<Arc<Runtime>>) -> Result<(), BoxDynError> {
    let rt = Arc::clone(&rt);
    if let QueueTask::ExpandV1 { tenant, event_id, expected, .. } = task {
        // An infrastructure error fails the task (apalis runs it again); the
        // event's expansion lease is the way forward if apalis gives up.
        crate::events::expand(&rt.store, &rt.queue, &tenant, &event_id, Some(expected)).await?;
        return Ok(());
    }
    // Attempts name the process, not the shard's apalis worker.
    let name = rt.name.clone();
    let runs: Vec<_> = task.attempts().into_iter().map(|a| spawn_attempt(a, rt.clone(), name.clone())).collect();
    let mut failed = None;
    for run in futures::future::join_all(runs).await {
        match run {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(e.into())),
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Runs one attempt on its own tokio task once a delivery slot is free.
fn spawn_attempt(a: AttemptRef, rt: Arc<Runtime>, name: String) -> tokio::task::JoinHandle<Result<(), BoxDynError>> {
    tokio::spawn(async move {
        let _slot = rt.slots.clone().acquire_owned().await?;
        attempt(a, rt, name).await
    })
}

#[tracing::instrument(name = "deliver", skip_all, fields(job_id, attempt))]
async fn attempt(task: AttemptRef, rt: Arc<Runtime>, worker: String) -> Result<(), BoxDynError> {
    let AttemptRef { job_id, cycle, attempt } = task;
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(&job_id));
    span.record("attempt", attempt);

    // Names this claim: only the holder may record the attempt, so a worker
    // that outlived its lease cannot overwrite what its successor recorded.
    let token = format!("{:016x}", rand::random::<u64>());
    let claim = match rt.store.claim(&job_id, cycle, attempt, &worker, &token, rt.lease).await {
        Ok(claim) => claim,
        Err(e @ StoreError::Corrupt { .. }) => {
            // Running the task again cannot make the record readable.
            tracing::error!(error.message = %e, "cannot read the job record; skipping the task");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let (spec, attempts_before, delivery, flow) = match claim {
        Claim::Ready { spec, attempts_before, delivery, flow } => (spec, attempts_before, delivery, flow),
        Claim::Wait { why, until } => {
            // Parked by flow control: no attempt spent, the slot freed now.
            rt.metrics.flow_wait(why);
            tracing::debug!(reason = why.as_str(), until = %until, "delivery waits (flow control)");
            return Ok(());
        }
        Claim::Held => {
            rt.metrics.flow_event("held");
            tracing::info!("delivery held: its endpoint is disabled");
            return Ok(());
        }
        Claim::Stale(state) => {
            tracing::debug!(%state, "skipping a task whose attempt was already made");
            return Ok(());
        }
        Claim::Missing => {
            tracing::debug!("skipping a task for a job that no longer exists");
            return Ok(());
        }
    };

    let started_at = Utc::now();
    let clock = Instant::now();
    rt.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let in_flight = rt.metrics.in_flight();
    let outcome = match (&delivery, &spec.delivery) {
        (Some(read), Some(to)) => match crate::events::request(to.event_id.as_str(), read, started_at) {
            Ok(request) => rt.deliverer.send_request(&job_id, request).await,
            Err(why) => Outcome::Undeliverable { why: why.to_string() },
        },
        _ if spec.operational => rt.deliverer.send_signed(&job_id, &spec, rt.operator.secrets()).await,
        _ => rt.deliverer.send(&job_id, &spec).await,
    };
    drop(in_flight);
    rt.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    let duration = clock.elapsed();
    let counter =
        if matches!(outcome, Outcome::Delivered { .. }) { &rt.counters.delivered } else { &rt.counters.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    let response = outcome.response();
    let record = Attempt {
        attempt: attempts_before + 1,
        cycle,
        started_at,
        duration_ms: duration.as_millis() as u64,
        status: outcome.status(),
        error: outcome.error(),
        worker,
        response_headers: response.map(|r| r.headers.clone()).filter(|h| !h.is_empty()),
        response_body: response.and_then(|r| r.body.clone()),
        response_truncated: response.is_some_and(|r| r.truncated),
    };
    let host = spec.to_url.host();
    let max_retries = spec.max_retries.unwrap_or(rt.retry.max_retries);
    let next = match rt.retry.decide(&outcome, attempt, max_retries) {
        Verdict::Done => NextStep::Succeeded,
        Verdict::RetryIn(wait) => NextStep::RetryAt(Utc::now() + wait),
        Verdict::Stop(why) => NextStep::Failed(why.to_string()),
    };
    let verdict = super::flow::verdict(&outcome);
    let Some(recorded) = rt.store.finish(&job_id, attempt, &token, &record, next.clone(), &flow, verdict).await? else {
        tracing::warn!("attempt not recorded: its lease ran out and the attempt was handed to another worker");
        return Ok(());
    };
    if let Some(next_up) = recorded.handed.clone() {
        // The slot this attempt freed is reserved for a delivery that was
        // waiting for it: make it now rather than after a scheduler round.
        spawn_attempt(next_up, rt.clone(), record.worker.clone());
    }
    super::flow::after_attempt(&rt, &spec, &job_id, &record, &next, verdict, recorded).await;
    let metric = match &next {
        NextStep::Succeeded => AttemptOutcome::Delivered,
        NextStep::RetryAt(_) => AttemptOutcome::FailedAttempt,
        _ => AttemptOutcome::Failed,
    };
    rt.metrics.attempt_finished(metric, duration);
    if metric == AttemptOutcome::FailedAttempt {
        rt.metrics.retry_scheduled();
    }
    let status = outcome.status().map(i64::from).unwrap_or(-1);
    let ms = record.duration_ms;
    match next {
        NextStep::Succeeded => tracing::info!(host, status, duration_ms = ms, "delivered"),
        NextStep::RetryAt(at) => tracing::warn!(
            host,
            status,
            duration_ms = ms,
            error = record.error.as_deref().unwrap_or(""),
            retry_in_ms = (at - Utc::now()).num_milliseconds().max(0),
            "attempt failed; retry scheduled"
        ),
        NextStep::Failed(why) => tracing::error!(
            host,
            status,
            duration_ms = ms,
            error = record.error.as_deref().unwrap_or(""),
            reason = %why,
            "attempt failed; job failed"
        ),
    }
    Ok(())
}
