//! Query plans on a table of realistic size: every statement the service
//! sends for rotate, list, revoke, revoke_all and purge_expired reaches
//! `auth.refresh_session` through an index, never a sequential scan.
//!
//! The statements are EXPLAINed as the roles that run them
//! (`refresh_service` acting as a user, `refresh_maintenance`), so the row
//! level security quals are part of the plans. Each is checked twice: with
//! literal values (the custom plan a first execution gets) and as
//! `EXPLAIN (GENERIC_PLAN)` with `$n` parameters (the plan a prepared
//! statement, or PL/pgSQL inside `auth.rotate_refresh_session`, may settle
//! on after a few executions). The function body's statements appear here
//! with `p_jti`, `p_version`, … as `$1`, `$3`, …; no timings are asserted.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use tests::TestDb;

const USERS: i64 = 2_000;
const SESSIONS: i64 = 20_000;

/// (what, acting as a user?, SQL with typed `$n` parameters)
const STATEMENTS: [(&str, bool, &str); 7] = [
    (
        "rotate: the function's optimistic UPDATE",
        true,
        "UPDATE auth.refresh_session AS r \
         SET refresh_version = r.refresh_version + 1, last_used_at = now(), \
             expires_at = least(now() + $4::interval, r.created_at + $5::interval) \
         WHERE r.jti = $1::uuid AND r.refresh_version = $3::integer \
           AND r.refresh_version < 2147483647 AND r.expires_at > now() \
         RETURNING r.refresh_version, r.expires_at",
    ),
    (
        "rotate: the function's classifying read",
        true,
        "SELECT r.refresh_version, r.last_used_at, r.expires_at \
         FROM auth.refresh_session AS r WHERE r.jti = $1::uuid",
    ),
    (
        "rotate: the function's revoke on reuse",
        true,
        "DELETE FROM auth.refresh_session AS r WHERE r.jti = $1::uuid",
    ),
    (
        "list",
        true,
        "SELECT jti, refresh_version, created_at, last_used_at, expires_at, user_agent, \
         host(ip_address) AS ip FROM auth.refresh_session \
         WHERE user_id = $2::integer AND expires_at > now() ORDER BY last_used_at DESC, id DESC",
    ),
    (
        "revoke",
        true,
        "DELETE FROM auth.refresh_session WHERE jti = $1::uuid",
    ),
    (
        "revoke_all",
        true,
        "DELETE FROM auth.refresh_session WHERE user_id = $2::integer",
    ),
    (
        "purge_expired batch",
        false,
        "DELETE FROM auth.refresh_session WHERE id = ANY (ARRAY(\
         SELECT id FROM auth.refresh_session WHERE expires_at < now() \
         ORDER BY expires_at LIMIT $6::bigint FOR UPDATE SKIP LOCKED))",
    ),
];

fn stmt(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql.to_owned())
}

/// Replaces `$6` … `$1` by literals (from the highest, so `$1` never eats
/// the start of a `$1x`).
fn with_literals(sql: &str, literals: &[String; 6]) -> String {
    let mut out = sql.to_owned();
    for (i, literal) in literals.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), literal);
    }
    out
}

/// Renumbers the parameters a statement uses to `$1..$k`: a generic plan
/// needs every parameter up to the highest to have a type.
fn renumbered(sql: &str) -> String {
    let mut out = sql.to_owned();
    let used: Vec<usize> = (1..=6).filter(|i| sql.contains(&format!("${i}"))).collect();
    for &i in used.iter().rev() {
        out = out.replace(&format!("${i}"), &format!("${{{i}}}"));
    }
    for (k, &i) in used.iter().enumerate() {
        out = out.replace(&format!("${{{i}}}"), &format!("${}", k + 1));
    }
    out
}

/// EXPLAIN over the simple query protocol (a prepared EXPLAIN would want
/// values for a generic plan's `$n`), in one implicit transaction with the
/// acting user set transaction-locally, as the service does.
async fn explain(
    conn: &DatabaseConnection,
    acting_user: Option<i32>,
    sql: &str,
) -> anyhow::Result<String> {
    use sea_orm::sqlx::{self, Row};
    let mut script = String::new();
    if let Some(user) = acting_user {
        script.push_str(&format!(
            "SELECT set_config('auth.user_id', '{user}', true); "
        ));
    }
    script.push_str(&format!("EXPLAIN {sql}"));
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .fetch_all(conn.get_postgres_connection_pool())
        .await?;
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>("QUERY PLAN").ok())
        .collect();
    anyhow::ensure!(!lines.is_empty(), "no plan for {sql}");
    Ok(lines.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_list_revoke_and_purge_use_indexes_on_a_table_of_realistic_size()
-> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let owner = db.connect().await?;
    owner
        .execute_unprepared(&format!(
            r#"INSERT INTO auth."user" (email)
               SELECT 'plan' || g || '@example.com' FROM generate_series(1, {USERS}) g"#
        ))
        .await?;
    // 10 sessions per user on average; one in ten expired, as between purges.
    owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at, user_agent, ip_address) \
             SELECT u.id, now() - interval '20 days', now() - random() * interval '5 days', \
                    CASE WHEN g % 10 = 0 THEN now() - random() * interval '10 days' \
                         ELSE now() + random() * interval '14 days' END, \
                    'Mozilla/5.0 (plans)', ('192.0.2.' || (g % 250))::inet \
             FROM generate_series(1, {SESSIONS}) g \
             JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM auth.\"user\") u \
               ON u.n = 1 + g % {USERS}"
        ))
        .await?;
    owner
        .execute_unprepared("ANALYZE auth.refresh_session")
        .await?;
    let row = owner
        .query_one_raw(stmt(
            "SELECT jti::text AS jti, user_id FROM auth.refresh_session \
             WHERE expires_at > now() ORDER BY id DESC LIMIT 1",
        ))
        .await?
        .expect("a live session");
    let jti: String = row.try_get("", "jti")?;
    let user: i32 = row.try_get("", "user_id")?;
    let literals = [
        format!("'{jti}'"),
        user.to_string(),
        "0".to_owned(),
        "'14 days'".to_owned(),
        "'90 days'".to_owned(),
        "1000".to_owned(),
    ];

    let service = db.connect_as("refresh_service").await?;
    let maintenance = db.connect_as("refresh_maintenance").await?;
    let mut failures = Vec::new();
    for (what, as_user, sql) in STATEMENTS {
        let (conn, acting) = if as_user {
            (&service, Some(user))
        } else {
            (&maintenance, None)
        };
        for (kind, text) in [
            ("literal values", with_literals(sql, &literals)),
            (
                "generic plan",
                format!("(GENERIC_PLAN) {}", renumbered(sql)),
            ),
        ] {
            let plan = explain(conn, acting, &text).await?;
            let seq_scan = plan.contains("Seq Scan on refresh_session");
            let uses_index = plan.contains("Index Scan")
                || plan.contains("Index Only Scan")
                || plan.contains("Bitmap Index Scan");
            if seq_scan || !uses_index {
                failures.push(format!("{what} ({kind}):\n{plan}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "sequential scans on auth.refresh_session ({SESSIONS} rows):\n\n{}",
        failures.join("\n\n")
    );
    Ok(())
}
