//! Every error leaves the API as JSON `{"detail": ...}`, whatever produced
//! it: our handlers, poem's extractors, or the router.

use poem::{http::StatusCode, IntoResponse, Response};
use poem_openapi::Object;

/// An error answer: `{"detail": "..."}`, as in the original.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to do.
    pub detail: String,
}

impl ErrorBody {
    /// Wraps a message.
    pub fn new(detail: impl Into<String>) -> Self {
        Self { detail: detail.into() }
    }
}

/// One field's problem in a 422 answer (FastAPI's shape, which callers of the
/// original already parse).
#[derive(Debug, Clone, Object)]
pub struct FieldProblem {
    /// Where: `["body", "<field>"]`.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// `missing`, `type` or `value`.
    #[oai(rename = "type")]
    pub kind: String,
}

/// A 422 answer listing every bad field.
#[derive(Debug, Clone, Object)]
pub struct ValidationBody {
    /// One entry per bad field.
    pub detail: Vec<FieldProblem>,
}

pub(super) const UNAUTHORIZED: &str = "Missing or malformed Authorization header. \
Send 'Authorization: Token <API_TOKEN>' (or 'Bearer <API_TOKEN>') with a token from API_TOKEN or API_TOKENS.";

pub(super) const FORBIDDEN: &str = "Invalid token. The token must match API_TOKEN (or one of API_TOKENS).";

/// An error with a message meant for the caller, raised outside the
/// handlers' typed answers (extractors, the auth checker).
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub(super) struct CallerError {
    status: StatusCode,
    detail: String,
}

impl poem::error::ResponseError for CallerError {
    fn status(&self) -> StatusCode {
        self.status
    }
}

/// Turns any error that reached the top of the router into a JSON answer
/// with the same status. Internal errors get an opaque message; their cause
/// chain is logged.
pub(super) async fn to_json(err: poem::Error) -> Response {
    // A typed error answer (`problem::Problem`) already is the JSON to send.
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let detail = match err.downcast_ref::<CallerError>() {
        Some(e) => e.detail.clone(),
        None => generic_detail(&err),
    };
    let mut resp = poem::web::Json(ErrorBody::new(detail)).with_status(status).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert("www-authenticate", poem::http::HeaderValue::from_static("Token"));
    }
    resp
}

fn generic_detail(err: &poem::Error) -> String {
    match err.status() {
        StatusCode::UNAUTHORIZED => UNAUTHORIZED.to_owned(),
        StatusCode::NOT_FOUND => "Not found.".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed.".to_owned(),
        s if s.is_server_error() => {
            tracing::error!(error.message = %err, error.cause_chain = ?err, "request failed");
            "Internal error.".to_owned()
        }
        _ => err.to_string(),
    }
}

/// Builds a JSON error response outside the handlers' typed answers.
pub(super) fn json_error(status: StatusCode, detail: impl Into<String>) -> poem::Error {
    CallerError { status, detail: detail.into() }.into()
}
