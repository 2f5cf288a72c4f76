//! The CLI against real Redis: tables, `--json`, requeue (one and all),
//! workers, stats; once through the real binary.

use std::time::Duration;

use hook_slinger::{
    jobs::JobState,
    monitor::{
        cli::{CliError, Command},
        console::Console,
    },
};
use serde_json::Value;

use super::{run, run_json, WAIT};
use crate::helpers::{settings, spawn_app, spawn_worker, Receiver, Reply};

fn jobs(state: &str, group: Option<&str>) -> Command {
    Command::Jobs {
        state: Some(state.into()),
        group: group.map(Into::into),
        tag: None,
        host: None,
        cursor: None,
        limit: 50,
    }
}

#[tokio::test]
async fn cli_lists_shows_and_requeues_failed_jobs() {
    let s = settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let console = Console::new(&s).unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let mut ids = Vec::new();
    for group in ["A", "A", "A", "A", "B", "B"] {
        let body = serde_json::json!({"to_url": rx.url("/h"), "to_auth": "Bearer s3cret", "group": group,
            "tag": "order.created", "payload": {"n": 1}});
        ids.push(app.accept(&body).await);
    }
    app.wait_count(JobState::Failed, 6, WAIT).await;

    let v = run_json(&console, jobs("failed", Some("A"))).await;
    let listed: Vec<&str> = v["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 4);
    assert!(v["next_cursor"].is_null());
    assert_eq!(v["jobs"][0]["last_status"], 500);

    let table = run(&console, jobs("failed", None), false).await.unwrap();
    assert!(table.starts_with("JOB ID"), "{table}");
    assert!(ids.iter().all(|id| table.contains(id)), "{table}");
    assert!(!table.contains('\u{1b}'), "no colour when asked for none");

    let shown = run_json(&console, Command::Show { job_id: ids[0].clone() }).await;
    assert_eq!(shown["state"], "failed");
    assert_eq!(shown["attempt_log"].as_array().unwrap().len(), 1);
    assert_eq!(shown["attempt_log"][0]["status"], 500);
    assert!(!shown.to_string().contains("s3cret"), "to_auth is never printed");
    let human = run(&console, Command::Show { job_id: ids[0].clone() }, false).await.unwrap();
    assert!(human.contains("to_auth") && !human.contains("s3cret"), "{human}");

    // A second requeue of the same job is refused: it does not deliver twice.
    rx.set_default(Reply::status(200));
    let requeue = |id: &str| Command::Requeue {
        job_id: Some(id.to_owned()),
        all_failed: false,
        group: None,
        tag: None,
        host: None,
    };
    run(&console, requeue(&ids[0]), false).await.unwrap();
    let again = run(&console, requeue(&ids[0]), false).await.unwrap_err();
    assert!(matches!(again, CliError::Refused { .. }), "{again}");
    let all_b = Command::Requeue { job_id: None, all_failed: true, group: Some("B".into()), tag: None, host: None };
    assert_eq!(run_json(&console, all_b).await["requeued"], 2);
    app.wait_count(JobState::Succeeded, 3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 6 + 3, "each requeued job delivered exactly once");
    let still_failed = run_json(&console, jobs("failed", None)).await;
    assert_eq!(still_failed["jobs"].as_array().unwrap().len(), 3);

    let stats = run_json(&console, Command::Stats).await;
    assert_eq!(stats["counts"]["failed"], 3);
    assert_eq!(stats["counts"]["succeeded"], 3);
    assert!(stats["last_hour"]["delivered"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["live_workers"].as_u64().unwrap() >= 1, "{stats}");
    let human = run(&console, Command::Stats, false).await.unwrap();
    assert!(human.contains("queue depth") && human.contains("retention"), "{human}");

    let workers = run_json(&console, Command::Workers).await;
    assert!(workers.as_array().unwrap().iter().any(|w| w["alive"] == true), "{workers}");

    assert!(matches!(run(&console, Command::Show { job_id: "nope".into() }, false).await, Err(CliError::Usage(_))));

    // Bulk delete of succeeded jobs (older than zero seconds: all of them).
    assert_eq!(console.purge_succeeded(Duration::ZERO).await.unwrap(), 3);
    assert_eq!(run_json(&console, Command::Stats).await["counts"]["succeeded"], 0);
}

#[tokio::test]
async fn the_binary_prints_json_for_scripts_and_exits_nonzero_on_refusal() {
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let id = app.accept(&serde_json::json!({"to_url": "http://127.0.0.1:9/x", "group": "cli", "payload": {}})).await;
    let bin = env!("CARGO_BIN_EXE_hook-slinger-monitor");
    let cmd = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("REDIS_URL", crate::helpers::redis_url())
            .env("QUEUE_NAME", &s.redis.queue)
            .env("QUEUE_SHARDS", s.redis.shards.to_string())
            .env("LOG_LEVEL", "warn")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = cmd(&["jobs", "--group", "cli", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jobs"][0]["job_id"], id.as_str());
    assert_eq!(v["jobs"][0]["state"], "queued");

    let out = cmd(&["requeue", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only failed jobs can be requeued"));
    let out = cmd(&["jobs", "--state", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}
