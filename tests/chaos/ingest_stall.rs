//! Providers that behave like GitHub while Redis stalls and the worker is
//! SIGKILLed: 400 distinct deliveries (each its own `X-GitHub-Delivery`
//! and body, signed with the source's secret) are POSTed to
//! `/ingest/{source_id}` by 30 clients, each retried with the same
//! delivery id and body on any answer but a 2xx (or no answer) until it
//! gets its 202. In the middle Redis stalls (`CLIENT PAUSE 2500 WRITE`,
//! longer than the app's `REDIS_TIMEOUT=0.5`), then the only worker is
//! SIGKILLed with deliveries at the receiver and another one started.
//!
//! Every delivery is accepted; every event id answered 202 reaches the
//! endpoint (counted per `webhook-id` at a loopback receiver); and no
//! delivery id makes two events: not in the 202 answers (a replay's answer
//! is `duplicate: true` with the first event id), not in Redis (the
//! tenant's stored events, each with the delivery id it came from), and not
//! at the receiver (no `webhook-id` that no answer named). At the end every
//! delivery is sent once more, as GitHub's "Redeliver" does: each is
//! answered as a replay of its first event and delivered no more. Repeats
//! of one event (the kill's cut-off deliveries, at-least-once) are counted,
//! not refused.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use hmac::{Hmac, Mac};
use hook_slinger::{domain::TenantId, jobs::JobState};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{helpers::*, support::*};

/// Distinct provider deliveries.
const DELIVERIES: usize = 400;
/// Concurrent provider clients.
const CLIENTS: usize = 30;
/// Delivery `i` is first sent no earlier than `i` × this after the start,
/// so the requests span the stall and the kill (400 × 15 ms = 6 s).
const PACE: Duration = Duration::from_millis(15);
/// The stall begins this long after the first request.
const STALL_AFTER: Duration = Duration::from_millis(1_500);
/// `CLIENT PAUSE` length (ms): longer than the app's `REDIS_TIMEOUT`.
const STALL_MS: u64 = 2_500;
/// How long one delivery is retried at most, as a provider would.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// A provider's pause after a failed try.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The worker is killed once this many deliveries reached the receiver.
const KILL_AT: u64 = DELIVERIES as u64 / 2;
const SECRET: &str = "chaos-github-secret";
const TENANT: &str = "chaos-ingest";
/// The workers' settings that make a kill cost seconds: a killed worker's
/// claimed attempt is taken again when its lease (`HTTP_TIMEOUT` + 10 s)
/// runs out, 12 s here; tasks lost with it come back after
/// `RECONCILE_AFTER`.
const WORKER_ENV: [(&str, &str); 3] = [("HTTP_TIMEOUT", "2"), ("RECONCILE_AFTER", "2"), ("REDIS_TIMEOUT", "1")];

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as GitHub signs.
fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One provider delivery: its id, body and signature, the same on every try.
struct Delivery {
    id: String,
    body: Vec<u8>,
    signature: String,
}

/// What became of one delivery: every try's outcome (`"202"`, `"503"`,
/// ..., `"timeout"`, `"error"`) and its 202 answers (event id, duplicate).
#[derive(Default)]
struct Tries {
    outcomes: Vec<String>,
    accepted: Option<(String, bool)>,
}

/// POSTs `d` until it gets a 2xx or `RETRY_FOR` runs out.
async fn deliver(http: &reqwest::Client, url: &str, d: &Delivery) -> Tries {
    let mut tries = Tries::default();
    let deadline = Instant::now() + RETRY_FOR;
    while Instant::now() < deadline {
        let sent = http
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/chaos")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", &d.id)
            .header("X-Hub-Signature-256", &d.signature)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                tries.outcomes.push(status.to_string());
                if resp.status().is_success() {
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let event_id = v["event_id"].as_str().unwrap_or_default().to_owned();
                    tries.accepted = Some((event_id, v["duplicate"].as_bool().unwrap_or(false)));
                    return tries;
                }
            }
            Err(e) => tries.outcomes.push(if e.is_timeout() { "timeout" } else { "error" }.to_owned()),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    tries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn ingest_retried_through_a_redis_stall_and_a_worker_sigkill() {
    let started = Instant::now();
    let redis = ScratchRedis::in_memory();
    let tally = Tally::start().await;
    // Slow enough answers that the killed worker has deliveries in flight.
    tally.set_delay(Duration::from_millis(20));
    let s = settings(&[("REDIS_URL", &redis.url()), ("REDIS_TIMEOUT", "0.5"), ("RECONCILE_AFTER", "2")]);
    let app = spawn_app(s.clone()).await;
    let mut victim = WorkerProcess::start(&s, &[WORKER_ENV.as_slice(), &[("WORKER_NAME_PREFIX", "victim")]].concat());

    // The tenant's endpoint and its GitHub source, through the API.
    let auth = format!("Token {TOKEN}");
    let tenant_url = format!("{}/api/v1/tenants/{TENANT}", app.base);
    let ep = app
        .http
        .post(format!("{tenant_url}/endpoints"))
        .header("Authorization", &auth)
        .json(&json!({"url": tally.url("/ingest_stall")}))
        .send()
        .await
        .unwrap();
    assert_eq!(ep.status(), 201, "{:?}", ep.text().await);
    let source = app
        .http
        .post(format!("{tenant_url}/sources"))
        .header("Authorization", &auth)
        .json(&json!({"name": "chaos", "verify": {"scheme": "github", "secret": SECRET}, "rate_limit": 100_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(source.status(), 201);
    let source: Value = source.json().await.unwrap();
    let ingest_url = format!("{}{}", app.base, source["ingest_url"].as_str().unwrap());

    let deliveries: Arc<Vec<Delivery>> = Arc::new(
        (0..DELIVERIES)
            .map(|n| {
                let id = uuid::Uuid::new_v4().to_string();
                let body = json!({"ref": "refs/heads/main", "after": format!("{n:040x}"), "delivery": id, "n": n,
                                  "repository": {"full_name": "acme/shop"}})
                .to_string()
                .into_bytes();
                let signature = sign(&body);
                Delivery { id, body, signature }
            })
            .collect(),
    );

    // The providers: each client takes the next delivery, no earlier than
    // its turn, and retries it until it is accepted.
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (deliveries, next, url) = (deliveries.clone(), next.clone(), ingest_url.clone());
            tokio::spawn(async move {
                let http = client();
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(d) = deliveries.get(i) else { break };
                    tokio::time::sleep_until((t0 + PACE * i as u32).into()).await;
                    done.push((i, deliver(&http, &url, d).await));
                }
                done
            })
        })
        .collect();

    // The stall, in the middle of the requests.
    let pauser = {
        let url = redis.url();
        tokio::spawn(async move {
            tokio::time::sleep_until((t0 + STALL_AFTER).into()).await;
            let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            let _: () =
                redis::cmd("CLIENT").arg("PAUSE").arg(STALL_MS).arg("WRITE").query_async(&mut conn).await.unwrap();
        })
    };

    // The kill, once half the deliveries arrived, and the replacement.
    assert!(tally.wait_total(KILL_AT, Duration::from_secs(30)).await, "deliveries did not reach {KILL_AT}");
    let in_flight_at_kill = tally.in_flight();
    let delivered_at_kill = tally.total();
    let killed_after = t0.elapsed();
    victim.signal("-KILL");
    victim.wait(Duration::from_secs(10)).await.expect("killed worker exits");
    let _replacement =
        WorkerProcess::start(&s, &[WORKER_ENV.as_slice(), &[("WORKER_NAME_PREFIX", "replacement")]].concat());

    let mut tries: Vec<Option<Tries>> = (0..DELIVERIES).map(|_| None).collect();
    for c in futures::future::join_all(clients).await {
        for (i, t) in c.unwrap() {
            tries[i] = Some(t);
        }
    }
    let sending_took = t0.elapsed();
    pauser.await.unwrap();

    // The answers: per delivery, its event id; the requests sent.
    let mut sent = 0u64;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut accepted_after_a_failed_try = 0u64;
    let mut replay_answers = 0u64;
    let mut unaccepted = Vec::new();
    for (d, t) in deliveries.iter().zip(&tries) {
        let t = t.as_ref().expect("every delivery was tried");
        sent += t.outcomes.len() as u64;
        for o in &t.outcomes {
            *outcomes.entry(o.clone()).or_default() += 1;
        }
        match &t.accepted {
            Some((event_id, duplicate)) => {
                answered.entry(&d.id).or_default().insert(event_id.clone());
                accepted_after_a_failed_try += u64::from(t.outcomes.len() > 1);
                replay_answers += u64::from(*duplicate);
            }
            None => unaccepted.push(d.id.clone()),
        }
    }
    let event_ids: HashSet<String> = answered.values().flatten().cloned().collect();

    // Every accepted event reaches the endpoint; then nothing may be left
    // on its way (the kill's claimed attempts come back after their lease,
    // and are delivered again: those are the duplicates).
    let deadline = Instant::now() + Duration::from_secs(40);
    let all_delivered = loop {
        let got = tally.by_message();
        let missing = event_ids.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 {
            break true;
        }
        if Instant::now() > deadline {
            eprintln!("{missing} of {} accepted events still undelivered", event_ids.len());
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let counts: BTreeMap<&str, u64> = loop {
        let counts: BTreeMap<_, _> =
            app.store.counts().await.unwrap().into_iter().map(|(st, n)| (st.as_str(), n)).collect();
        let waiting: u64 =
            [JobState::Queued, JobState::Delivering, JobState::Scheduled].iter().map(|st| counts[st.as_str()]).sum();
        if waiting == 0 || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // GitHub's "Redeliver": every delivery once more, after the fact. Each
    // is a replay: 202 `duplicate: true` with the first event id, nothing
    // delivered again.
    let http = client();
    let redelivered: Vec<Tries> = futures::stream::iter(deliveries.iter())
        .map(|d| deliver(&http, &ingest_url, d))
        .buffered(CLIENTS)
        .collect()
        .await;
    let mut redelivery_not_replay = Vec::new();
    for (d, t) in deliveries.iter().zip(&redelivered) {
        let first = answered.get(d.id.as_str()).and_then(|ids| ids.iter().next());
        match &t.accepted {
            Some((event_id, true)) if Some(event_id) == first => {}
            other => redelivery_not_replay.push((d.id.clone(), other.clone())),
        }
        if let Some((event_id, _)) = &t.accepted {
            answered.entry(&d.id).or_default().insert(event_id.clone());
        }
    }
    // A late repeat would arrive now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The tenant's events in Redis, each with the delivery id it came from.
    let tenant = TenantId::parse(TENANT).unwrap();
    let stored = app.store.events().list(&tenant, None, None, None, 10 * DELIVERIES).await.unwrap();
    let mut stored_by_delivery: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, _) in &stored {
        let ev = app.store.events().get(&tenant, id).await.unwrap().expect("a listed event exists");
        let origin = ev.origin.expect("an ingested event keeps its request");
        stored_by_delivery.entry(origin.delivery_id).or_default().insert(id.to_string());
    }

    // A delivery id that made two events: in the answers, in Redis, or
    // delivered under a `webhook-id` that no answer named.
    let got = tally.by_message();
    let named: HashSet<&String> = answered.values().flatten().collect();
    let unanswered_delivered: Vec<&String> = got.keys().filter(|id| !named.contains(id)).collect();
    let mut events_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (d, ids) in answered.iter() {
        events_of.entry(d).or_default().extend(ids.iter().map(String::as_str));
    }
    for (d, ids) in &stored_by_delivery {
        events_of.entry(d).or_default().extend(ids.iter().map(String::as_str));
    }
    let doubles: Vec<_> = events_of.iter().filter(|(_, ids)| ids.len() > 1).collect();
    let double_events = doubles.len() as u64;

    let delivered = event_ids.iter().filter(|id| got.contains_key(*id)).count() as u64;
    let duplicates: u64 = event_ids.iter().filter_map(|id| got.get(id)).map(|n| u64::from(n - 1)).sum();
    let outcome = Outcome {
        scenario: "ingest_stall",
        sent,
        accepted: answered.len() as u64,
        delivered,
        lost: event_ids.len() as u64 - delivered,
        duplicates,
        seconds: started.elapsed().as_secs_f64(),
        extra: json!({
            "deliveries": DELIVERIES,
            "clients": CLIENTS,
            "answers": outcomes,
            "accepted_after_a_failed_try": accepted_after_a_failed_try,
            "answered_duplicate_true": replay_answers,
            "redelivered_after": redelivered.len(),
            "redeliveries_not_a_replay": redelivery_not_replay.len(),
            "events_stored": stored.len(),
            "delivered_under_an_unanswered_webhook_id": unanswered_delivered.len(),
            "stall_ms": STALL_MS,
            "killed_after_s": (killed_after.as_secs_f64() * 10.0).round() / 10.0,
            "delivered_at_kill": delivered_at_kill,
            "in_flight_at_kill": in_flight_at_kill,
            "sending_took_s": (sending_took.as_secs_f64() * 10.0).round() / 10.0,
            "job_states": counts,
        }),
    };
    outcome.report_with(&[("double_events", double_events)]);

    assert!(unaccepted.is_empty(), "{} deliveries never got a 202 in {RETRY_FOR:?}: {outcomes:?}", unaccepted.len());
    assert_eq!(outcome.accepted, DELIVERIES as u64);
    assert!(outcomes.get("503").copied().unwrap_or(0) > 0, "the stall was seen (503s): {outcomes:?}");
    assert!(all_delivered, "every event id answered 202 is delivered");
    assert_eq!(outcome.lost, 0);
    assert_eq!(double_events, 0, "delivery ids that made two events, e.g. {:?}", &doubles[..doubles.len().min(5)]);
    assert!(
        redelivery_not_replay.is_empty(),
        "{} redeliveries not answered as a replay, e.g. {:?}",
        redelivery_not_replay.len(),
        &redelivery_not_replay[..redelivery_not_replay.len().min(5)]
    );
    assert!(
        unanswered_delivered.is_empty(),
        "{} events delivered that no answer named, e.g. {:?}",
        unanswered_delivered.len(),
        &unanswered_delivered[..unanswered_delivered.len().min(5)]
    );
    assert_eq!(stored.len(), DELIVERIES, "one stored event per delivery");
    for st in [JobState::Queued, JobState::Delivering, JobState::Scheduled, JobState::Failed] {
        assert_eq!(counts[st.as_str()], 0, "nothing left {st} (nor failed): {counts:?}");
    }
}
