//! The operations, each a short parameterised SQL conversation.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, SqlErr, Statement,
    TransactionTrait, Value,
};
use uuid::Uuid;

use crate::error::Error;
use crate::token::{Claims, Keyring, RefreshToken};

/// Longest accepted user agent, in bytes. Real ones are well under 512; the
/// limit keeps an attacker from parking large blobs in the table.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// Session lifetimes and the reuse grace window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sliding expiry: each rotation moves `expires_at` to now + `idle`.
    /// Default 14 days: a user who comes back within two weeks stays in.
    pub idle: Duration,
    /// Hard cap from `created_at`, however active the session. Default 90
    /// days: a stolen, actively used token dies eventually.
    pub absolute: Duration,
    /// How long after a rotation the *previous* token still yields the
    /// current one (without rotating again). `Duration::ZERO` is strict.
    ///
    /// Default 10 s, as Supabase Auth's reuse interval: two tabs refreshing
    /// at once, or a client retrying after losing the response of a
    /// successful rotation, present the previous token within a second or
    /// two; without a window they would be logged out as thieves. Ten
    /// seconds covers slow mobile retries while leaving a thief only a
    /// short window, in which they get the token the legitimate client
    /// already holds (the next rotation by either side then invalidates the
    /// other's copy and a later replay is detected). Set it to zero (Ory
    /// Hydra's default) when clients serialise their refreshes.
    pub grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(14 * 24 * 3600),
            absolute: Duration::from_secs(90 * 24 * 3600),
            grace: Duration::from_secs(10),
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        // Intervals travel as microseconds in an i64.
        let max = Duration::from_secs(100 * 365 * 24 * 3600);
        if self.idle.is_zero() || self.idle > max {
            return Err(Error::InvalidConfig(
                "idle must be > 0 and at most 100 years",
            ));
        }
        if self.absolute < self.idle || self.absolute > max {
            return Err(Error::InvalidConfig(
                "absolute must be >= idle and at most 100 years",
            ));
        }
        if self.grace >= self.idle {
            return Err(Error::InvalidConfig("grace must be shorter than idle"));
        }
        Ok(())
    }
}

/// A session as handed out by [`RefreshService::issue`] or
/// [`RefreshService::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token for the client (redacted in `Debug`).
    pub token: RefreshToken,
    /// The session's id, safe to show (e.g. to revoke a device).
    pub jti: Uuid,
    /// The session's user.
    pub user_id: i32,
    /// The version the token is valid for.
    pub refresh_version: i32,
    /// When the session expires unless rotated before.
    pub expires_at: DateTime<Utc>,
}

/// One row of a user's device list. No secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id; pass it to [`RefreshService::revoke`].
    pub jti: Uuid,
    /// How often it has rotated.
    pub refresh_version: i32,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// Last issue or rotation.
    pub last_used_at: DateTime<Utc>,
    /// When it expires unless rotated before.
    pub expires_at: DateTime<Utc>,
    /// As given to [`RefreshService::issue`].
    pub user_agent: Option<String>,
    /// As given to [`RefreshService::issue`].
    pub ip: Option<IpAddr>,
}

/// Which session [`RefreshService::revoke`] should end.
#[derive(Debug, Clone, Copy)]
pub enum SessionRef<'a> {
    /// The client's token (logout). Its signature is checked, its expiry is
    /// not: logging out with an expired token still works.
    Token(&'a str),
    /// A `jti` from [`RefreshService::list`] (revoke a device).
    Jti(Uuid),
}

/// Refresh-token rotation for applications.
///
/// Holds a connection (pool) that must log in as `refresh_service` (or any
/// role with the same properties): [`RefreshService::new`] refuses roles that
/// would make row level security moot. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct RefreshService {
    db: DatabaseConnection,
    keys: Keyring,
    config: Config,
}

/// `set_config(…, true)` is transaction-local, so the acting user cannot
/// leak to the next borrower of a pooled connection.
const ACT_AS: &str = "SELECT set_config('auth.user_id', $1, true)";

const INSERT: &str = "INSERT INTO auth.refresh_session (user_id, expires_at, user_agent, ip_address) \
     VALUES ($1, now() + least($2::bigint * interval '1 microsecond', $3::bigint * interval '1 microsecond'), $4, $5::inet) \
     RETURNING jti, refresh_version, expires_at";

const ROTATE: &str = "SELECT outcome, version, expires_at FROM auth.rotate_refresh_session(\
     $1, $2, $3, $4::bigint * interval '1 microsecond', $5::bigint * interval '1 microsecond', \
     $6::bigint * interval '1 microsecond')";

const LIST: &str = "SELECT jti, refresh_version, created_at, last_used_at, expires_at, user_agent, \
     host(ip_address) AS ip FROM auth.refresh_session \
     WHERE user_id = $1 AND expires_at > now() ORDER BY last_used_at DESC, id DESC";

/// Checked once per handle: a superuser, a BYPASSRLS role, the table owner
/// or a member of admin_user would see every row, whatever `auth.uid()` is.
const ROLE_CHECK: &str = "SELECT current_user::text AS role, r.rolsuper, r.rolbypassrls, \
     c.relowner = r.oid AS owner, pg_has_role(current_user, 'admin_user', 'MEMBER') AS admin \
     FROM pg_roles r, pg_class c \
     WHERE r.rolname = current_user AND c.oid = 'auth.refresh_session'::regclass";

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn micros(d: Duration) -> i64 {
    // validate() bounds every configured duration far below i64::MAX µs.
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T, Error> {
    row.try_get("", col)
        .map_err(|e| Error::Unexpected(format!("column {col}: {e}")))
}

async fn act_as<C: ConnectionTrait>(conn: &C, user_id: i32) -> Result<(), DbErr> {
    conn.execute_raw(stmt(ACT_AS, vec![user_id.to_string().into()]))
        .await
        .map(|_| ())
}

async fn check_role(db: &DatabaseConnection, want_admin: bool) -> Result<(), Error> {
    let row = db
        .query_one_raw(stmt(ROLE_CHECK, vec![]))
        .await?
        .ok_or_else(|| Error::Unexpected("role check returned no row".into()))?;
    let role: String = get(&row, "role")?;
    let unsafe_because = |reason| {
        Err(Error::UnsafeRole {
            role: role.clone(),
            reason,
        })
    };
    if get::<bool>(&row, "rolsuper")? {
        return unsafe_because("superuser bypasses row level security");
    }
    if get::<bool>(&row, "rolbypassrls")? {
        return unsafe_because("BYPASSRLS bypasses row level security");
    }
    if get::<bool>(&row, "owner")? {
        return unsafe_because("the table owner bypasses row level security");
    }
    let admin: bool = get(&row, "admin")?;
    if admin && !want_admin {
        return unsafe_because("a member of admin_user passes admin_all_refresh_sessions");
    }
    if !admin && want_admin {
        return unsafe_because("maintenance needs membership in admin_user");
    }
    Ok(())
}

fn parse_user_agent(user_agent: Option<&str>) -> Result<Option<String>, Error> {
    match user_agent {
        None => Ok(None),
        Some(ua) if ua.len() > MAX_USER_AGENT_LEN => Err(Error::UserAgentTooLong {
            len: ua.len(),
            max: MAX_USER_AGENT_LEN,
        }),
        Some(ua) if ua.contains('\0') => Err(Error::InvalidUserAgent),
        Some(ua) => Ok(Some(ua.to_owned())),
    }
}

fn parse_ip(ip: Option<&str>) -> Result<Option<IpAddr>, Error> {
    ip.map(|ip| ip.trim().parse::<IpAddr>().map_err(Error::InvalidIp))
        .transpose()
}

impl RefreshService {
    /// Wraps a connection logged in as `refresh_service`.
    ///
    /// Fails with [`Error::UnsafeRole`] if the connection's role is a
    /// superuser, has BYPASSRLS, owns `auth.refresh_session` or is a member
    /// of `admin_user`: with any of those, the own-row policies would not
    /// protect one user's sessions from another's requests.
    pub async fn new(db: DatabaseConnection, keys: Keyring, config: Config) -> Result<Self, Error> {
        config.validate()?;
        check_role(&db, false).await?;
        Ok(Self { db, keys, config })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn token_for(
        &self,
        jti: Uuid,
        user_id: i32,
        refresh_version: i32,
        expires_at: DateTime<Utc>,
    ) -> Issued {
        let token = self.keys.sign(&Claims {
            user_id,
            jti,
            refresh_version,
            expires_at,
        });
        Issued {
            token,
            jti,
            user_id,
            refresh_version,
            expires_at,
        }
    }

    /// Starts a session for `user_id` (after the caller authenticated them).
    ///
    /// `user_agent` is stored as given (at most [`MAX_USER_AGENT_LEN`]
    /// bytes); `ip` is parsed as an IPv4/IPv6 address (e.g. the text from
    /// `X-Forwarded-For` after the caller picked the right hop). Invalid
    /// input fails before the database is touched.
    pub async fn issue(
        &self,
        user_id: i32,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Issued, Error> {
        let user_agent = parse_user_agent(user_agent)?;
        let ip = parse_ip(ip)?;

        let txn = self.db.begin().await?;
        act_as(&txn, user_id).await?;
        let inserted = txn
            .query_one_raw(stmt(
                INSERT,
                vec![
                    user_id.into(),
                    micros(self.config.idle).into(),
                    micros(self.config.absolute).into(),
                    user_agent.into(),
                    ip.map(|ip| ip.to_string()).into(),
                ],
            ))
            .await;
        let row = match inserted {
            Ok(Some(row)) => row,
            Ok(None) => return Err(Error::Unexpected("INSERT … RETURNING gave no row".into())),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => {
                return Err(Error::UserNotFound);
            }
            Err(e) => return Err(e.into()),
        };
        txn.commit().await?;
        Ok(self.token_for(
            get(&row, "jti")?,
            user_id,
            get(&row, "refresh_version")?,
            get(&row, "expires_at")?,
        ))
    }

    /// Exchanges a token for the next one.
    ///
    /// One round trip: `auth.rotate_refresh_session` acts as the token's
    /// user (so the own-row policies apply), runs one optimistic `UPDATE …
    /// WHERE jti = $1 AND refresh_version = $2 AND expires_at > now()` and,
    /// only if that matched nothing, reads the row once to classify:
    ///
    /// - [`Error::SessionNotFound`]: revoked, purged, never existed, not
    ///   this user's, or the user was deleted.
    /// - [`Error::Expired`]: idle or absolute expiry passed.
    /// - `Ok` with the *current* token, not rotated again: the caller holds
    ///   exactly the previous version and the session rotated within
    ///   [`Config::grace`], so racing requests converge on one token.
    /// - [`Error::ReuseDetected`]: any other stale version. The session is
    ///   deleted in the same transaction, which commits.
    ///
    /// The token's own expiry is deliberately not checked first: a replayed
    /// old token must still reach the reuse detection. A token at
    /// `refresh_version = i32::MAX` fails with [`Error::VersionExhausted`]
    /// without touching the database.
    pub async fn rotate(&self, token: &str) -> Result<Issued, Error> {
        let claims = self.keys.verify(token)?;
        if claims.refresh_version == i32::MAX {
            return Err(Error::VersionExhausted);
        }
        let row = self
            .db
            .query_one_raw(stmt(
                ROTATE,
                vec![
                    claims.jti.into(),
                    claims.user_id.into(),
                    claims.refresh_version.into(),
                    micros(self.config.idle).into(),
                    micros(self.config.absolute).into(),
                    micros(self.config.grace).into(),
                ],
            ))
            .await?
            .ok_or_else(|| Error::Unexpected("rotate returned no row".into()))?;
        let outcome: String = get(&row, "outcome")?;
        match outcome.as_str() {
            "rotated" | "grace" => Ok(self.token_for(
                claims.jti,
                claims.user_id,
                get(&row, "version")?,
                get(&row, "expires_at")?,
            )),
            "not_found" => Err(Error::SessionNotFound),
            "expired" => Err(Error::Expired),
            "reuse" => Err(Error::ReuseDetected),
            other => Err(Error::Unexpected(format!("rotate outcome {other:?}"))),
        }
    }

    /// Ends one of `user_id`'s sessions (logout, or "remove this device").
    ///
    /// Returns whether a session was deleted. Acting as `user_id`, the
    /// own-row policies make other users' sessions invisible: a `jti` or
    /// token of someone else's session deletes nothing and returns `false`.
    pub async fn revoke(&self, user_id: i32, session: SessionRef<'_>) -> Result<bool, Error> {
        let jti = match session {
            SessionRef::Jti(jti) => jti,
            SessionRef::Token(token) => self.keys.verify(token)?.jti,
        };
        let deleted = self
            .execute_as(
                user_id,
                // No user_id filter on purpose: the delete_own policy is
                // what keeps B away from A's session, and the tests prove it.
                stmt(
                    "DELETE FROM auth.refresh_session WHERE jti = $1",
                    vec![jti.into()],
                ),
            )
            .await?;
        Ok(deleted > 0)
    }

    /// Ends every session of `user_id` (sign out everywhere, e.g. after a
    /// password change). Returns how many were deleted.
    pub async fn revoke_all(&self, user_id: i32) -> Result<u64, Error> {
        self.execute_as(
            user_id,
            stmt(
                "DELETE FROM auth.refresh_session WHERE user_id = $1",
                vec![user_id.into()],
            ),
        )
        .await
    }

    /// Runs one statement in its own transaction acting as `user_id`, so the
    /// own-row policies decide which rows it touches; returns rows affected.
    async fn execute_as(&self, user_id: i32, statement: Statement) -> Result<u64, Error> {
        let txn = self.db.begin().await?;
        act_as(&txn, user_id).await?;
        let done = txn.execute_raw(statement).await?;
        txn.commit().await?;
        Ok(done.rows_affected())
    }

    /// `user_id`'s unexpired sessions, most recently used first.
    pub async fn list(&self, user_id: i32) -> Result<Vec<SessionInfo>, Error> {
        let txn = self.db.begin().await?;
        act_as(&txn, user_id).await?;
        let rows = txn.query_all_raw(stmt(LIST, vec![user_id.into()])).await?;
        txn.commit().await?;
        rows.iter()
            .map(|row| {
                let ip: Option<String> = get(row, "ip")?;
                Ok(SessionInfo {
                    jti: get(row, "jti")?,
                    refresh_version: get(row, "refresh_version")?,
                    created_at: get(row, "created_at")?,
                    last_used_at: get(row, "last_used_at")?,
                    expires_at: get(row, "expires_at")?,
                    user_agent: get(row, "user_agent")?,
                    ip: ip
                        .map(|ip| ip.parse())
                        .transpose()
                        .map_err(|e| Error::Unexpected(format!("stored ip: {e}")))?,
                })
            })
            .collect()
    }
}

/// Housekeeping that needs to see every user's rows.
///
/// Holds a connection that logs in as `refresh_maintenance`, a member of
/// `admin_user`, so the `admin_all_refresh_sessions` policy lets it see all
/// sessions; it still cannot bypass row level security. Keep it out of
/// request handlers.
#[derive(Debug, Clone)]
pub struct Maintenance {
    db: DatabaseConnection,
}

impl Maintenance {
    /// Wraps a connection logged in as `refresh_maintenance`.
    ///
    /// Fails with [`Error::UnsafeRole`] for a superuser, BYPASSRLS role or
    /// table owner (the admin policy is the intended way in), or for a role
    /// that is not a member of `admin_user` (it would purge nothing).
    pub async fn new(db: DatabaseConnection) -> Result<Self, Error> {
        check_role(&db, true).await?;
        Ok(Self { db })
    }

    /// Deletes expired sessions, at most `batch_size` per statement, each
    /// statement its own short transaction, until a batch comes back short.
    /// Rows locked by a concurrent rotation are skipped (they are picked up
    /// next time), so purging never waits on, or stalls, request traffic.
    /// Returns how many sessions were deleted.
    pub async fn purge_expired(&self, batch_size: NonZeroU32) -> Result<u64, Error> {
        let limit = i64::from(batch_size.get());
        let mut total = 0;
        loop {
            // `id = ANY (ARRAY(subquery))`, not `id IN (subquery)`: under
            // RLS the planner cannot tell the policy quals pass, misjudges
            // the outer side and, for `IN`, picks a hash semi join over a
            // sequential scan of the whole table; an array is probed
            // through the primary key (tests/integration/plans.rs).
            let done = self
                .db
                .execute_raw(stmt(
                    "DELETE FROM auth.refresh_session WHERE id = ANY (ARRAY(\
                     SELECT id FROM auth.refresh_session WHERE expires_at < now() \
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))",
                    vec![limit.into()],
                ))
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < limit as u64 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_inconsistent_ones_are_refused() {
        assert!(Config::default().validate().is_ok());
        let hour = Duration::from_secs(3600);
        for bad in [
            Config {
                idle: Duration::ZERO,
                ..Config::default()
            },
            Config {
                idle: 2 * hour,
                absolute: hour,
                grace: Duration::ZERO,
            },
            Config {
                idle: hour,
                absolute: hour,
                grace: hour,
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_agents_and_ips_are_checked_before_any_query() {
        assert!(parse_user_agent(Some(&"a".repeat(MAX_USER_AGENT_LEN))).is_ok());
        assert!(matches!(
            parse_user_agent(Some(&"a".repeat(MAX_USER_AGENT_LEN + 1))),
            Err(Error::UserAgentTooLong { .. })
        ));
        assert_eq!(parse_ip(Some("::1")).unwrap(), Some("::1".parse().unwrap()));
        assert!(matches!(
            parse_ip(Some("10.0.0.256")),
            Err(Error::InvalidIp(_))
        ));
    }
}
