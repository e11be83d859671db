//! The refresh token: an opaque, HMAC-SHA256-protected string.
//!
//! Format: `v1.<payload>.<mac>`, both parts base64url without padding, where
//! `mac = HMAC-SHA256(key, "v1." + <payload>)` and the payload is a fixed
//! binary layout:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | key id length `k` (1..=32) |
//! | `k` | key id (ASCII letters, digits, `-`, `_`) |
//! | 4 | user id, `i32` big-endian |
//! | 16 | session `jti` (UUID) |
//! | 4 | `refresh_version`, `i32` big-endian |
//! | 8 | expiry, microseconds since the Unix epoch, `i64` big-endian |
//!
//! The database stores none of this except the `jti` and the version, which
//! are useless without the key. Signing is deterministic: the same claims and
//! key always give the same token, which is how racing refreshes inside the
//! grace window converge on one token without storing it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "v1.";
const MAC_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 32;
/// Secrets shorter than the hash output weaken HMAC-SHA256.
pub const MIN_SECRET_LEN: usize = 32;
/// Longer inputs are rejected before any decoding work.
const MAX_TOKEN_LEN: usize = 256;

/// Why a presented token was rejected before the database was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a `v1` token: wrong shape, bad base64, wrong payload length.
    #[error("malformed token")]
    Malformed,
    /// Signed with a key id this service does not know (retired or foreign).
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// The MAC does not match: tampered or signed with another secret.
    #[error("token signature does not verify")]
    BadSignature,
}

/// Why a key could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    /// The key id is empty, too long, or not `[A-Za-z0-9_-]`.
    #[error("key id must be 1..=32 ASCII letters, digits, '-' or '_'")]
    InvalidKeyId,
    /// Two keys in a [`Keyring`] share an id.
    #[error("duplicate key id")]
    DuplicateKeyId,
}

/// An HMAC secret with the id written into every token it signs.
///
/// `Debug` shows the id only; the secret is zeroed on drop.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl Key {
    /// Builds a key; the secret must be at least [`MIN_SECRET_LEN`] random bytes.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let id = id.into();
        let secret = Zeroizing::new(secret.into());
        let id_ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(KeyError::InvalidKeyId);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::SecretTooShort);
        }
        Ok(Self { id, secret })
    }

    /// The key id carried in tokens.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// One signing key plus any number of verification-only keys.
///
/// Key rotation: add the new key as signing key and keep the old one as a
/// verification key until every token it signed has expired (at most the
/// absolute session lifetime), then drop it. Tokens signed by a dropped key
/// fail with [`TokenError::UnknownKey`].
#[derive(Clone, Debug)]
pub struct Keyring {
    signing: Key,
    verifying: Vec<Key>,
}

impl Keyring {
    /// A keyring that signs (and verifies) with `signing`.
    pub fn new(signing: Key) -> Self {
        Self {
            signing,
            verifying: Vec::new(),
        }
    }

    /// Also accept tokens signed by `key` (e.g. the previous signing key).
    pub fn with_verification_key(mut self, key: Key) -> Result<Self, KeyError> {
        if key.id == self.signing.id || self.verifying.iter().any(|k| k.id == key.id) {
            return Err(KeyError::DuplicateKeyId);
        }
        self.verifying.push(key);
        Ok(self)
    }

    fn find(&self, id: &[u8]) -> Option<&Key> {
        std::iter::once(&self.signing)
            .chain(&self.verifying)
            .find(|k| k.id.as_bytes() == id)
    }

    /// Signs `claims` with the signing key.
    ///
    /// Public so that tools and tests can mint tokens; anyone holding the
    /// keyring can, which is exactly why the keyring never leaves the server.
    pub fn sign(&self, claims: &Claims) -> RefreshToken {
        let key = &self.signing;
        let mut payload = Vec::with_capacity(1 + key.id.len() + 32);
        payload.push(key.id.len() as u8);
        payload.extend_from_slice(key.id.as_bytes());
        payload.extend_from_slice(&claims.user_id.to_be_bytes());
        payload.extend_from_slice(claims.jti.as_bytes());
        payload.extend_from_slice(&claims.refresh_version.to_be_bytes());
        payload.extend_from_slice(&claims.expires_at.timestamp_micros().to_be_bytes());

        let mut token = String::with_capacity(128);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut mac = key.mac();
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        RefreshToken(token)
    }

    /// Checks shape, key id and MAC, and returns the claims.
    ///
    /// Expiry is *not* checked here: the session row is the authority (see
    /// [`crate::RefreshService::rotate`]).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload_b64, tag_b64) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TokenError::Malformed)?;
        if tag.len() != MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let (&id_len, after_len) = payload.split_first().ok_or(TokenError::Malformed)?;
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > MAX_KEY_ID_LEN || after_len.len() != id_len + 32 {
            return Err(TokenError::Malformed);
        }
        let (id, fields) = after_len.split_at(id_len);
        let key = self.find(id).ok_or(TokenError::UnknownKey)?;

        let signed = &token[..PREFIX.len() + payload_b64.len()];
        let mut mac = key.mac();
        mac.update(signed.as_bytes());
        // Constant-time comparison (hmac uses subtle internally).
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;

        let user_id = i32::from_be_bytes(fields[0..4].try_into().expect("4 bytes"));
        let jti = Uuid::from_bytes(fields[4..20].try_into().expect("16 bytes"));
        let refresh_version = i32::from_be_bytes(fields[20..24].try_into().expect("4 bytes"));
        let micros = i64::from_be_bytes(fields[24..32].try_into().expect("8 bytes"));
        let expires_at = DateTime::from_timestamp_micros(micros).ok_or(TokenError::Malformed)?;
        Ok(Claims {
            user_id,
            jti,
            refresh_version,
            expires_at,
        })
    }
}

/// What a token says. Carries no secret: knowing it does not let anyone
/// make a token without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// `auth."user".id` of the session's user.
    pub user_id: i32,
    /// The session's `jti`.
    pub jti: Uuid,
    /// The session's `refresh_version` this token is valid for.
    pub refresh_version: i32,
    /// The session's `expires_at` when the token was made (advisory for the
    /// client; the row decides).
    pub expires_at: DateTime<Utc>,
}

/// A refresh token to hand to the client.
///
/// `Debug` and `Display` never show it; call [`RefreshToken::expose_secret`]
/// where it really must go out (a cookie, a response body). Equality is
/// constant-time.
#[derive(Clone)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// The token text, for sending to the client. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The token text by value. Never log it.
    pub fn into_secret(self) -> String {
        self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

impl fmt::Display for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted refresh token]")
    }
}

impl PartialEq for RefreshToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for RefreshToken {}

#[cfg(test)]
mod unit {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(Key::new("k1", [7u8; 32]).unwrap())
    }

    fn claims() -> Claims {
        Claims {
            user_id: 42,
            jti: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            refresh_version: 3,
            expires_at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_the_same_claims() {
        let keys = keyring();
        let token = keys.sign(&claims());
        assert_eq!(keys.verify(token.expose_secret()), Ok(claims()));
        assert_eq!(keys.sign(&claims()), token, "signing is deterministic");
    }

    #[test]
    fn debug_and_display_redact_tokens_and_keys() {
        let keys = keyring();
        let token = keys.sign(&claims());
        let secret = token.expose_secret().to_owned();
        for shown in [
            format!("{token:?}"),
            format!("{token}"),
            format!("{keys:?}"),
        ] {
            assert!(!shown.contains(&secret[3..20]), "{shown}");
            assert!(!shown.contains("7, 7"), "{shown}");
        }
    }

    #[test]
    fn every_flipped_character_is_rejected() {
        let keys = keyring();
        let token = keys.sign(&claims()).into_secret();
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(keys.verify(&tampered).is_err(), "position {i} accepted");
        }
    }

    #[test]
    fn truncated_tokens_are_malformed_or_bad() {
        let keys = keyring();
        let token = keys.sign(&claims()).into_secret();
        for len in 0..token.len() {
            assert!(keys.verify(&token[..len]).is_err(), "prefix {len} accepted");
        }
    }

    #[test]
    fn old_keys_verify_and_unknown_keys_are_named() {
        let old = keyring();
        let token = old.sign(&claims());
        let new = Keyring::new(Key::new("k2", [9u8; 32]).unwrap());
        assert_eq!(
            new.verify(token.expose_secret()),
            Err(TokenError::UnknownKey)
        );
        let rotated = new
            .with_verification_key(Key::new("k1", [7u8; 32]).unwrap())
            .unwrap();
        assert_eq!(rotated.verify(token.expose_secret()), Ok(claims()));
        // Same id, other secret: a forgery.
        let forger = Keyring::new(Key::new("k1", [8u8; 32]).unwrap());
        let forged = forger.sign(&claims());
        assert_eq!(
            old.verify(forged.expose_secret()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        assert_eq!(
            Key::new("k", [0u8; 31]).unwrap_err(),
            KeyError::SecretTooShort
        );
        assert_eq!(Key::new("", [0u8; 32]).unwrap_err(), KeyError::InvalidKeyId);
        assert_eq!(
            Key::new("a.b", [0u8; 32]).unwrap_err(),
            KeyError::InvalidKeyId
        );
    }
}
