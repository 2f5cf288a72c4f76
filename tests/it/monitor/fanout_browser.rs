//! Fan-out in headless Chromium: a tenant's two endpoints and an event
//! delivered to both by a real worker, then the tenants, endpoints, event
//! and delivery pages, and the actions (disable, recover since, rotate
//! secret) checked against the endpoint service. Screenshots go to
//! `target/screenshots/`.

use std::time::Duration;

use hook_slinger::{domain::TenantId, jobs::JobState, monitor::Console};
use serde_json::json;

use super::{
    create_endpoint, log_in, monitor_settings, post_event, spawn_monitor, wait_delivered, wait_held,
    webdriver::{browser_tools, screenshots, Driver},
    DISABLE_AFTER_3, WAIT,
};
use crate::helpers::{spawn_app, spawn_worker, Receiver, Reply};

#[tokio::test]
async fn browser_tenants_endpoints_event_deliveries_and_endpoint_actions() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
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

    log_in(&b, &monitor.base).await;

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

#[tokio::test]
async fn browser_an_auto_disabled_endpoint_shows_its_held_deliveries_and_enabling_it_sends_them() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let s = monitor_settings(&DISABLE_AFTER_3);
    // The app only for its clean-up of the test's keys.
    let _app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let monitor = spawn_monitor(&s).await;
    let console = Console::new(&s).unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let tenant = TenantId::parse("heldco").unwrap();
    let ep = create_endpoint(&console, &tenant, json!({"url": rx.url("/down"), "max_in_flight": 7})).await;
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(post_event(&console, &tenant, json!({"event_type": "x", "payload": {"n": n}}), 1).await);
    }
    // Three first attempts fail in a row: disabled; their retries are held.
    wait_held(&console, &tenant, &ep, 3).await;

    let dir = screenshots();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver).await;
    let b = driver.browser(&chromium, profile.path()).await;
    b.set_size(1400, 900).await;
    let secs = Duration::from_secs(5);
    log_in(&b, &monitor.base).await;

    // The held deliveries are a state of their own in the jobs filter.
    b.goto(&format!("{}/jobs?state=held", monitor.base)).await;
    let held = b.wait_text("main table", "held", secs).await;
    assert_eq!(held.matches("held").count(), 3, "{held}");

    // The endpoint's page: the banner, the flow and the attempt windows.
    b.goto(&format!("{}/tenants/heldco/endpoints/{}", monitor.base, ep.id)).await;
    let banner = b.wait_text(&format!("#held-{}", ep.id), "deliveries are held", secs).await;
    assert!(banner.contains(&format!("Endpoint {} is disabled; 3 deliveries are held. Enable it to send them.", ep.id)));
    let flow = b.text("#flow").await;
    assert!(flow.contains("failing") && flow.contains("0 % of") && flow.contains("closed"), "{flow}");
    assert_eq!(b.text("#held").await, "3");
    // At least the three that disabled it (a retry may have failed first).
    let in_a_row: u64 = b.text("#consecutive-failures").await.parse().unwrap();
    assert!(in_a_row >= 3, "{in_a_row}");
    assert_eq!(b.text("#in-flight").await, "0 of 7");
    assert_eq!((b.text("#max-in-flight").await, b.text("#ordered").await), ("7".to_owned(), "no".to_owned()));
    let hour = b.text("#window-hour").await;
    assert!(hour.starts_with(&format!("Last hour {in_a_row} 0 0.0 %")), "{hour}");
    assert!(hour.contains(" ms"), "p50 and p99 are shown: {hour}");
    assert!(b.text("#window-day").await.starts_with(&format!("Last day {in_a_row} 0")));
    b.screenshot(&dir.join("monitor-endpoint-held.png")).await;

    // The tenant's endpoints: the same banner, and health and breaker per row.
    b.click("main p.small a").await;
    b.wait_text("h1", "Endpoints of heldco", secs).await;
    let banner = b.text(&format!("#held-{}", ep.id)).await;
    assert!(banner.contains("3 deliveries are held"), "{banner}");
    let row = b.text(&format!("#row-{}", ep.id)).await;
    assert!(row.contains("failing") && row.contains(&format!("0 % of {in_a_row}")), "the health column: {row}");
    assert!(row.contains(&format!("closed {in_a_row} failed in a row")), "the breaker column: {row}");
    assert!(row.contains("disabled") && row.contains("3 held"), "{row}");
    b.screenshot(&dir.join("monitor-endpoints-held.png")).await;

    // Fixed receiver, then Enable from the banner: the held deliveries go
    // out and the banner is gone.
    rx.set_default(Reply::status(200));
    let seen = rx.received().len();
    b.click(&format!("#release-{}", ep.id)).await;
    b.wait_text(".flash", "enabled again", secs).await;
    assert!(b.current_url().await.ends_with("/tenants/heldco/endpoints?done=enabled"));
    rx.wait_for(seen + 3, WAIT).await;
    for event in &events {
        let delivered = wait_delivered(&console, &tenant, event, 1).await;
        assert_eq!(delivered.deliveries[0].state, JobState::Succeeded);
    }
    assert!(!console.endpoints().get(&tenant, &ep.id).await.unwrap().disabled);
    b.goto(&format!("{}/tenants/heldco/endpoints", monitor.base)).await;
    let row = b.wait_text(&format!("#row-{}", ep.id), "enabled", secs).await;
    assert!(!row.contains("held"), "{row}");
    let page = b.text("main").await;
    assert!(!page.contains("deliveries are held"), "the banner is gone: {page}");
    b.quit().await;
}
