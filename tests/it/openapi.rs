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
        let path = template
            .replace("{job_id}", &id)
            .replace("{tenant}", "acme")
            .replace("{id}", "ep_00000000000000000000000000000000")
            .replace("{event_id}", "e-1");
        for method in ["PUT", "DELETE", "PATCH", "TRACE"].into_iter().filter(|m| !want.iter().any(|w| w == m)) {
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

/// The request rules the parsers apply are in the served document,
/// including the limits this deployment was started with.
#[tokio::test]
async fn the_document_carries_the_request_rules() {
    let app = spawn_app(settings(&[("MAX_RETRIES_LIMIT", "7"), ("MAX_DELAY", "120"), ("BATCH_MAX", "5")])).await;
    let spec = served_spec(&app).await;
    let job = &spec["components"]["schemas"]["HookRequest"];
    let field = |name: &str| job["properties"][name].clone();

    assert_eq!(field("to_url")["minLength"], 8);
    assert_eq!(field("to_url")["format"], "uri");
    assert!(field("to_url")["pattern"].is_string());
    for label in ["tag", "group"] {
        assert_eq!(field(label)["pattern"], "^[A-Za-z0-9._:-]*$", "{label}");
        assert_eq!(field(label)["maxLength"], 64, "{label}");
    }
    assert_eq!(field("to_auth")["maxLength"], 8192);
    assert!(field("to_auth")["pattern"].as_str().unwrap().contains("\\x00-\\x1F"));
    assert_eq!(
        (field("max_retries")["minimum"].as_f64(), field("max_retries")["maximum"].as_f64()),
        (Some(0.0), Some(7.0))
    );
    assert_eq!(
        (field("delay_seconds")["minimum"].as_f64(), field("delay_seconds")["maximum"].as_f64()),
        (Some(0.0), Some(120.0))
    );
    // Null is accepted (as absent) wherever the parser accepts it.
    for name in ["to_auth", "tag", "group", "max_retries", "deliver_at", "delay_seconds"] {
        assert_eq!(field(name)["nullable"], true, "{name}");
    }
    for name in ["to_url", "payload"] {
        assert!(field(name)["nullable"].is_null(), "{name} is required and not nullable");
    }
    assert_eq!(job["not"]["required"], json!(["deliver_at", "delay_seconds"]));

    let jobs = &spec["components"]["schemas"]["BatchRequest"]["properties"]["jobs"];
    assert_eq!((jobs["minItems"].as_u64(), jobs["maxItems"].as_u64()), (Some(1), Some(5)));

    let params = |method: &str| -> Vec<Value> {
        spec["paths"]["/hook_slinger/"][method]["parameters"].as_array().unwrap().clone()
    };
    let param = |method: &str, name: &str| {
        params(method).into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}"))["schema"].clone()
    };
    let limit = param("get", "limit");
    assert_eq!((limit["minimum"].as_f64(), limit["maximum"].as_f64()), (Some(0.0), Some(4_294_967_295.0)));
    for name in ["state", "group", "tag", "job_id", "cursor"] {
        assert!(param("get", name)["pattern"].is_string(), "{name}");
    }
    let key = param("post", "Idempotency-Key");
    assert_eq!(key["maxLength"], 255);
    assert!(key["pattern"].is_string());

    // The Swagger UI page shows the same document.
    let docs = app.http.get(format!("{}/docs", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(docs.contains("\"maximum\": 7"), "/docs embeds the served document");
}

fn matches(spec: &Value, field: &str, value: &str) -> bool {
    let schema = &spec["components"]["schemas"]["HookRequest"]["properties"][field];
    let pattern = regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap();
    let chars = value.chars().count() as u64;
    pattern.is_match(value)
        && schema["minLength"].as_u64().is_none_or(|min| chars >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| chars <= max)
}

/// Values on both sides of each documented string rule: the ones the
/// document admits are accepted, the others refused.
#[tokio::test]
async fn the_document_and_the_parser_agree() {
    let app = spawn_app(settings(&[])).await;
    let spec = served_spec(&app).await;
    let cases: &[(&str, &str)] = &[
        ("to_url", "https://example.com/hooks?x=1&y=%20#top"),
        ("to_url", "HTTP://Receiver_1:8080/a/b"),
        ("to_url", "http://example.com./"),
        ("to_url", ""),
        ("to_url", "http://example.com*"),
        ("to_url", "http://a..example/"),
        ("to_url", "http://user:pw@example.com/"),
        ("to_url", "ftp://example.com/"),
        ("to_url", "http:example.com"),
        ("to_url", "http://example.com:65536/"),
        ("tag", "shop.eu-1:orders_v2"),
        ("tag", ""),
        ("tag", "a b"),
        ("tag", "ü"),
        ("group", &"x".repeat(64)),
        ("group", &"x".repeat(65)),
        ("to_auth", "Bearer secret"),
        ("to_auth", "x\r\ny: z"),
        ("to_auth", "tab\there"),
        ("to_auth", &"x".repeat(8192)),
        ("to_auth", &"x".repeat(8193)),
    ];
    for (field, value) in cases {
        let mut body = json!({"to_url": "http://example.com/", "payload": {}});
        body[*field] = json!(value);
        let status = app.post_job(&body).await.status().as_u16();
        let documented = matches(&spec, field, value);
        assert_eq!(status == 202, documented, "{field} = {value:?}: answered {status}, document admits: {documented}");
    }
}

/// Null is "absent" for every optional field, in a single job and in a
/// batch item alike, as the document says; a batch refuses what breaks the
/// document item by item.
#[tokio::test]
async fn null_is_absent_and_batch_items_are_judged_one_by_one() {
    let app = spawn_app(settings(&[("MAX_DELAY", "60")])).await;
    let spec = served_spec(&app).await;
    assert_eq!(spec["components"]["schemas"]["HookRequest"]["properties"]["delay_seconds"]["nullable"], true);
    let nulls = json!({
        "to_url": "http://example.com/", "payload": {}, "to_auth": null, "tag": null, "group": null,
        "max_retries": null, "deliver_at": null, "delay_seconds": null
    });
    let resp = app.post_job(&nulls).await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert!(v.get("deliver_at").is_none(), "null delay means now: {v}");

    let item = |extra: Value| {
        let mut job = json!({"to_url": "http://example.com/", "payload": {}});
        job.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        job
    };
    let items = json!([
        item(json!({"delay_seconds": null})),
        item(json!({"deliver_at": null, "delay_seconds": 5})),
        item(json!({"delay_seconds": 5, "deliver_at": "2000-01-01T00:00:00Z"})),
        item(json!({"delay_seconds": -1})),
        item(json!({"delay_seconds": 61})),
        item(json!({"tag": "a b"})),
        item(json!({"to_url": ""})),
        nulls,
    ]);
    let resp = app
        .http
        .post(format!("{}/hook_slinger/batch", app.base))
        .header("Authorization", format!("Token {TOKEN}"))
        .json(&json!({ "jobs": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    let statuses: Vec<u64> = v["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [202, 202, 422, 422, 422, 422, 400, 202], "{v}");
    assert!(v["results"][0].get("deliver_at").is_none(), "null delay means now: {v}");
    assert!(v["results"][1]["deliver_at"].is_string(), "a null deliver_at leaves delay_seconds in charge: {v}");
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(3), Some(5)));
}

/// Query and header rules are enforced by poem-openapi's validators; their
/// refusals are still the API's JSON 400.
#[tokio::test]
async fn parameter_rules_refuse_with_json_400() {
    let app = spawn_app(settings(&[])).await;
    let id = uuid::Uuid::new_v4();
    let by_id = format!("?job_id=g_t_{id}");
    for ok in ["", "?state=", "?state=failed", "?limit=0", "?limit=100000", "?tag=a.b:c-d_e&group=", &by_id] {
        let (status, v) = app.call(reqwest::Method::GET, &format!("/hook_slinger/{ok}")).await;
        assert_eq!(status, 200, "{ok}: {v}");
    }
    let long = "x".repeat(65);
    for bad in [
        "limit=-1".to_owned(),
        "limit=4294967296".to_owned(),
        "state=lost".to_owned(),
        "tag=a%20b".to_owned(),
        format!("group={long}"),
        "job_id=nope".to_owned(),
        "cursor=nope".to_owned(),
    ] {
        let (status, v) = app.call(reqwest::Method::GET, &format!("/hook_slinger/?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
        let name = bad.split('=').next().unwrap();
        assert!(v["detail"].as_str().unwrap().contains(name), "{bad}: the answer names the parameter: {v}");
    }

    let resp = post_with_key(&app, "k".repeat(256).as_bytes()).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].is_string(), "{v}");
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
