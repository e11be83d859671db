//! The `admin_user` role that the `admin_all_refresh_sessions` policy names.

use crate::Change;

pub struct Migration;

/// Roles are cluster-wide: another database on the same server may already
/// have created it, so creation tolerates an existing role (race-free, unlike
/// a NOT EXISTS check). Two databases migrating at the same moment race on
/// pg_authid's unique index, which reports `unique_violation` rather than
/// `duplicate_object`, so both are tolerated.
const CREATE_ADMIN_USER: &str = r#"DO $$
BEGIN
    CREATE ROLE admin_user NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$"#;

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000005_create_admin_user_role"
    }

    fn up(&self) -> Vec<String> {
        vec![
            CREATE_ADMIN_USER.to_owned(),
            "GRANT USAGE ON SCHEMA auth TO admin_user".to_owned(),
            "GRANT SELECT, INSERT, UPDATE, DELETE ON auth.refresh_session TO admin_user".to_owned(),
        ]
    }

    fn down(&self) -> Vec<String> {
        // Only this database's grants are undone. The role itself stays:
        // other databases in the cluster may name it in their policies (by
        // string, which PostgreSQL does not track as a dependency), and
        // dropping it would break them. `DROP ROLE admin_user` by hand once
        // no database uses it.
        vec![
            "REVOKE ALL ON auth.refresh_session FROM admin_user".to_owned(),
            "REVOKE ALL ON SCHEMA auth FROM admin_user".to_owned(),
        ]
    }
}
