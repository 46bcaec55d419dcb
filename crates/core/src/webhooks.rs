//! Standard Webhooks (<https://www.standardwebhooks.com/>) signing, for every
//! outbound webhook the broker sends (the audit stream to a SIEM, notifications):
//! the headers `webhook-id`, `webhook-timestamp` and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the bytes of a
//! `whsec_<base64>` secret. Pure functions: the broker reads the secret from the
//! environment and sends the request.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The prefix Standard Webhooks secrets are written with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest key the specification allows (bytes, after base64).
pub const SECRET_BYTES: (usize, usize) = (24, 64);

/// Header names of a signed delivery.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A Standard Webhooks secret that does not parse. The message never contains the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is not base64 after the whsec_ prefix")]
    NotBase64,
    #[error("the secret is {0} bytes long; Standard Webhooks secrets are 24 to 64 bytes")]
    Length(usize),
}

/// Reads a Standard Webhooks secret (`whsec_<base64>`; the prefix may be left
/// out) into its key bytes, zeroed when dropped.
pub fn parse_webhook_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, WebhookSecretError> {
    let text = text.trim();
    let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    if b64.is_empty() {
        return Err(WebhookSecretError::Empty);
    }
    let key = Zeroizing::new(
        STANDARD
            .decode(b64)
            .map_err(|_| WebhookSecretError::NotBase64)?,
    );
    if key.len() < SECRET_BYTES.0 || key.len() > SECRET_BYTES.1 {
        return Err(WebhookSecretError::Length(key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header value of a delivery: `v1,` and the base64
/// HMAC-SHA256, keyed with `secret` (the bytes [`parse_webhook_secret`] returns),
/// of `"{id}.{ts}.{body}"`. `ts` is the `webhook-timestamp` (Unix seconds).
pub fn standard_webhooks_signature(secret: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC-SHA256 accepts keys of every length")
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether `header` (a `webhook-signature` value: space-separated `v1,<sig>`
/// entries, several while a secret is rotated) holds the right signature of the
/// delivery. Compared in constant time. For receivers and tests.
pub fn verify_standard_webhooks(
    secret: &[u8],
    id: &str,
    ts: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let want = standard_webhooks_signature(secret, id, ts, body);
    let want = want.as_bytes();
    header.split(' ').filter(|s| s.starts_with("v1,")).any(|s| {
        let s = s.as_bytes();
        s.len() == want.len() && s.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_test_vector() {
        let key = parse_webhook_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("valid");
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let sig =
            standard_webhooks_signature(&key, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert!(verify_standard_webhooks(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
            &format!("v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {sig}")
        ));
        assert!(
            !verify_standard_webhooks(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367554,
                body,
                &sig
            ),
            "another timestamp is another signature"
        );
    }

    #[test]
    fn secrets_are_checked_without_echoing_them() {
        assert_eq!(
            parse_webhook_secret("whsec_"),
            Err(WebhookSecretError::Empty)
        );
        assert_eq!(
            parse_webhook_secret("whsec_not base64!"),
            Err(WebhookSecretError::NotBase64)
        );
        assert_eq!(
            parse_webhook_secret("whsec_c2hvcnQ="),
            Err(WebhookSecretError::Length(5))
        );
        let e = parse_webhook_secret("whsec_hunter2hunter2").expect_err("refused");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // Without the prefix, as some providers show it.
        assert!(parse_webhook_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
    }
}
