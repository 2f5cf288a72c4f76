//! Sources on a Redis Cluster: every key a source touches (its record, rate
//! window, counters and request log, and the event it makes) must share its
//! tenant's hash tag, or a script fails with CROSSSLOT. Three tenants, so
//! their sources land on different shards and masters.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{json, Value};

use super::TestCluster;
use crate::{
    fanout::{api, endpoint},
    helpers::{spawn_app, spawn_worker, Receiver, TestApp},
    monitor::github_signature,
};

const SECRET: &str = "cluster-github-secret";

async fn ingest(app: &TestApp, path: &str, delivery: &str, body: &[u8], signature: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_verify_store_and_fan_out_on_a_cluster() {
    let cluster = TestCluster::start();
    let rx = Receiver::start().await;
    let s = cluster.settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let mut accepted = BTreeSet::new();
    for t in ["north", "south", "west"] {
        endpoint(&app, t, json!({"url": rx.url(&format!("/{t}"))})).await;
        let (status, src) = api(
            &app,
            Method::POST,
            &format!("/api/v1/tenants/{t}/sources"),
            Some(json!({"name": t, "verify": {"scheme": "github", "secret": SECRET},
                        "event_type_from": {"header": "X-GitHub-Event"}, "rate_limit": 1000})),
        )
        .await;
        assert_eq!(status, 201, "{src}");
        let path = src["ingest_url"].as_str().unwrap().to_owned();
        for n in 0..3 {
            let body = format!(r#"{{"tenant":"{t}","n":{n}}}"#).into_bytes();
            let (status, answer) =
                ingest(&app, &path, &format!("{t}-{n}"), &body, &github_signature(SECRET, &body)).await;
            assert_eq!((status, &answer["duplicate"]), (202, &json!(false)), "{answer}");
            accepted.insert(answer["event_id"].as_str().unwrap().to_owned());
            // The provider's redelivery, and a forged one.
            let (status, again) =
                ingest(&app, &path, &format!("{t}-{n}"), &body, &github_signature(SECRET, &body)).await;
            assert_eq!((status, &again["event_id"], &again["duplicate"]), (202, &answer["event_id"], &json!(true)));
            let (status, refused) = ingest(&app, &path, &format!("{t}-x{n}"), &body, "sha256=00").await;
            assert_eq!((status, refused["reason"].as_str()), (401, Some("wrong_signature")), "{refused}");
        }
        let (_, requests) = api(
            &app,
            Method::GET,
            &format!("/api/v1/tenants/{t}/sources/{}/requests", src["id"].as_str().unwrap()),
            None,
        )
        .await;
        let hour = &requests["last_hour"];
        assert_eq!((hour["accepted"].as_u64(), hour["duplicate"].as_u64()), (Some(3), Some(3)), "{requests}");
        assert_eq!(hour["refused"]["wrong_signature"], 3, "{requests}");
        assert_eq!(requests["latest"].as_array().unwrap().len(), 9, "{requests}");
    }
    // Every accepted request is delivered once, to its own tenant's endpoint.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rx.received();
        let ids: BTreeSet<String> = got.iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
        if ids == accepted {
            assert_eq!(got.len(), accepted.len(), "each once");
            for r in &got {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(format!("/{}", body["data"]["tenant"].as_str().unwrap()), r.path, "{body}");
                assert_eq!(body["type"], "push");
            }
            break;
        }
        assert!(Instant::now() < deadline, "{} of {} delivered", ids.len(), accepted.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
}
