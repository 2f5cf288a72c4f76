//! `sources <tenant>` against real Redis and a running app's
//! `/ingest/{id}`: a tenant's sources with their ingest URL, scheme and the
//! last hour's requests by result and reason, as a table and `--json`; once
//! through the real binary.

use hook_slinger::{
    domain::TenantId,
    monitor::{
        cli::{CliError, Command},
        Console,
    },
};
use serde_json::{json, Value};

use super::{create_source, github_signature, ingest, run, run_json};
use crate::helpers::{settings, spawn_app};

const SECRET: &str = "cli-github-secret";

fn sources(tenant: &str) -> Command {
    Command::Sources { tenant: tenant.to_owned() }
}

#[tokio::test]
async fn cli_lists_a_tenants_sources_with_their_counts_by_result_and_reason() {
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let console = Console::new(&s).unwrap();
    let tenant = TenantId::parse("srcco").unwrap();
    let open = create_source(&console, &tenant, json!({"name": "Open hook", "verify": {"scheme": "none"}})).await;
    let github = create_source(
        &console,
        &tenant,
        json!({"name": "GitHub", "verify": {"scheme": "github", "secret": SECRET},
               "event_type_from": {"header": "X-GitHub-Event"}}),
    )
    .await;
    let limited = create_source(
        &console,
        &tenant,
        json!({"name": "Slow", "verify": {"scheme": "none"}, "rate_limit": 1, "default_event_type": "slow"}),
    )
    .await;

    assert_eq!(ingest(&app, &open, &[], b"plain text").await.0, 202);
    let body = br#"{"action": "opened"}"#;
    let signed = github_signature(SECRET, body);
    let good = [("X-GitHub-Delivery", "d-1"), ("X-Hub-Signature-256", signed.as_str())];
    assert_eq!(ingest(&app, &github, &good, body).await.0, 202);
    assert_eq!(ingest(&app, &github, &good, body).await.1["duplicate"], true);
    let wrong = github_signature("other", body);
    // A wrong, a missing and a malformed signature.
    let refused: [&[(&str, &str)]; 3] =
        [&[("X-Hub-Signature-256", wrong.as_str())], &[], &[("X-Hub-Signature-256", "sha256=zz")]];
    for headers in refused {
        assert_eq!(ingest(&app, &github, headers, body).await.0, 401);
    }
    // One a second at most: three in a row are at least one too many.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(ingest(&app, &limited, &[], b"{}").await.0);
    }
    let too_many = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert!(too_many >= 1 && statuses.iter().all(|s| [202, 429].contains(s)), "{statuses:?}");

    let v = run_json(&console, sources("srcco")).await;
    let listed = v["sources"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|s| s["source_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [open.id.as_str(), github.id.as_str(), limited.id.as_str()], "oldest first: {v}");
    let o = &listed[0];
    assert_eq!(
        (o["tenant"].as_str(), o["name"].as_str(), o["scheme"].as_str(), o["verified"].as_bool()),
        (Some("srcco"), Some("Open hook"), Some("none"), Some(false))
    );
    assert_eq!(o["ingest_url"], format!("/ingest/{}", open.id));
    assert_eq!(o["default_event_type"], "webhook");
    assert_eq!(o["last_hour"]["accepted"], 1);
    assert!(o["last_request_at"].is_string(), "{o}");
    let g = &listed[1];
    assert_eq!((g["scheme"].as_str(), g["verified"].as_bool()), (Some("github"), Some(true)));
    assert_eq!(g["event_type_from"], json!({"header": "x-github-event"}));
    assert_eq!(
        g["last_hour"],
        json!({"accepted": 1, "duplicate": 1, "rate_limited": 0, "refused": 3, "refused_by_reason": {
            "missing_signature": 1, "malformed_signature": 1, "wrong_signature": 1, "stale_timestamp": 0}})
    );
    let l = &listed[2];
    assert_eq!(l["rate_limit"], 1);
    assert_eq!(l["last_hour"]["rate_limited"], too_many, "{l}");
    assert_eq!(l["last_hour"]["accepted"], 3 - too_many, "{l}");
    assert!(!v.to_string().contains(SECRET), "secrets are never printed");

    let table = run(&console, sources("srcco"), false).await.unwrap();
    assert!(table.starts_with("SOURCE ID"), "{table}");
    let line = |id: &str| table.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id}: {table}")).to_owned();
    let o = line(open.id.as_str());
    assert!(o.contains("none (unverified)") && o.contains(&format!("/ingest/{}", open.id)), "{o}");
    let g = line(github.id.as_str());
    assert!(g.contains("3 (missing_signature 1, malformed_signature 1, wrong_signature 1)"), "{g}");
    assert!(!g.contains("unverified") && !table.contains('\u{1b}'), "{table}");
    assert!(table.trim_end().ends_with("3 sources"), "{table}");

    // Another tenant has none; a malformed tenant is a usage error.
    assert_eq!(run_json(&console, sources("globex")).await, json!({"sources": []}));
    let e = run(&console, sources("not a tenant"), false).await.unwrap_err();
    assert!(matches!(e, CliError::Usage(_)) && e.exit_code() == 2, "{e}");

    // Once through the binary, as a script would.
    let bin = env!("CARGO_BIN_EXE_hook-slinger-monitor");
    let out = std::process::Command::new(bin)
        .args(["sources", "srcco", "--json"])
        .env("REDIS_URL", crate::helpers::redis_url())
        .env("QUEUE_NAME", &s.redis.queue)
        .env("QUEUE_SHARDS", s.redis.shards.to_string())
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sources"][1]["last_hour"]["duplicate"], 1);
}
