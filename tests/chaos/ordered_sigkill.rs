//! SIGKILL of the worker holding an ordered endpoint's delivery, three
//! times, while 300 events go to it one at a time: every event arrives,
//! and the receiver never sees them go backwards. The only repeat allowed
//! is the at-least-once one: the delivery cut off by a kill is sent again,
//! right after itself, once its lease runs out (nothing behind it may pass
//! it meanwhile, since it is still open).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hook_slinger::{domain::JobId, jobs::JobState};
use poem::{handler, web::Data, EndpointExt, Request, Route};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::{helpers::*, support::*};

const EVENTS: u64 = 300;
/// Kill the delivering worker once this many deliveries arrived.
const KILL_AFTER: [u64; 3] = [50, 150, 250];
/// Long enough that a kill usually lands while a request is at the
/// receiver, short enough for 300 deliveries in a row.
const RECEIVER_DELAY: Duration = Duration::from_millis(30);
/// The workers' settings that make a kill cost seconds, not minutes: a
/// killed worker's claimed attempt is taken again when its lease
/// (`HTTP_TIMEOUT` + 10 s) runs out, so 2 s makes that 12 s; queued
/// deliveries whose task was lost with the worker come back after
/// `RECONCILE_AFTER` rather than the default 30 s.
const WORKER_ENV: [(&str, &str); 2] = [("HTTP_TIMEOUT", "2"), ("RECONCILE_AFTER", "2")];

// ---------------------------------------------------------------- receiver

/// What the receiver saw, in arrival order.
#[derive(Default)]
struct SeqState {
    /// `n` of each delivery, with its arrival time, in the order they came.
    arrivals: Mutex<Vec<(u64, Instant)>>,
    /// Requests being answered now: `n` and the delivery's job id.
    in_flight: Mutex<Vec<(u64, String)>>,
}

/// Takes a request off `in_flight` when its handler ends. (Whether the
/// sender died mid-request is not counted: in the runs here the server did
/// not notice, and the handler ran to its end either way.)
struct Flying<'a> {
    state: &'a SeqState,
    n: u64,
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        let mut flying = self.state.in_flight.lock().unwrap();
        if let Some(i) = flying.iter().position(|(n, _)| *n == self.n) {
            flying.remove(i);
        }
    }
}

#[handler]
async fn seq_handler(req: &Request, body: Vec<u8>, state: Data<&Arc<SeqState>>) -> &'static str {
    let state: &SeqState = state.0;
    // A delivery of an event carries the event's payload under `data`.
    let n = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["data"]["n"].as_u64()).expect("payload has n");
    let job = req.header(hook_slinger::delivery::JOB_ID_HEADER).unwrap_or_default().to_owned();
    // Counted when the whole payload is in: that is a delivery, whether or
    // not its sender lives to read the answer.
    state.arrivals.lock().unwrap().push((n, Instant::now()));
    state.in_flight.lock().unwrap().push((n, job));
    let _flying = Flying { state, n };
    tokio::time::sleep(RECEIVER_DELAY).await;
    "ok"
}

/// A loopback receiver that keeps the order in which `n` arrived. The
/// shared `Tally` counts per job id only; order needs the sequence.
struct SeqReceiver {
    addr: std::net::SocketAddr,
    state: Arc<SeqState>,
    stop: CancellationToken,
}

impl Drop for SeqReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SeqReceiver {
    async fn start() -> Self {
        let state = Arc::new(SeqState::default());
        let app = Route::new().at("/*path", poem::post(seq_handler)).data(state.clone());
        let (addr, stop) = serve("127.0.0.1:0", app).await;
        Self { addr, state, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seq(&self) -> Vec<u64> {
        self.state.arrivals.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.state.arrivals.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }

    fn total(&self) -> u64 {
        self.state.arrivals.lock().unwrap().len() as u64
    }

    fn distinct(&self) -> u64 {
        self.seq().into_iter().collect::<BTreeSet<_>>().len() as u64
    }

    fn in_flight(&self) -> Vec<(u64, String)> {
        self.state.in_flight.lock().unwrap().clone()
    }
}

// ------------------------------------------------------------------ workers

/// The worker processes, named apart so a delivery's `worker` field says
/// which process holds it.
struct Workers {
    s: hook_slinger::config::Settings,
    started: u32,
    live: Vec<(String, WorkerProcess)>,
}

impl Workers {
    fn start(&mut self) {
        self.started += 1;
        let prefix = format!("w{}", self.started);
        let mut env = WORKER_ENV.to_vec();
        env.push(("WORKER_NAME_PREFIX", &prefix));
        let w = WorkerProcess::start(&self.s, &env);
        self.live.push((prefix, w));
    }
}

/// What one kill hit.
struct Kill {
    after: u64,
    /// The delivery at the receiver when its holder was killed.
    in_flight: u64,
    /// The last `n` received before the kill: a kill between the answer
    /// and its record makes this one repeat instead.
    last: u64,
    worker: String,
}

/// Once `after` deliveries arrived, SIGKILLs the worker holding the one at
/// the receiver (read from its record's `worker` field), so the kill cuts
/// an attempt off mid-request rather than hitting an idle process.
async fn kill_holder(app: &TestApp, rx: &SeqReceiver, workers: &mut Workers, after: u64) -> Kill {
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.total() < after {
        assert!(Instant::now() < deadline, "only {} of {after} deliveries arrived", rx.total());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut conn = app.store.connection();
    loop {
        assert!(Instant::now() < deadline, "never found the worker holding a delivery");
        if let Some((n, job)) = rx.in_flight().into_iter().next() {
            let id = JobId::parse(&job).unwrap();
            let key = format!("{}job:{job}", app.store.prefix_of(&id));
            let (state, holder): (Option<String>, Option<String>) =
                redis::cmd("HMGET").arg(key).arg("state").arg("worker").query_async(&mut conn).await.unwrap();
            // Only a claim still out names its holder: a finished delivery
            // keeps the name of the worker that made it.
            let holder = holder.filter(|_| state.as_deref() == Some("delivering")).unwrap_or_default();
            if let Some(i) = workers.live.iter().position(|(p, _)| holder.starts_with(&format!("{p}-"))) {
                let last = rx.seq().last().copied().unwrap_or(n);
                let (prefix, mut w) = workers.live.remove(i);
                w.signal("-KILL");
                w.wait(Duration::from_secs(10)).await.expect("killed worker exits");
                return Kill { after: rx.total(), in_flight: n, last, worker: prefix };
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------- scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn ordered_sigkill() {
    let started = Instant::now();
    let rx = SeqReceiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let t = format!("chaos-ordered-{}", uuid::Uuid::new_v4().simple());
    let http = client();
    let api = |path: String, body: Value| {
        http.post(format!("{}/api/v1/tenants/{t}/{path}", app.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(&body)
            .send()
    };
    let resp = api("endpoints".into(), json!({"url": rx.url("/ordered"), "ordered": true})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());

    // One at a time, each accepted before the next is sent: the order the
    // deliveries are made in is the order of `n`.
    let posting = Instant::now();
    let (mut accepted, mut answers) = (0u64, BTreeMap::<String, u64>::new());
    for n in 0..EVENTS {
        let status = match api("events".into(), json!({"event_type": "seq", "payload": {"n": n}})).await {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".to_owned(),
        };
        accepted += u64::from(status == "202");
        *answers.entry(status).or_default() += 1;
    }
    let posting = posting.elapsed();

    let mut workers = Workers { s: s.clone(), started: 0, live: Vec::new() };
    workers.start();
    let mut kills = Vec::new();
    for (k, after) in KILL_AFTER.into_iter().enumerate() {
        kills.push(kill_holder(&app, &rx, &mut workers, after).await);
        workers.start();
        if k == 0 {
            // From here on two processes compete for the claims: the gate,
            // not a lone worker, has to keep the order.
            workers.start();
        }
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    while rx.distinct() < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if rx.distinct() == EVENTS {
        app.wait_count(JobState::Succeeded, EVENTS, Duration::from_secs(30)).await;
    }
    // A late duplicate would come with the rest.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let seq = rx.seq();
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for n in &seq {
        *counts.entry(*n).or_default() += 1;
    }
    let delivered = (0..EVENTS).filter(|n| counts.contains_key(n)).count() as u64;
    let duplicates = seq.len() as u64 - counts.len() as u64;
    // The order: never backwards; a repeat only right after itself.
    let backwards: Vec<(usize, u64, u64)> =
        seq.windows(2).enumerate().filter(|(_, w)| w[1] < w[0]).map(|(k, w)| (k + 1, w[0], w[1])).collect();
    let repeated: Vec<u64> = seq.windows(2).filter(|w| w[1] == w[0]).map(|w| w[1]).collect();
    let at_kills: BTreeSet<u64> = kills.iter().flat_map(|k| [k.in_flight, k.last]).collect();
    let unexplained: Vec<u64> = repeated.iter().copied().filter(|n| !at_kills.contains(n)).collect();
    let times = rx.times();
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    // The pace of one delivery after another (receiver delay, then the
    // wake of the next and its claim), and the stall a kill costs.
    let median_gap = gaps.get(gaps.len() / 2).copied().unwrap_or_default();
    let longest_pause = gaps.last().copied().unwrap_or_default();

    let outcome = Outcome {
        scenario: "ordered_sigkill",
        sent: EVENTS,
        accepted,
        delivered,
        lost: accepted.saturating_sub(delivered),
        duplicates,
        seconds: started.elapsed().as_secs_f64(),
        extra: json!({
            "in_order": backwards.is_empty() && unexplained.is_empty(),
            "backwards": backwards.len(),
            "repeated": repeated,
            "kills": kills.iter().map(|k| json!({
                "after": k.after, "in_flight": k.in_flight, "last": k.last, "worker": k.worker,
            })).collect::<Vec<_>>(),
            "workers_started": workers.started,
            "longest_pause_s": (longest_pause.as_secs_f64() * 10.0).round() / 10.0,
            "median_gap_ms": median_gap.as_millis() as u64,
            "posting_s": (posting.as_secs_f64() * 10.0).round() / 10.0,
            "receiver_delay_ms": RECEIVER_DELAY.as_millis() as u64,
            "worker_env": WORKER_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "answers": answers,
        }),
    };
    outcome.report();
    assert_eq!(accepted, EVENTS, "every event is accepted: {answers:?}");
    assert_eq!(
        outcome.lost,
        0,
        "never received: {:?}",
        (0..EVENTS).filter(|n| !counts.contains_key(n)).collect::<Vec<_>>()
    );
    assert!(backwards.is_empty(), "went backwards at (index, before, after): {backwards:?}");
    assert!(unexplained.is_empty(), "repeated but not in flight at a kill: {unexplained:?} (kills at {at_kills:?})");
    assert!(duplicates <= kills.len() as u64, "{duplicates} duplicates from {} kills", kills.len());
}
