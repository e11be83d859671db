//! The `auth` schema, after checking that the server can hold what follows.

use crate::Change;

pub struct Migration;

/// Refuses servers older than PostgreSQL 18 before anything is created:
/// `uuidv7()` and named NOT NULL constraints only exist from 18 on.
const REQUIRE_POSTGRESQL_18: &str = r#"DO $$
BEGIN
    IF current_setting('server_version_num')::integer < 180000 THEN
        RAISE EXCEPTION 'PostgreSQL 18 or newer is required (uuidv7(), named NOT NULL constraints); this server is %',
            current_setting('server_version');
    END IF;
END
$$"#;

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000001_create_auth_schema"
    }

    fn up(&self) -> Vec<String> {
        vec![
            REQUIRE_POSTGRESQL_18.to_owned(),
            "CREATE SCHEMA auth".to_owned(),
        ]
    }

    fn down(&self) -> Vec<String> {
        // RESTRICT (the default): if anything is left in the schema, the
        // later migrations' downs are incomplete and this should fail loudly.
        vec!["DROP SCHEMA auth".to_owned()]
    }
}
