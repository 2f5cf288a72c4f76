//! The HTTP API (`hook-slinger-app`): accepts jobs, reports on them,
//! requeues failures, and documents itself at `/docs`.

mod allow;
mod auth;
mod body;
mod document;
mod endpoints;
mod errors;
mod events;
mod health;
mod hooks;
mod listing;
mod problem;
mod sources;

use std::{future::Future, net::SocketAddr, time::Duration};

use poem::{
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::{CatchPanic, NormalizePath, Tracing, TrailingSlash},
    EndpointExt, IntoEndpoint, IntoResponse, Route, Server,
};
use poem_openapi::{OpenApi, OpenApiService};

use crate::{
    config::{ConfigError, Settings, MISSING_TOKEN},
    endpoints::EndpointService,
    events::EventService,
    queue::Queue,
    service::HookService,
    sources::SourceService,
    store::{self, JobStore},
};

pub use errors::ErrorBody;

/// The app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A required setting is missing.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Redis URL is unusable.
    #[error("could not set up the redis connection")]
    Redis(#[from] redis::RedisError),
    /// The port could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready-to-run API server.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    service: HookService,
    endpoints: EndpointService,
    events: EventService,
    sources: SourceService,
    settings: Settings,
}

impl Application {
    /// Binds the listener and wires the routes; nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        if settings.api.tokens.is_none() {
            return Err(ConfigError::Missing(MISSING_TOKEN).into());
        }
        let conn = store::connect(&settings.redis)?;
        let store = JobStore::new(conn.clone(), &settings);
        let queue = Queue::new(conn, &settings);
        let timeout = settings.redis.response_timeout;
        let operator = crate::operational::Operator::new(store.clone(), settings.flow.operational.clone());
        let endpoints =
            EndpointService::new(store.clone(), settings.destinations.clone(), timeout).with_operator(operator);
        let events = EventService::replicated(store.clone(), queue.clone(), timeout, settings.redis.wait_replicas);
        let sources = SourceService::new(store.clone(), events.clone(), timeout, &settings.api.intake);
        let service = HookService::new(store, queue, timeout, settings.redis.wait_replicas);
        let addr = SocketAddr::new(settings.api.host, settings.api.port);
        let acceptor =
            TcpListener::bind(addr).into_acceptor().await.map_err(|source| StartError::Bind { addr, source })?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or(settings.api.port);
        Ok(Self { acceptor, port, service, endpoints, events, sources, settings })
    }

    /// The port actually bound (useful with `APP_PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then finishes open requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        tracing::info!(addr = %format!("{}:{}", self.settings.api.host, self.port), docs = "/docs", "app listening");
        let app = routes(&self.settings, self.service).data(self.endpoints).data(self.events).data(self.sources);
        Server::new_with_acceptor(self.acceptor)
            // Connections that send nothing for this long are closed, so
            // slow or stuck clients cannot hold sockets forever.
            .idle_timeout(Duration::from_secs(60))
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
            .await
    }
}

/// The OpenAPI document these settings serve at `/openapi.json`, for tools
/// that want it without a server.
pub fn openapi_spec(settings: &Settings) -> String {
    document::served(&api_service().spec(), settings.into())
}

type Apis = listing::SharedPaths<(
    hooks::HooksApi,
    listing::ListingApi,
    endpoints::EndpointsApi,
    events::EventsApi,
    sources::SourcesApi,
    health::HealthApi,
)>;

fn api_service() -> OpenApiService<Apis, ()> {
    let apis = listing::SharedPaths((
        hooks::HooksApi,
        listing::ListingApi,
        endpoints::EndpointsApi,
        events::EventsApi,
        sources::SourcesApi,
        health::HealthApi,
    ));
    OpenApiService::new(apis, "Hook Slinger", env!("CARGO_PKG_VERSION")).description(
        "Send webhooks reliably. POST a job with a target URL and a JSON payload; it is answered \
             with 202 at once and delivered in the background, retried with backoff until it succeeds \
             or runs out of retries. Authorize with `Token <API_TOKEN>`.",
    )
}

fn routes(settings: &Settings, service: HookService) -> impl poem::Endpoint {
    let api = api_service();
    let generated = api.spec();
    let spec = document::served(&generated, settings.into());
    // poem-openapi builds the Swagger UI page around its own document and
    // keeps the builder private; the page embeds that document verbatim, so
    // it is swapped for the served one.
    let page = api.swagger_ui_html().replacen(&generated, &spec, 1);
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(page.clone()));
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json").body(spec.clone())
    });
    let tokens = settings.api.tokens.clone().expect("checked in build");
    // One registry per app instance (tests run several apps in one process).
    let metrics = crate::metrics::AppMetrics::new(&settings.redis.queue);
    let routes = Route::new()
        .nest("/", api)
        .at("/docs", docs)
        .at("/openapi.json", spec)
        // Prometheus scrapes without a token, like /health; it exposes
        // counts only, never job ids or payloads.
        .at("/metrics", poem::get(metrics.endpoint()))
        .data(service)
        .data(tokens)
        .data(body::BodyLimit(settings.api.max_payload_bytes))
        .data(hooks::Intake {
            limits: crate::domain::Limits {
                max_retries: settings.api.intake.max_retries_limit,
                max_delay: settings.api.intake.max_delay,
            },
            destinations: settings.destinations.clone(),
            idempotency_ttl: settings.api.intake.idempotency_ttl,
            batch_max: settings.api.intake.batch_max,
        })
        // Inside the error catcher: errors still carry their route template here.
        .with(metrics.middleware())
        .data(metrics.clone())
        .catch_all_error(errors::to_json);
    allow_table()
        .around(routes)
        // A handler panic becomes an opaque JSON 500 instead of a dropped
        // connection.
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("request handler panicked");
            poem::web::Json(ErrorBody::new("Internal error."))
                .with_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
        }))
        // poem's router files `/hook_slinger/` under `/hook_slinger` and then
        // misses the slashed form; trimming the slash serves both directly
        // (the original answered one of them with a 307).
        .with(NormalizePath::new(TrailingSlash::Trim))
        .with(cors(&settings.api.cors))
        .with(Tracing)
        .into_endpoint()
}

/// What each path serves, for `Allow`: the documented operations, plus the
/// one undocumented route that refuses some methods (`/docs` and
/// `/openapi.json` answer any method).
fn allow_table() -> allow::AllowTable {
    let documented = Apis::meta()
        .into_iter()
        .flat_map(|api| api.paths)
        .map(|path| (path.path, path.operations.into_iter().map(|op| op.method).collect()));
    allow::AllowTable::new(documented.chain([("/metrics".to_owned(), vec![poem::http::Method::GET])]))
}

/// CORS for the API, as the original served it: every origin by default,
/// with credentials, all methods and headers (the preflight echoes what the
/// browser asks for); `CORS_ALLOW_ORIGINS` narrows the origins. The monitor
/// is a separate server and never sends CORS headers (it uses a cookie).
fn cors(origins: &crate::config::CorsOrigins) -> poem::middleware::Cors {
    let cors = poem::middleware::Cors::new().allow_credentials(true);
    match origins {
        crate::config::CorsOrigins::Any => cors,
        crate::config::CorsOrigins::Only(list) => cors.allow_origins(list.iter().map(String::as_str)),
    }
}
