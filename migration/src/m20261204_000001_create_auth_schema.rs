//! The `auth` schema, after checking that the server can hold what follows.

use crate::Change;

pub struct Migration;

/// SQL that refuses servers older than `min_version_num` (as in
/// `server_version_num`, e.g. 180000) before anything is created: `uuidv7()`
/// and named NOT NULL constraints only exist from PostgreSQL 18 on.
pub fn require_server_version(min_version_num: u32) -> String {
    format!(
        r#"DO $$
BEGIN
    IF current_setting('server_version_num')::integer < {min_version_num} THEN
        RAISE EXCEPTION 'PostgreSQL 18 or newer is required (uuidv7(), named NOT NULL constraints); this server is %',
            current_setting('server_version');
    END IF;
END
$$"#
    )
}

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000001_create_auth_schema"
    }

    fn up(&self) -> Vec<String> {
        vec![
            require_server_version(180000),
            "CREATE SCHEMA auth".to_owned(),
        ]
    }

    fn down(&self) -> Vec<String> {
        // RESTRICT (the default): if anything is left in the schema, the
        // later migrations' downs are incomplete and this should fail loudly.
        vec!["DROP SCHEMA auth".to_owned()]
    }
}
