//! How a source checks that a request really comes from its provider: the
//! provider's signature over the raw body, made with a secret both sides
//! know. Each scheme is one provider family's way of writing it; a
//! refusal names one of a few fixed reasons (counted per source).
//!
//! Every comparison of a signature is the `hmac` crate's `verify_slice`,
//! which takes the same time wherever the bytes differ.

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use poem::http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::delivery::SigningSecret;

/// Why a request was refused; the names are the counters' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The signature header (or one the scheme needs with it) is absent.
    MissingSignature,
    /// A signature header is there but cannot be read.
    MalformedSignature,
    /// No valid secret makes the signature.
    WrongSignature,
    /// Signed, but the timestamp is outside `tolerance_seconds`.
    StaleTimestamp,
}

impl Refusal {
    /// Every reason, for counters and the monitor.
    pub const ALL: [Refusal; 4] =
        [Self::MissingSignature, Self::MalformedSignature, Self::WrongSignature, Self::StaleTimestamp];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::WrongSignature => "wrong_signature",
            Self::StaleTimestamp => "stale_timestamp",
        }
    }

    /// What the provider (or whoever is testing it) reads in the 401.
    pub fn explain(self) -> &'static str {
        match self {
            Self::MissingSignature => "The request carries no signature for this source's scheme.",
            Self::MalformedSignature => "The signature header cannot be read.",
            Self::WrongSignature => "The signature does not match the body with this source's secret.",
            Self::StaleTimestamp => "The signature's timestamp is outside the tolerance (tolerance_seconds).",
        }
    }
}

/// How a signature is written, for `hmac-sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// A provider family's signature scheme; see `verify.scheme` in the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex HMAC of the body>`.
    Github,
    /// `Stripe-Signature: t=<unix>,v1=<hex HMAC of "t.body">` (several `v1`).
    Stripe,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    StandardWebhooks,
    /// Any provider's home-grown HMAC-SHA256 of the body in one header.
    HmacSha256 {
        /// The header, lower case.
        header: String,
        /// How the MAC is written.
        encoding: Encoding,
        /// Text before the MAC (`sha256=`), possibly empty.
        prefix: String,
        /// A header carrying the provider's delivery id, for replays.
        id_header: Option<String>,
    },
}

impl Scheme {
    /// The scheme's name in `verify.scheme`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::StandardWebhooks => "standard-webhooks",
            Self::HmacSha256 { .. } => "hmac-sha256",
        }
    }
}

/// A provider's secret: stored, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderSecret(String);

impl std::fmt::Debug for ProviderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderSecret(***)")
    }
}

impl ProviderSecret {
    /// Longest secret accepted.
    pub const MAX_LEN: usize = 1024;

    /// Checks a secret for `scheme`: Standard Webhooks needs base64 (after
    /// an optional `whsec_`); the others take any text, used as given.
    pub fn parse(raw: &str, scheme: &Scheme) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} bytes", Self::MAX_LEN));
        }
        if *scheme == Scheme::StandardWebhooks {
            SigningSecret::parse_foreign(raw).map_err(|e| e.to_string())?;
        }
        Ok(Self(raw.to_owned()))
    }

    /// The secret as given.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length")
    }
}

/// The secret that replaced another, and the one it replaced, valid until
/// `expires_at` so that a provider's rotation drops no webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The old secret.
    pub secret: ProviderSecret,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// A signed scheme with its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The scheme.
    pub scheme: Scheme,
    /// The current secret.
    pub secret: ProviderSecret,
    /// The previous secret, during a rotation.
    pub previous: Option<Previous>,
    /// For the timestamped schemes (Stripe, Standard Webhooks): how far a
    /// signature's time may be from ours, either way.
    pub tolerance_seconds: u32,
}

/// A source's verification: a signed scheme, or, chosen explicitly, none.
/// Stored and read as its JSON document (`sources::VerifyDoc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "super::VerifyDoc", try_from = "super::VerifyDoc")]
pub enum Verify {
    /// Anything is accepted.
    None,
    /// Checked.
    Signed(Signed),
}

/// `tolerance_seconds` when not given (Stripe's and Standard Webhooks' own).
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| Refusal::MalformedSignature),
    }
}

impl Verify {
    /// The scheme's name in `verify.scheme`.
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Signed(s) => s.scheme.name(),
        }
    }

    /// Checks a request at `now`.
    pub fn check(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), Refusal> {
        match self {
            Self::None => Ok(()),
            Self::Signed(s) => s.check(headers, body, now),
        }
    }

    /// The provider's id of this delivery, which a replay repeats: GitHub's
    /// `X-GitHub-Delivery`, the Stripe event's `id`, Standard Webhooks'
    /// `webhook-id`, the configured `id_header` of `hmac-sha256`; without
    /// one of those, an `Idempotency-Key` header.
    pub fn delivery_id(&self, headers: &HeaderMap, body: Option<&serde_json::Value>) -> Option<String> {
        let named = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).map(str::to_owned);
        let own = match self {
            Self::None => None,
            Self::Signed(s) => match &s.scheme {
                Scheme::Github => named("x-github-delivery"),
                Scheme::Stripe => body.and_then(|b| b.get("id")).and_then(|v| v.as_str()).map(str::to_owned),
                Scheme::StandardWebhooks => named("webhook-id"),
                Scheme::HmacSha256 { id_header, .. } => id_header.as_deref().and_then(named),
            },
        };
        own.or_else(|| named("idempotency-key")).filter(|id| !id.is_empty() && id.len() <= 256)
    }
}

impl Signed {
    /// The secrets valid at `now`: the current one, and the previous one
    /// until it expires.
    fn secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &ProviderSecret> {
        std::iter::once(&self.secret).chain(self.previous.iter().filter(move |p| p.expires_at > now).map(|p| &p.secret))
    }

    fn fresh(&self, timestamp: i64, now: DateTime<Utc>) -> Result<(), Refusal> {
        if (now.timestamp() - timestamp).unsigned_abs() > u64::from(self.tolerance_seconds) {
            return Err(Refusal::StaleTimestamp);
        }
        Ok(())
    }

    fn check(&self, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), Refusal> {
        match &self.scheme {
            Scheme::Github => {
                let value = header(headers, "x-hub-signature-256")?.ok_or(Refusal::MissingSignature)?;
                let hex = value.strip_prefix("sha256=").ok_or(Refusal::MalformedSignature)?;
                let mac = hex::decode(hex).map_err(|_| Refusal::MalformedSignature)?;
                self.any_secret(now, |s| {
                    let mut m = s.hmac();
                    m.update(body);
                    m.verify_slice(&mac).is_ok()
                })
            }
            Scheme::HmacSha256 { header: name, encoding, prefix, .. } => {
                let value = header(headers, name)?.ok_or(Refusal::MissingSignature)?;
                let written = value.strip_prefix(prefix.as_str()).ok_or(Refusal::MalformedSignature)?;
                let mac = match encoding {
                    Encoding::Hex => hex::decode(written).ok(),
                    Encoding::Base64 => STANDARD.decode(written).ok(),
                }
                .ok_or(Refusal::MalformedSignature)?;
                self.any_secret(now, |s| {
                    let mut m = s.hmac();
                    m.update(body);
                    m.verify_slice(&mac).is_ok()
                })
            }
            Scheme::Stripe => {
                let value = header(headers, "stripe-signature")?.ok_or(Refusal::MissingSignature)?;
                let mut timestamp = None;
                let mut macs = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        // An unreadable v1 among readable ones is skipped,
                        // as Stripe's libraries do.
                        Some(("v1", v)) => macs.extend(hex::decode(v).ok()),
                        _ => {}
                    }
                }
                let t = timestamp.ok_or(Refusal::MalformedSignature)?;
                let unix: i64 = t.parse().map_err(|_| Refusal::MalformedSignature)?;
                if macs.is_empty() {
                    return Err(Refusal::MalformedSignature);
                }
                self.any_secret(now, |s| {
                    let mut m = s.hmac();
                    m.update(t.as_bytes());
                    m.update(b".");
                    m.update(body);
                    // Each candidate is checked with a fresh copy: the MAC
                    // is consumed by the comparison.
                    macs.iter().any(|mac| m.clone().verify_slice(mac).is_ok())
                })?;
                self.fresh(unix, now)
            }
            Scheme::StandardWebhooks => {
                let (id, ts, sig) = (
                    header(headers, "webhook-id")?,
                    header(headers, "webhook-timestamp")?,
                    header(headers, "webhook-signature")?,
                );
                let (Some(id), Some(ts), Some(sig)) = (id, ts, sig) else {
                    return Err(Refusal::MissingSignature);
                };
                let unix: i64 = ts.parse().map_err(|_| Refusal::MalformedSignature)?;
                let macs: Vec<Vec<u8>> = sig
                    .split(' ')
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .filter_map(|b64| STANDARD.decode(b64).ok())
                    .collect();
                if macs.is_empty() {
                    return Err(Refusal::MalformedSignature);
                }
                self.any_secret(now, |s| {
                    let Ok(key) = SigningSecret::parse_foreign(&s.0) else { return false };
                    macs.iter().any(|mac| key.verifies(id, ts, body, mac))
                })?;
                self.fresh(unix, now)
            }
        }
    }

    fn any_secret(&self, now: DateTime<Utc>, signs: impl Fn(&ProviderSecret) -> bool) -> Result<(), Refusal> {
        // Every valid secret is tried, so the time taken does not tell
        // which one matched.
        let matched = self.secrets(now).fold(false, |found, s| signs(s) | found);
        if matched {
            Ok(())
        } else {
            Err(Refusal::WrongSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn signed(scheme: Scheme, secret: &str) -> Verify {
        Verify::Signed(Signed {
            secret: ProviderSecret::parse(secret, &scheme).unwrap(),
            scheme,
            previous: None,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn hex_mac(key: &[u8], parts: &[&[u8]]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn github_checks_the_body_and_names_each_refusal() {
        let v = signed(Scheme::Github, "It's a Secret to Everybody");
        let now = Utc::now();
        // GitHub's own documented example.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(v.check(&headers(&[("x-hub-signature-256", good)]), b"Hello, World!", now), Ok(()));
        assert_eq!(
            v.check(&headers(&[("x-hub-signature-256", good)]), b"Hello, World?", now),
            Err(Refusal::WrongSignature)
        );
        assert_eq!(v.check(&headers(&[]), b"x", now), Err(Refusal::MissingSignature));
        assert_eq!(
            v.check(&headers(&[("x-hub-signature-256", "sha1=abc")]), b"x", now),
            Err(Refusal::MalformedSignature)
        );
        assert_eq!(
            v.check(&headers(&[("x-hub-signature-256", "sha256=zz")]), b"x", now),
            Err(Refusal::MalformedSignature)
        );
    }

    #[test]
    fn stripe_keys_with_the_whole_secret_and_checks_the_timestamp() {
        let secret = "whsec_test_secret";
        let v = signed(Scheme::Stripe, secret);
        let now = Utc::now();
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let t = now.timestamp().to_string();
        let mac = hex_mac(secret.as_bytes(), &[t.as_bytes(), b".", body]);
        let ok = format!("t={t},v1=deadbeef,v1={mac},v0=abc");
        assert_eq!(v.check(&headers(&[("stripe-signature", &ok)]), body, now), Ok(()));
        let old = (now.timestamp() - 301).to_string();
        let stale = format!("t={old},v1={}", hex_mac(secret.as_bytes(), &[old.as_bytes(), b".", body]));
        assert_eq!(v.check(&headers(&[("stripe-signature", &stale)]), body, now), Err(Refusal::StaleTimestamp));
        assert_eq!(v.check(&headers(&[("stripe-signature", "v1=00")]), body, now), Err(Refusal::MalformedSignature));
        let body_json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v.delivery_id(&headers(&[]), Some(&body_json)).as_deref(), Some("evt_1"));
    }

    #[test]
    fn standard_webhooks_matches_the_specifications_example() {
        // The specification's test vector.
        let v = signed(Scheme::StandardWebhooks, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let at = DateTime::from_timestamp(1614265330, 0).unwrap();
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1,bm9ldHZhbGlk v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ]);
        assert_eq!(v.check(&h, body, at), Ok(()));
        assert_eq!(v.check(&h, body, Utc::now()), Err(Refusal::StaleTimestamp));
        assert_eq!(v.check(&h, b"{}", at), Err(Refusal::WrongSignature));
        assert_eq!(v.delivery_id(&h, None).as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        // The bare base64, as the specification's libraries also take it.
        let bare = signed(Scheme::StandardWebhooks, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(bare.check(&h, body, at), Ok(()));
    }

    #[test]
    fn hmac_sha256_reads_its_header_prefix_and_encoding() {
        let scheme = Scheme::HmacSha256 {
            header: "x-signature".to_owned(),
            encoding: Encoding::Base64,
            prefix: "hmac=".to_owned(),
            id_header: Some("x-delivery".to_owned()),
        };
        let v = signed(scheme, "s3cret");
        let mut m = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        m.update(b"\xff\x00raw");
        let sig = format!("hmac={}", STANDARD.encode(m.finalize().into_bytes()));
        let now = Utc::now();
        assert_eq!(v.check(&headers(&[("x-signature", &sig)]), b"\xff\x00raw", now), Ok(()));
        assert_eq!(v.check(&headers(&[("x-signature", "abc")]), b"x", now), Err(Refusal::MalformedSignature));
        assert_eq!(v.delivery_id(&headers(&[("x-delivery", "d1")]), None).as_deref(), Some("d1"));
    }

    #[test]
    fn a_previous_secret_verifies_until_it_expires() {
        let now = Utc::now();
        let mut s = Signed {
            scheme: Scheme::Github,
            secret: ProviderSecret("new".to_owned()),
            previous: Some(Previous { secret: ProviderSecret("old".to_owned()), expires_at: now }),
            tolerance_seconds: 300,
        };
        let sig = format!("sha256={}", hex_mac(b"old", &[b"body"]));
        let h = headers(&[("x-hub-signature-256", &sig)]);
        assert_eq!(s.check(&h, b"body", now - chrono::Duration::seconds(1)), Ok(()));
        assert_eq!(s.check(&h, b"body", now), Err(Refusal::WrongSignature));
        s.previous = None;
        assert_eq!(s.check(&h, b"body", now - chrono::Duration::seconds(1)), Err(Refusal::WrongSignature));
    }
}
