//! Bulk actions and the attempt log stay bounded however much there is.

use std::time::Duration;

use chrono::Utc;
use hook_slinger::{
    domain::JobId,
    jobs::JobState,
    monitor::console::{Console, Selection},
    store::{flows::Verdict, Claim, JobStore, NextStep, ATTEMPT_LOG_MAX},
};

use super::{monitor_settings, store_jobs};
use crate::helpers::{attempt, spawn_app};

/// Makes attempt `n` of cycle 0 and records it with `next`.
pub async fn fail_attempt(store: &JobStore, id: &JobId, n: u32, next: NextStep) {
    let claim = store.claim(id, 0, n, "test", "tok", Duration::from_secs(60)).await.unwrap();
    let Claim::Ready { flow, .. } = claim else { panic!("attempt {n}: {claim:?}") };
    let recorded = store.finish(id, n, "tok", &attempt(n), next, &flow, Verdict::Neutral).await.unwrap();
    assert!(recorded.is_some());
}

#[tokio::test]
async fn the_attempt_log_keeps_the_latest_attempts_and_the_full_count() {
    let app = spawn_app(monitor_settings(&[])).await;
    let id = JobId::parse(&store_jobs(&app.store, 1, None, Utc::now()).await[0]).unwrap();
    let total = ATTEMPT_LOG_MAX as u32 + 5;
    for n in 1..=total {
        fail_attempt(&app.store, &id, n, NextStep::RetryAt(Utc::now())).await;
    }
    let rec = app.store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.attempts, total);
    assert_eq!(rec.attempt_log.len(), ATTEMPT_LOG_MAX);
    assert_eq!(rec.attempt_log[0].attempt, 6, "the oldest attempts went first");
    assert_eq!(rec.attempt_log.last().unwrap().attempt, total);
}

#[tokio::test]
async fn bulk_requeue_is_bounded_per_call_and_spread_over_time() {
    let s = monitor_settings(&[]);
    let app = spawn_app(s.clone()).await;
    let ids: Vec<JobId> =
        store_jobs(&app.store, 5, Some("bulk"), Utc::now()).await.iter().map(|id| JobId::parse(id).unwrap()).collect();
    for id in &ids {
        fail_attempt(&app.store, id, 1, NextStep::Failed("test".into())).await;
    }
    let console = Console::new(&s).unwrap();
    let selection =
        Selection { group: hook_slinger::domain::Label::parse_optional("bulk").unwrap(), tag: None, host: None };

    let first = console.requeue_failed_upto(&selection, 3).await.unwrap();
    assert_eq!((first.requeued, first.more), (3, true));
    let second = console.requeue_failed_upto(&selection, 3).await.unwrap();
    assert_eq!((second.requeued, second.more), (2, false));

    // One millisecond apart (BULK_REQUEUE_RATE = 1,000/s), not all at once.
    let mut due: Vec<i64> = Vec::new();
    for id in &ids {
        let rec = app.store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.state, JobState::Scheduled);
        due.push(rec.next_attempt_at.unwrap().timestamp_millis());
    }
    due.sort();
    due.dedup();
    // Requeued all at once, a slice would share one due time (two distinct
    // times for two slices at most); spread, the first slice alone has three.
    assert!(due.len() >= 3, "due times {due:?}");
}
