//! The monitor's web UI over plain HTTP: login, sessions, CSRF, actions.

use std::time::{Duration, Instant};

use hook_slinger::{
    jobs::JobState,
    monitor::{Monitor, StartError, COOKIE},
};
use reqwest::{redirect::Policy, StatusCode};

use super::{monitor_settings, spawn_monitor, store_jobs, PASSWORD, USER, WAIT};
use crate::helpers::{job_body, settings, spawn_app, spawn_worker, Receiver, Reply};

/// URL-encoded form bodies (reqwest's `form` needs a feature this crate does not enable).
trait FormBody {
    fn form_body<V: AsRef<str>>(self, pairs: &[(&str, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<V: AsRef<str>>(self, pairs: &[(&str, V)]) -> Self {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            body.append_pair(k, v.as_ref());
        }
        self.header("content-type", "application/x-www-form-urlencoded").body(body.finish())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Logs in and returns the session cookie (`name=value`).
async fn login(http: &reqwest::Client, base: &str) -> String {
    let resp =
        http.post(format!("{base}/login")).form_body(&[("user", USER), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(http: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, String) {
    let resp = http.get(url).header("cookie", cookie).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("page has a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_monitor_refuses_to_start_without_a_safe_login_setup() {
    let no_credentials = settings(&[("MONITOR_HOST", "127.0.0.1"), ("MONITOR_PORT", "0")]);
    assert!(matches!(Monitor::build(no_credentials).await, Err(StartError::Access(_))));
    let open_on_network = settings(&[("MONITOR_HOST", "0.0.0.0"), ("MONITOR_PORT", "0"), ("MONITOR_AUTH", "off")]);
    assert!(matches!(Monitor::build(open_on_network).await, Err(StartError::Access(_))));
    let open_on_loopback = settings(&[("MONITOR_HOST", "127.0.0.1"), ("MONITOR_PORT", "0"), ("MONITOR_AUTH", "off")]);
    let m = spawn_monitor(&open_on_loopback).await;
    let (status, html) = page(&client(), &format!("{}/", m.base), "").await;
    assert_eq!(status, 200);
    assert!(html.contains("Overview"));
}

#[tokio::test]
async fn pages_need_a_login_and_wrong_logins_are_answered_slowly() {
    let s = monitor_settings(&[]);
    let m = spawn_monitor(&s).await;
    let http = client();
    for path in ["/", "/jobs", "/workers", "/jobs/6f1c0c8e-2f56-4a3b-9a57-8d2b3f0f9d11"] {
        let resp = http.get(format!("{}{path}", m.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(resp.headers()["location"], "/login");
    }
    // Probes need no login.
    assert_eq!(http.get(format!("{}/health", m.base)).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/ready", m.base)).send().await.unwrap().status(), 200);

    let started = Instant::now();
    let resp = http
        .post(format!("{}/login", m.base))
        .form_body(&[("user", USER), ("password", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(started.elapsed() >= Duration::from_millis(950), "wrong login answered in {:?}", started.elapsed());

    let cookie = login(&http, &m.base).await;
    assert!(cookie.starts_with(COOKIE));
    let (status, html) = page(&http, &format!("{}/", m.base), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("Overview") && html.contains("Retention"));
    let resp = http.get(format!("{}/", m.base)).header("cookie", &cookie).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");

    // Logging out ends the session on the server, not only in the browser.
    let csrf = csrf_of(&html);
    let resp = http
        .post(format!("{}/logout", m.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = http.get(format!("{}/", m.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn requeue_needs_the_csrf_token_and_a_double_click_delivers_once() {
    let s = monitor_settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let m = spawn_monitor(&s).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let id = app.accept(&job_body(&rx.url("/hook"))).await;
    app.wait_state(&id, JobState::Failed, WAIT).await;
    rx.set_default(Reply::status(200));

    let http = client();
    let cookie = login(&http, &m.base).await;
    let (status, html) = page(&http, &format!("{}/jobs/{id}", m.base), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("Requeue") && html.contains("500"), "{html}");
    assert!(html.contains("&quot;hello&quot;: &quot;world&quot;") || html.contains("\"hello\": \"world\""));
    let csrf = csrf_of(&html);

    let url = format!("{}/jobs/{id}/requeue", m.base);
    let forged = http.post(&url).header("cookie", &cookie).form_body(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let no_session = http.post(&url).form_body(&[("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(no_session.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.record(&id).await.state, JobState::Failed, "refused requests changed nothing");

    let (first, second) = tokio::join!(
        http.post(&url).header("cookie", &cookie).form_body(&[("csrf", &csrf)]).send(),
        http.post(&url).header("cookie", &cookie).form_body(&[("csrf", &csrf)]).send(),
    );
    let locations: Vec<String> = [first.unwrap(), second.unwrap()]
        .iter()
        .map(|r| r.headers()["location"].to_str().unwrap().to_owned())
        .collect();
    assert!(locations.iter().any(|l| l.ends_with("done=requeued")), "{locations:?}");
    assert!(locations.iter().any(|l| l.ends_with("done=not_failed")), "{locations:?}");
    app.wait_state(&id, JobState::Succeeded, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One failed attempt, then exactly one delivery.
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn bulk_actions_retry_now_and_delete() {
    let s = monitor_settings(&[]);
    let app = spawn_app(s.clone()).await;
    let m = spawn_monitor(&s).await;
    let http = client();
    let cookie = login(&http, &m.base).await;
    let (_, html) = page(&http, &format!("{}/jobs", m.base), &cookie).await;
    let csrf = csrf_of(&html);
    let ids = store_jobs(&app.store, 3, Some("old"), chrono::Utc::now() - chrono::Duration::days(3)).await;

    // Delete one job: it is gone from the record and from every listing.
    let resp = http
        .post(format!("{}/jobs/{}/delete", m.base, ids[0]))
        .header("cookie", &cookie)
        .form_body(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&http, &format!("{}/jobs/{}", m.base, ids[0]), &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = page(&http, &format!("{}/jobs?group=old", m.base), &cookie).await;
    assert!(!list.contains(&ids[0]) && list.contains(&ids[1]));

    // Retry now applies to scheduled jobs and to stuck ones: these were
    // stored three days ago and never queued, so they get a fresh cycle; a
    // job queued a moment ago is on its way and is left alone.
    let fresh = store_jobs(&app.store, 1, Some("new"), chrono::Utc::now()).await;
    for (id, outcome) in [(&ids[1], "done=retrying"), (&fresh[0], "done=not_scheduled")] {
        let resp = http
            .post(format!("{}/jobs/{}/retry", m.base, id))
            .header("cookie", &cookie)
            .form_body(&[("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert!(resp.headers()["location"].to_str().unwrap().ends_with(outcome), "{id}: {outcome}");
    }
    let rec = app.record(&ids[1]).await;
    assert_eq!((rec.state, rec.cycle), (JobState::Scheduled, 1), "a stuck job gets a fresh cycle, due now");

    // Filters that do not parse are reported, not a crash.
    let (status, html) = page(&http, &format!("{}/jobs?state=lost&group=bad%20label", m.base), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("unknown job state"), "{html}");
    // Labels and ids are escaped: a crafted query cannot inject markup.
    let (_, html) = page(&http, &format!("{}/jobs?host=%3Cscript%3Ealert(1)%3C/script%3E", m.base), &cookie).await;
    assert!(!html.contains("<script>alert(1)"));
}

#[tokio::test]
async fn purge_refuses_ages_that_overflow_the_clock() {
    let s = monitor_settings(&[]);
    let app = spawn_app(s.clone()).await;
    let m = spawn_monitor(&s).await;
    let http = client();
    let ids = store_jobs(&app.store, 1, Some("keep"), chrono::Utc::now() - chrono::Duration::days(2)).await;
    let id = hook_slinger::domain::JobId::parse(&ids[0]).unwrap();
    super::bulk::fail_attempt(&app.store, &id, 1, hook_slinger::store::NextStep::Succeeded).await;

    let cookie = login(&http, &m.base).await;
    let (_, html) = page(&http, &format!("{}/jobs", m.base), &cookie).await;
    let csrf = csrf_of(&html);
    // 8.3e12 s panicked inside chrono; beyond that the age wrapped to zero
    // and deleted every succeeded job.
    for age in ["8300000000000", "18446744073709551615", "400000000"] {
        let resp = http
            .post(format!("{}/bulk/purge", m.base))
            .header("cookie", &cookie)
            .form_body(&[("csrf", csrf.as_str()), ("older_than", age)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "older_than={age}");
    }
    assert!(app.store.get(&id).await.unwrap().is_some(), "nothing was deleted");
}

#[tokio::test]
async fn fan_out_pages_need_a_login_actions_need_the_csrf_token_and_tenants_stay_apart() {
    let s = monitor_settings(&[]);
    let _app = spawn_app(s.clone()).await;
    let m = spawn_monitor(&s).await;
    let console = hook_slinger::monitor::Console::new(&s).unwrap();
    let acme = hook_slinger::domain::TenantId::parse("acme").unwrap();
    let body = serde_json::json!({"url": "http://127.0.0.1:9/hook", "event_types": ["a.b"]});
    let ep = super::create_endpoint(&console, &acme, body.clone()).await;
    let other = super::create_endpoint(&console, &hook_slinger::domain::TenantId::parse("globex").unwrap(), body).await;
    let http = client();
    let base = &m.base;
    let ep_page = format!("/tenants/acme/endpoints/{}", ep.id);
    for path in
        ["/tenants", "/tenants/acme/endpoints", ep_page.as_str(), "/tenants/acme/events", "/tenants/acme/events/e1"]
    {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
    }

    let cookie = login(&http, base).await;
    let (status, html) = page(&http, &format!("{base}/tenants/acme/endpoints"), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains(ep.id.as_str()) && !html.contains(other.id.as_str()), "only acme's endpoints");
    let csrf = csrf_of(&html);

    // A forged or missing token changes nothing.
    let disable = format!("{base}{ep_page}/disable");
    for token in ["forged", ""] {
        let resp = http.post(&disable).header("cookie", &cookie).form_body(&[("csrf", token)]).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert!(!console.endpoints().get(&acme, &ep.id).await.unwrap().disabled);
    let resp =
        http.post(&disable).header("cookie", &cookie).form_body(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(resp.headers()["location"], "/tenants/acme/endpoints?done=disabled");
    assert!(console.endpoints().get(&acme, &ep.id).await.unwrap().disabled);

    // Another tenant's endpoint, an unknown one, an unknown event: 404s,
    // and an action on another tenant's endpoint changes nothing.
    let cross = format!("/tenants/acme/endpoints/{}", other.id);
    for path in
        [cross.as_str(), "/tenants/acme/endpoints/ep_nope", "/tenants/a%2Fb/endpoints", "/tenants/acme/events/e1"]
    {
        assert_eq!(page(&http, &format!("{base}{path}"), &cookie).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    for action in ["disable", "rotate", "recover"] {
        let resp = http
            .post(format!("{base}{cross}/{action}"))
            .header("cookie", &cookie)
            .form_body(&[("csrf", csrf.as_str()), ("since", "1h")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let untouched = console.endpoints().get(&other.tenant, &other.id).await.unwrap();
    assert!(!untouched.disabled && untouched.secret == other.secret);

    // A since that does not parse is a 400 that says why.
    let resp = http
        .post(format!("{base}{ep_page}/recover"))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str()), ("since", "last tuesday")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("24h"));
    let resp = http
        .post(format!("{base}{ep_page}/recover"))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str()), ("since", "2h"), ("back", "endpoint")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"].to_str().unwrap(), format!("{ep_page}?done=recovered&n=0"));
}

#[tokio::test]
async fn source_pages_need_a_login_never_hold_a_secret_and_keep_tenants_apart() {
    let s = monitor_settings(&[]);
    let _app = spawn_app(s.clone()).await;
    let m = spawn_monitor(&s).await;
    let console = hook_slinger::monitor::Console::new(&s).unwrap();
    let acme = hook_slinger::domain::TenantId::parse("acme").unwrap();
    let secret = "a-provider-secret-never-shown";
    let body = serde_json::json!({"name": "Stripe", "verify": {"scheme": "stripe", "secret": secret,
        "previous_secret": "an-old-secret-never-shown"}});
    let src = super::create_source(&console, &acme, body).await;
    let globex = hook_slinger::domain::TenantId::parse("globex").unwrap();
    let other =
        super::create_source(&console, &globex, serde_json::json!({"name": "x", "verify": {"scheme": "none"}})).await;
    let http = client();
    let base = &m.base;
    let src_page = format!("/tenants/acme/sources/{}", src.id);
    for path in ["/tenants/acme/sources", src_page.as_str()] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
    }

    let cookie = login(&http, base).await;
    let (status, html) = page(&http, &format!("{base}/tenants/acme/sources"), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains(src.id.as_str()) && !html.contains(other.id.as_str()), "only acme's sources");
    let (status, html) = page(&http, &format!("{base}{src_page}"), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("stripe") && html.contains("Timestamp tolerance"), "{html}");
    assert!(html.contains("+ previous, accepted until"), "a rotation is shown: {html}");
    assert!(!html.contains("never-shown"), "no secret in the page, not even in an attribute");
    assert!(!html.contains("unverified"), "a signed source is not marked");

    let unknown = format!("src_{}", uuid::Uuid::new_v4().simple());
    for id in [other.id.as_str(), unknown.as_str(), "src_nope"] {
        let (status, html) = page(&http, &format!("{base}/tenants/acme/sources/{id}"), &cookie).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert!(html.contains("No such source."), "{id}: {html}");
    }
    // Its own tenant's page opens it.
    let (status, _) = page(&http, &format!("{base}/tenants/globex/sources/{}", other.id), &cookie).await;
    assert_eq!(status, 200);
}
