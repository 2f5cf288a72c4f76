//! The job request body: documented as [`HookRequest`], parsed by
//! `domain::NewJob` so that every error names its field.
//!
//! poem-openapi's own JSON extractor stops at the first problem, answers in
//! plain text, and refuses a body without `Content-Type: application/json`
//! (which `curl -d` does not send); callers of the original got none of that.

use std::marker::PhantomData;

use poem::{http::StatusCode, Request, RequestBody};
use poem_openapi::{
    registry::{MetaMediaType, MetaRequest, Registry},
    types::Type,
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
};

use super::errors::json_error;

/// `MAX_PAYLOAD_BYTES`, shared with the extractor through request data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body whose schema `T` documents the endpoint; the value itself is
/// parsed by the domain.
pub struct JsonBody<T>(pub serde_json::Value, PhantomData<T>);

impl<'a, T: Type> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(req: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let limit = req.data::<BodyLimit>().map(|l| l.0).unwrap_or(1024 * 1024);
        let too_large = || {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than MAX_PAYLOAD_BYTES ({limit} bytes)."),
            )
        };
        // Refuse early on the declared length, then enforce while reading
        // (a chunked body declares none).
        let declared = req.header("content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = body.take()?.into_bytes_limit(limit).await.map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => too_large(),
            other => json_error(StatusCode::BAD_REQUEST, format!("Could not read the request body: {other}")),
        })?;
        if bytes.is_empty() {
            return Err(json_error(StatusCode::BAD_REQUEST, "Request body is empty; send a JSON object."));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("Request body is not valid JSON: {e}")))?;
        Ok(Self(value, PhantomData))
    }
}
