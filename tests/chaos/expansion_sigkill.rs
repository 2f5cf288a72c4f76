//! SIGKILL of the worker that is expanding an event for 5,000 endpoints,
//! between two of its pages: another worker takes the expansion over from
//! its cursor, and every endpoint receives the event, none twice.

use std::time::{Duration, Instant};

use hook_slinger::{
    domain::{NewEvent, TenantId},
    endpoints::{EndpointInput, EndpointService},
    events::{EventService, Posted},
    queue::Queue,
    store,
};
use serde_json::json;

use crate::{helpers::*, support::*};

const ENDPOINTS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn sigkill_the_worker_expanding_a_5000_endpoint_event() {
    let started = Instant::now();
    let tally = Tally::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let tenant = TenantId::parse("chaos-fanout").unwrap();
    let endpoints = EndpointService::new(app.store.clone(), s.destinations.clone(), Duration::from_secs(10));
    for i in 0..ENDPOINTS {
        let input = EndpointInput::parse(json!({"url": tally.url(&format!("/ep/{i}"))}), true).unwrap();
        endpoints.create(tenant.clone(), input).await.unwrap();
    }
    let queue = Queue::new(store::connect(&s.redis).unwrap(), &s);
    let events = EventService::new(app.store.clone(), queue, Duration::from_secs(10));
    // Reconcile quickly: deliveries the victim wrote but did not queue.
    let worker_env = [("RECONCILE_AFTER", "2"), ("WORKER_NAME_PREFIX", "victim")];

    // Kill the expander between pages; an attempt whose expansion was
    // already over when first seen is repeated with a new event.
    let mut tries = 0;
    let (event_id, made_at_kill) = loop {
        tries += 1;
        assert!(tries <= 10, "never caught an expansion in the middle in 10 tries");
        let mut victim = WorkerProcess::start(&s, &worker_env);
        // Let the victim start consuming before the event arrives.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let new = NewEvent::parse(
            json!({"event_type": "order.created", "payload": {"try": tries}}),
            &limits(),
            chrono::Utc::now(),
        )
        .unwrap();
        let Posted::Accepted { event_id, deliveries, .. } = events.post(tenant.clone(), new, None).await.unwrap()
        else {
            panic!("no idempotency key, no conflict");
        };
        assert_eq!(deliveries, ENDPOINTS as u64);
        let caught = loop {
            let made = app.store.events().get(&tenant, &event_id).await.unwrap().unwrap().made;
            if made >= ENDPOINTS as u64 {
                break None;
            }
            if made > 0 {
                victim.signal("-KILL");
                break Some(made);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        victim.signal("-KILL");
        victim.wait(Duration::from_secs(10)).await.expect("killed worker exits");
        if let Some(made) = caught {
            break (event_id, made);
        }
    };
    let made_after_kill = app.store.events().get(&tenant, &event_id).await.unwrap().unwrap().made;
    let _survivor = WorkerProcess::start(&s, &[("RECONCILE_AFTER", "2"), ("WORKER_NAME_PREFIX", "survivor")]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.by_path(event_id.as_str()).len() < ENDPOINTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything duplicated would arrive with the rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = tally.by_path(event_id.as_str());
    let delivered = got.len() as u64;
    let duplicates: u64 = got.values().map(|n| u64::from(n - 1)).sum();
    let outcome = Outcome {
        scenario: "expansion_sigkill",
        sent: 1,
        accepted: ENDPOINTS as u64,
        delivered,
        lost: ENDPOINTS as u64 - delivered,
        duplicates,
        seconds: started.elapsed().as_secs_f64(),
        extra: json!({
            "endpoints": ENDPOINTS,
            "deliveries_made_when_killed": made_at_kill,
            "deliveries_made_when_the_victim_was_gone": made_after_kill,
            "tries": tries,
            "counted": "per endpoint (request path) for the event's webhook-id",
        }),
    };
    outcome.report();
    assert_eq!(outcome.lost, 0, "every endpoint gets the event at least once");
    assert!(made_after_kill < ENDPOINTS as u64, "the kill came mid-expansion");
}

fn limits() -> hook_slinger::domain::Limits {
    hook_slinger::domain::Limits { max_retries: 10, max_delay: Duration::from_secs(3600) }
}
