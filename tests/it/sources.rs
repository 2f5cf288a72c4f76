//! Sources, through the HTTP API: providers' webhooks posted to
//! `/ingest/{id}`, verified, stored byte for byte and fanned out to the
//! tenant's endpoints by a real worker to a real receiver. Every signature
//! a test sends is made by an independent implementation: Python's `hmac`
//! and `hashlib`, and the `standardwebhooks` package from PyPI.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    fanout::{api, endpoint},
    helpers::{settings, spawn_app, spawn_worker, Received, Receiver, TestApp, TOKEN},
    rules::verify_with_standardwebhooks,
};

fn tenant(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
/// Stripe keys its HMAC with the whole string, `whsec_` included.
const STRIPE_SECRET: &str = "whsec_stripe_test_0123456789";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_OTHER: &str = "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const HMAC_SECRET: &str = "home-grown s3cret";

/// The secret of each scheme's source in these tests.
fn secret_of(scheme: &str) -> &'static str {
    match scheme {
        "github" => GITHUB_SECRET,
        "stripe" => STRIPE_SECRET,
        "standard-webhooks" => SW_SECRET,
        "hmac-sha256" => HMAC_SECRET,
        _ => "",
    }
}

/// The `hmac-sha256` source of these tests: base64 after a prefix, with a
/// delivery id header.
fn hmac_verify(secret: &str) -> Value {
    json!({"scheme": "hmac-sha256", "secret": secret, "header": "X-Signature", "encoding": "base64",
           "prefix": "hmac=", "id_header": "X-Delivery"})
}

/// The Python with the `standardwebhooks` package (`make pyenv`), or None
/// outside CI when there is none (as `verify_with_standardwebhooks` does).
fn standardwebhooks_python() -> Option<String> {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let python =
                std::env::var("STANDARDWEBHOOKS_PYTHON").unwrap_or_else(|_| "target/pyenv/bin/python".to_owned());
            let have =
                Command::new(&python).args(["-c", "import standardwebhooks"]).status().is_ok_and(|s| s.success());
            if have {
                return Some(python);
            }
            assert!(std::env::var("CI").is_err(), "CI must have the standardwebhooks package (make test installs it)");
            eprintln!("skipping standard-webhooks cases: no {python} with standardwebhooks (run make pyenv)");
            None
        })
        .clone()
}

const SIGN_PY: &str = r#"
import sys, hmac, hashlib, base64
from datetime import datetime, timezone
how, secret, args = sys.argv[1], sys.argv[2], sys.argv[3:]
body = sys.stdin.buffer.read()
mac = lambda data: hmac.new(secret.encode(), data, hashlib.sha256)
if how == 'hex':
    print(mac(body).hexdigest())
elif how == 'base64':
    print(base64.b64encode(mac(body).digest()).decode())
elif how == 'stripe':
    print(mac(args[0].encode() + b'.' + body).hexdigest())
elif how == 'standard-webhooks':
    from standardwebhooks.webhooks import Webhook
    at = datetime.fromtimestamp(int(args[1]), tz=timezone.utc)
    print(Webhook(secret).sign(args[0], at, body.decode('utf-8')))
else:
    sys.exit('unknown: ' + how)
"#;

/// A signature made in Python, not by our code: `hex` or `base64` of
/// HMAC-SHA256(secret, body); `stripe` with `[t]`: hex HMAC of
/// `"<t>." + body`; `standard-webhooks` with `[msg_id, t]`: the package's
/// `v1,<base64>`. The body goes through stdin, as bytes.
fn py_sign(how: &str, secret: &str, body: &[u8], args: &[&str]) -> String {
    let python = if how == "standard-webhooks" {
        standardwebhooks_python().expect("checked by the caller")
    } else {
        "python3".to_owned()
    };
    let mut child = Command::new(python)
        .args(["-c", SIGN_PY, how, secret])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not sign ({how})");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

type Headers = Vec<(String, String)>;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The headers a provider of `scheme` sends with `body`, signed with
/// `secret` at time `t`; `delivery` is its delivery id where the scheme has
/// a header for one (Stripe's is the body's `id`).
fn signed_at(scheme: &str, secret: &str, body: &[u8], delivery: &str, t: i64) -> Headers {
    let t = t.to_string();
    match scheme {
        "github" => h(&[
            ("X-Hub-Signature-256", &format!("sha256={}", py_sign("hex", secret, body, &[]))),
            ("X-GitHub-Delivery", delivery),
        ]),
        "stripe" => h(&[("Stripe-Signature", &format!("t={t},v1={}", py_sign("stripe", secret, body, &[&t])))]),
        "standard-webhooks" => h(&[
            ("webhook-id", delivery),
            ("webhook-timestamp", &t),
            ("webhook-signature", &py_sign("standard-webhooks", secret, body, &[delivery, &t])),
        ]),
        "hmac-sha256" => {
            h(&[("X-Signature", &format!("hmac={}", py_sign("base64", secret, body, &[]))), ("X-Delivery", delivery)])
        }
        "none" => Vec::new(),
        other => panic!("no such scheme {other}"),
    }
}

fn signed(scheme: &str, secret: &str, body: &[u8], delivery: &str) -> Headers {
    signed_at(scheme, secret, body, delivery, now())
}

/// Creates a source of `t`, asserting 201.
async fn source(app: &TestApp, t: &str, body: Value) -> Value {
    let (status, src) = api(app, Method::POST, &format!("/api/v1/tenants/{t}/sources"), Some(body.clone())).await;
    assert_eq!(status, 201, "{body}: {src}");
    src
}

/// What `/ingest/{id}` answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

async fn ingest(app: &TestApp, id: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let mut req = app.http.post(format!("{}/ingest/{id}", app.base)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), retry_after }
}

/// Ingests, asserting 202 and a new (not duplicate) event; its id.
async fn accepted(app: &TestApp, id: &str, headers: &[(String, String)], body: &[u8]) -> String {
    let a = ingest(app, id, headers, body).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["duplicate"], false, "{a:?}");
    a.body["event_id"].as_str().unwrap().to_owned()
}

/// Ingests, asserting 401 for `reason`.
async fn refused(app: &TestApp, id: &str, headers: &[(String, String)], body: &[u8], reason: &str) {
    let a = ingest(app, id, headers, body).await;
    assert_eq!((a.status, a.body["reason"].as_str()), (401, Some(reason)), "{headers:?}: {a:?}");
    assert!(a.body["detail"].is_string(), "{a:?}");
}

async fn requests(app: &TestApp, t: &str, id: &str) -> Value {
    let (status, v) = api(app, Method::GET, &format!("/api/v1/tenants/{t}/sources/{id}/requests"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The ids of the events a tenant has stored.
async fn stored_events(app: &TestApp, t: &str) -> Vec<String> {
    let (status, v) = api(app, Method::GET, &format!("/api/v1/tenants/{t}/events?limit=500"), None).await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

async fn get_event(app: &TestApp, t: &str, event_id: &str) -> Value {
    let (status, ev) = api(app, Method::GET, &format!("/api/v1/tenants/{t}/events/{event_id}"), None).await;
    assert_eq!(status, 200, "{ev}");
    ev
}

fn at(rx: &Receiver, path: &str) -> Vec<Received> {
    rx.received().into_iter().filter(|r| r.path == path).collect()
}

fn envelope(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("a delivery is JSON")
}

/// Anything delivered by mistake would have arrived with what was waited for.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_verified_request_of_each_scheme_is_delivered_once_as_an_event() {
    let sw = standardwebhooks_python().is_some();
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);

    let github_push = json!({"ref": "refs/heads/main", "commits": [{"id": "abc"}], "text": "héllo"});
    let github_other = json!({"zen": "Keep it logically awesome."});
    let stripe = json!({"id": "evt_1Nq", "type": "charge.succeeded", "data": {"object": {"amount": 4200}}});
    let standard = json!({"msg": "from a Standard Webhooks sender", "n": 7});
    let home = json!({"order": 17, "state": "paid"});
    let plain = json!({"anything": ["goes"]});
    // (scheme, source fields, body, extra headers, the type expected)
    let cases = [
        (
            "github",
            json!({"verify": {"scheme": "github", "secret": GITHUB_SECRET}, "default_event_type": "github.other",
                   "event_type_from": {"header": "X-GitHub-Event"}}),
            github_push.clone(),
            h(&[("X-GitHub-Event", "push")]),
            "push",
        ),
        (
            "stripe",
            json!({"verify": {"scheme": "stripe", "secret": STRIPE_SECRET}, "default_event_type": "stripe.other",
                   "event_type_from": {"json_pointer": "/type"}}),
            stripe.clone(),
            Vec::new(),
            "charge.succeeded",
        ),
        (
            "standard-webhooks",
            json!({"verify": {"scheme": "standard-webhooks", "secret": SW_SECRET}, "default_event_type": "sw.message"}),
            standard.clone(),
            Vec::new(),
            "sw.message",
        ),
        ("hmac-sha256", json!({"verify": hmac_verify(HMAC_SECRET)}), home.clone(), Vec::new(), "webhook"),
        (
            "none",
            json!({"verify": {"scheme": "none"}, "default_event_type": "plain.event",
                   "event_type_from": {"header": "X-Kind"}}),
            plain.clone(),
            Vec::new(),
            "plain.event",
        ),
    ];
    let mut expected = Vec::new();
    for (scheme, mut fields, body, extra, typ) in cases {
        if scheme == "standard-webhooks" && !sw {
            continue;
        }
        // A tenant per scheme, each with its endpoint: a delivery's path
        // says whose it is.
        let t = tenant(scheme);
        let path = format!("/{scheme}");
        let ep = endpoint(&app, &t, json!({"url": rx.url(&path)})).await;
        fields["name"] = json!(format!("{scheme} source"));
        let src = source(&app, &t, fields).await;
        let id = src["id"].as_str().unwrap();
        let raw = serde_json::to_vec(&body).unwrap();
        let mut headers = signed(scheme, secret_of(scheme), &raw, &format!("d-{scheme}-1"));
        headers.extend(extra);
        let a = ingest(&app, id, &headers, &raw).await;
        assert_eq!(a.status, 202, "{scheme}: {a:?}");
        assert_eq!((&a.body["deliveries"], &a.body["duplicate"]), (&json!(1), &json!(false)), "{scheme}: {a:?}");
        let event_id = a.body["event_id"].as_str().unwrap().to_owned();
        expected.push((path.clone(), event_id, body, typ, ep.clone()));
        if scheme == "github" {
            // Without the header the type is the default one; a header that
            // is no valid event type falls back to it too.
            for extra in [Vec::new(), h(&[("X-GitHub-Event", "not a type!")])] {
                let raw = serde_json::to_vec(&github_other).unwrap();
                let mut headers = signed(scheme, GITHUB_SECRET, &raw, &uuid::Uuid::new_v4().to_string());
                headers.extend(extra);
                let event_id = accepted(&app, id, &headers, &raw).await;
                expected.push((path.clone(), event_id, github_other.clone(), "github.other", ep.clone()));
            }
        }
    }

    rx.wait_for(expected.len(), Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(rx.received().len(), expected.len(), "one delivery per accepted request");
    for (path, event_id, body, typ, ep) in &expected {
        let got = at(&rx, path);
        let r = got
            .iter()
            .find(|r| r.header("webhook-id") == Some(event_id.as_str()))
            .unwrap_or_else(|| panic!("{path}: no delivery of {event_id}"));
        let env = envelope(r);
        assert_eq!(&env["data"], body, "{path}: data is the JSON body");
        assert_eq!(env["type"], *typ, "{path}");
        chrono::DateTime::parse_from_rfc3339(env["timestamp"].as_str().unwrap()).unwrap();
        // Signed with the endpoint's secret, as any event is.
        verify_with_standardwebhooks(ep["secret"].as_str().unwrap(), r);
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn bad_signatures_are_refused_with_their_reason_counted_and_nothing_stored() {
    let sw = standardwebhooks_python().is_some();
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("refuse");
    endpoint(&app, &t, json!({"url": rx.url("/r")})).await;
    let body = br#"{"id":"evt_refused","type":"x.y","n":1}"#;
    let tampered = br#"{"id":"evt_refused","type":"x.y","n":2}"#;
    let stale = now() - 120;

    let mut schemes = vec!["github", "stripe", "hmac-sha256"];
    if sw {
        schemes.push("standard-webhooks");
    }
    let mut controls = 0;
    for scheme in schemes {
        let verify = match scheme {
            "hmac-sha256" => hmac_verify(HMAC_SECRET),
            // A minute of tolerance: two minutes old is stale.
            "stripe" | "standard-webhooks" => {
                json!({"scheme": scheme, "secret": secret_of(scheme), "tolerance_seconds": 60})
            }
            _ => json!({"scheme": scheme, "secret": secret_of(scheme)}),
        };
        let src = source(&app, &t, json!({"name": scheme, "verify": verify})).await;
        let id = src["id"].as_str().unwrap();
        let other_secret = if scheme == "standard-webhooks" { SW_OTHER } else { "not the secret" };
        let wrong = signed(scheme, other_secret, body, "d-wrong");
        // Signed right, but over another body.
        let swapped = signed(scheme, secret_of(scheme), tampered, "d-swapped");
        refused(&app, id, &[], body, "missing_signature").await;
        refused(&app, id, &wrong, body, "wrong_signature").await;
        refused(&app, id, &swapped, body, "wrong_signature").await;
        let mut counts = json!({"missing_signature": 1, "malformed_signature": 0, "wrong_signature": 2,
                                "stale_timestamp": 0});
        let malformed: Vec<Headers> = match scheme {
            "github" => vec![
                h(&[("X-Hub-Signature-256", "sha1=0123456789abcdef")]),
                h(&[("X-Hub-Signature-256", "sha256=not-hex")]),
            ],
            "stripe" => vec![
                h(&[("Stripe-Signature", "v1=00ff")]),
                h(&[("Stripe-Signature", &format!("t=soon,v1={}", "00".repeat(32)))]),
                h(&[("Stripe-Signature", &format!("t={}", now()))]),
            ],
            "hmac-sha256" => vec![
                h(&[("X-Signature", &py_sign("base64", HMAC_SECRET, body, &[]))]),
                h(&[("X-Signature", "hmac=%%%not base64%%%")]),
            ],
            _ => {
                let good = signed(scheme, SW_SECRET, body, "d-m");
                vec![
                    h(&[("webhook-id", "d-m"), ("webhook-timestamp", "yesterday"), ("webhook-signature", &good[2].1)]),
                    h(&[("webhook-id", "d-m"), ("webhook-timestamp", &good[1].1), ("webhook-signature", "v2,abc")]),
                ]
            }
        };
        for headers in &malformed {
            refused(&app, id, headers, body, "malformed_signature").await;
        }
        counts["malformed_signature"] = json!(malformed.len());
        if scheme == "standard-webhooks" {
            // Only part of the headers.
            let good = signed(scheme, SW_SECRET, body, "d-p");
            refused(&app, id, &good[..2], body, "missing_signature").await;
            counts["missing_signature"] = json!(2);
        }
        if matches!(scheme, "stripe" | "standard-webhooks") {
            // Rightly signed, two minutes old, or two minutes ahead.
            refused(&app, id, &signed_at(scheme, secret_of(scheme), body, "d-old", stale), body, "stale_timestamp")
                .await;
            refused(
                &app,
                id,
                &signed_at(scheme, secret_of(scheme), body, "d-new", now() + 120),
                body,
                "stale_timestamp",
            )
            .await;
            counts["stale_timestamp"] = json!(2);
        }

        let activity = requests(&app, &t, id).await;
        assert_eq!(activity["last_hour"]["refused"], counts, "{scheme}: {activity}");
        assert_eq!(activity["last_hour"]["accepted"], 0, "{scheme}");
        let latest = activity["latest"].as_array().unwrap();
        let total: u64 = counts.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(latest.len() as u64, total, "{scheme}: {activity}");
        assert!(latest.iter().all(|r| r["result"] == "refused" && r["bytes"] == body.len()), "{activity}");
        assert_eq!(
            latest[0]["reason"],
            if counts["stale_timestamp"] == 2 { "stale_timestamp" } else { "malformed_signature" }
        );
        assert!(stored_events(&app, &t).await.len() == controls, "{scheme}: a refusal stores no event");

        // The control: the same body, rightly signed, goes through.
        let fresh = signed(scheme, secret_of(scheme), body, &format!("d-ok-{scheme}"));
        accepted(&app, id, &fresh, body).await;
        controls += 1;
        assert_eq!(requests(&app, &t, id).await["last_hour"]["accepted"], 1);
    }
    rx.wait_for(controls, Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(rx.received().len(), controls, "only the rightly signed requests were delivered");
    assert_eq!(stored_events(&app, &t).await.len(), controls);
    worker.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_is_accepted_beside_the_new_one_until_it_expires() {
    let sw = standardwebhooks_python().is_some();
    let app = spawn_app(settings(&[])).await;
    let t = tenant("rotate");
    let mut cases = vec![("github", "old github secret", "new github secret"), ("stripe", "whsec_old", "whsec_new")];
    if sw {
        cases.push(("standard-webhooks", SW_OTHER, SW_SECRET));
    }
    for (scheme, old, new) in cases {
        let src = source(&app, &t, json!({"name": scheme, "verify": {"scheme": scheme, "secret": old}})).await;
        let id = src["id"].as_str().unwrap();
        let path = format!("/api/v1/tenants/{t}/sources/{id}");
        let body = |n: u32| format!(r#"{{"id":"evt_{scheme}_{n}","n":{n}}}"#).into_bytes();
        accepted(&app, id, &signed(scheme, old, &body(1), "r1"), &body(1)).await;
        refused(&app, id, &signed(scheme, new, &body(2), "r2"), &body(2), "wrong_signature").await;

        let until = chrono::Utc::now() + chrono::Duration::hours(1);
        let rotate = json!({"verify": {"scheme": scheme, "secret": new, "previous_secret": old,
                                       "previous_secret_expires_at": until}});
        let (status, patched) = api(&app, Method::PATCH, &path, Some(rotate)).await;
        assert_eq!(status, 200, "{patched}");
        let shown =
            chrono::DateTime::parse_from_rfc3339(patched["verify"]["previous_secret_expires_at"].as_str().unwrap())
                .unwrap();
        assert_eq!(shown.timestamp(), until.timestamp());
        accepted(&app, id, &signed(scheme, old, &body(3), "r3"), &body(3)).await;
        accepted(&app, id, &signed(scheme, new, &body(4), "r4"), &body(4)).await;

        let expired = json!({"verify": {"scheme": scheme, "secret": new, "previous_secret": old,
                                        "previous_secret_expires_at": chrono::Utc::now() - chrono::Duration::seconds(1)}});
        let (status, patched) = api(&app, Method::PATCH, &path, Some(expired)).await;
        assert_eq!(status, 200, "{patched}");
        refused(&app, id, &signed(scheme, old, &body(5), "r5"), &body(5), "wrong_signature").await;
        accepted(&app, id, &signed(scheme, new, &body(6), "r6"), &body(6)).await;
        let text = serde_json::to_string(&patched).unwrap();
        assert!(!text.contains(old) && !text.contains(new), "{scheme}: a secret is shown: {text}");
        let activity = requests(&app, &t, id).await;
        assert_eq!(activity["last_hour"]["accepted"], 4, "{scheme}: {activity}");
        assert_eq!(activity["last_hour"]["refused"]["wrong_signature"], 2, "{scheme}: {activity}");
    }
}

#[tokio::test]
async fn a_replayed_delivery_is_the_same_event_and_is_delivered_once() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("replay");
    endpoint(&app, &t, json!({"url": rx.url("/r")})).await;
    let github = source(&app, &t, json!({"name": "gh", "verify": {"scheme": "github", "secret": GITHUB_SECRET}})).await;
    let stripe = source(&app, &t, json!({"name": "st", "verify": {"scheme": "stripe", "secret": STRIPE_SECRET}})).await;
    let none = source(&app, &t, json!({"name": "any", "verify": {"scheme": "none"}})).await;
    let (gh, st, any) = (github["id"].as_str().unwrap(), stripe["id"].as_str().unwrap(), none["id"].as_str().unwrap());

    let mut firsts = Vec::new();
    // GitHub: the same delivery sent again (its "Redeliver" button).
    let body = br#"{"action":"opened","number":1}"#;
    let headers = signed("github", GITHUB_SECRET, body, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    // Stripe: the same event, signed again at another time, as its retries are.
    let sbody = br#"{"id":"evt_replayed","type":"invoice.paid"}"#;
    // No id of its own: the Idempotency-Key header.
    let nbody = br#"{"k":"v"}"#;
    let nheaders = h(&[("Idempotency-Key", "key-1")]);
    let stripe_first = signed_at("stripe", STRIPE_SECRET, sbody, "", now() - 30);
    let stripe_again = signed("stripe", STRIPE_SECRET, sbody, "");
    for (id, first, again, body) in [
        (gh, &headers, &headers, &body[..]),
        (st, &stripe_first, &stripe_again, &sbody[..]),
        (any, &nheaders, &nheaders, &nbody[..]),
    ] {
        let one = ingest(&app, id, first, body).await;
        let two = ingest(&app, id, again, body).await;
        assert_eq!((one.status, two.status), (202, 202), "{one:?} {two:?}");
        assert_eq!(one.body["duplicate"], false);
        assert_eq!(two.body["duplicate"], true, "{two:?}");
        assert_eq!(one.body["event_id"], two.body["event_id"]);
        assert_eq!(one.body["deliveries"], two.body["deliveries"]);
        firsts.push(one.body["event_id"].as_str().unwrap().to_owned());
        let activity = requests(&app, &t, id).await;
        assert_eq!((&activity["last_hour"]["accepted"], &activity["last_hour"]["duplicate"]), (&json!(1), &json!(1)));
        let latest = activity["latest"].as_array().unwrap();
        assert_eq!((&latest[0]["result"], &latest[1]["result"]), (&json!("duplicate"), &json!("accepted")));
        assert_eq!(latest[0]["event_id"], latest[1]["event_id"]);
        if id == gh {
            assert_eq!(latest[0]["delivery_id"], "72d3162e-cc78-11e3-81ab-4c9367dc0958", "{activity}");
        }
    }
    // Another delivery id is another event.
    let other = signed("github", GITHUB_SECRET, body, "another-delivery");
    firsts.push(accepted(&app, gh, &other, body).await);
    assert_ne!(firsts[0], firsts[3]);
    let other = h(&[("Idempotency-Key", "key-2")]);
    firsts.push(accepted(&app, any, &other, nbody).await);
    // The same delivery three times at once: one event, two duplicates.
    let racing = signed("github", GITHUB_SECRET, body, "sent-thrice-at-once");
    let answers = futures::future::join_all((0..3).map(|_| ingest(&app, gh, &racing, body))).await;
    assert!(answers.iter().all(|a| a.status == 202), "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.body["duplicate"] == false).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|a| a.body["event_id"] == answers[0].body["event_id"]), "{answers:?}");
    firsts.push(answers[0].body["event_id"].as_str().unwrap().to_owned());

    rx.wait_for(firsts.len(), Duration::from_secs(10)).await;
    settle().await;
    let mut got: Vec<String> = rx.received().iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    got.sort();
    firsts.sort();
    assert_eq!(got, firsts, "each event delivered once, replays not at all");
    assert_eq!(stored_events(&app, &t).await.len(), firsts.len());
    worker.shutdown().await;
}

#[tokio::test]
async fn the_raw_body_and_headers_are_kept_and_a_non_json_body_is_delivered_as_text() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("raw");
    endpoint(&app, &t, json!({"url": rx.url("/r")})).await;
    let hex = source(
        &app,
        &t,
        json!({"name": "hex", "verify": {"scheme": "hmac-sha256", "secret": HMAC_SECRET, "header": "X-Sig"}}),
    )
    .await;
    let gh = source(&app, &t, json!({"name": "gh", "verify": {"scheme": "github", "secret": GITHUB_SECRET}})).await;
    let (hex, gh) = (hex["id"].as_str().unwrap(), gh["id"].as_str().unwrap());

    let binary: &[u8] = b"\xff\xfe\x00raw\x80 bytes\n";
    let text: &[u8] = "plain text, not JSON: ünïcode\r\n".as_bytes();
    // JSON, with spacing a re-serialisation would lose.
    let spaced: &[u8] = b"{ \"b\" : [1,  2],\n  \"a\": \"x\" }\n";
    let mut sent = Vec::new();
    for (id, body) in [(hex, binary), (gh, text), (gh, spaced)] {
        let mut headers = if id == hex {
            h(&[("X-Sig", &py_sign("hex", HMAC_SECRET, body, &[])), ("Content-Type", "application/octet-stream")])
        } else {
            signed("github", GITHUB_SECRET, body, &uuid::Uuid::new_v4().to_string())
        };
        headers.extend(h(&[("X-Custom-Trace", "trace-42"), ("Authorization", "Bearer not-to-be-kept")]));
        let event_id = accepted(&app, id, &headers, body).await;
        sent.push((id, body, event_id, headers));
    }

    let got = rx.wait_for(sent.len(), Duration::from_secs(10)).await;
    for (id, body, event_id, headers) in &sent {
        let ev = get_event(&app, &t, event_id).await;
        let ing = &ev["ingested"];
        assert_eq!(ing["source_id"], *id, "{ev}");
        let raw = STANDARD.decode(ing["body_base64"].as_str().unwrap()).unwrap();
        assert_eq!(raw, *body, "the body byte for byte");
        let kept: Vec<(String, String)> = ing["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
            .collect();
        assert!(kept.contains(&("x-custom-trace".to_owned(), "trace-42".to_owned())), "{kept:?}");
        let (sig_name, sig) = &headers[0];
        assert!(kept.contains(&(sig_name.to_lowercase(), sig.clone())), "the signature is kept: {kept:?}");
        assert!(!kept.iter().any(|(k, _)| k == "authorization"), "credentials are not kept: {kept:?}");
        if *id == gh {
            assert_eq!(ing["delivery_id"], headers[1].1.as_str());
        }

        let r = got.iter().find(|r| r.header("webhook-id") == Some(event_id.as_str())).unwrap();
        let data = &envelope(r)["data"];
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => assert_eq!(*data, json),
            Err(_) => assert_eq!(*data, json!(String::from_utf8_lossy(body)), "a non-JSON body is a string"),
        }
        assert_eq!(ev["payload"], *data);
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_is_413_and_stores_nothing() {
    let app = spawn_app(settings(&[("MAX_PAYLOAD_BYTES", "1024")])).await;
    let t = tenant("big");
    let src = source(&app, &t, json!({"name": "n", "verify": {"scheme": "none"}})).await;
    let id = src["id"].as_str().unwrap();
    let a = ingest(&app, id, &[], &vec![b'x'; 1025]).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body["detail"].as_str().unwrap().contains("MAX_PAYLOAD_BYTES"), "{a:?}");
    // A signed source refuses it the same way, before looking at the signature.
    let gh = source(&app, &t, json!({"name": "gh", "verify": {"scheme": "github", "secret": GITHUB_SECRET}})).await;
    let gh = gh["id"].as_str().unwrap();
    let big = vec![b'y'; 4096];
    let a = ingest(&app, gh, &signed("github", GITHUB_SECRET, &big, "d"), &big).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert!(stored_events(&app, &t).await.is_empty());
    // At the limit it is taken.
    accepted(&app, id, &[], &vec![b'x'; 1024]).await;
    assert_eq!(stored_events(&app, &t).await.len(), 1);
}

/// `n` requests to a source at once.
async fn burst(app: &TestApp, id: &str, n: usize) -> Vec<Answer> {
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
    futures::future::join_all(bodies.iter().map(|b| ingest(app, id, &[], b))).await
}

#[tokio::test]
async fn over_its_rate_limit_a_source_answers_429_with_retry_after() {
    let app = spawn_app(settings(&[("SOURCE_RATE_LIMIT", "3")])).await;
    let t = tenant("rate");
    let two = source(&app, &t, json!({"name": "two", "verify": {"scheme": "none"}, "rate_limit": 2})).await;
    let default = source(&app, &t, json!({"name": "default", "verify": {"scheme": "none"}})).await;
    let (two, default) = (two["id"].as_str().unwrap(), default["id"].as_str().unwrap());

    // The window is a wall-clock second: start just after one begins.
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    tokio::time::sleep(Duration::from_millis(1_020) - Duration::from_millis(u64::from(since_epoch.subsec_millis())))
        .await;
    let started = now();
    // 5 at 2/s and 7 at 3/s: over at most two windows, some are refused.
    let (a, b) = futures::future::join(burst(&app, two, 5), burst(&app, default, 7)).await;
    let seconds = (now() - started + 1) as usize;
    assert!(seconds <= 2, "the bursts took {seconds} wall-clock seconds");
    for (answers, limit, id) in [(&a, 2, two), (&b, 3, default)] {
        let ok = answers.iter().filter(|x| x.status == 202).count();
        let limited: Vec<&Answer> = answers.iter().filter(|x| x.status == 429).collect();
        assert_eq!(ok + limited.len(), answers.len(), "only 202 and 429: {answers:?}");
        assert!(ok >= 1 && ok <= limit * seconds, "{ok} accepted at {limit}/s over {seconds} s: {answers:?}");
        assert!(limited.len() >= answers.len() - limit * seconds, "{answers:?}");
        for l in &limited {
            let wait: u64 = l.retry_after.as_deref().expect("Retry-After").parse().unwrap();
            assert!((1..=2).contains(&wait), "Retry-After {wait}");
            assert!(l.body["detail"].is_string(), "{l:?}");
        }
        let activity = requests(&app, &t, id).await;
        assert_eq!(activity["last_hour"]["rate_limited"], limited.len(), "{activity}");
        assert_eq!(activity["last_hour"]["accepted"], ok, "{activity}");
    }
    // After Retry-After the source takes requests again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = ingest(&app, two, &[], b"{}").await;
        if a.status == 202 {
            break;
        }
        assert_eq!(a.status, 429);
        assert!(Instant::now() < deadline, "still limited");
        tokio::time::sleep(Duration::from_secs(a.retry_after.unwrap().parse().unwrap())).await;
    }
}

#[tokio::test]
async fn sources_are_created_read_listed_changed_and_deleted_without_showing_secrets() {
    let app = spawn_app(settings(&[])).await;
    let (t, other) = (tenant("crud"), tenant("other"));
    let base = format!("/api/v1/tenants/{t}/sources");
    let secrets = [GITHUB_SECRET, "rotated-out secret", HMAC_SECRET];
    let no_secret = |v: &Value| {
        let text = v.to_string();
        for s in secrets {
            assert!(!text.contains(s), "a secret is shown: {text}");
        }
    };

    let created = source(
        &app,
        &t,
        json!({"name": "GitHub: acme/shop", "verify": {"scheme": "github", "secret": GITHUB_SECRET},
               "default_event_type": "github.event", "event_type_from": {"header": "X-GitHub-Event"},
               "rate_limit": 10}),
    )
    .await;
    no_secret(&created);
    let id = created["id"].as_str().unwrap().to_owned();
    let hexpart = id.strip_prefix("src_").unwrap();
    assert!(hexpart.len() == 32 && hexpart.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
    assert_eq!(created["ingest_url"], format!("/ingest/{id}"));
    assert_eq!(created["tenant"], t.as_str());
    assert_eq!(created["verify"], json!({"scheme": "github"}));
    assert_eq!(created["default_event_type"], "github.event");
    assert_eq!(created["event_type_from"], json!({"header": "x-github-event"}));
    assert_eq!(created["rate_limit"], 10);
    let second = source(&app, &t, json!({"name": "anything", "verify": {"scheme": "none"}})).await;
    assert_eq!(second["default_event_type"], "webhook");
    assert!(second.get("rate_limit").is_none() || second["rate_limit"].is_null(), "{second}");

    let one = format!("{base}/{id}");
    let (status, got) = api(&app, Method::GET, &one, None).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);
    let (status, list) = api(&app, Method::GET, &base, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str(), second["id"].as_str().unwrap()], "oldest first");
    no_secret(&list);

    // Only the fields given change.
    let (status, renamed) = api(&app, Method::PATCH, &one, Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "renamed");
    assert_eq!((&renamed["verify"], &renamed["rate_limit"]), (&created["verify"], &json!(10)));
    let body = b"{}";
    accepted(&app, &id, &signed("github", GITHUB_SECRET, body, "c1"), body).await;
    // verify is replaced whole; null clears the rate limit.
    let (status, changed) = api(
        &app,
        Method::PATCH,
        &one,
        Some(json!({"verify": {"scheme": "hmac-sha256", "secret": HMAC_SECRET, "header": "X-Sig",
                               "previous_secret": "rotated-out secret"}, "rate_limit": null})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    no_secret(&changed);
    assert_eq!(changed["verify"]["scheme"], "hmac-sha256");
    assert_eq!(changed["verify"]["header"], "x-sig");
    assert_eq!(changed["verify"]["encoding"], "hex");
    let expires =
        chrono::DateTime::parse_from_rfc3339(changed["verify"]["previous_secret_expires_at"].as_str().unwrap())
            .unwrap();
    let grace = expires.timestamp() - now();
    assert!((86_300..=86_400).contains(&grace), "a previous secret stays a day by default: {grace}");
    assert!(changed.get("rate_limit").is_none() || changed["rate_limit"].is_null(), "{changed}");
    assert_eq!(changed["name"], "renamed");
    refused(&app, &id, &signed("github", GITHUB_SECRET, body, "c2"), body, "missing_signature").await;
    let (_, got) = api(&app, Method::GET, &one, None).await;
    assert_eq!(got, changed);
    no_secret(&got);

    // Bad bodies: 400, each problem named.
    for (body, names) in [
        (json!({"name": "x", "verify": {"scheme": "github"}}), vec!["verify.secret"]),
        (json!({"name": "x", "verify": {"scheme": "gitlab", "secret": "s"}}), vec!["verify.scheme", "gitlab"]),
        (json!({"name": "x", "verify": {"scheme": "none"}, "colour": "red"}), vec!["colour"]),
        (json!({"name": "x", "verify": {"scheme": "none", "colour": "red"}}), vec!["verify", "colour"]),
        (
            json!({"name": "x", "verify": {"scheme": "standard-webhooks", "secret": "plain"}}),
            vec!["verify.secret", "whsec_"],
        ),
        (json!({"name": "x", "verify": {"scheme": "hmac-sha256", "secret": "s"}}), vec!["verify.header"]),
        (json!({"name": "x", "verify": {"scheme": "github", "secret": "s", "header": "X-Sig"}}), vec!["verify.header"]),
        (json!({"name": "x", "verify": {"scheme": "none", "secret": "s"}}), vec!["verify.secret"]),
        (json!({"verify": {"scheme": "none"}}), vec!["name"]),
        (json!({"name": "x"}), vec!["verify"]),
        (
            json!({"name": "", "verify": {"scheme": "github"}, "rate_limit": 0, "event_type_from": {"json_pointer": "type"}}),
            vec!["name", "verify.secret", "rate_limit", "event_type_from"],
        ),
    ] {
        let (status, answer) = api(&app, Method::POST, &base, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_else(|| panic!("{body}: {answer}"));
        for name in names {
            assert!(detail.contains(name), "{body}: {name} not in {detail}");
        }
    }
    let (status, answer) = api(&app, Method::PATCH, &one, Some(json!({"verify": {"scheme": "stripe"}}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("verify.secret"), "{answer}");
    let (_, still) = api(&app, Method::GET, &one, None).await;
    assert_eq!(still, changed, "a refused change changes nothing");
    // Without the token, and with a wrong one.
    let resp = app.http.get(format!("{}{base}", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .http
        .get(format!("{}{base}", app.base))
        .header("Authorization", format!("Token {TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Another tenant's id is not found, and nothing happens to it.
    let theirs = format!("/api/v1/tenants/{other}/sources/{id}");
    for (method, path, body) in [
        (Method::GET, theirs.clone(), None),
        (Method::PATCH, theirs.clone(), Some(json!({"name": "stolen"}))),
        (Method::DELETE, theirs.clone(), None),
        (Method::GET, format!("{theirs}/requests"), None),
        (Method::GET, format!("{base}/src_00000000000000000000000000000000"), None),
    ] {
        let (status, answer) = api(&app, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert!(answer["detail"].is_string(), "{answer}");
    }
    let (_, list) = api(&app, Method::GET, &format!("/api/v1/tenants/{other}/sources"), None).await;
    assert_eq!(list["data"], json!([]));
    let (_, still) = api(&app, Method::GET, &one, None).await;
    assert_eq!(still["name"], "renamed");

    // Unknown sources, and ids that are not ours, are 404 at ingest.
    for path in ["src_00000000000000000000000000000000", "nonsense", "ep_00000000000000000000000000000000"] {
        let a = ingest(&app, path, &[], b"{}").await;
        assert_eq!(a.status, 404, "{path}: {a:?}");
    }

    // Delete: gone from reads, the list and ingest; its events stay.
    let events_before = stored_events(&app, &t).await;
    assert_eq!(events_before.len(), 1);
    let (status, _) = api(&app, Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&app, Method::GET, &one, None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&app, Method::DELETE, &one, None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&app, Method::PATCH, &one, Some(json!({"name": "back"}))).await;
    assert_eq!(status, 404);
    let a = ingest(&app, &id, &signed("hmac-sha256", HMAC_SECRET, body, "x"), body).await;
    assert_eq!(a.status, 404, "{a:?}");
    let (_, list) = api(&app, Method::GET, &base, None).await;
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second["id"].as_str().unwrap()]);
    assert_eq!(stored_events(&app, &t).await, events_before);
}
