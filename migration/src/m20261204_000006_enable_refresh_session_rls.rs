//! Row level security on `auth.refresh_session`: enabled (not forced) with the
//! spec's five policies. sea-query has no builder for policies, so this is SQL.

use crate::Change;

pub struct Migration;

const POLICIES: [(&str, &str); 5] = [
    (
        "admin_all_refresh_sessions",
        "CREATE POLICY admin_all_refresh_sessions ON auth.refresh_session \
         USING (pg_has_role(current_user, 'admin_user', 'MEMBER')) \
         WITH CHECK (pg_has_role(current_user, 'admin_user', 'MEMBER'))",
    ),
    (
        "delete_own_refresh_sessions",
        "CREATE POLICY delete_own_refresh_sessions ON auth.refresh_session FOR DELETE \
         USING (user_id = auth.uid())",
    ),
    (
        "insert_own_refresh_sessions",
        "CREATE POLICY insert_own_refresh_sessions ON auth.refresh_session FOR INSERT \
         WITH CHECK (user_id = auth.uid())",
    ),
    (
        "select_own_refresh_sessions",
        "CREATE POLICY select_own_refresh_sessions ON auth.refresh_session FOR SELECT \
         USING (user_id = auth.uid())",
    ),
    (
        "update_own_refresh_sessions",
        "CREATE POLICY update_own_refresh_sessions ON auth.refresh_session FOR UPDATE \
         USING (user_id = auth.uid()) \
         WITH CHECK (user_id = auth.uid())",
    ),
];

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000006_enable_refresh_session_rls"
    }

    fn up(&self) -> Vec<String> {
        let mut statements =
            vec!["ALTER TABLE auth.refresh_session ENABLE ROW LEVEL SECURITY".to_owned()];
        statements.extend(POLICIES.iter().map(|(_, create)| (*create).to_owned()));
        statements
    }

    fn down(&self) -> Vec<String> {
        let mut statements: Vec<String> = POLICIES
            .iter()
            .map(|(name, _)| format!("DROP POLICY {name} ON auth.refresh_session"))
            .collect();
        statements.push("ALTER TABLE auth.refresh_session DISABLE ROW LEVEL SECURITY".to_owned());
        statements
    }
}
