//! The original Hook Slinger's own test cases (rednafi/hook-slinger,
//! `tests/`), ported to run over HTTP against this app: a client of the
//! original must see nothing break. The one deliberate difference is kept
//! and named: a missing or malformed `Authorization` header is 401 here
//! (the original answered 403 for everything).

use std::time::Duration;

use hook_slinger::jobs::JobState;
use serde_json::{json, Value};

use crate::helpers::*;

/// The request every case of the original posts.
fn original_request(to_url: &str) -> Value {
    json!({
        "to_url": to_url,
        "to_auth": "",
        "tag": "Dhaka",
        "group": "Bangladesh",
        "payload": {"greetings": "Hello, world!"},
    })
}

/// What `datetime.fromisoformat` accepts on Python 3.7-3.10, where the
/// original's clients run: no `Z`, three or six fractional digits.
fn python37_isoformat(s: &str) -> bool {
    let Some((date_time, offset)) = s.rsplit_once('+').or_else(|| s.rsplit_once('-').filter(|(_, o)| o.len() == 5))
    else {
        return false;
    };
    let (whole, fraction) = date_time.split_once('.').unwrap_or((date_time, ""));
    chrono::NaiveDateTime::parse_from_str(whole, "%Y-%m-%dT%H:%M:%S").is_ok()
        && matches!(fraction.len(), 0 | 3 | 6)
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && offset.len() == 5
        && offset.as_bytes()[2] == b':'
}

async fn post(app: &TestApp, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(body);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// `test_views.py::test_slinger_request_payload`,
/// `test_slinger_response_payload` and `test_hook_slinger_view`: the
/// request is accepted as is, and the answer has the original's fields.
#[tokio::test]
async fn request_and_response_payloads() {
    let app = spawn_app(settings(&[])).await;
    let auth = format!("Token {TOKEN}");
    let (status, v) = post(&app, "/hook_slinger/", Some(&auth), &original_request("https://webhook.example/x")).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["ok"], true);
    assert_eq!(v["message"], "Webhook registration successful.");
    let id = v["job_id"].as_str().unwrap();
    let uuid = id.strip_prefix("Bangladesh_Dhaka_").expect("job id is <group>_<tag>_<uuid>");
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{id}");
    let queued_at = v["queued_at"].as_str().unwrap();
    assert!(python37_isoformat(queued_at), "Python 3.7's datetime.fromisoformat reads {queued_at}");
}

/// `test_views.py::test_secret_based_security`: the token passes; "abcd"
/// and "dummy" are refused (401 here, 403 in the original).
#[tokio::test]
async fn secret_based_security() {
    let app = spawn_app(settings(&[])).await;
    let body = original_request("https://webhook.example/x");
    assert_eq!(post(&app, "/hook_slinger/", Some(&format!("Token {TOKEN}")), &body).await.0, 202);
    for header in ["abcd", "dummy"] {
        let (status, v) = post(&app, "/hook_slinger/", Some(header), &body).await;
        assert_eq!(status, 401, "{header}: {v}");
        assert!(v["detail"].as_str().unwrap().contains("API_TOKEN"), "{v}");
    }
    assert_eq!(post(&app, "/hook_slinger/", Some("Token wrong"), &body).await.0, 403);
}

/// `test_services.py::test_validate_url`: no `//` after the scheme is not a
/// URL; `http://localhost:8000` and `https://google.com` are. (Our SSRF
/// guard refuses loopback unless ALLOW_PRIVATE_DESTINATIONS is on, which
/// the test settings turn on.)
#[tokio::test]
async fn validate_url() {
    let app = spawn_app(settings(&[])).await;
    let auth = format!("Token {TOKEN}");
    for bad in ["https:sfsdfdsff", "http:google.com"] {
        let (status, v) = post(&app, "/hook_slinger/", Some(&auth), &original_request(bad)).await;
        assert_eq!((status, v), (400, json!({"detail": "Parameter 'to_url' is not a valid URL."})), "{bad}");
    }
    for good in ["http://localhost:8000", "https://google.com"] {
        assert_eq!(post(&app, "/hook_slinger/", Some(&auth), &original_request(good)).await.0, 202, "{good}");
    }
}

/// `test_main.py::test_app_middleware`: CORS for every origin, with
/// credentials, every method and header.
#[tokio::test]
async fn app_middleware_allows_every_origin() {
    let app = spawn_app(settings(&[])).await;
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/hook_slinger/", app.base))
        .header("Origin", "https://any.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type, x-custom")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://any.example");
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    assert!(resp.headers()["access-control-allow-headers"].to_str().unwrap().contains("x-custom"));
}

/// `test_integration.py::test_webhook_throw` and
/// `test_services.py::test_send_post_request`: POST to `/hook_slinger`
/// (following redirects, as the original's client does), the job is
/// queued, then finished within 10 s; the receiver gets the payload and no
/// `Authorization` header for an empty `to_auth`.
#[tokio::test]
async fn webhook_throw() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let (status, v) =
        post(&app, "/hook_slinger", Some(&format!("Token {TOKEN}")), &original_request(&rx.url("/hook"))).await;
    assert_eq!(status, 202, "{v}");
    let id = v["job_id"].as_str().unwrap();
    let state = app.record(id).await.state;
    assert!(matches!(state, JobState::Queued | JobState::Delivering | JobState::Scheduled | JobState::Succeeded));
    app.wait_state(id, JobState::Succeeded, Duration::from_secs(10)).await;
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(serde_json::from_slice::<Value>(&got[0].body).unwrap(), json!({"greetings": "Hello, world!"}));
    assert!(got[0].header("authorization").is_none());
    worker.shutdown().await;
}
