//! The fan-out commands against real Redis, a real worker and real
//! receivers: `endpoints`, `events` and `recover`, as tables and `--json`;
//! once through the real binary.

use hook_slinger::{
    domain::TenantId,
    jobs::JobState,
    monitor::{
        cli::{CliError, Command},
        Console,
    },
};
use serde_json::{json, Value};

use super::{create_endpoint, post_event, run, run_json, wait_delivered, wait_held, DISABLE_AFTER_3, WAIT};
use crate::helpers::{settings, spawn_app, spawn_worker, Receiver, Reply};

fn recover(endpoint: &str, since: &str, tenant: Option<&str>) -> Command {
    Command::Recover {
        endpoint_id: endpoint.to_owned(),
        since: since.to_owned(),
        until: None,
        tenant: tenant.map(Into::into),
    }
}

#[tokio::test]
async fn cli_lists_endpoints_and_events_and_recovers_an_endpoints_failed_deliveries() {
    let s = settings(&[("MAX_RETRIES", "0")]);
    // The app only for its clean-up of the test's keys.
    let _app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let console = Console::new(&s).unwrap();
    let (good_rx, bad_rx) = (Receiver::start().await, Receiver::start().await);
    bad_rx.set_default(Reply::status(500));
    let acme = TenantId::parse("acme").unwrap();
    let other = TenantId::parse("globex").unwrap();
    let good =
        create_endpoint(&console, &acme, json!({"url": good_rx.url("/ok"), "event_types": ["order.created"]})).await;
    let bad =
        create_endpoint(&console, &acme, json!({"url": bad_rx.url("/bad"), "filter": {"total": {"$gt": 10}}})).await;
    let quiet = create_endpoint(&console, &other, json!({"url": good_rx.url("/globex")})).await;

    let event = post_event(&console, &acme, json!({"event_type": "order.created", "payload": {"total": 42}}), 2).await;
    let delivered = wait_delivered(&console, &acme, &event, 2).await;
    let state_of = |ep: &str| {
        delivered
            .deliveries
            .iter()
            .find(|d| d.spec.delivery.as_ref().unwrap().endpoint_id.as_str() == ep)
            .unwrap()
            .state
    };
    assert_eq!(state_of(good.id.as_str()), JobState::Succeeded);
    assert_eq!(state_of(bad.id.as_str()), JobState::Failed);

    // Every tenant's endpoints without --tenant; one tenant's with it.
    let all = run_json(&console, Command::Endpoints { tenant: None }).await;
    let listed = all["endpoints"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{all}");
    let row =
        |id: &str| listed.iter().find(|e| e["endpoint_id"] == id).unwrap_or_else(|| panic!("{id} listed")).clone();
    let g = row(good.id.as_str());
    assert_eq!((g["tenant"].as_str(), g["event_types"].clone()), (Some("acme"), json!(["order.created"])));
    assert_eq!(g["last_hour"], json!({"attempts": 1, "succeeded": 1, "success_rate": 1.0}));
    assert!(g["last_failure"].is_null() && g["filter"].is_null() && g["disabled"] == false, "{g}");
    let b = row(bad.id.as_str());
    assert_eq!(b["filter"], json!({"total": {"$gt": 10}}));
    assert_eq!(b["event_types"], json!([]));
    assert_eq!(b["last_hour"]["success_rate"], 0.0);
    assert!(b["last_failure"]["error"].as_str().unwrap().contains("500"), "{b}");
    assert!(!all.to_string().contains("whsec_"), "secrets are never printed");
    assert_eq!(row(quiet.id.as_str())["tenant"], "globex");
    let one = run_json(&console, Command::Endpoints { tenant: Some("globex".into()) }).await;
    assert_eq!(one["endpoints"].as_array().unwrap().len(), 1);

    let table = run(&console, Command::Endpoints { tenant: Some("acme".into()) }, false).await.unwrap();
    assert!(table.starts_with("TENANT"), "{table}");
    assert!(table.contains(good.id.as_str()) && table.contains(bad.id.as_str()), "{table}");
    assert!(table.contains("100% of 1") && table.contains("0% of 1") && table.contains("HTTP 500"), "{table}");
    assert!(!table.contains(quiet.id.as_str()) && !table.contains('\u{1b}'), "{table}");

    let events = |tenant: Option<&str>, event_type: Option<&str>| Command::Events {
        tenant: tenant.map(Into::into),
        event_type: event_type.map(Into::into),
        limit: 50,
    };
    let v = run_json(&console, events(None, None)).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    let e = &v["events"][0];
    assert_eq!((e["event_id"].as_str(), e["tenant"].as_str()), (Some(event.as_str()), Some("acme")));
    assert_eq!(
        (e["event_type"].as_str(), e["matched"].as_u64(), e["made"].as_u64()),
        (Some("order.created"), Some(2), Some(2))
    );
    assert_eq!(e["expanded"], true);
    assert_eq!(run_json(&console, events(Some("acme"), Some("order.paid"))).await["events"], json!([]));
    assert_eq!(run_json(&console, events(Some("globex"), None)).await["events"], json!([]));
    let table = run(&console, events(Some("acme"), Some("order.created")), false).await.unwrap();
    assert!(table.starts_with("TENANT") && table.contains(event.as_str()), "{table}");

    // A window that ends before the event was created holds nothing.
    let before = Command::Recover {
        endpoint_id: bad.id.to_string(),
        since: "2h".into(),
        until: Some("1h".into()),
        tenant: Some("acme".into()),
    };
    assert_eq!(run_json(&console, before).await["recovered"], 0);
    // Recover: the receiver is fixed; the tenant is found from the endpoint.
    bad_rx.set_default(Reply::status(200));
    let v = run_json(&console, recover(bad.id.as_str(), "1h", None)).await;
    assert_eq!((v["recovered"].as_u64(), v["tenant"].as_str()), (Some(1), Some("acme")), "{v}");
    bad_rx.wait_for(2, WAIT).await;
    let after = wait_delivered(&console, &acme, &event, 2).await;
    assert!(after.deliveries.iter().all(|d| d.state == JobState::Succeeded));
    // Nothing failed is left.
    let human = run(&console, recover(bad.id.as_str(), "1h", Some("acme")), false).await.unwrap();
    assert!(human.starts_with("recovered 0 failed deliveries"), "{human}");

    // Refusals: another tenant's endpoint, an unknown one, bad times.
    let cross = run(&console, recover(bad.id.as_str(), "1h", Some("globex")), false).await.unwrap_err();
    assert!(matches!(cross, CliError::NoEndpoint(_)), "{cross}");
    let unknown = format!("ep_{}", uuid::Uuid::new_v4().simple());
    assert!(matches!(run(&console, recover(&unknown, "1h", None), false).await, Err(CliError::NoEndpoint(_))));
    for (id, since) in [(bad.id.as_str(), "yesterday"), ("nope", "1h")] {
        let e = run(&console, recover(id, since, None), false).await.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
    let backwards = Command::Recover {
        endpoint_id: bad.id.to_string(),
        since: "1h".into(),
        until: Some("2h".into()),
        tenant: None,
    };
    assert!(matches!(run(&console, backwards, false).await, Err(CliError::Usage(_))));

    // Once through the binary, as a script would.
    let bin = env!("CARGO_BIN_EXE_hook-slinger-monitor");
    let out = std::process::Command::new(bin)
        .args(["events", "--tenant", "acme", "--type", "order.created", "--json"])
        .env("REDIS_URL", crate::helpers::redis_url())
        .env("QUEUE_NAME", &s.redis.queue)
        .env("QUEUE_SHARDS", s.redis.shards.to_string())
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"][0]["event_id"], event.as_str());
}

#[tokio::test]
async fn cli_endpoints_show_health_breaker_and_held_deliveries() {
    let s = settings(&DISABLE_AFTER_3);
    // The app only for its clean-up of the test's keys.
    let _app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let console = Console::new(&s).unwrap();
    let (down_rx, up_rx) = (Receiver::start().await, Receiver::start().await);
    down_rx.set_default(Reply::status(500));
    let tenant = TenantId::parse("heldco").unwrap();
    let down = create_endpoint(&console, &tenant, json!({"url": down_rx.url("/down"), "event_types": ["x"]})).await;
    let up = create_endpoint(
        &console,
        &tenant,
        json!({"url": up_rx.url("/up"), "event_types": ["y"], "rate_limit": 20, "ordered": true}),
    )
    .await;
    for n in 0..3 {
        post_event(&console, &tenant, json!({"event_type": "x", "payload": {"n": n}}), 1).await;
    }
    let ok = post_event(&console, &tenant, json!({"event_type": "y", "payload": {}}), 1).await;
    wait_delivered(&console, &tenant, &ok, 1).await;
    wait_held(&console, &tenant, &down, 3).await;

    let v = run_json(&console, Command::Endpoints { tenant: Some("heldco".into()) }).await;
    let row = |id: &str| v["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint_id"] == id).unwrap().clone();
    let d = row(down.id.as_str());
    let failures = d["breaker"]["consecutive_failures"].as_u64().unwrap();
    assert!(failures >= 3, "at least the three that disabled it: {d}");
    assert_eq!(d["breaker"], json!({"state": "closed", "open_until": null, "consecutive_failures": failures}));
    assert_eq!((d["held"].as_u64(), d["waiting"].as_u64(), d["in_flight"].as_u64()), (Some(3), Some(0), Some(0)));
    assert_eq!((d["health"].as_str(), d["disabled"].as_bool()), (Some("failing"), Some(true)), "{d}");
    assert_eq!(d["last_hour"], json!({"attempts": failures, "succeeded": 0, "success_rate": 0.0}));
    assert_eq!(
        (d["max_in_flight"].as_u64(), d["rate_limit"].clone(), d["ordered"].clone()),
        (Some(10), json!(null), json!(false))
    );
    let u = row(up.id.as_str());
    assert_eq!((u["health"].as_str(), u["held"].as_u64()), (Some("healthy"), Some(0)), "{u}");
    assert_eq!(u["breaker"], json!({"state": "closed", "open_until": null, "consecutive_failures": 0}));
    assert_eq!((u["rate_limit"].as_u64(), u["ordered"].as_bool()), (Some(20), Some(true)));

    let table = run(&console, Command::Endpoints { tenant: Some("heldco".into()) }, false).await.unwrap();
    let head = table.lines().next().unwrap();
    assert!(head.contains("HEALTH 1H") && head.contains("BREAKER") && head.contains("HELD"), "{table}");
    let line = |id: &str| table.lines().find(|l| l.contains(id)).unwrap().to_owned();
    let d = line(down.id.as_str());
    assert!(d.contains("failing 0% of") && d.contains(&format!("closed ({failures} failed in a row)")), "{d}");
    assert!(d.contains(" 3 ") && d.contains("disabled"), "{d}");
    assert!(line(up.id.as_str()).contains("healthy 100% of 1"), "{table}");
}
