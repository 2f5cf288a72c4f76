//! Token authentication: `Authorization: Token <token>` or `Bearer <token>`.

use poem::{http::StatusCode, Request};
use poem_openapi::{auth::ApiKey, SecurityScheme};
use secrecy::ExposeSecret;

use crate::{config::ApiTokens, secret::constant_time_eq};

use super::errors::{json_error, FORBIDDEN, UNAUTHORIZED};

/// A request that carried a valid token.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "Authorization", key_in = "header", checker = "check", rename = "TokenAuth")]
/// Send `Authorization: Token <API_TOKEN>` (or `Bearer <API_TOKEN>`). In the
/// Authorize dialog, type the whole value, e.g. `Token my-secret`.
pub struct TokenAuth(pub Caller);

/// Who called: an opaque, stable id for the token used (never the token),
/// which scopes idempotency keys to their caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// First 16 hex digits of the token's SHA-256.
    pub token_id: String,
}

async fn check(req: &Request, key: ApiKey) -> poem::Result<Caller> {
    let tokens =
        req.data::<ApiTokens>().ok_or_else(|| json_error(StatusCode::INTERNAL_SERVER_ERROR, "no tokens configured"))?;
    let Some(presented) = parse_header(&key.key) else {
        return Err(json_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED));
    };
    // Check every token, so the time taken does not tell which one was close.
    let ok = tokens
        .as_slice()
        .iter()
        .fold(false, |acc, t| acc | constant_time_eq(presented.as_bytes(), t.expose_secret().as_bytes()));
    if ok {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(presented.as_bytes());
        let token_id = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(Caller { token_id })
    } else {
        Err(json_error(StatusCode::FORBIDDEN, FORBIDDEN))
    }
}

/// The token from `Token <t>` or `Bearer <t>` (scheme case-insensitive).
fn parse_header(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then_some(token)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_parse() {
        assert_eq!(parse_header("Token abc"), Some("abc"));
        assert_eq!(parse_header("bearer abc"), Some("abc"));
        assert_eq!(parse_header("Basic abc"), None);
        assert_eq!(parse_header("Token "), None);
        assert_eq!(parse_header("abc"), None);
    }
}
