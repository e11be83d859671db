//! Refresh-token rotation over `auth.refresh_session`, correct under
//! concurrency, with reuse detection and row level security in force.
//!
//! [`RefreshService`] issues, rotates, lists and revokes sessions;
//! [`Maintenance`] purges expired ones; [`Keyring`] signs and verifies the
//! opaque [`RefreshToken`]s; every failure is an [`Error`] variant.
//!
//! ```no_run
//! use service::{Config, Error, Key, Keyring, RefreshService, SessionRef};
//! use sea_orm::{ConnectOptions, Database};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Connect as the least-privilege role from migration 7, never as the
//! // table owner: `RefreshService::new` refuses roles that bypass RLS.
//! // Ping pooled connections only when idle for 30 s: sea-orm's default
//! // pings on every checkout, a second round trip per rotation.
//! let mut options = ConnectOptions::new("postgres://refresh_service:secret@localhost/app");
//! options.test_before_acquire_if_idle_for(Duration::from_secs(30));
//! let db = Database::connect(options).await?;
//! // The secret comes from your secret store; 32+ random bytes.
//! let keys = Keyring::new(Key::new("2026-12", vec![0x42; 32])?);
//! let sessions = RefreshService::new(db, keys, Config::default()).await?;
//!
//! // After a successful login:
//! let first = sessions.issue(7, Some("Firefox/146"), Some("203.0.113.9")).await?;
//! // Send `first.token.expose_secret()` to the client (e.g. an HttpOnly cookie).
//!
//! // The client refreshes: the old token is used up, a new one comes back.
//! let second = sessions.rotate(first.token.expose_secret()).await?;
//! assert_eq!(second.refresh_version, first.refresh_version + 1);
//!
//! // A thief replays the first token after the grace window (10 s by
//! // default): the whole session is revoked, the thief's and the owner's.
//! # std::thread::sleep(std::time::Duration::from_secs(11));
//! match sessions.rotate(first.token.expose_secret()).await {
//!     Err(Error::ReuseDetected) => { /* alert; user must sign in again */ }
//!     other => panic!("expected reuse detection, got {other:?}"),
//! }
//! assert!(matches!(
//!     sessions.rotate(second.token.expose_secret()).await,
//!     Err(Error::SessionNotFound)
//! ));
//!
//! // Device list and sign-out everywhere act as the user, under RLS.
//! for device in sessions.list(7).await? {
//!     sessions.revoke(7, SessionRef::Jti(device.jti)).await?;
//! }
//! sessions.revoke_all(7).await?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - **Rotation** is one round trip: a call of the `SECURITY INVOKER`
//!   function `auth.rotate_refresh_session`, which sets the acting user and
//!   runs one optimistic `UPDATE … WHERE refresh_version = $n`. Of any number
//!   of concurrent rotations of one token exactly one succeeds; see
//!   [`RefreshService::rotate`] for how the others are classified.
//! - **Lifetimes**: a sliding idle expiry capped by an absolute maximum from
//!   `created_at` ([`Config`]).
//! - **Grace window** ([`Config::grace`], default 10 s, zero = strict): the
//!   previous token yields the current one, so racing tabs converge.
//! - **Row level security**: user-facing calls set `auth.user_id`
//!   transaction-locally so the own-row policies decide what they touch;
//!   purging goes through the `admin_user` policy with a separate role.
//! - **Secrets**: the database holds no token and nothing that can make one.
//!   Tokens and keys redact themselves in `Debug`/`Display`; this crate logs
//!   nothing. Statements carry only user ids, `jti`s and versions, so even
//!   sea-orm's statement logging cannot leak anything that mints a token.

mod error;
mod service;
mod token;

pub use error::Error;
pub use service::{
    Config, Issued, MAX_USER_AGENT_LEN, Maintenance, RefreshService, SessionInfo, SessionRef,
};
pub use token::{Claims, Key, KeyError, Keyring, MIN_SECRET_LEN, RefreshToken, TokenError};

/// The README's examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
