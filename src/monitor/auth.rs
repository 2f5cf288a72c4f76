//! Login, sessions and CSRF protection.
//!
//! The monitor shows payloads and can requeue, so every page needs a login
//! unless the operator explicitly ran it open on loopback. A session is a
//! random id in an HttpOnly, SameSite=Strict cookie, stored in Redis with
//! its CSRF token (so sessions survive monitor restarts and work across
//! replicas). Every state-changing request is a POST carrying that token in
//! a hidden field.
//!
//! Why not poem's `Session` with its Redis store and its `Csrf` middleware:
//! the Redis session store (feature `redis-session` of poem 3.1) is built on
//! redis 0.32, a second major version of the Redis client next to the one
//! apalis-redis requires, with its own connections and key names outside
//! `QUEUE_NAME`; and poem's CSRF is a double-submit cookie, where ours binds
//! the token to the server-side session. What is hand-written here is a
//! random id, one hash per session with a TTL, and a constant-time compare.

use std::{net::IpAddr, sync::Arc, time::Duration};

use base64::Engine;
use poem::{
    http::{header, StatusCode},
    web::{Form, Redirect},
    Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response,
};

use secrecy::ExposeSecret;

use crate::{config::MonitorSettings, secret::constant_time_eq};

use super::{console::Console, views};

/// The session cookie's name.
pub const COOKIE: &str = "hs_monitor_session";

/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// How long a wrong login waits before it is answered. Failures are also
/// answered one at a time, so parallel guessing gains nothing.
pub(super) const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

/// The monitor refuses to start with this access configuration.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No credentials and login not explicitly turned off.
    #[error(
        "MONITOR_USER and MONITOR_PASSWORD are not set: the monitor shows payloads and can requeue, \
so it refuses to start without a login. Set both (see .env.example), or, on a loopback address \
only, set MONITOR_AUTH=off explicitly."
    )]
    NoCredentials,
    /// Login turned off on an address other hosts can reach.
    #[error("MONITOR_AUTH=off is only allowed when MONITOR_HOST is a loopback address (got {0})")]
    OpenOnNetwork(IpAddr),
}

/// Who may use the monitor.
#[derive(Clone)]
pub(super) enum Access {
    /// Everyone must log in with these credentials.
    Login {
        user: Arc<str>,
        password: Arc<str>,
        /// Held while a wrong login waits, so failures are answered one at a time.
        failures: Arc<tokio::sync::Mutex<()>>,
    },
    /// No login (loopback only); CSRF still applies, with one token per process.
    Open { csrf: Arc<str> },
}

impl Access {
    /// Decides the access mode, refusing unsafe combinations.
    pub(super) fn from_settings(m: &MonitorSettings) -> Result<Self, AccessError> {
        match (&m.user, &m.password) {
            (Some(user), Some(password)) if !m.auth_off => Ok(Self::Login {
                user: user.as_str().into(),
                password: password.expose_secret().into(),
                failures: Arc::default(),
            }),
            _ if m.auth_off && m.host.is_loopback() => Ok(Self::Open { csrf: random_token().into() }),
            _ if m.auth_off => Err(AccessError::OpenOnNetwork(m.host)),
            _ => Err(AccessError::NoCredentials),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn cookie_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A logged-in request (or any request when the monitor runs open).
pub(super) struct Session {
    /// The token every form of this session must send back.
    pub csrf: String,
    /// False when the monitor runs without login (no logout button).
    pub logged_in: bool,
}

impl Session {
    /// Refuses a state-changing request whose form did not carry this
    /// session's token.
    pub fn check_csrf(&self, presented: &str) -> poem::Result<()> {
        if constant_time_eq(presented.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(poem::Error::from_response(
                views::error_page(
                    StatusCode::FORBIDDEN,
                    "This form has expired (CSRF check failed). Reload the page and try again.",
                )
                .into_response(),
            ))
        }
    }
}

impl<'a> FromRequest<'a> for Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let access = req.data::<Access>().expect("access is configured in routes");
        match access {
            Access::Open { csrf } => Ok(Self { csrf: csrf.to_string(), logged_in: false }),
            Access::Login { .. } => {
                let console = req.data::<Console>().expect("console is configured in routes");
                let csrf = match cookie_value(req, COOKIE) {
                    Some(id) if id.len() <= 64 => console.store().session_csrf(id).await.map_err(|e| {
                        tracing::error!(error.message = %e, error.cause_chain = ?e, "session lookup failed");
                        poem::Error::from_response(
                            views::error_page(StatusCode::SERVICE_UNAVAILABLE, "Redis is unavailable.").into_response(),
                        )
                    })?,
                    _ => None,
                };
                match csrf {
                    Some(csrf) => Ok(Self { csrf, logged_in: true }),
                    // The live-refresh script gets a plain 401 rather than a login page to swap in.
                    None if req.header("x-live").is_some() => Err(poem::Error::from_status(StatusCode::UNAUTHORIZED)),
                    None => Err(poem::Error::from_response(Redirect::see_other("/login").into_response())),
                }
            }
        }
    }
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

#[poem::handler]
pub(super) fn login_page(req: &Request) -> Response {
    match req.data::<Access>() {
        Some(Access::Open { .. }) => Redirect::see_other("/").into_response(),
        _ => views::login(None).into_response(),
    }
}

#[poem::handler]
pub(super) async fn login(req: &Request, Form(form): Form<LoginForm>) -> poem::Result<Response> {
    let access = req.data::<Access>().expect("access is configured in routes");
    let console = req.data::<Console>().expect("console is configured in routes");
    let Access::Login { user, password, failures } = access else {
        return Ok(Redirect::see_other("/").into_response());
    };
    // Both compared every time, so the answer's timing does not tell which was wrong.
    let user_ok = constant_time_eq(form.user.as_bytes(), user.as_bytes());
    let password_ok = constant_time_eq(form.password.as_bytes(), password.as_bytes());
    if !(user_ok & password_ok) {
        let _one_at_a_time = failures.lock().await;
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        tracing::warn!("monitor login refused");
        return Ok(views::login(Some("Wrong user name or password."))
            .with_status(StatusCode::UNAUTHORIZED)
            .into_response());
    }
    let id = random_token();
    console.store().create_session(&id, &random_token(), SESSION_TTL).await.map_err(|e| {
        tracing::error!(error.message = %e, error.cause_chain = ?e, "could not store session");
        poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    tracing::info!("monitor login");
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_TTL.as_secs());
    Ok(Redirect::see_other("/").with_header(header::SET_COOKIE, cookie).into_response())
}

/// The logout form's fields.
#[derive(serde::Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

#[poem::handler]
pub(super) async fn logout(req: &Request, session: Session, Form(form): Form<CsrfForm>) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    if let (Some(id), Some(console)) = (cookie_value(req, COOKIE), req.data::<Console>()) {
        let _ = console.store().end_session(id).await;
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(Redirect::see_other("/login").with_header(header::SET_COOKIE, cookie).into_response())
}

/// Security headers on every answer: no framing, no sniffing, and only our
/// own stylesheet and script may run.
pub(super) async fn security_headers<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let mut resp = next.call(req).await?.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, user: Option<&str>, auth_off: bool) -> MonitorSettings {
        MonitorSettings {
            host: host.parse().unwrap(),
            port: 0,
            user: user.map(str::to_owned),
            password: user.map(|_| "pw".into()),
            auth_off,
        }
    }

    #[test]
    fn credentials_are_required_unless_open_on_loopback() {
        assert!(matches!(Access::from_settings(&settings("0.0.0.0", None, false)), Err(AccessError::NoCredentials)));
        assert!(matches!(Access::from_settings(&settings("127.0.0.1", None, false)), Err(AccessError::NoCredentials)));
        assert!(matches!(Access::from_settings(&settings("0.0.0.0", None, true)), Err(AccessError::OpenOnNetwork(_))));
        assert!(Access::from_settings(&settings("127.0.0.1", None, true)).unwrap().is_open());
        assert!(Access::from_settings(&settings("::1", None, true)).unwrap().is_open());
        assert!(!Access::from_settings(&settings("0.0.0.0", Some("me"), false)).unwrap().is_open());
    }
}
