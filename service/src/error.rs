//! What can go wrong, one variant per thing a caller may handle.

use sea_orm::DbErr;

use crate::token::{KeyError, TokenError};

/// The error of every service operation.
///
/// Everything except [`Error::Database`] and [`Error::Unexpected`] is a
/// definite answer the caller can act on; all of them leave the database
/// unchanged except [`Error::ReuseDetected`], whose revoke has committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not one of ours: malformed, truncated, tampered or signed
    /// by an unknown key. Nothing was looked up.
    #[error("invalid refresh token: {0}")]
    InvalidToken(#[from] TokenError),
    /// The session exists but is past its idle or absolute expiry.
    #[error("refresh session expired")]
    Expired,
    /// No such session for this user: revoked, purged, never existed, owned
    /// by someone else, or its user was deleted (sessions cascade).
    #[error("refresh session not found")]
    SessionNotFound,
    /// An already-rotated token came back outside the grace window. The
    /// session has been revoked (committed) and its user must sign in again.
    #[error("refresh token reuse detected; the session has been revoked")]
    ReuseDetected,
    /// `refresh_version` reached `i32::MAX`; the session cannot rotate again
    /// and the user must sign in again. Nothing was changed.
    #[error("refresh session cannot rotate any further; sign in again")]
    VersionExhausted,
    /// [`crate::RefreshService::issue`] for a user id that does not exist.
    #[error("user not found")]
    UserNotFound,
    /// The user agent is longer than [`crate::MAX_USER_AGENT_LEN`] bytes.
    #[error("user agent is {len} bytes, at most {max} are accepted")]
    UserAgentTooLong {
        /// Length presented, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The user agent contains a NUL byte, which PostgreSQL text cannot hold.
    #[error("user agent contains a NUL byte")]
    InvalidUserAgent,
    /// The client IP does not parse as an IPv4 or IPv6 address.
    #[error("invalid client IP address")]
    InvalidIp(#[source] std::net::AddrParseError),
    /// A key could not be built.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    /// The configuration is inconsistent (see the message).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The connection's role could defeat row level security (superuser,
    /// BYPASSRLS, table owner, or member of `admin_user`).
    #[error("refusing to run as role {role:?}: {reason}")]
    UnsafeRole {
        /// `current_user` of the connection.
        role: String,
        /// What makes it unsafe.
        reason: &'static str,
    },
    /// The database failed (connection, timeout, permissions…).
    #[error("database error")]
    Database(#[source] DbErr),
    /// The database answered something this crate does not expect.
    #[error("unexpected database answer: {0}")]
    Unexpected(String),
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        Error::Database(err)
    }
}
