//! The job request body: documented as [`HookRequest`], parsed by
//! `domain::NewJob` so that every error names its field.
//!
//! poem-openapi's own JSON extractor stops at the first problem, answers in
//! plain text, and refuses a body without `Content-Type: application/json`
//! (which `curl -d` does not send); callers of the original got none of that.

use std::{marker::PhantomData, pin::pin, time::Duration};

use futures::{Stream, StreamExt};
use poem::{http::StatusCode, Body, Request, RequestBody};
use poem_openapi::{
    registry::{MetaMediaType, MetaRequest, Registry},
    types::Type,
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
};

use super::errors::json_error;

/// `MAX_PAYLOAD_BYTES`, shared with the extractor through request data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// An over-limit body is read and discarded up to this many times the limit
/// in all (16 MiB at the default limit), and for at most [`DRAIN_TIME`];
/// past either, the connection is closed unread.
const DRAIN_FACTOR: u64 = 16;
/// See [`DRAIN_FACTOR`].
const DRAIN_TIME: Duration = Duration::from_secs(5);

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
        let declared = req.header("content-length").and_then(|v| v.parse::<u64>().ok());
        let bytes = match read_within(body.take()?, limit, declared).await {
            Ok(bytes) => bytes,
            Err(Unread::TooLarge) => return Err(too_large()),
            Err(Unread::Io(e)) => {
                return Err(json_error(StatusCode::BAD_REQUEST, format!("Could not read the request body: {e}")))
            }
        };
        if bytes.is_empty() {
            return Err(json_error(StatusCode::BAD_REQUEST, "Request body is empty; send a JSON object."));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("Request body is not valid JSON: {e}")))?;
        Ok(Self(value, PhantomData))
    }
}

/// A body taken as bytes, exactly as sent (a provider's webhook, whose
/// signature covers those bytes), within `MAX_PAYLOAD_BYTES`; any content
/// type.
pub struct RawBody(pub Vec<u8>);

impl<'a> ApiExtractor<'a> for RawBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <poem_openapi::types::Binary<Vec<u8>> as Type>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "*/*",
                schema: <poem_openapi::types::Binary<Vec<u8>> as Type>::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(req: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let limit = req.data::<BodyLimit>().map(|l| l.0).unwrap_or(1024 * 1024);
        let declared = req.header("content-length").and_then(|v| v.parse::<u64>().ok());
        match read_within(body.take()?, limit, declared).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(Unread::TooLarge) => Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than MAX_PAYLOAD_BYTES ({limit} bytes)."),
            )),
            Err(Unread::Io(e)) => {
                Err(json_error(StatusCode::BAD_REQUEST, format!("Could not read the request body: {e}")))
            }
        }
    }
}

/// Why a body was not read.
enum Unread {
    TooLarge,
    Io(std::io::Error),
}

/// Reads a body of at most `limit` bytes, refusing early on a larger
/// declared length (a chunked body declares none, so it is cut off while
/// reading).
///
/// A refused body is drained before the 413 goes out. When a handler drops
/// a body unread, hyper tries one read of the rest and then closes the
/// connection with the client's bytes still unread, which makes the kernel
/// reset it: a client that writes its whole body before reading (Python's
/// `http.client`, no `Expect: 100-continue`) got a broken pipe instead of
/// the answer. This is nginx's lingering close; a body drained to its end
/// also leaves the connection usable for the next request.
async fn read_within(body: Body, limit: usize, declared: Option<u64>) -> Result<Vec<u8>, Unread> {
    let bound = (limit as u64).saturating_mul(DRAIN_FACTOR);
    let mut stream = pin!(body.into_bytes_stream());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // A declaration beyond the bound is refused without reading at all.
        if n <= bound {
            drain(stream, 0, bound).await;
        }
        return Err(Unread::TooLarge);
    }
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Unread::Io)?;
        if data.len() + chunk.len() > limit {
            drain(stream, (data.len() + chunk.len()) as u64, bound).await;
            return Err(Unread::TooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// Reads and discards what is left of a refused body until it ends, `bound`
/// bytes have come in all (`read` of them already), or [`DRAIN_TIME`]
/// passes.
async fn drain<B: AsRef<[u8]>>(mut stream: impl Stream<Item = std::io::Result<B>> + Unpin, read: u64, bound: u64) {
    let rest = async {
        let mut read = read;
        while read <= bound {
            match stream.next().await {
                Some(Ok(chunk)) => read += chunk.as_ref().len() as u64,
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, rest).await;
}
