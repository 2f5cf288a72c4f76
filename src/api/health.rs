//! Liveness and readiness probes (no token needed).

use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi, Tags};

use crate::service::HookService;

use super::errors::ErrorBody;

#[derive(Tags)]
enum ApiTags {
    /// Probes for load balancers and orchestrators.
    Health,
}

/// Probe answer.
#[derive(Object)]
struct Status {
    /// `ok` or `ready`.
    status: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Redis answers: jobs can be accepted.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// Redis does not answer: jobs would be refused with 503.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub(super) struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// The process is alive.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Json<Status> {
        Json(Status { status: "ok".to_owned() })
    }

    /// The app can reach Redis.
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, service: Data<&HookService>) -> ReadyResponse {
        match service.ready().await {
            Ok(()) => ReadyResponse::Ready(Json(Status { status: "ready".to_owned() })),
            Err(e) => {
                tracing::warn!(error.message = %e, "not ready");
                ReadyResponse::Unavailable(Json(ErrorBody::new("Redis is unavailable.")))
            }
        }
    }
}
