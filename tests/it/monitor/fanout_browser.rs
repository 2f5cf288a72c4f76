//! Fan-out in headless Chromium: a tenant's two endpoints and an event
//! delivered to both by a real worker, then the tenants, endpoints, event
//! and delivery pages, and the actions (disable, recover since, rotate
//! secret) checked against the endpoint service. Screenshots go to
//! `target/screenshots/`.

use std::{path::PathBuf, time::Duration};

use hook_slinger::{domain::TenantId, jobs::JobState, monitor::Console};
use serde_json::json;

use super::{
    create_endpoint, monitor_settings, post_event, spawn_monitor, wait_delivered,
    webdriver::{which, Driver},
    PASSWORD, USER, WAIT,
};
use crate::helpers::{spawn_app, spawn_worker, Receiver, Reply};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

#[tokio::test]
async fn browser_tenants_endpoints_event_deliveries_and_endpoint_actions() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        // In CI the browser test must run: .ci/run installs both.
        assert!(std::env::var_os("CI").is_none(), "CI is set but chromium or chromedriver is missing");
        eprintln!("SKIPPED browser test: install chromium and chromium-driver (apt) to run it");
        return;
    };
    let s = monitor_settings(&[("MAX_RETRIES", "0")]);
    // The app only for its clean-up of the test's keys.
    let _app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let monitor = spawn_monitor(&s).await;
    let console = Console::new(&s).unwrap();
    let (shop_rx, billing_rx) = (Receiver::start().await, Receiver::start().await);
    billing_rx.set_default(Reply::status(500));

    let tenant = TenantId::parse("acme").unwrap();
    let shop = create_endpoint(
        &console,
        &tenant,
        json!({"url": shop_rx.url("/webhooks/shop"), "event_types": ["order.created", "order.paid"],
               "description": "shop front"}),
    )
    .await;
    let billing = create_endpoint(
        &console,
        &tenant,
        json!({"url": billing_rx.url("/webhooks/billing"), "event_types": ["order.created"],
               "filter": {"customer.tier": {"$in": ["gold", "platinum"]}}}),
    )
    .await;
    // An event id with a '/' in it: links must encode it.
    let body = json!({"event_type": "order.created", "event_id": "order-1042/v1",
        "payload": {"order_id": 1042, "customer": {"tier": "gold"}, "total": "59.90"}});
    let event = post_event(&console, &tenant, body, 2).await;
    let delivered = wait_delivered(&console, &tenant, &event, 2).await;
    let shop_job = delivered
        .deliveries
        .iter()
        .find(|d| d.spec.delivery.as_ref().unwrap().endpoint_id == shop.id)
        .expect("a delivery to the shop endpoint");
    assert_eq!(shop_job.state, JobState::Succeeded);

    let dir = screenshots();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver).await;
    let b = driver.browser(&chromium, profile.path()).await;
    b.set_size(1400, 900).await;
    let secs = Duration::from_secs(5);

    b.goto(&monitor.base).await;
    b.type_into("input[name=user]", USER).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("h1", "Overview", secs).await;

    // Tenants, from the navigation.
    b.click("header nav a[href='/tenants']").await;
    b.wait_text("h1", "Tenants", secs).await;
    let tenants = b.text("#tenants").await;
    assert!(tenants.contains("acme") && tenants.contains('2'), "{tenants}");

    // The tenant's endpoints: types, filter, health.
    b.click("#tenants a[href='/tenants/acme/endpoints']").await;
    b.wait_text("h1", "Endpoints of acme", secs).await;
    let shop_row = b.text(&format!("#row-{}", shop.id)).await;
    assert!(shop_row.contains("order.created, order.paid") && shop_row.contains("100 % of 1"), "{shop_row}");
    assert!(shop_row.contains("enabled"), "{shop_row}");
    let billing_row = b.text(&format!("#row-{}", billing.id)).await;
    assert!(billing_row.contains(r#"{"customer.tier":{"$in":["gold","platinum"]}}"#), "{billing_row}");
    assert!(billing_row.contains("0 % of 1") && !billing_row.contains("100 %"), "{billing_row}");
    assert!(billing_row.contains("HTTP 500"), "the last failure is shown: {billing_row}");
    b.screenshot(&dir.join("monitor-endpoints.png")).await;

    // Disable the shop endpoint.
    b.click(&format!("#disable-{}", shop.id)).await;
    b.accept_alert().await;
    b.wait_text(".flash", "disabled", secs).await;
    b.wait_text(&format!("#row-{} td.state", shop.id), "disabled", secs).await;
    assert!(console.endpoints().get(&tenant, &shop.id).await.unwrap().disabled);

    // Recover the billing endpoint's failed delivery once its receiver is fixed.
    billing_rx.set_default(Reply::status(200));
    b.click(&format!("#recover-{}", billing.id)).await;
    b.wait_text(".flash", "1 failed deliveries requeued", secs).await;
    billing_rx.wait_for(2, WAIT).await;

    // Rotate the billing endpoint's secret.
    b.click(&format!("#rotate-{}", billing.id)).await;
    b.accept_alert().await;
    b.wait_text(".flash", "new secret", secs).await;
    let rotated = console.endpoints().get(&tenant, &billing.id).await.unwrap();
    assert_ne!(rotated.secret, billing.secret, "the secret changed");
    assert_eq!(rotated.previous_secrets.len(), 1, "the old one signs through its grace period");
    let page = b.text("main").await;
    assert!(!page.contains(rotated.secret.expose()) && !page.contains(billing.secret.expose()), "secrets stay hidden");

    // The events list, then the event with its two deliveries.
    b.click("#events-link").await;
    b.wait_text("h1", "Events of acme", secs).await;
    b.wait_text("#events", "order-1042/v1", secs).await;
    b.click("#events a[href='/tenants/acme/events/order-1042%2Fv1']").await;
    b.wait_text("#event-type", "order.created", secs).await;
    let deliveries = b.wait_text("#deliveries", billing.id.as_str(), secs).await;
    assert!(deliveries.contains(shop.id.as_str()), "{deliveries}");
    // Both delivered now (the billing one after the recover); the page updates itself.
    let deliveries = b.wait_text("#deliveries", "succeeded", secs).await;
    assert_eq!(deliveries.matches("succeeded").count(), 2, "{deliveries}");
    assert_eq!(deliveries.matches("Requeue").count(), 2, "a requeue button per delivery: {deliveries}");
    assert!(b.text("main").await.contains("\"order_id\": 1042"), "payload is pretty-printed");
    b.screenshot(&dir.join("monitor-event.png")).await;

    // A delivery's job page names its event and endpoint.
    b.click(&format!("#deliveries a[href='/jobs/{}']", shop_job.id)).await;
    let delivery = b.wait_text("#delivery", "order-1042/v1", secs).await;
    assert!(delivery.contains(shop.id.as_str()) && delivery.contains("acme"), "{delivery}");
    b.click(&format!("#delivery a[href='/tenants/acme/endpoints/{}']", shop.id)).await;
    let details = b.wait_text("#endpoint", "shop front", secs).await;
    assert!(details.contains("disabled") && details.contains("order.created, order.paid"), "{details}");
    b.wait_text("#deliveries", "order-1042/v1", secs).await;
    b.screenshot(&dir.join("monitor-endpoint.png")).await;

    // Enable it again from its own page; the page it returns to says so.
    b.click(&format!("#enable-{}", shop.id)).await;
    b.wait_text(".flash", "enabled again", secs).await;
    assert!(b.current_url().await.contains(&format!("/tenants/acme/endpoints/{}", shop.id)));
    assert!(!console.endpoints().get(&tenant, &shop.id).await.unwrap().disabled);
    b.quit().await;
}
