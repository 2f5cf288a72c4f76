//! Sources in headless Chromium: a tenant's unverified (`none`) source and
//! its GitHub source receive requests at the running app's `/ingest/{id}`
//! (accepted, a replay, a wrong and a missing signature); the sources page
//! shows their ingest URLs, the `none` badge and the last hour's counts by
//! reason; a source's page lists its latest requests, and an accepted one
//! leads to its event and the event's delivery by a real worker.
//! Screenshots go to `target/screenshots/`.

use std::time::Duration;

use hook_slinger::{domain::TenantId, jobs::JobState, monitor::Console};
use serde_json::json;

use super::{
    create_endpoint, create_source, github_signature, ingest, log_in, monitor_settings, spawn_monitor, wait_delivered,
    webdriver::{browser_tools, screenshots, Driver},
};
use crate::helpers::{spawn_app, spawn_worker, Receiver};

const GITHUB_SECRET: &str = "gh-webhook-secret-3f9a";

#[tokio::test]
async fn browser_sources_show_ingest_urls_unverified_badge_counts_by_reason_and_lead_to_the_event() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let s = monitor_settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let monitor = spawn_monitor(&s).await;
    let console = Console::new(&s).unwrap();
    let rx = Receiver::start().await;

    let tenant = TenantId::parse("srcco").unwrap();
    let endpoint = create_endpoint(&console, &tenant, json!({"url": rx.url("/hooks")})).await;
    let open = create_source(
        &console,
        &tenant,
        json!({"name": "Open hook", "verify": {"scheme": "none"}, "default_event_type": "open.ping"}),
    )
    .await;
    let github = create_source(
        &console,
        &tenant,
        json!({"name": "GitHub acme/shop", "verify": {"scheme": "github", "secret": GITHUB_SECRET},
               "default_event_type": "github.event", "event_type_from": {"header": "X-GitHub-Event"}}),
    )
    .await;
    // Another tenant's source, whose page must not open under srcco.
    let elsewhere = create_source(
        &console,
        &TenantId::parse("globex").unwrap(),
        json!({"name": "Elsewhere", "verify": {"scheme": "none"}}),
    )
    .await;

    // The none source accepts an unsigned request.
    let (status, answer) = ingest(&app, &open, &[("content-type", "application/json")], br#"{"ping": 1}"#).await;
    assert_eq!(status, 202, "{answer}");
    // The GitHub source: a valid request, its replay, a wrong and a missing signature.
    let body = br#"{"ref": "refs/heads/main", "commits": 2}"#;
    let signed = github_signature(GITHUB_SECRET, body);
    let headers =
        [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "gh-delivery-71"), ("X-Hub-Signature-256", signed.as_str())];
    let (status, answer) = ingest(&app, &github, &headers, body).await;
    assert_eq!((status, answer["duplicate"].as_bool()), (202, Some(false)), "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_owned();
    let (status, replay) = ingest(&app, &github, &headers, body).await;
    assert_eq!((status, replay["duplicate"].as_bool()), (202, Some(true)), "{replay}");
    assert_eq!(replay["event_id"], event_id.as_str());
    let wrong = github_signature("not-the-secret", body);
    let (status, refused) = ingest(&app, &github, &[("X-Hub-Signature-256", wrong.as_str())], body).await;
    assert_eq!((status, refused["reason"].as_str()), (401, Some("wrong_signature")), "{refused}");
    let (status, refused) = ingest(&app, &github, &[("X-GitHub-Event", "push")], body).await;
    assert_eq!((status, refused["reason"].as_str()), (401, Some("missing_signature")), "{refused}");

    // The accepted request's event is delivered to the tenant's endpoint.
    let event = hook_slinger::domain::EventId::parse(&event_id).unwrap();
    let delivered = wait_delivered(&console, &tenant, &event, 1).await;
    assert_eq!(delivered.deliveries[0].state, JobState::Succeeded);

    let dir = screenshots();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver).await;
    let b = driver.browser(&chromium, profile.path()).await;
    b.set_size(1400, 900).await;
    let secs = Duration::from_secs(5);
    log_in(&b, &monitor.base).await;

    // Tenants → the tenant's sources.
    b.click("header nav a[href='/tenants']").await;
    b.wait_text("h1", "Tenants", secs).await;
    b.click("#tenants a[href='/tenants/srcco/sources']").await;
    b.wait_text("h1", "Sources of srcco", secs).await;

    // The none source: its ingest URL, marked unverified, one accepted.
    let open_row = format!("#row-{}", open.id);
    let row = b.text(&open_row).await;
    assert!(row.contains("Open hook") && row.contains(&format!("/ingest/{}", open.id)), "{row}");
    assert!(row.contains("none") && row.contains("unverified"), "{row}");
    b.find(&format!("{open_row} .badge.warn.unverified"), secs).await;
    assert_eq!(b.text(&format!("{open_row} td.accepted")).await, "1");
    assert_eq!(b.text(&format!("{open_row} td.refused")).await, "0");

    // The GitHub source: verified, and its counts by result and reason.
    let gh_row = format!("#row-{}", github.id);
    let row = b.text(&gh_row).await;
    assert!(row.contains(&format!("/ingest/{}", github.id)) && row.contains("github"), "{row}");
    assert!(!row.contains("unverified"), "{row}");
    assert_eq!(b.text(&format!("{gh_row} td.accepted")).await, "1");
    assert_eq!(b.text(&format!("{gh_row} td.duplicate")).await, "1");
    assert_eq!(b.text(&format!("{gh_row} td.rate-limited")).await, "0");
    let refused = b.text(&format!("{gh_row} td.refused")).await;
    assert_eq!(refused.lines().collect::<Vec<_>>(), ["2", "missing_signature 1", "wrong_signature 1"], "{refused}");
    assert!(!b.text("main").await.contains(GITHUB_SECRET), "secrets stay hidden");
    b.screenshot(&dir.join("monitor-sources.png")).await;

    // The GitHub source's page: settings without the secret, counts, requests.
    b.click(&format!("{gh_row} a.source-link")).await;
    b.wait_text("h1", "GitHub acme/shop", secs).await;
    assert_eq!(b.text("#ingest-url").await, format!("/ingest/{}", github.id));
    assert_eq!(b.text("#verification").await, "github");
    assert!(b.text("#secret").await.contains("••••••••"));
    let settings = b.text("#source").await;
    assert!(settings.contains("X-GitHub-Delivery") && settings.contains("x-github-event"), "{settings}");
    assert!(settings.contains("1000 per second"), "the default rate limit: {settings}");
    for (row, want) in [
        ("accepted", "1"),
        ("duplicate", "1"),
        ("rate_limited", "0"),
        ("refused", "2"),
        ("refused-missing_signature", "1"),
        ("refused-wrong_signature", "1"),
        ("refused-malformed_signature", "0"),
        ("refused-stale_timestamp", "0"),
    ] {
        let got = b.text(&format!("#count-{row} td.num")).await;
        assert_eq!(got, want, "{row}");
    }
    let requests = b.text("#requests").await;
    assert_eq!(requests.matches("refused").count(), 2, "{requests}");
    assert!(requests.contains("missing_signature") && requests.contains("wrong_signature"), "{requests}");
    assert!(requests.contains("accepted") && requests.contains("duplicate"), "{requests}");
    assert_eq!(requests.matches("gh-delivery-71").count(), 2, "the delivery id of both: {requests}");
    assert_eq!(requests.matches(event_id.as_str()).count(), 2, "both link to the event: {requests}");
    let page = b.text("main").await;
    assert!(!page.contains(GITHUB_SECRET) && !page.contains("unverified"), "{page}");
    b.screenshot(&dir.join("monitor-source.png")).await;

    // The accepted request leads to its event, which names its source, and
    // to the event's delivery.
    b.click("#requests tr.accepted a.event-link").await;
    b.wait_text("#event-type", "push", secs).await;
    let ingested = b.text("#ingested").await;
    assert!(ingested.contains(github.id.as_str()) && ingested.contains("gh-delivery-71"), "{ingested}");
    let deliveries = b.wait_text("#deliveries", "succeeded", secs).await;
    assert!(deliveries.contains(endpoint.id.as_str()), "{deliveries}");
    assert!(b.text("main").await.contains("\"commits\": 2"), "the payload is the request's JSON body");
    b.screenshot(&dir.join("monitor-ingested-event.png")).await;
    // And back to the source.
    b.click("#ingested a").await;
    b.wait_text("h1", "GitHub acme/shop", secs).await;

    // The none source's page warns that it verifies nothing.
    b.goto(&format!("{}/tenants/srcco/sources/{}", monitor.base, open.id)).await;
    b.wait_text("#unverified-warning", "verifies nothing", secs).await;
    assert_eq!(b.text("#verification").await, "none unverified");
    assert_eq!(b.text("#count-accepted td.num").await, "1");
    b.click("#requests tr.accepted a.event-link").await;
    b.wait_text("#event-type", "open.ping", secs).await;
    b.wait_text("#deliveries", "succeeded", secs).await;

    // The endpoints page links to the sources.
    b.goto(&format!("{}/tenants/srcco/endpoints", monitor.base)).await;
    b.click("#sources-link").await;
    b.wait_text("h1", "Sources of srcco", secs).await;

    // Another tenant's source, an unknown one and a malformed id are not found.
    let unknown = format!("src_{}", uuid::Uuid::new_v4().simple());
    for id in [elsewhere.id.as_str(), unknown.as_str(), "nope"] {
        b.goto(&format!("{}/tenants/srcco/sources/{id}", monitor.base)).await;
        b.wait_text("h1", "Not Found", secs).await;
        assert!(b.text("main").await.contains("No such source."), "{id}");
    }
    b.quit().await;
}
