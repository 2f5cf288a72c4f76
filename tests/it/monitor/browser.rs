//! End to end in headless Chromium: log in, see a failed job, open it, see
//! its attempts, fix the receiver, click requeue, see the job succeed.
//! Screenshots go to `target/screenshots/`.

use std::time::Duration;

use hook_slinger::jobs::JobState;

use super::{
    monitor_settings, spawn_monitor,
    webdriver::{browser_tools, screenshots, Driver},
    PASSWORD, USER, WAIT,
};
use crate::helpers::{spawn_app, spawn_worker, Receiver, Reply};

#[tokio::test]
async fn browser_login_failed_job_requeue_succeeds() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let s = monitor_settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let monitor = spawn_monitor(&s).await;
    let rx = Receiver::start().await;
    let ok_rx = Receiver::start().await;

    // Some history, so the overview has something to show.
    for (i, tag) in ["order.created", "order.paid", "invoice.sent", "user.signup"].iter().cycle().take(12).enumerate() {
        let group = if i % 2 == 0 { "shop" } else { "billing" };
        app.accept(&serde_json::json!({"to_url": ok_rx.url("/hooks"), "group": group, "tag": tag,
            "payload": {"event": tag, "n": i}}))
            .await;
    }
    rx.set_default(Reply::status(500));
    let id = app
        .accept(&serde_json::json!({
            "to_url": rx.url("/webhooks/orders"), "to_auth": "Bearer receiver-secret",
            "group": "shop", "tag": "order.created",
            "payload": {"order_id": 1042, "total": "59.90", "currency": "EUR", "items": [{"sku": "tea-01", "qty": 2}]},
        }))
        .await;
    app.wait_state(&id, JobState::Failed, WAIT).await;
    app.wait_count(JobState::Succeeded, 12, WAIT).await;

    let dir = screenshots();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver).await;
    let b = driver.browser(&chromium, profile.path()).await;
    b.set_size(1280, 900).await;

    b.goto(&monitor.base).await;
    assert!(b.current_url().await.ends_with("/login"), "pages need a login");
    b.type_into("input[name=user]", USER).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("h1", "Overview", Duration::from_secs(5)).await;
    b.wait_text("a.card.failed .n", "1", Duration::from_secs(5)).await;
    b.screenshot(&dir.join("monitor-overview.png")).await;

    b.click("a.card.failed").await;
    b.wait_text("h1", "Jobs", Duration::from_secs(5)).await;
    b.screenshot(&dir.join("monitor-failed-jobs.png")).await;
    b.click(&format!("a[href='/jobs/{id}']")).await;
    b.wait_text("#job-state", "failed", Duration::from_secs(5)).await;
    let attempts = b.text("#attempts").await;
    assert!(attempts.contains("500"), "attempt log shows the receiver's 500: {attempts}");
    let request = b.text("main").await;
    assert!(request.contains("Bearer ••••••••") && !request.contains("receiver-secret"), "to_auth is masked");
    assert!(request.contains("\"order_id\": 1042"), "payload is pretty-printed");
    b.screenshot(&dir.join("monitor-job-failed.png")).await;

    rx.set_default(Reply::status(200));
    b.click("#requeue").await;
    // The page updates itself (live refresh) until the delivery is recorded.
    b.wait_text("#job-state", "succeeded", Duration::from_secs(20)).await;
    let attempts = b.text("#attempts").await;
    assert!(attempts.contains("200"), "{attempts}");
    b.screenshot(&dir.join("monitor-job-succeeded.png")).await;
    assert_eq!(app.record(&id).await.state, JobState::Succeeded);

    // Phone width: the same pages stay usable.
    b.set_size(390, 844).await;
    b.goto(&format!("{}/jobs", monitor.base)).await;
    b.wait_text("h1", "Jobs", Duration::from_secs(5)).await;
    b.screenshot(&dir.join("monitor-jobs-phone.png")).await;
    b.set_size(1280, 900).await;
    b.goto(&monitor.base).await;
    b.wait_text("a.card.succeeded .n", "13", Duration::from_secs(5)).await;
    b.screenshot(&dir.join("monitor-overview-after.png")).await;
    b.quit().await;
}
