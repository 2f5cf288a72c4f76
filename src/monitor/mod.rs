//! The monitor (`hook-slinger-monitor`): a web UI and a CLI where a person
//! watches jobs, workers, tenants' endpoints, events and sources, and
//! fixes failures.
//!
//! - [`Monitor`]: the web UI, built and run like [`crate::api::Application`].
//! - [`console`]: the operations both the UI and the CLI call.
//! - [`cli`]: the command line (`serve`, `jobs`, `show`, `requeue`,
//!   `endpoints`, `events`, `recover`, `sources`, ...).
//! - `auth`: login sessions and CSRF; `pages`/`views`: handlers and HTML;
//!   `assets`: the stylesheet and the live-refresh script.

mod assets;
mod auth;
pub mod cli;
pub mod console;
mod pages;
mod views;

use std::{future::Future, net::SocketAddr, time::Duration};

use poem::{
    get,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::Tracing,
    post, EndpointExt, Route, Server,
};

use crate::config::Settings;

pub use auth::{AccessError, COOKIE};
pub use console::Console;

/// The monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Login is not configured safely.
    #[error(transparent)]
    Access(#[from] AccessError),
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

/// A bound, ready-to-run monitor web server.
pub struct Monitor {
    acceptor: TcpAcceptor,
    port: u16,
    console: Console,
    access: auth::Access,
    settings: Settings,
}

impl Monitor {
    /// Checks the login configuration, binds the listener and connects
    /// (lazily) to Redis; nothing is served until [`Monitor::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let access = auth::Access::from_settings(&settings.monitor)?;
        let console = Console::new(&settings)?;
        let addr = SocketAddr::new(settings.monitor.host, settings.monitor.port);
        let acceptor =
            TcpListener::bind(addr).into_acceptor().await.map_err(|source| StartError::Bind { addr, source })?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or(settings.monitor.port);
        Ok(Self { acceptor, port, console, access, settings })
    }

    /// The port actually bound (useful with `MONITOR_PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then finishes open requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let host = self.settings.monitor.host;
        let shown = if host.is_unspecified() { "127.0.0.1".to_owned() } else { host.to_string() };
        tracing::info!(url = %format!("http://{shown}:{}", self.port), login = !self.access.is_open(), "monitor listening");
        let app = routes(self.console, self.access);
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
            .await
    }
}

fn routes(console: Console, access: auth::Access) -> impl poem::Endpoint {
    Route::new()
        .at("/", get(pages::overview))
        .at("/jobs", get(pages::jobs))
        .at("/jobs/:id", get(pages::job))
        .at("/jobs/:id/requeue", post(pages::requeue))
        .at("/jobs/:id/retry", post(pages::retry_now))
        .at("/jobs/:id/delete", post(pages::delete))
        .at("/bulk/requeue", post(pages::requeue_all))
        .at("/bulk/purge", post(pages::purge))
        .at("/workers", get(pages::workers))
        .at("/tenants", get(pages::tenants))
        .at("/tenants/:tenant/endpoints", get(pages::endpoints))
        .at("/tenants/:tenant/endpoints/:id", get(pages::endpoint))
        .at("/tenants/:tenant/endpoints/:id/disable", post(pages::disable))
        .at("/tenants/:tenant/endpoints/:id/enable", post(pages::enable))
        .at("/tenants/:tenant/endpoints/:id/rotate", post(pages::rotate))
        .at("/tenants/:tenant/endpoints/:id/recover", post(pages::recover))
        .at("/tenants/:tenant/events", get(pages::events))
        .at("/tenants/:tenant/events/:id", get(pages::event))
        .at("/tenants/:tenant/sources", get(pages::sources))
        .at("/tenants/:tenant/sources/:id", get(pages::source))
        .at("/login", get(auth::login_page).post(auth::login))
        .at("/logout", post(auth::logout))
        .at("/health", get(pages::health))
        .at("/ready", get(pages::ready))
        .at("/assets/monitor.css", get(assets::style))
        .at("/assets/monitor.js", get(assets::script))
        .data(console)
        .data(access)
        .around(auth::security_headers)
        // A handler panic becomes a 500 page instead of a dropped connection.
        .with(poem::middleware::CatchPanic::new().with_handler(|_| {
            tracing::error!("monitor request handler panicked");
            views::error_page(poem::http::StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
        }))
        .with(Tracing)
}
