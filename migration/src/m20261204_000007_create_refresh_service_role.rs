//! The login roles the refresh-token service runs as, with least privilege,
//! and the function that rotates a session in one round trip under the
//! own-row policies.
//!
//! - `refresh_service`: the application's runtime role. It does not own the
//!   table, cannot bypass RLS and is deliberately *not* a member of
//!   `admin_user`: `admin_all_refresh_sessions` tests
//!   `pg_has_role(current_user, 'admin_user', 'MEMBER')`, which ignores
//!   `INHERIT`/`SET`, so any membership would make every row visible and the
//!   own-row policies moot.
//! - `refresh_maintenance`: a member of `admin_user` (so the admin policy
//!   passes) used only for `purge_expired`; it cannot bypass RLS either.
//!
//! Neither role gets a password here: operators set one (`ALTER ROLE …
//! PASSWORD …`) or configure other authentication. Neither role gets any
//! privilege on `auth."user"`: the foreign key check of an insert runs with
//! the referenced table owner's rights, and `ON DELETE CASCADE` with the
//! owner's, so the service never needs to read users.

use crate::Change;
use crate::change::create_role_if_missing;

pub struct Migration;

/// Every right the login roles do not have, spelled out so that an operator
/// reading the migration sees them.
const LOGIN_ROLE_ATTRIBUTES: &str =
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

/// Rotates, or classifies why it could not, in one statement from the
/// client's point of view (one round trip, one transaction).
///
/// `SECURITY INVOKER` (the default, spelled out): it runs as
/// `refresh_service`, so row level security applies to every statement in
/// it. A `SECURITY DEFINER` function would run as the table owner, who
/// bypasses RLS. The acting user is set transaction-locally first, so only
/// the own-row policies can let the statements see the row: a token that
/// names user B but carries the `jti` of A's session finds nothing.
///
/// The rotation is a single optimistic `UPDATE … WHERE refresh_version =
/// p_version`: no `SELECT … FOR UPDATE`, no read-modify-write. Concurrent
/// callers with the same version queue on the row lock; under READ COMMITTED
/// each loser re-checks the WHERE clause against the winner's committed row,
/// finds the version moved on and matches nothing. Only then the row is read
/// once (a fresh snapshot that sees the winner) to classify:
///
/// - `not_found`: no row visible to this user (revoked, purged, never
///   existed, belongs to someone else, user deleted).
/// - `expired`: the row is past `expires_at`.
/// - `grace`: the caller holds exactly the previous version and the session
///   was used within `p_grace`: the current version is returned unchanged so
///   racing tabs converge on one token.
/// - `reuse`: anything else: an invalidated token came back, so the session
///   is deleted (RFC 9700 §4.14.2) and that delete commits with the call.
///
/// The grace window is measured with `clock_timestamp()`, not `now()`:
/// `now()` is the start of *this* transaction, which for a caller that queued
/// behind the winner's row lock can be earlier than the winner's
/// `last_used_at`, so `last_used_at > now() - '0'` would wrongly hold and a
/// zero (strict) window would still let losers through. A zero window is
/// also excluded explicitly.
///
/// The `refresh_version < 2147483647` guard refuses to overflow the integer
/// (the service checks this before calling, this is the backstop).
/// Membership is cluster-wide too: skip it when present and tolerate a
/// concurrent grant from another database's migration.
const GRANT_ADMIN_TO_MAINTENANCE: &str = r#"DO $$
BEGIN
    IF NOT pg_has_role('refresh_maintenance', 'admin_user', 'MEMBER') THEN
        GRANT admin_user TO refresh_maintenance;
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$$"#;

const CREATE_ROTATE: &str = r#"CREATE FUNCTION auth.rotate_refresh_session(
    p_jti uuid,
    p_user_id integer,
    p_version integer,
    p_idle interval,
    p_absolute interval,
    p_grace interval,
    OUT outcome text,
    OUT version integer,
    OUT expires_at timestamptz
)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    PERFORM set_config('auth.user_id', p_user_id::text, true);

    UPDATE auth.refresh_session AS r
       SET refresh_version = r.refresh_version + 1,
           last_used_at = now(),
           expires_at = least(now() + p_idle, r.created_at + p_absolute)
     WHERE r.jti = p_jti
       AND r.refresh_version = p_version
       AND r.refresh_version < 2147483647
       AND r.expires_at > now()
    RETURNING r.refresh_version, r.expires_at INTO version, expires_at;
    IF FOUND THEN
        outcome := 'rotated';
        RETURN;
    END IF;

    SELECT r.refresh_version, r.last_used_at, r.expires_at INTO s
      FROM auth.refresh_session AS r
     WHERE r.jti = p_jti;
    IF NOT FOUND THEN
        outcome := 'not_found';
    ELSIF s.expires_at <= now() THEN
        outcome := 'expired';
    ELSIF p_grace > interval '0'
          AND p_version = s.refresh_version - 1
          AND s.last_used_at > clock_timestamp() - p_grace THEN
        outcome := 'grace';
        version := s.refresh_version;
        expires_at := s.expires_at;
    ELSE
        DELETE FROM auth.refresh_session AS r WHERE r.jti = p_jti;
        outcome := 'reuse';
    END IF;
END
$$"#;

const SIGNATURE: &str =
    "auth.rotate_refresh_session(uuid, integer, integer, interval, interval, interval)";

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000007_create_refresh_service_role"
    }

    fn up(&self) -> Vec<String> {
        vec![
            create_role_if_missing("refresh_service", LOGIN_ROLE_ATTRIBUTES),
            create_role_if_missing("refresh_maintenance", LOGIN_ROLE_ATTRIBUTES),
            // Only the maintenance role may pass the admin policy.
            GRANT_ADMIN_TO_MAINTENANCE.to_owned(),
            "GRANT USAGE ON SCHEMA auth TO refresh_service, refresh_maintenance".to_owned(),
            "GRANT SELECT, INSERT, UPDATE, DELETE ON auth.refresh_session TO refresh_service"
                .to_owned(),
            // purge_expired only reads and deletes.
            "GRANT SELECT, DELETE ON auth.refresh_session TO refresh_maintenance".to_owned(),
            CREATE_ROTATE.to_owned(),
            // Functions are executable by PUBLIC by default; narrow that.
            format!("REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC"),
            format!("GRANT EXECUTE ON FUNCTION {SIGNATURE} TO refresh_service"),
            "GRANT EXECUTE ON FUNCTION auth.uid() TO refresh_service, refresh_maintenance"
                .to_owned(),
            format!(
                "COMMENT ON FUNCTION {SIGNATURE} IS 'Rotates a refresh session as its user under \
                 row level security; outcome is rotated, grace, expired, not_found or reuse'"
            ),
        ]
    }

    fn down(&self) -> Vec<String> {
        // Only this database's grants and objects are undone. The roles
        // stay: they are cluster-wide and other databases on the same server
        // may use them. `DROP ROLE refresh_service, refresh_maintenance` by
        // hand once no database does. The membership of refresh_maintenance
        // in admin_user is cluster-wide too (not "this database's"), so it
        // stays for the same reason: revoking it here would silently break
        // purge_expired in every other database on the server. In a database
        // without the admin policy the membership grants nothing.
        vec![
            format!("DROP FUNCTION {SIGNATURE}"),
            "REVOKE EXECUTE ON FUNCTION auth.uid() FROM refresh_service, refresh_maintenance"
                .to_owned(),
            "REVOKE ALL ON auth.refresh_session FROM refresh_service, refresh_maintenance"
                .to_owned(),
            "REVOKE ALL ON SCHEMA auth FROM refresh_service, refresh_maintenance".to_owned(),
        ]
    }
}
