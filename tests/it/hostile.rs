//! Hostile input, quickly: every endpoint demands a token, the token check
//! takes the same time wherever a wrong token differs, and bodies over the
//! limit, deeply nested JSON, invalid UTF-8, huge headers and slow clients
//! get 4xx answers (or a closed connection) without taking the app down.
//! The long fault scenarios live in `tests/chaos` (`make chaos`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Paths that answer without a token.
const OPEN: &[&str] = &["/health", "/ready", "/docs", "/openapi.json"];

/// Every operation in the OpenAPI document, with a concrete path.
fn operations() -> Vec<(String, String)> {
    let spec: Value = serde_json::from_str(&hook_slinger::api::openapi_spec(&settings(&[]))).unwrap();
    let id = format!("group_tag_{}", uuid::Uuid::new_v4());
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_uppercase(), path.replace("{job_id}", &id)));
        }
    }
    ops
}

async fn send(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> (u16, Value) {
    let url = format!("{}{path}", app.base);
    let mut req = app.http.request(method.parse().unwrap(), url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if method == "POST" {
        // A valid body, so only the token can be the reason for a refusal.
        req = req.json(
            &json!({"to_url": "http://127.0.0.1:9/x", "payload": {}, "jobs": [job_body("http://127.0.0.1:9/x")]}),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_endpoint_but_probes_and_docs_needs_a_valid_token() {
    let app = spawn_app(settings(&[])).await;
    let ops = operations();
    assert!(ops.len() >= 5, "the document lists the operations: {ops:?}");
    let mut guarded = 0;
    for (method, path) in &ops {
        if OPEN.contains(&path.as_str()) {
            let (status, _) = send(&app, method, path, None).await;
            assert_eq!(status, 200, "{method} {path} is open");
            continue;
        }
        // A provider's ingest needs no token: its source's signature
        // guards it (tests/it/sources.rs); an unknown source is not found.
        if path.starts_with("/ingest/") {
            let (status, body) = send(&app, method, path, None).await;
            assert_eq!(status, 404, "{method} {path} without a source: {body}");
            assert!(body["detail"].is_string(), "{method} {path}: JSON error body, got {body}");
            continue;
        }
        guarded += 1;
        for (auth, want) in [
            (None, 401),
            (Some("Basic dXNlcjpwYXNz"), 401),
            (Some("Token"), 401),
            (Some("Token wrong-token"), 403),
            (Some("Bearer test-tokem"), 403),
            (Some("Token test-token-and-more"), 403),
            (Some("Token test-toke"), 403),
        ] {
            let (status, body) = send(&app, method, path, auth).await;
            assert_eq!(status, want, "{method} {path} with {auth:?}: {body}");
            assert!(body["detail"].is_string(), "{method} {path}: JSON error body, got {body}");
        }
        // And the right token gets past the check (whatever the job's fate).
        let (status, _) = send(&app, method, path, Some(&format!("Token {TOKEN}"))).await;
        assert!(![401, 403].contains(&status) && status < 500, "{method} {path} with the token: {status}");
    }
    assert!(guarded >= 4, "{ops:?}");
    for path in ["/docs", "/openapi.json"] {
        let resp = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} is open");
    }
}

/// Tokens are compared with `secret::constant_time_eq` (the `subtle`
/// crate), whose running time does not depend on where two inputs differ.
/// There used to be a timing test here asserting a ratio of medians; on a
/// shared two-core machine that measured the machine more than the code, so
/// the property is left to `subtle` and this checks the answers.
#[test]
fn token_comparison_answers_exactly() {
    use hook_slinger::secret::constant_time_eq;

    let secret = vec![b'k'; 4096];
    let mut first = secret.clone();
    first[0] = b'x';
    let mut last = secret.clone();
    last[4095] = b'x';
    assert!(constant_time_eq(&secret, &secret.clone()));
    assert!(!constant_time_eq(&secret, &first) && !constant_time_eq(&secret, &last));
    assert!(!constant_time_eq(&secret, &secret[..4095]));
}

fn authed(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.http.post(format!("{}{path}", app.base)).header("Authorization", format!("Token {TOKEN}"))
}

async fn assert_alive(app: &TestApp) {
    let resp = app.http.get(format!("{}/health", app.base)).timeout(Duration::from_secs(2)).send().await;
    assert_eq!(resp.expect("the app still answers").status(), 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let rx = Receiver::start().await;
    let app = spawn_app(settings(&[("MAX_PAYLOAD_BYTES", "4096")])).await;
    let filler = |n: usize| json!({"to_url": rx.url("/x"), "payload": {"pad": "p".repeat(n)}});

    let ok = authed(&app, "/hook_slinger/").json(&filler(3000)).send().await.unwrap();
    assert_eq!(ok.status(), 202, "just under the limit");
    for path in ["/hook_slinger/", "/hook_slinger/batch"] {
        // Declared length over the limit.
        let resp = authed(&app, path).json(&filler(5000)).send().await.unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("MAX_PAYLOAD_BYTES"), "{body}");
        // No declared length (chunked): cut off while reading.
        let chunks = futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
        let resp = authed(&app, path)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path} chunked");
    }
    // A 50 MB declaration is refused before the body is read.
    let started = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /hook_slinger/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{{"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut answer)).await.expect("answered").unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A chunked body that never ends is drained only up to its bound (16 ×
    // the limit), then the connection is closed: the client is cut off
    // long before the drain's time bound (5 s), having written little.
    let started = Instant::now();
    let sock = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let (mut read, mut write) = sock.into_split();
    let head = format!(
        "POST /hook_slinger/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = [b"4000\r\n".as_slice(), &[b' '; 0x4000], b"\r\n"].concat();
        let mut sent = 0usize;
        while write.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer)).await.expect("closed");
    let sent = tokio::time::timeout(Duration::from_secs(5), writer).await.expect("cut off").unwrap();
    println!("endless chunked body: cut off after {sent} bytes, {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(sent < 32 << 20, "{sent} bytes written before the app closed");
    assert_alive(&app).await;
}

/// A client that writes its whole body before reading (Python's
/// `http.client`, no `Expect: 100-continue`) reads the 413 rather than a
/// reset: the app reads and discards the rest of an over-limit body before
/// answering, and the connection stays usable afterwards.
#[tokio::test]
async fn a_client_that_keeps_writing_an_over_limit_body_reads_the_413() {
    let app = spawn_app(settings(&[])).await; // MAX_PAYLOAD_BYTES: 1 MiB
                                              // Each case: 20 tries on a fresh connection; after each 413, the same
                                              // connection asks /health, unless the app said it would close.
    let script = r#"
import http.client, json, sys
from urllib.parse import urlsplit
url, token = urlsplit(sys.argv[1]), sys.argv[2]
counts = {}
for name, size, chunked in [("2MiB", 2 << 20, False), ("8MiB", 8 << 20, False), ("8MiB-chunked", 8 << 20, True)]:
    c = counts[name] = {"ok": 0, "broken": 0, "other": 0, "reused": 0}
    body = b"{" + b" " * (size - 2) + b"}"
    for _ in range(20):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        try:
            data = (body[i:i + 65536] for i in range(0, size, 65536)) if chunked else body
            conn.request("POST", url.path, body=data, encode_chunked=chunked,
                         headers={"Authorization": "Token " + token, "Content-Type": "application/json"})
            resp = conn.getresponse()
            detail = json.loads(resp.read()).get("detail", "")
        except OSError as e:
            c["broken"] += 1
            print(name, repr(e), file=sys.stderr)
            conn.close()
            continue
        if resp.status == 413 and "MAX_PAYLOAD_BYTES" in detail:
            c["ok"] += 1
        else:
            c["other"] += 1
            print(name, resp.status, detail, file=sys.stderr)
        if (resp.getheader("connection") or "").lower() != "close":
            try:
                conn.request("GET", "/health")
                c["reused"] += conn.getresponse().status == 200
            except OSError as e:
                print(name, "then /health:", repr(e), file=sys.stderr)
        conn.close()
print(json.dumps(counts))
"#;
    let url = format!("{}/hook_slinger/", app.base);
    // Blocking the test's runtime would stop the app it is talking to.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", script, &url, TOKEN]).output().expect("python3 runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let counts: Value = serde_json::from_slice(&out.stdout).expect("the script prints its counts");
    println!("{counts}");
    let errors: Vec<&str> = stderr.lines().take(5).collect();
    for (case, c) in counts.as_object().unwrap() {
        assert_eq!(c["ok"], 20, "{case}: every try reads the 413: {c} {errors:?}");
        assert_eq!(c["reused"], 20, "{case}: the connection serves the next request: {c}");
    }
    assert_alive(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_crashing() {
    let app = spawn_app(settings(&[])).await;
    for (open, close) in [("{\"a\":", "}"), ("[", "]")] {
        let depth = 100_000;
        let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let body = format!("{{\"to_url\":\"http://127.0.0.1:9/x\",\"payload\":{{\"deep\":{nested}}}}}");
        for path in ["/hook_slinger/", "/hook_slinger/batch"] {
            let resp =
                authed(&app, path).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{path} {open}");
            let v: Value = resp.json().await.unwrap();
            assert!(v["detail"].as_str().unwrap().contains("not valid JSON"), "{v}");
        }
    }
    // Nesting that serde_json accepts is stored and read back intact.
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let body = format!("{{\"to_url\":\"http://127.0.0.1:9/x\",\"payload\":{{\"deep\":{nested}}}}}");
    let resp =
        authed(&app, "/hook_slinger/").header("content-type", "application/json").body(body).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_alive(&app).await;
}

#[tokio::test]
async fn invalid_utf8_is_a_client_error() {
    let app = spawn_app(settings(&[])).await;
    let mut body = br#"{"to_url": "http://127.0.0.1:9/x", "payload": {"s": ""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    body.extend_from_slice(br#""}}"#);
    let resp =
        authed(&app, "/hook_slinger/").header("content-type", "application/json").body(body).send().await.unwrap();
    assert_eq!(resp.status(), 400);

    // Raw bytes where headers and paths should be text.
    let cases: Vec<Vec<u8>> = vec![
        b"GET /hook_slinger/abc HTTP/1.1\r\nHost: x\r\nAuthorization: Token \xff\xfe\r\n\r\n".to_vec(),
        b"GET /hook_slinger/abc HTTP/1.1\r\nHost: x\r\nAuthorization: \xc3\x28 test-token\r\n\r\n".to_vec(),
        format!("GET /hook_slinger/%FF%FE%80 HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\n\r\n").into_bytes(),
        [
            b"GET /hook_slinger/\xff\xfe HTTP/1.1\r\nHost: x\r\nAuthorization: Token ".as_slice(),
            TOKEN.as_bytes(),
            b"\r\n\r\n",
        ]
        .concat(),
    ];
    for raw in cases {
        let answer = raw_exchange(&app, &raw).await;
        let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        // 0: the server closed the connection, which is also fine.
        assert!(status == 0 || (400..500).contains(&status), "{:?} -> {answer:?}", String::from_utf8_lossy(&raw));
    }
    assert_alive(&app).await;
}

/// Job ids are looked up by the id's text; one that is not ASCII is simply
/// not found.
#[tokio::test]
async fn non_ascii_job_ids_are_not_found() {
    let app = spawn_app(settings(&[])).await;
    for id in ["\u{80}00000000000\u{80}\u{80}\u{80}\u{80}\u{80}\u{80}𐀀𐀀𐀀", "ééééééééééééééééééééééééééééééééééééé"]
    {
        let (status, _) = app.get_job(id).await;
        assert_eq!(status, 404, "{id:?}");
        let (status, _) = app.requeue(id).await;
        assert_eq!(status, 404, "{id:?}");
    }
    assert_alive(&app).await;
}

/// Sends raw bytes and returns what came back before the server closed or
/// went quiet for a second.
async fn raw_exchange(app: &TestApp, raw: &[u8]) -> String {
    let mut sock = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let _ = sock.write_all(raw).await;
    let mut answer = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), sock.read(&mut answer)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn huge_headers_are_refused_and_the_app_keeps_going() {
    let app = spawn_app(settings(&[])).await;
    // One header of 1 MiB, and 10,000 small ones.
    let big = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let many = format!("GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-H: v\r\n".repeat(10_000));
    for raw in [big, many] {
        let answer = raw_exchange(&app, raw.as_bytes()).await;
        let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(status == 0 || status == 431 || status == 400, "got {answer:?}");
    }
    // A token header far longer than any token: refused, not a crash.
    let resp = app
        .http
        .get(format!("{}/hook_slinger/abc", app.base))
        .header("Authorization", format!("Token {}", "t".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_alive(&app).await;
}

/// Slowloris: many clients that trickle a request's headers (or body) a
/// byte at a time. They must not keep others from being served.
#[tokio::test]
async fn many_slow_clients_do_not_take_the_app_down() {
    let app = spawn_app(settings(&[])).await;
    let rx = Receiver::start().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let slow = 300;
    let mut socks = Vec::new();
    for i in 0..slow {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let start = if i % 2 == 0 {
            "POST /hook_slinger/ HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned()
        } else {
            format!("POST /hook_slinger/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{")
        };
        s.write_all(start.as_bytes()).await.unwrap();
        socks.push(s);
    }
    // Trickle for 3 s while normal clients are served, each quickly.
    let trickle = tokio::spawn(async move {
        for _ in 0..15 {
            for s in socks.iter_mut() {
                let _ = s.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        socks
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let t = Instant::now();
        let resp = app.post_job(&job_body(&rx.url("/served"))).await;
        assert_eq!(resp.status(), 202);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let socks = trickle.await.unwrap();
    println!("{slow} slow clients: slowest normal request {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "normal requests slowed to {slowest:?}");
    drop(socks);
    assert_alive(&app).await;
}

/// The monitor: no page and no action without a login session, whatever
/// cookie is made up; the failed job an action names stays untouched.
#[tokio::test]
async fn the_monitor_refuses_unauthenticated_requests() {
    use crate::monitor::{monitor_settings, spawn_monitor};
    use hook_slinger::jobs::JobState;

    let s = monitor_settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let m = spawn_monitor(&s).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/fails"))).await;
    app.wait_state(&id, JobState::Failed, Duration::from_secs(10)).await;
    worker.shutdown().await;

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let gets = ["/", "/jobs", "/workers", &format!("/jobs/{id}")].map(str::to_owned);
    let posts = [
        format!("/jobs/{id}/requeue"),
        format!("/jobs/{id}/retry"),
        format!("/jobs/{id}/delete"),
        "/bulk/requeue".to_owned(),
        "/bulk/purge".to_owned(),
        "/logout".to_owned(),
    ];
    let cookies =
        ["", "hs_session=forged", "hs_monitor=forged; hs_csrf=x", &format!("{}=AAAA", hook_slinger::monitor::COOKIE)];
    for cookie in cookies {
        for (method, path) in gets.iter().map(|p| ("GET", p)).chain(posts.iter().map(|p| ("POST", p))) {
            let mut req = http.request(method.parse().unwrap(), format!("{}{path}", m.base));
            if !cookie.is_empty() {
                req = req.header("cookie", cookie);
            }
            if method == "POST" {
                req = req.header("content-type", "application/x-www-form-urlencoded").body("csrf=x&state=failed");
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let to_login = resp.headers().get("location").is_some_and(|l| l == "/login");
            assert!(
                (status == 303 && to_login) || status == 401 || status == 403,
                "{method} {path} with cookie {cookie:?}: {status}"
            );
        }
    }
    let rec = app.record(&id).await;
    assert_eq!(rec.state, JobState::Failed, "no action went through");
    assert_eq!(rec.attempts, 1);
}
