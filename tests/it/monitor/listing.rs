//! Paging through jobs: newest first, no job repeated or skipped while new
//! jobs arrive, filters combined, cursors that survive their job leaving.

use std::collections::HashSet;

use chrono::Utc;
use hook_slinger::{
    domain::{JobId, Label},
    jobs::JobState,
    store::{Cursor, JobFilter, JobStore},
};
use serde_json::Value;

use super::store_jobs;
use crate::helpers::{settings, spawn_app, TOKEN};

/// Every page of `filter`, following cursors, with `between` run after each page.
async fn page_all(store: &JobStore, filter: &JobFilter, limit: usize, mut between: impl AsyncFnMut()) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    for _ in 0..1000 {
        let page = store.list(filter, after.as_ref(), limit).await.unwrap();
        assert!(page.jobs.len() <= limit);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        between().await;
        match page.next {
            Some(c) => after = Some(c),
            None => return seen,
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn paging_sees_every_job_once_while_new_jobs_arrive() {
    let app = spawn_app(settings(&[])).await;
    let base = Utc::now() - chrono::Duration::seconds(60);
    // Three batches sharing one creation time each: most neighbours tie.
    let mut expected = Vec::new();
    for (i, group) in [Some("a"), None, Some("b")].into_iter().enumerate() {
        expected.extend(store_jobs(&app.store, 80, group, base + chrono::Duration::milliseconds(i as i64)).await);
    }
    let seen = page_all(&app.store, &JobFilter::default(), 37, async || {
        store_jobs(&app.store, 5, Some("late"), Utc::now()).await;
    })
    .await;
    let seen: Vec<String> = seen.into_iter().filter(|id| !id.starts_with("late_")).collect();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a job was listed twice");
    assert_eq!(unique, expected.iter().collect::<HashSet<_>>(), "a job was skipped");
    // Newest first; equal times by id, descending.
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| {
        let batch = |id: &str| {
            if id.starts_with("a_") {
                0
            } else if id.starts_with("b_") {
                2
            } else {
                1
            }
        };
        batch(b).cmp(&batch(a)).then(b.cmp(a))
    });
    assert_eq!(seen, sorted);
}

#[tokio::test]
async fn a_cursor_whose_job_left_the_index_still_continues_in_place() {
    let app = spawn_app(settings(&[])).await;
    let mut all = store_jobs(&app.store, 30, Some("g"), Utc::now()).await;
    all.sort_by(|a, b| b.cmp(a));
    let queued = JobFilter { state: Some(JobState::Queued), ..JobFilter::default() };
    let first = app.store.list(&queued, None, 10).await.unwrap();
    assert_eq!(first.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), all[..10]);
    // The job the cursor points at goes away (deleted, or moved on to another state).
    let cursor = first.next.unwrap();
    assert!(app.store.delete(&JobId::parse(&all[9]).unwrap()).await.unwrap());
    let second = app.store.list(&queued, Some(&cursor), 10).await.unwrap();
    assert_eq!(second.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), all[10..20]);
}

#[tokio::test]
async fn filters_combine_and_a_job_id_is_a_direct_lookup() {
    let app = spawn_app(settings(&[])).await;
    let now = Utc::now();
    let a = store_jobs(&app.store, 12, Some("alpha"), now).await;
    store_jobs(&app.store, 40, Some("beta"), now).await;
    let alpha = Label::parse_optional("alpha").unwrap();
    let f = JobFilter { state: Some(JobState::Queued), group: alpha.clone(), ..JobFilter::default() };
    let got = page_all(&app.store, &f, 5, async || {}).await;
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), a.iter().cloned().collect::<HashSet<_>>());

    let f = JobFilter { state: Some(JobState::Failed), group: alpha.clone(), ..JobFilter::default() };
    assert!(app.store.list(&f, None, 50).await.unwrap().jobs.is_empty());

    let host = JobFilter { host: Some("127.0.0.1".into()), group: alpha, ..JobFilter::default() };
    assert_eq!(app.store.list(&host, None, 50).await.unwrap().jobs.len(), 12);

    let one = JobFilter { id: Some(JobId::parse(&a[3]).unwrap()), ..JobFilter::default() };
    let page = app.store.list(&one, None, 50).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].id, a[3]);
    assert_eq!(page.jobs[0].group.as_deref(), Some("alpha"));
    assert!(page.next.is_none());
    let wrong_state = JobFilter { state: Some(JobState::Failed), ..one };
    assert!(app.store.list(&wrong_state, None, 50).await.unwrap().jobs.is_empty());
}

async fn api_page(app: &crate::helpers::TestApp, query: &str) -> (u16, Value) {
    app.call(reqwest::Method::GET, &format!("/hook_slinger/?{query}")).await
}

#[tokio::test]
async fn api_lists_pages_with_cursors_while_jobs_arrive() {
    let app = spawn_app(settings(&[])).await;
    let mut expected = HashSet::new();
    for i in 0..45 {
        let group = if i % 3 == 0 { "G" } else { "H" };
        let body = serde_json::json!({"to_url": "http://127.0.0.1:9/x", "group": group, "payload": {"i": i}});
        expected.insert((app.accept(&body).await, group));
    }
    let want: HashSet<String> = expected.iter().filter(|(_, g)| *g == "G").map(|(id, _)| id.clone()).collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, v) = api_page(&app, &format!("state=queued&group=G&limit=4&cursor={cursor}")).await;
        assert_eq!(status, 200, "{v}");
        for j in v["jobs"].as_array().unwrap() {
            assert_eq!(j["state"], "queued");
            assert_eq!(j["group"], "G");
            assert_eq!(j["host"], "127.0.0.1");
            seen.push(j["job_id"].as_str().unwrap().to_owned());
        }
        // New jobs keep arriving in the same group; they are newer than
        // every cursor, so they never show up in later pages.
        app.accept(&serde_json::json!({"to_url": "http://127.0.0.1:9/x", "group": "G", "payload": {}})).await;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = url::form_urlencoded::byte_serialize(c.as_bytes()).collect(),
            None => break,
        }
    }
    assert_eq!(seen.len(), want.len(), "repeated or skipped: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), want);

    // The unslashed path answers too, and bad input is a 400 that says why.
    let resp = app
        .http
        .get(format!("{}/hook_slinger?limit=1", app.base))
        .header("Authorization", format!("Token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, v) = api_page(&app, "state=lost").await;
    assert_eq!(status, 400);
    assert!(v["detail"].as_str().unwrap().contains("state"), "{v}");
    let (status, _) = api_page(&app, "cursor=nonsense").await;
    assert_eq!(status, 400);
    let resp = app.http.get(format!("{}/hook_slinger/", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn listing_is_in_the_openapi_document() {
    let spec: Value = serde_json::from_str(&hook_slinger::api::openapi_spec(&settings(&[]))).unwrap();
    let path = &spec["paths"]["/hook_slinger/"];
    assert!(path["get"].is_object(), "GET missing: {path}");
    assert!(path["post"].is_object(), "POST lost when GET was added: {path}");
    let params: Vec<&str> =
        path["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["state", "group", "tag", "host", "cursor", "limit"] {
        assert!(params.contains(&p), "{p} not documented: {params:?}");
    }
}
