//! `Allow` on every 405 answer (RFC 9110 §15.5.6 requires it): the methods
//! the request's path does serve, read from the same operation list that
//! writes the OpenAPI document, so the two cannot drift apart.

use std::sync::Arc;

use poem::{
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, EndpointExt, IntoResponse, Request, Response,
};

/// Path templates (`/hook_slinger/{job_id}`) and the `Allow` value for each.
#[derive(Debug, Clone)]
pub(super) struct AllowTable {
    routes: Vec<(Vec<Segment>, HeaderValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

impl AllowTable {
    /// One entry per path template with the methods routed there; `HEAD` is
    /// added wherever `GET` is, because poem answers it from the `GET` route.
    pub(super) fn new<S: AsRef<str>>(paths: impl IntoIterator<Item = (S, Vec<Method>)>) -> Self {
        let routes = paths
            .into_iter()
            .map(|(template, mut methods)| {
                if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                    methods.push(Method::HEAD);
                }
                let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
                names.sort_unstable();
                names.dedup();
                let value = HeaderValue::from_str(&names.join(", ")).expect("method names are valid header text");
                (segments(template.as_ref()).map(parse_segment).collect(), value)
            })
            .collect();
        Self { routes }
    }

    /// The `Allow` value for a request path. Like poem's router, a static
    /// segment wins over a parameter (`/hook_slinger/batch` is the batch
    /// route, never the job `batch`).
    pub(super) fn for_path(&self, path: &str) -> Option<&HeaderValue> {
        let parts: Vec<&str> = segments(path).collect();
        self.routes
            .iter()
            .filter(|(template, _)| {
                template.len() == parts.len()
                    && template.iter().zip(&parts).all(|(t, p)| match t {
                        Segment::Static(s) => s == p,
                        Segment::Param => true,
                    })
            })
            .max_by_key(|(template, _)| template.iter().map(|t| matches!(t, Segment::Static(_))).collect::<Vec<_>>())
            .map(|(_, value)| value)
    }

    /// Wraps `ep` so that its 405 answers carry `Allow`. It must sit inside
    /// the trailing-slash normaliser and outside the error catcher, where a
    /// 405 is already a response.
    pub(super) fn around<E: Endpoint + 'static>(self, ep: E) -> impl Endpoint<Output = Response> {
        let table = Arc::new(self);
        ep.around(move |ep, req: Request| {
            let table = table.clone();
            async move {
                let path = req.uri().path().to_owned();
                let mut resp = ep.call(req).await?.into_response();
                if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = table.for_path(&path) {
                        resp.headers_mut().insert(header::ALLOW, allow.clone());
                    }
                }
                Ok(resp)
            }
        })
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn parse_segment(s: &str) -> Segment {
    if s.starts_with('{') && s.ends_with('}') {
        Segment::Param
    } else {
        Segment::Static(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AllowTable {
        AllowTable::new([
            ("/hook_slinger", vec![Method::POST, Method::GET]),
            ("/hook_slinger/batch", vec![Method::POST]),
            ("/hook_slinger/{job_id}", vec![Method::GET]),
            ("/hook_slinger/{job_id}/requeue", vec![Method::POST]),
        ])
    }

    #[test]
    fn static_segments_win_over_parameters() {
        let t = table();
        assert_eq!(t.for_path("/hook_slinger/batch").unwrap(), "POST");
        assert_eq!(t.for_path("/hook_slinger/abc").unwrap(), "GET, HEAD");
        assert_eq!(t.for_path("/hook_slinger").unwrap(), "GET, HEAD, POST");
        assert_eq!(t.for_path("/hook_slinger/abc/requeue").unwrap(), "POST");
        assert_eq!(t.for_path("/nope"), None);
        assert_eq!(t.for_path("/hook_slinger/a/b/c"), None);
    }
}
