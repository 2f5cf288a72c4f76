//! The HTTP contract: auth, validation, error bodies, docs, Redis down.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

async fn post_raw(app: &TestApp, auth: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = app.http.post(format!("{}/hook_slinger/", app.base)).body(body);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.expect("every answer is JSON"))
}

#[tokio::test]
async fn accepts_with_the_original_contract() {
    let app = spawn_app(settings(&[])).await;
    let before = chrono::Utc::now();
    let resp =
        app.post_job(&json!({"to_url": "http://127.0.0.1:9/x", "tag": "dhl", "group": "shop", "payload": {}})).await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["ok"], true);
    assert_eq!(v["message"], "Webhook registration successful.");
    assert!(v["job_id"].as_str().unwrap().starts_with("shop_dhl_"), "{v}");
    // `+00:00`, not `Z`, and milliseconds: what Python 3.7-3.10's
    // datetime.fromisoformat reads.
    let raw = v["queued_at"].as_str().unwrap();
    assert!(raw.ends_with("+00:00") && raw.len() == "2026-01-01T00:00:00.000+00:00".len(), "{raw}");
    let queued_at = chrono::DateTime::parse_from_rfc3339(raw).unwrap();
    assert!(queued_at >= before - chrono::Duration::seconds(1), "queued_at is this request's time");

    // No labels: no `None_None_` prefix, just the uuid.
    let id = app.accept(&job_body("http://127.0.0.1:9/x")).await;
    assert_eq!(id.len(), 36, "{id}");
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    // The slash-less path is served directly, not redirected.
    let resp = app
        .http
        .post(format!("{}/hook_slinger", app.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .json(&job_body("http://127.0.0.1:9/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn missing_token_is_401_wrong_token_is_403() {
    let app = spawn_app(settings(&[("API_TOKENS", "old-token,new-token")])).await;
    let body = job_body("http://127.0.0.1:9/x").to_string();
    let (status, v) = post_raw(&app, None, body.clone()).await;
    assert_eq!(status, 401);
    assert!(v["detail"].as_str().unwrap().contains("API_TOKEN"), "{v}");
    let (status, v) = post_raw(&app, Some("Token wrong"), body.clone()).await;
    assert_eq!(status, 403);
    assert!(v["detail"].as_str().unwrap().contains("API_TOKEN"), "{v}");
    let (status, _) = post_raw(&app, Some("Basic dGVzdA=="), body.clone()).await;
    assert_eq!(status, 401);
    for good in [format!("Token {TOKEN}"), "Bearer old-token".to_owned(), "token new-token".to_owned()] {
        let (status, v) = post_raw(&app, Some(&good), body.clone()).await;
        assert_eq!(status, 202, "{good}: {v}");
    }
    // The status and requeue endpoints are protected too.
    let resp = app.http.get(format!("{}/hook_slinger/{}", app.base, uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp =
        app.http.post(format!("{}/hook_slinger/{}/requeue", app.base, uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn validation_errors_are_json_and_name_fields() {
    let app = spawn_app(settings(&[("MAX_PAYLOAD_BYTES", "2048")])).await;
    let auth = format!("Token {TOKEN}");
    let auth = Some(auth.as_str());

    let (status, v) = post_raw(&app, auth, r#"{"to_url": 5, "tag": "a b"}"#).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = v["detail"].as_array().unwrap().iter().map(|e| e["loc"][1].as_str().unwrap()).collect();
    assert_eq!(fields, ["to_url", "tag", "payload"]);

    let (status, v) = post_raw(&app, auth, r#"{"to_url": "ftp://example.com/", "payload": {}}"#).await;
    assert_eq!((status, v["detail"].as_str().unwrap()), (400, "Parameter 'to_url' is not a valid URL."));
    let (status, _) = post_raw(&app, auth, r#"{"to_url": "example.com/hook", "payload": {}}"#).await;
    assert_eq!(status, 400);
    // The original's cases: no `//` after the scheme is not a URL (the WHATWG
    // parser would rewrite it to http://google.com/ and deliver there).
    for no_slashes in ["http:google.com", "https:sfsdfdsff"] {
        let body = format!(r#"{{"to_url": "{no_slashes}", "payload": {{}}}}"#);
        let (status, v) = post_raw(&app, auth, body).await;
        assert_eq!((status, v), (400, serde_json::json!({"detail": "Parameter 'to_url' is not a valid URL."})));
    }
    let (status, v) = post_raw(&app, auth, r#"{"to_url": "http://a/", "payload": [1]}"#).await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = post_raw(&app, auth, r#"{"to_url": "#).await;
    assert_eq!(status, 400);
    assert!(v["detail"].as_str().unwrap().contains("not valid JSON"), "{v}");
    let (status, _) = post_raw(&app, auth, "[]").await;
    assert_eq!(status, 422);

    let big = json!({"to_url": "http://a/", "payload": {"x": "y".repeat(4096)}}).to_string();
    let (status, v) = post_raw(&app, auth, big).await;
    assert_eq!(status, 413);
    assert!(v["detail"].as_str().unwrap().contains("MAX_PAYLOAD_BYTES"), "{v}");

    // A chunked body declares no length; the limit holds while reading.
    let chunks = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let (status, _) = post_raw(&app, auth, reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(status, 413);

    let resp = app.http.get(format!("{}/no/such/route", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let _: Value = resp.json().await.expect("404 is JSON too");
}

#[tokio::test]
async fn unknown_jobs_are_404_and_only_failed_jobs_requeue() {
    let app = spawn_app(settings(&[])).await;
    let (status, v) = app.get_job(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = app.get_job("not-a-job-id").await;
    assert_eq!(status, 404);
    let (status, _) = app.requeue(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, 404);
    let id = app.accept(&job_body("http://127.0.0.1:9/x")).await;
    let (status, v) = app.requeue(&id).await;
    assert_eq!(status, 409);
    assert!(v["detail"].as_str().unwrap().contains("queued"), "{v}");
    let (status, v) = app.get_job(&id).await;
    assert_eq!((status, v["state"].as_str().unwrap()), (200, "queued"));
}

#[tokio::test]
async fn redis_down_gives_503_quickly_and_health_stays_up() {
    // Nothing listens on port 1.
    let app = spawn_app(settings(&[("REDIS_URL", "redis://127.0.0.1:1"), ("REDIS_TIMEOUT", "1")])).await;
    let started = Instant::now();
    let resp = app.post_job(&job_body("http://127.0.0.1:9/x")).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("Redis"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(5), "503 took {:?}", started.elapsed());
    let ready = app.http.get(format!("{}/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = app.http.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn app_recovers_when_redis_comes_back() {
    let mut redis = OwnRedis::start();
    let app = spawn_app(settings(&[("REDIS_URL", &redis.url()), ("REDIS_TIMEOUT", "1")])).await;
    app.accept(&job_body("http://127.0.0.1:9/x")).await;
    redis.stop();
    assert_eq!(app.post_job(&job_body("http://127.0.0.1:9/x")).await.status(), 503);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.post_job(&job_body("http://127.0.0.1:9/x")).await.status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "app did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn docs_and_spec_are_served_with_security_and_examples() {
    let app = spawn_app(settings(&[])).await;
    let docs = app.http.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI");
    let spec: Value = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let scheme = &spec["components"]["securitySchemes"]["TokenAuth"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["name"], "Authorization");
    // Documented with its slash, as the original and its clients use it
    // (both forms are served); no second, slash-less entry.
    assert!(spec["paths"].get("/hook_slinger").is_none(), "{}", spec["paths"]);
    let post = &spec["paths"]["/hook_slinger/"]["post"];
    for code in ["202", "400", "401", "403", "413", "422", "500", "503"] {
        assert!(post["responses"][code].is_object(), "{code} documented");
    }
    assert!(post["security"].is_array());
    let schema = &spec["components"]["schemas"]["HookRequest"];
    assert!(schema["example"]["to_url"].is_string(), "request example is prefilled: {schema}");
}

/// CORS as the original served it: any origin by default, with credentials;
/// `CORS_ALLOW_ORIGINS` narrows it.
#[tokio::test]
async fn cors_lets_browsers_call_the_api() {
    let app = spawn_app(settings(&[])).await;
    let preflight = |base: String, origin: &'static str| async move {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/hook_slinger/"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
            .await
            .unwrap()
    };
    let resp = preflight(app.base.clone(), "http://shop.example").await;
    assert!(resp.status().is_success(), "preflight answered {}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://shop.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("authorization"));
    let resp = app
        .http
        .post(format!("{}/hook_slinger/", app.base))
        .header("Origin", "http://shop.example")
        .header("Authorization", format!("Token {TOKEN}"))
        .json(&job_body("http://127.0.0.1:9/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://shop.example");

    let only = spawn_app(settings(&[("CORS_ALLOW_ORIGINS", "https://admin.example")])).await;
    let ok = preflight(only.base.clone(), "https://admin.example").await;
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://admin.example");
    let other = preflight(only.base.clone(), "http://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
}
