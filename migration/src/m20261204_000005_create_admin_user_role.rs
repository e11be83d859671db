//! The `admin_user` role that the `admin_all_refresh_sessions` policy names.

use crate::Change;
use crate::change::create_role_if_missing;

pub struct Migration;

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000005_create_admin_user_role"
    }

    fn up(&self) -> Vec<String> {
        vec![
            create_role_if_missing("admin_user", "NOLOGIN"),
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
