//! The OpenAPI document tells the truth: 405 answers name the methods a path
//! serves, and the request schemas carry the rules the parsers apply.

use serde_json::{json, Value};

use crate::helpers::*;

async fn served_spec(app: &TestApp) -> Value {
    app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap()
}

/// Every 405 carries `Allow` with exactly the documented methods of its path
/// (plus HEAD, which poem serves from GET), and stays a JSON error.
#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let app = spawn_app(settings(&[])).await;
    let spec = served_spec(&app).await;
    let id = format!("group_tag_{}", uuid::Uuid::new_v4());
    let mut checked = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        let mut want: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        if want.iter().any(|m| m == "GET") {
            want.push("HEAD".to_owned());
        }
        want.sort();
        let path = template.replace("{job_id}", &id);
        for method in ["PUT", "DELETE", "PATCH", "TRACE"] {
            let resp = app
                .http
                .request(method.parse().unwrap(), format!("{}{path}", app.base))
                .header("Authorization", format!("Token {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 405, "{method} {path}");
            let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            let mut got: Vec<String> =
                allow.unwrap_or_default().split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
            got.sort();
            assert_eq!(got, want, "{method} {path}: Allow");
            let body: Value = resp.json().await.expect("405 is JSON");
            assert_eq!(body, json!({"detail": "Method not allowed."}));
            checked += 1;
        }
    }
    assert!(checked >= 20, "every documented path was tried: {checked}");
    // The slashed form and the undocumented /metrics too.
    for (path, want) in [("/hook_slinger/", "GET, HEAD, POST"), ("/metrics", "GET, HEAD")] {
        let resp = app.http.delete(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], want, "{path}");
    }
}

async fn post_with_key(app: &TestApp, key: &[u8]) -> reqwest::Response {
    app.http
        .post(format!("{}/hook_slinger/", app.base))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Idempotency-Key", reqwest::header::HeaderValue::from_bytes(key).unwrap())
        .json(&job_body("http://example.com/"))
        .send()
        .await
        .unwrap()
}

/// An `Idempotency-Key` that is not printable ASCII is refused, not dropped
/// (poem reads such a header as absent, which made the request quietly not
/// idempotent).
#[tokio::test]
async fn an_unreadable_idempotency_key_is_refused() {
    let app = spawn_app(settings(&[])).await;
    assert_eq!(post_with_key(&app, b"order-17").await.status(), 202);
    let resp = post_with_key(&app, b"caf\xe9").await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("Idempotency-Key"), "{v}");
}
