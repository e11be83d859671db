//! `auth.uid()`: the acting user that the own-row policies compare with.

use crate::Change;

pub struct Migration;

/// Reads the acting user from the transaction setting `auth.user_id`, which
/// the service sets with `set_config('auth.user_id', $1, true)` (transaction-
/// local, so it cannot leak to the next user of a pooled connection). Unset or
/// empty means "nobody": `NULL`, which no own-row policy matches.
const CREATE_UID: &str = r#"CREATE FUNCTION auth.uid() RETURNS integer
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('auth.user_id', true), '')::integer $$"#;

const COMMENT_UID: &str = "COMMENT ON FUNCTION auth.uid() IS \
    'The acting user id, from the transaction setting auth.user_id; NULL when unset'";

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000003_create_uid_function"
    }

    fn up(&self) -> Vec<String> {
        vec![CREATE_UID.to_owned(), COMMENT_UID.to_owned()]
    }

    fn down(&self) -> Vec<String> {
        vec!["DROP FUNCTION auth.uid()".to_owned()]
    }
}
