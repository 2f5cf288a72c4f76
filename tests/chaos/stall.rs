//! Redis stalls in the middle of accepting (`CLIENT PAUSE 2500 WRITE`,
//! longer than `REDIS_TIMEOUT=0.5`): the app answers 503 "may or may not
//! have been stored", and the record is often written after the answer.
//! Sixty clients, half with an `Idempotency-Key`, retry until they get a
//! 202. Every job answered 202 is delivered; a keyed retry gets the first
//! job (queued at once if the first request stopped half-way); a record
//! stored behind a 503 without a key is delivered by the reconciler
//! (counted as `delivered_though_503`); nothing is left `queued`.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{helpers::*, support::*};

const CLIENTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn redis_stall_mid_accept_loses_nothing_and_strands_nothing() {
    let started = Instant::now();
    let redis = ScratchRedis::in_memory();
    let tally = Tally::start().await;
    let s = settings(&[("REDIS_URL", &redis.url()), ("REDIS_TIMEOUT", "0.5"), ("RECONCILE_AFTER", "2")]);
    let app = spawn_app(s.clone()).await;
    let _worker = WorkerProcess::start(&s, &[("REDIS_TIMEOUT", "1"), ("RECONCILE_AFTER", "2")]);

    // The stall begins while the first requests are in flight.
    let pauser = {
        let url = redis.url();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("WRITE").query_async(&mut conn).await.unwrap();
        })
    };
    let clients = (0..CLIENTS).map(|i| {
        let (base, url) = (app.base.clone(), tally.url("/stall"));
        tokio::spawn(async move {
            let http = client();
            let key = (i % 2 == 0).then(|| uuid::Uuid::new_v4().to_string());
            let body = json!({"to_url": url, "payload": {"client": i}});
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            let mut answers: Vec<(u16, Value)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let mut req =
                    http.post(format!("{base}/hook_slinger/")).header("Authorization", format!("Token {TOKEN}"));
                if let Some(k) = &key {
                    req = req.header("Idempotency-Key", k);
                }
                let Ok(resp) = req.json(&body).send().await else {
                    answers.push((0, Value::Null));
                    continue;
                };
                let status = resp.status().as_u16();
                answers.push((status, resp.json().await.unwrap_or(Value::Null)));
                if status == 202 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (key.is_some(), answers)
        })
    });
    let results = futures::future::join_all(clients).await;
    pauser.await.unwrap();

    let mut sent = Sent::default();
    let mut may_have_stored = 0u64;
    let mut keyed_ids = HashSet::new();
    for r in results {
        let (keyed, answers) = r.unwrap();
        for (status, body) in answers {
            sent.sent += 1;
            *sent.outcomes.entry(status.to_string()).or_default() += 1;
            if status == 503 && body["detail"].as_str().is_some_and(|d| d.contains("may or may not")) {
                may_have_stored += 1;
            }
            if status == 202 {
                let id = body["job_id"].as_str().unwrap().to_owned();
                if keyed {
                    keyed_ids.insert(id.clone());
                }
                sent.accepted.push(id);
            }
        }
    }
    let all = tally.wait_all(&sent.accepted, Duration::from_secs(60)).await;
    // One reconciler pass after RECONCILE_AFTER: nothing may still wait.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut waiting = BTreeMap::new();
    for state in [
        hook_slinger::jobs::JobState::Queued,
        hook_slinger::jobs::JobState::Delivering,
        hook_slinger::jobs::JobState::Scheduled,
    ] {
        let n = app.store.ids_in_state(state, 1_000).await.unwrap().len();
        waiting.insert(state.as_str(), n);
    }
    let counts = tally.counts();
    let accepted: HashSet<&String> = sent.accepted.iter().collect();
    let though_503 = counts.keys().filter(|id| !accepted.contains(id)).count();
    let outcome = Outcome::measure(
        "redis_stall_mid_accept",
        &sent,
        &tally,
        started,
        json!({
            "clients": CLIENTS,
            "answers": sent.outcomes,
            "answered_503_may_have_stored": may_have_stored,
            "keyed_jobs": keyed_ids.len(),
            "delivered_though_503": though_503,
            "left_waiting_after_reconcile": waiting,
        }),
    );
    outcome.report();
    assert_eq!(sent.accepted.iter().collect::<HashSet<_>>().len(), CLIENTS, "every client got its 202");
    assert!(all, "every job answered 202 is delivered");
    assert_eq!(outcome.lost, 0);
    assert!(may_have_stored > 0, "the stall was seen, and the 503 says the job may have been stored");
    assert!(waiting.values().all(|&n| n == 0), "nothing left on the way: {waiting:?}");
    let keyed_twice = keyed_ids.iter().filter(|id| counts.get(*id).copied().unwrap_or(0) > 1).count();
    assert_eq!(keyed_twice, 0, "a client with an Idempotency-Key gets its webhook once");
}
