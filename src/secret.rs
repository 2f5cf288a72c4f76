//! Secrets: API tokens, the monitor's password and a job's `to_auth` are
//! held as [`SecretString`]s, so they never reach `Debug` output or logs,
//! and compared in constant time. Shared by the app and the monitor, which
//! is why it is neither's.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Serialises an optional secret as its plain value, for the one place
/// that must store it: the job record in Redis, read back by the worker
/// that sends it.
pub fn serialize_exposed<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_some(v.expose_secret()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = SecretString::from("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
