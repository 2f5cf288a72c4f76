use std::fmt;

/// Where a webhook is POSTed: an absolute `http` or `https` URL with a host.
///
/// The original accepted `ftp://` and failed later in the worker; we refuse
/// anything we could not deliver, at the door.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetUrl(url::Url);

/// Why a target URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetUrlError {
    /// Not an absolute URL at all.
    #[error("not an absolute URL")]
    Unparsable,
    /// A scheme other than http or https.
    #[error("scheme must be http or https")]
    Scheme,
    /// Not written as `scheme://host...` (`http:example.com`): URL parsers
    /// disagree on what such a string means, so we do not guess.
    #[error("URL must be written as http://host/... or https://host/...")]
    NoAuthority,
    /// No host part.
    #[error("URL has no host")]
    NoHost,
    /// User info in the URL would leak credentials into logs; use `to_auth`.
    #[error("credentials in the URL are not allowed; send them with to_auth")]
    Credentials,
    /// A host name no resolver would look up (`a*b.com`, `a..com`): the
    /// URL parser takes most ASCII punctuation in a host, DNS does not.
    #[error("host name must be dot-separated labels of letters, digits, '-' and '_'")]
    HostName,
}

impl TargetUrl {
    /// Parses and checks a target URL.
    pub fn parse(raw: &str) -> Result<Self, TargetUrlError> {
        let target = Self::parse_stored(raw)?;
        match target.0.host() {
            // Already lower case, and in punycode for other scripts.
            Some(url::Host::Domain(name)) if !is_host_name(name) => Err(TargetUrlError::HostName),
            _ => Ok(target),
        }
    }

    /// The rules every stored job was accepted under. The host-name rule
    /// came later, so a job accepted before it still loads (and fails at
    /// delivery, as it would have).
    fn parse_stored(raw: &str) -> Result<Self, TargetUrlError> {
        let raw = raw.trim();
        let url = url::Url::parse(raw).map_err(|_| TargetUrlError::Unparsable)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetUrlError::Scheme);
        }
        // The WHATWG parser turns `http:google.com` into `http://google.com/`;
        // the original refused it, and so do we.
        if raw.get(url.scheme().len()..url.scheme().len() + 3) != Some("://") {
            return Err(TargetUrlError::NoAuthority);
        }
        match url.host_str() {
            Some(h) if !h.is_empty() => {}
            _ => return Err(TargetUrlError::NoHost),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetUrlError::Credentials);
        }
        Ok(Self(url))
    }

    /// The URL.
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// The host, for logs and listings.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

/// Labels of letters, digits, `-` and `_` (Docker and Compose service names
/// use `_`), with an optional trailing dot.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.split('.')
        .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
}

/// How stored jobs are read back (see `parse_stored`).
impl TryFrom<String> for TargetUrl {
    type Error = TargetUrlError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_stored(&value)
    }
}

impl From<TargetUrl> for String {
    fn from(t: TargetUrl) -> Self {
        t.0.into()
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_https_ipv6_and_dotless_hosts() {
        for ok in [
            "http://example.com/hook",
            "https://a.b:8443/x?y=1",
            "http://[::1]:8080/",
            "http://receiver:9000/",
            "http://my_service.local./",
            "http://bücher.example/",
        ] {
            assert!(TargetUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_delivered() {
        assert_eq!(TargetUrl::parse("ftp://example.com/"), Err(TargetUrlError::Scheme));
        assert_eq!(TargetUrl::parse("example.com/hook"), Err(TargetUrlError::Unparsable));
        assert_eq!(TargetUrl::parse("/relative"), Err(TargetUrlError::Unparsable));
        assert_eq!(TargetUrl::parse("http://user:pw@example.com/"), Err(TargetUrlError::Credentials));
        // Accepted and rewritten by the URL parser, refused by the original.
        for no_slashes in ["http:google.com", "https:sfsdfdsff", "http:/google.com", "HTTP:google.com"] {
            assert_eq!(TargetUrl::parse(no_slashes), Err(TargetUrlError::NoAuthority), "{no_slashes}");
        }
        assert!(TargetUrl::parse("  HTTPS://Example.com/hook  ").is_ok());
        // The URL parser takes these hosts; no resolver would.
        for bad_host in ["http://example.com*/", "http://a..com/", "http://a$b.com/", "http://.example/"] {
            assert_eq!(TargetUrl::parse(bad_host), Err(TargetUrlError::HostName), "{bad_host}");
        }
        // A job stored before that rule still loads.
        let stored: TargetUrl = serde_json::from_value(serde_json::json!("http://example.com*/")).unwrap();
        assert_eq!(stored.host(), "example.com*");
    }
}
