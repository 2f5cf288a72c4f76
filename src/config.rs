//! One typed configuration, read once at start from defaults, `.env` and the
//! environment, in that order of precedence (environment wins).
//!
//! Every variable is parsed into its real type here; a bad value stops the
//! process with one line per bad variable, so nothing downstream re-checks.
//! We collect all errors instead of stopping at the first (which is what
//! `envy` and `figment` do: both deserialise through serde, which stops at
//! the first bad field) because an operator fixing a deployment wants the
//! whole list at once; `dotenvy` reads `.env`.

use std::{collections::HashMap, fmt, net::IpAddr, str::FromStr, time::Duration};

use secrecy::SecretString;

use crate::delivery::{Backoff, DestinationPolicy, RetryPolicy, SigningSecret};

/// Everything the three processes can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Redis connection and key namespace.
    pub redis: RedisSettings,
    /// The HTTP API (`hook-slinger-app`).
    pub api: ApiSettings,
    /// The delivering worker (`hook-slinger-worker`).
    pub worker: WorkerSettings,
    /// Logging.
    pub log: LogSettings,
    /// How long finished jobs are kept.
    pub retention: Retention,
    /// `RECONCILE_AFTER` (seconds, default 30): how long a job may wait
    /// without progress (queued without its queue task, overdue) before the
    /// reconciler puts it back on its way; also what makes a non-failed job
    /// "stuck" enough to requeue by hand. (A `delivering` job is stuck when
    /// its worker's lease, `HTTP_TIMEOUT` + 10 s, runs out.)
    pub reconcile_after: Duration,
    /// Which destinations may be delivered to (`ALLOW_PRIVATE_DESTINATIONS`,
    /// `ALLOWED_DESTINATION_CIDRS`): checked at accept time for IP literals
    /// and at delivery time on the resolved address actually connected to.
    pub destinations: DestinationPolicy,
    /// The monitor (`hook-slinger-monitor`).
    pub monitor: MonitorSettings,
    /// Per-endpoint and per-host flow control, and who hears about it.
    pub flow: FlowSettings,
}

/// Flow control (see `store::flows`) and operational webhooks.
#[derive(Debug, Clone)]
pub struct FlowSettings {
    /// `BREAKER_FAILURES` (default 10; 0 turns breakers off): consecutive
    /// failed attempts to one endpoint that open its circuit breaker.
    pub breaker_failures: u32,
    /// `BREAKER_COOLDOWN` (seconds, default 30): how long an open breaker
    /// holds deliveries back before one probe may try.
    pub breaker_cooldown: Duration,
    /// `ENDPOINT_DISABLE_AFTER_FAILURES` (default 100; 0: never):
    /// consecutive failed attempts, with no success in between, after which
    /// an endpoint is disabled.
    pub disable_after: u32,
    /// `FAILING_AFTER` (default 3): failed attempts of one delivery after
    /// which `message.attempt.failing` is sent.
    pub failing_after: u32,
    /// `HOST_MAX_IN_FLIGHT` (default 32; 0: no cap): attempts of plain jobs
    /// in flight at once to one destination host and port, across workers
    /// (per queue shard).
    pub host_max_in_flight: u32,
    /// `FAILING_MAX_IN_FLIGHT` (default 16; 0: no limit): attempts at
    /// once, across workers (per queue shard), to endpoints whose last
    /// attempt failed slowly (after a second or more), so that many dead
    /// endpoints cannot take every slot before their breakers open.
    pub failing_max_in_flight: u32,
    /// `OPERATIONAL_WEBHOOK_URL` and `OPERATIONAL_WEBHOOK_SECRET`.
    pub operational: Option<OperationalWebhook>,
}

/// Where operational events go, and how they are signed.
#[derive(Debug, Clone)]
pub struct OperationalWebhook {
    /// `OPERATIONAL_WEBHOOK_URL`.
    pub url: crate::domain::TargetUrl,
    /// `OPERATIONAL_WEBHOOK_SECRET` (`whsec_...`; comma-separated to
    /// rotate); none means unsigned.
    pub secrets: Vec<SigningSecret>,
}

/// How long finished jobs are kept (`RETENTION_SUCCEEDED`, `RETENTION_FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Kept this long after succeeding.
    pub succeeded: Duration,
    /// Kept this long after failing (time for a person to requeue).
    pub failed: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { succeeded: Duration::from_secs(86_400), failed: Duration::from_secs(7 * 86_400) }
    }
}

/// Monitor settings. Whether the combination is safe (credentials, or
/// loopback with auth explicitly off) is decided when the monitor starts.
#[derive(Clone)]
pub struct MonitorSettings {
    /// `MONITOR_HOST`.
    pub host: IpAddr,
    /// `MONITOR_PORT` (0 picks a free port, used by tests).
    pub port: u16,
    /// `MONITOR_USER`.
    pub user: Option<String>,
    /// `MONITOR_PASSWORD`.
    pub password: Option<SecretString>,
    /// `MONITOR_AUTH=off`: run without login (only allowed on loopback).
    pub auth_off: bool,
}

impl fmt::Debug for MonitorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("auth_off", &self.auth_off)
            .finish()
    }
}

/// Redis connection settings shared by every process.
#[derive(Clone)]
pub struct RedisSettings {
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379/0`; with `REDIS_CLUSTER`,
    /// a comma-separated list of seed nodes (see [`RedisSettings::seeds`]).
    pub url: String,
    /// `REDIS_CLUSTER` (default false): talk to a Redis Cluster, discovering
    /// its nodes from the seeds in `REDIS_URL`.
    pub cluster: bool,
    /// `QUEUE_NAME`: every key we and apalis write starts with it.
    pub queue: String,
    /// `QUEUE_SHARDS` (default 1, or 16 with `REDIS_CLUSTER`): the queue and
    /// its job records are split into this many shards, each with its keys
    /// in one cluster slot (see `store::Shards`).
    pub shards: usize,
    /// `REDIS_WAIT_REPLICAS` (default 0): answer 202 only once this many
    /// replicas have the accepted jobs (Redis `WAIT` after the write, at
    /// most half of `REDIS_TIMEOUT`; 503 otherwise). Replication is
    /// asynchronous, so without it a failover can lose acknowledged jobs.
    pub wait_replicas: u32,
    /// `REDIS_TIMEOUT` (seconds): how long one Redis command may take before
    /// it is treated as failed. The redis crate's 500 ms default is fatal
    /// under load (apalis-redis issue #76), so ours is longer.
    pub response_timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("cluster", &self.cluster)
            .field("queue", &self.queue)
            .field("shards", &self.shards)
            .field("wait_replicas", &self.wait_replicas)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisSettings {
    /// The node URLs in `REDIS_URL`: one for a single Redis; one or more
    /// seed nodes of a cluster (any reachable one is enough to discover the
    /// rest).
    pub fn seeds(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
    }
}

/// API server settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `APP_HOST`.
    pub host: IpAddr,
    /// `APP_PORT` (0 picks a free port, used by tests).
    pub port: u16,
    /// `API_TOKEN` and `API_TOKENS`, merged; `None` when neither is set.
    pub tokens: Option<ApiTokens>,
    /// `MAX_PAYLOAD_BYTES`: the largest request body accepted.
    pub max_payload_bytes: usize,
    /// Limits on what a request may ask for.
    pub intake: IntakeSettings,
    /// `CORS_ALLOW_ORIGINS`: which browser origins may call the API.
    pub cors: CorsOrigins,
}

/// Which origins a browser may call the API from (`CORS_ALLOW_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*` (the default, like the original): any origin, with credentials.
    Any,
    /// Only these origins (`scheme://host[:port]`).
    Only(Vec<String>),
}

/// Limits on what one accepted job may ask for.
#[derive(Debug, Clone, Copy)]
pub struct IntakeSettings {
    /// `MAX_RETRIES_LIMIT`: the most retries a request's `max_retries` may ask for.
    pub max_retries_limit: u32,
    /// `IDEMPOTENCY_TTL`: how long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `MAX_DELAY`: how far ahead `deliver_at` / `delay_seconds` may reach.
    pub max_delay: Duration,
    /// `BATCH_MAX`: jobs per `POST /hook_slinger/batch`.
    pub batch_max: usize,
    /// `SOURCE_RATE_LIMIT`: requests per second a source accepts when it
    /// sets no `rate_limit` of its own; 0: unlimited.
    pub source_rate_limit: u32,
}

/// The accepted API tokens (at least one, none empty).
#[derive(Clone)]
pub struct ApiTokens(Vec<SecretString>);

impl ApiTokens {
    /// Builds the token list; `None` when it would be empty.
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Option<Self> {
        let mut list: Vec<String> = tokens.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        list.dedup();
        (!list.is_empty()).then(|| Self(list.into_iter().map(SecretString::from).collect()))
    }

    /// The tokens, for the constant-time comparison in `api::auth`.
    pub fn as_slice(&self) -> &[SecretString] {
        &self.0
    }
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} configured)", self.0.len())
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `WORKER_CONCURRENCY`: deliveries in flight per worker process.
    pub concurrency: usize,
    /// `WORKER_NAME_PREFIX`: the start of this worker's unique name.
    pub name_prefix: String,
    /// `HTTP_TIMEOUT` (seconds): the whole outbound request.
    pub http_timeout: Duration,
    /// `MAX_RETRIES`, `INTERVAL`, `BACKOFF`.
    pub retry: RetryPolicy,
    /// `SHUTDOWN_TIMEOUT` (seconds): how long in-flight deliveries may run
    /// after SIGTERM before the worker exits anyway.
    pub shutdown_timeout: Duration,
    /// `HEARTBEAT_INTERVAL` (seconds). A worker silent for
    /// `ORPHAN_AFTER` seconds is presumed dead and its jobs go to others.
    pub heartbeat_interval: Duration,
    /// `ORPHAN_AFTER` (seconds).
    pub orphan_after: Duration,
    /// `WORKER_POLL_INTERVAL_MS`: how often an idle worker looks for work.
    pub poll_interval: Duration,
    /// `SIGNING_SECRET`: Standard Webhooks secrets (`whsec_...`); every
    /// delivery is signed with each, so receivers can rotate.
    pub signing_secrets: Vec<SigningSecret>,
    /// `WORKER_METRICS_HOST`.
    pub metrics_host: IpAddr,
    /// `WORKER_METRICS_PORT` (0 turns the endpoint off); when taken, the
    /// next free port is used, so several workers can share a host.
    pub metrics_port: u16,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `LOG_LEVEL`: a level (`info`) or a full tracing filter directive.
    pub level: String,
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `LOG_COLOR` (and `NO_COLOR`).
    pub color: ColorMode,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set: export spans over OTLP (only in
    /// builds with the `otel` feature).
    pub otel_export: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Coloured, aligned lines for people.
    Pretty,
    /// One JSON object per line for log shippers.
    Json,
}

/// Whether pretty logs use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// Colour when writing to a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// A configuration that cannot be used; the message names every bad variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One or more variables have values we cannot use.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
    /// A variable this process needs is not set.
    #[error("{0}")]
    Missing(&'static str),
}

/// The message the app prints when it has no token to check requests against.
pub const MISSING_TOKEN: &str = "API_TOKEN is not set: the app refuses to start without a token. \
Set API_TOKEN (or API_TOKENS, comma-separated, to rotate) in the environment or in .env; \
see .env.example.";

impl Settings {
    /// Reads `.env` (if present, without overriding the environment), then
    /// the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth a warning, but
        // telemetry is not up yet, so say it on stderr.
        if let Err(e) = dotenvy::dotenv() {
            if !e.not_found() {
                eprintln!("warning: could not read .env: {e}");
            }
        }
        Self::from_vars(std::env::vars())
    }

    /// Parses settings from explicit variables (tests use this; it never
    /// touches the process environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = vars.into_iter().collect();
        let mut p = Parser { env: &env, problems: Vec::new() };

        let http_timeout = p.seconds("HTTP_TIMEOUT", 30.0);
        let tokens =
            ApiTokens::new(p.raw("API_TOKEN").into_iter().chain(
                p.raw("API_TOKENS").into_iter().flat_map(|s| s.split(',').map(str::to_owned).collect::<Vec<_>>()),
            ));
        let backoff = p.parse_with("BACKOFF", Backoff::Linear, |s| match s.to_ascii_lowercase().as_str() {
            "linear" => Ok(Backoff::Linear),
            "fixed" => Ok(Backoff::Fixed),
            "exponential" => Ok(Backoff::Exponential),
            _ => Err("expected `linear`, `fixed` or `exponential`".to_owned()),
        });
        let concurrency = p.number("WORKER_CONCURRENCY", 64usize);
        if concurrency == 0 {
            p.problems.push("WORKER_CONCURRENCY=0: must be at least 1".to_owned());
        }
        let interval = p.seconds("INTERVAL", 5.0);
        let max_retries = p.number("MAX_RETRIES", 3u32);
        let heartbeat_interval = p.seconds("HEARTBEAT_INTERVAL", 5.0);
        let orphan_after = p.seconds("ORPHAN_AFTER", 20.0);
        if orphan_after < heartbeat_interval * 2 {
            p.problems.push(format!(
                "ORPHAN_AFTER={}s: must be at least twice HEARTBEAT_INTERVAL ({}s), or live workers look dead",
                orphan_after.as_secs_f64(),
                heartbeat_interval.as_secs_f64()
            ));
        }
        let queue = p.string("QUEUE_NAME", "webhook_queue");
        if queue.is_empty() || queue.contains(char::is_whitespace) {
            p.problems.push(format!("QUEUE_NAME={queue:?}: must be non-empty and without spaces"));
        }
        let cluster = p.flag("REDIS_CLUSTER", false);
        let shards = p.number("QUEUE_SHARDS", if cluster { 16usize } else { 1 });
        if !(1..=1024).contains(&shards) {
            p.problems.push(format!("QUEUE_SHARDS={shards}: must be between 1 and 1024"));
        }
        let signing_secrets = p.parse_with("SIGNING_SECRET", Vec::new(), secrets_list);
        let allowed_cidrs = p.parse_with("ALLOWED_DESTINATION_CIDRS", Vec::new(), |s| {
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| t.parse::<ipnet::IpNet>().map_err(|e| format!("{t:?}: {e}")))
                .collect()
        });
        let intake = IntakeSettings {
            max_retries_limit: p.number("MAX_RETRIES_LIMIT", 25u32),
            idempotency_ttl: p.seconds("IDEMPOTENCY_TTL", 86_400.0),
            max_delay: p.seconds("MAX_DELAY", 30.0 * 86_400.0),
            batch_max: p.number("BATCH_MAX", 1000usize).max(1),
            source_rate_limit: p.number("SOURCE_RATE_LIMIT", 1000u32),
        };
        let no_color = env.get("NO_COLOR").is_some_and(|v| !v.is_empty());
        let retention = Retention {
            succeeded: p.seconds("RETENTION_SUCCEEDED", 86_400.0),
            failed: p.seconds("RETENTION_FAILED", 7.0 * 86_400.0),
        };
        let reconcile_after = p.seconds("RECONCILE_AFTER", 30.0);
        if reconcile_after.is_zero() {
            p.problems.push("RECONCILE_AFTER=0: must be more than 0 seconds".to_owned());
        }
        let monitor = MonitorSettings {
            host: p.number("MONITOR_HOST", IpAddr::from([0, 0, 0, 0])),
            port: p.number("MONITOR_PORT", 8899u16),
            user: p.raw("MONITOR_USER"),
            password: p.raw("MONITOR_PASSWORD").map(SecretString::from),
            auth_off: p.parse_with("MONITOR_AUTH", false, |s| match s.to_ascii_lowercase().as_str() {
                "off" | "false" | "0" | "no" => Ok(true),
                "on" | "true" | "1" | "yes" => Ok(false),
                _ => Err("expected `on` or `off`".to_owned()),
            }),
        };

        let operational = p.parse_with("OPERATIONAL_WEBHOOK_URL", None, |s| {
            crate::domain::TargetUrl::parse(s).map(Some).map_err(|e| e.to_string())
        });
        let operational_secrets = p.parse_with("OPERATIONAL_WEBHOOK_SECRET", Vec::new(), secrets_list);
        let flow = FlowSettings {
            breaker_failures: p.number("BREAKER_FAILURES", 10u32),
            breaker_cooldown: p.seconds("BREAKER_COOLDOWN", 30.0),
            disable_after: p.number("ENDPOINT_DISABLE_AFTER_FAILURES", 100u32),
            failing_after: p.number("FAILING_AFTER", 3u32),
            host_max_in_flight: p.number("HOST_MAX_IN_FLIGHT", 32u32),
            failing_max_in_flight: p.number("FAILING_MAX_IN_FLIGHT", 16u32),
            operational: operational.map(|url| OperationalWebhook { url, secrets: operational_secrets }),
        };

        let settings = Settings {
            flow,
            destinations: DestinationPolicy::new(p.flag("ALLOW_PRIVATE_DESTINATIONS", false), allowed_cidrs),
            retention,
            reconcile_after,
            monitor,
            redis: RedisSettings {
                url: p.string("REDIS_URL", "redis://127.0.0.1:6379"),
                cluster,
                queue,
                shards,
                wait_replicas: p.number("REDIS_WAIT_REPLICAS", 0u32),
                response_timeout: p.seconds("REDIS_TIMEOUT", 5.0),
            },
            api: ApiSettings {
                host: p.number("APP_HOST", IpAddr::from([0, 0, 0, 0])),
                port: p.number("APP_PORT", 5000u16),
                tokens,
                max_payload_bytes: p.number("MAX_PAYLOAD_BYTES", 1024 * 1024usize),
                intake,
                cors: p.parse_with("CORS_ALLOW_ORIGINS", CorsOrigins::Any, |s| {
                    let origins: Vec<String> = s
                        .split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect();
                    if origins.is_empty() || origins.iter().any(|o| o == "*") {
                        return Ok(CorsOrigins::Any);
                    }
                    match origins.iter().find(|o| !(o.starts_with("http://") || o.starts_with("https://"))) {
                        Some(bad) => Err(format!("{bad:?} is not an origin (expected http(s)://host[:port] or *)")),
                        None => Ok(CorsOrigins::Only(origins)),
                    }
                }),
            },
            worker: WorkerSettings {
                concurrency: concurrency.max(1),
                name_prefix: p.string("WORKER_NAME_PREFIX", "hook-slinger-worker"),
                http_timeout,
                retry: RetryPolicy {
                    max_retries,
                    interval,
                    backoff,
                    max_interval: p.seconds("MAX_INTERVAL", 3600.0),
                    jitter: p.flag("BACKOFF_JITTER", false),
                    retry_on_4xx: p.flag("RETRY_ON_4XX", false),
                    max_retry_after: p.seconds("MAX_RETRY_AFTER", 3600.0),
                },
                signing_secrets,
                metrics_host: p.number("WORKER_METRICS_HOST", IpAddr::from([0, 0, 0, 0])),
                metrics_port: p.number("WORKER_METRICS_PORT", 9100u16),
                shutdown_timeout: p.seconds("SHUTDOWN_TIMEOUT", http_timeout.as_secs_f64() + 5.0),
                heartbeat_interval,
                orphan_after,
                poll_interval: Duration::from_millis(p.number("WORKER_POLL_INTERVAL_MS", 100u64).max(1)),
            },
            log: LogSettings {
                otel_export: p.raw("OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
                level: p.string("LOG_LEVEL", "info"),
                format: p.parse_with("LOG_FORMAT", LogFormat::Pretty, |s| match s.to_ascii_lowercase().as_str() {
                    "pretty" | "text" | "human" => Ok(LogFormat::Pretty),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected `pretty` or `json`".to_owned()),
                }),
                color: if no_color {
                    ColorMode::Never
                } else {
                    p.parse_with("LOG_COLOR", ColorMode::Auto, |s| match s.to_ascii_lowercase().as_str() {
                        "auto" => Ok(ColorMode::Auto),
                        "always" | "true" | "1" => Ok(ColorMode::Always),
                        "never" | "false" | "0" => Ok(ColorMode::Never),
                        _ => Err("expected `auto`, `always` or `never`".to_owned()),
                    })
                },
            },
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
            p.problems.push(format!("LOG_LEVEL={:?}: {e}", settings.log.level));
        }
        p.problems.extend(redis_problems(&settings.redis));
        p.problems.extend(shard_problems(&settings.redis));
        if p.problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(p.problems))
        }
    }
}

/// Comma-separated `whsec_` secrets (several, so receivers can rotate).
fn secrets_list(s: &str) -> Result<Vec<SigningSecret>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| SigningSecret::parse(t).map_err(|e| e.to_string()))
        .collect()
}

struct Parser<'a> {
    env: &'a HashMap<String, String>,
    problems: Vec<String>,
}

impl Parser<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        self.env.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn parse_with<T>(&mut self, name: &str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => parse(&v).unwrap_or_else(|why| {
                self.problems.push(format!("{name}={v:?}: {why}"));
                default
            }),
        }
    }

    fn number<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        self.parse_with(name, default, |s| s.parse::<T>().map_err(|e| e.to_string()))
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        self.parse_with(name, default, |s| match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected `true` or `false`".to_owned()),
        })
    }

    /// Seconds, fractions allowed (`INTERVAL=0.2` is handy in tests).
    fn seconds(&mut self, name: &str, default: f64) -> Duration {
        let secs = self.parse_with(name, default, |s| match s.parse::<f64>() {
            Ok(v) if (0.0..=31_536_000.0).contains(&v) => Ok(v),
            Ok(_) => Err("expected a number of seconds between 0 and one year".to_owned()),
            Err(e) => Err(format!("expected a number of seconds: {e}")),
        });
        Duration::from_secs_f64(secs)
    }
}

/// What is wrong with `REDIS_URL`, `REDIS_CLUSTER` and `QUEUE_NAME` together.
fn redis_problems(redis: &RedisSettings) -> Vec<String> {
    let url = redact_url(&redis.url);
    if !redis.cluster {
        if redis.url.contains(',') {
            return vec![format!(
                "REDIS_URL={url:?}: a list of nodes is only for a Redis Cluster; set REDIS_CLUSTER=true, \
                 or give the URL of one Redis"
            )];
        }
        return match redis::Client::open(redis.url.as_str()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("REDIS_URL={url:?}: {e}")],
        };
    }
    let mut problems = Vec::new();
    let seeds = redis.seeds();
    if seeds.is_empty() {
        problems.push(format!("REDIS_URL={url:?}: REDIS_CLUSTER=true needs at least one seed node URL"));
    } else if let Err(e) = redis::cluster::ClusterClientBuilder::new(seeds).build() {
        problems.push(format!("REDIS_URL={url:?}: not a list of cluster seed nodes: {e}"));
    }
    problems
}

/// What is wrong with `QUEUE_NAME` for a sharded keyspace: each shard's
/// keys carry a hash tag of their own (`<QUEUE_NAME>:{<shard>}:...`), which
/// a brace in the name would override.
fn shard_problems(redis: &RedisSettings) -> Option<String> {
    let tagged = redis.cluster || redis.shards > 1;
    (tagged && redis.queue.contains(['{', '}'])).then(|| {
        format!(
            "QUEUE_NAME={:?}: must not contain braces with REDIS_CLUSTER=true or QUEUE_SHARDS > 1              (each shard's keys get a hash tag of their own)",
            redis.queue
        )
    })
}

/// Hides the password in a Redis URL (or in each of a comma-separated list
/// of them) for logs and errors.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match url::Url::parse(one.trim()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_original() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.api.port, 5000);
        assert_eq!(s.redis.queue, "webhook_queue");
        assert_eq!(s.worker.http_timeout, Duration::from_secs(30));
        assert_eq!(s.worker.retry.max_retries, 3);
        assert_eq!(s.worker.retry.interval, Duration::from_secs(5));
        assert_eq!(s.worker.retry.backoff, Backoff::Linear);
        assert!(s.api.tokens.is_none());
    }

    #[test]
    fn every_bad_variable_is_named() {
        let err = Settings::from_vars(vars(&[("APP_PORT", "seventy"), ("INTERVAL", "-1"), ("BACKOFF", "random")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_PORT"), "{err}");
        assert!(err.contains("INTERVAL"), "{err}");
        assert!(err.contains("BACKOFF"), "{err}");
    }

    #[test]
    fn tokens_merge_single_and_list() {
        let s = Settings::from_vars(vars(&[("API_TOKEN", "a"), ("API_TOKENS", "b, c,,")])).unwrap();
        let tokens = s.api.tokens.unwrap();
        let tokens: Vec<&str> = tokens.as_slice().iter().map(|t| t.expose_secret()).collect();
        assert_eq!(tokens, ["a", "b", "c"]);
    }

    #[test]
    fn redis_password_is_redacted() {
        assert_eq!(redact_url("redis://:hunter2@host:6379"), "redis://:***@host:6379");
    }

    #[test]
    fn a_list_of_redis_nodes_needs_cluster_mode() {
        let err = Settings::from_vars(vars(&[("REDIS_URL", "redis://127.0.0.1:7000,redis://127.0.0.1:7001")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REDIS_URL") && err.contains("REDIS_CLUSTER=true"), "{err}");
    }

    #[test]
    fn cluster_mode_reads_seeds_and_shards_the_queue() {
        let seeds = "redis://127.0.0.1:7000, redis://127.0.0.1:7001";
        let s = Settings::from_vars(vars(&[("REDIS_CLUSTER", "true"), ("REDIS_URL", seeds)])).unwrap();
        assert!(s.redis.cluster);
        assert_eq!(s.redis.seeds(), ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
        assert_eq!(s.redis.shards, 16, "a cluster spreads the queue over 16 shards unless told");

        let err = Settings::from_vars(vars(&[("REDIS_CLUSTER", "true"), ("REDIS_URL", seeds), ("QUEUE_NAME", "q{0}")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("QUEUE_NAME") && err.contains("braces"), "{err}");
        let err = Settings::from_vars(vars(&[("QUEUE_SHARDS", "0")])).unwrap_err().to_string();
        assert!(err.contains("QUEUE_SHARDS"), "{err}");
    }

    #[test]
    fn single_redis_is_the_default() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert!(!s.redis.cluster);
        assert_eq!(s.redis.seeds(), ["redis://127.0.0.1:6379"]);
    }

    #[test]
    fn every_seed_password_is_redacted() {
        assert_eq!(redact_url("redis://:a@h:7000,redis://:b@h:7001"), "redis://:***@h:7000,redis://:***@h:7001");
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let s = Settings::from_vars(vars(&[
            ("API_TOKEN", "tok-hunter2"),
            ("API_TOKENS", "tok-two"),
            ("MONITOR_PASSWORD", "pw-hunter2"),
            ("REDIS_URL", "redis://:redis-hunter2@h:6379"),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["tok-hunter2", "tok-two", "pw-hunter2", "redis-hunter2"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
