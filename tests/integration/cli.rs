//! What `migration schema describe|check` rest on: the pure-Rust `\d+`
//! renderer matches psql 18 byte for byte, and the committed structured
//! snapshot (`spec/schema-snapshot.snap`, compiled into the CLI) matches a
//! freshly migrated database.

use anyhow::Result;
use sea_orm::ConnectionTrait;
use tests::{TestDb, spec_describe};

fn psql_describe(db: &TestDb, table: &str) -> Result<String> {
    let psql = pg_provider::binaries()?.join("psql");
    Ok(schema_inspect::describe_table(&psql, &db.url(), table)?)
}

#[tokio::test]
async fn rendered_describe_equals_the_spec_without_psql() -> Result<()> {
    let db = TestDb::new().await?;
    let conn = db.connect().await?;
    let rendered = schema_inspect::describe(&conn, "auth", "refresh_session").await?;
    assert_eq!(rendered, spec_describe()?);
    Ok(())
}

/// The renderer against a real psql 18 on the migrated tables, after each
/// hand change `schema check` must catch, and on features the migrations
/// do not use yet (comments, checks, restrictive policies with roles,
/// disabled row security, collations, statistics targets).
#[tokio::test]
async fn rendered_describe_equals_psql_18_on_migrated_and_altered_tables() -> Result<()> {
    let variants: &[&[&str]] = &[
        &[],
        &["DROP POLICY select_own_refresh_sessions ON auth.refresh_session"],
        &["ALTER TABLE auth.refresh_session DROP CONSTRAINT refresh_session_jti_key"],
        &["ALTER TABLE auth.refresh_session ALTER COLUMN refresh_version SET DEFAULT 1"],
        &["ALTER TABLE auth.refresh_session FORCE ROW LEVEL SECURITY"],
        &[
            "COMMENT ON COLUMN auth.refresh_session.jti IS 'token id'",
            "ALTER TABLE auth.refresh_session ADD CONSTRAINT version_not_negative CHECK (refresh_version >= 0)",
            "CREATE POLICY restricted ON auth.refresh_session AS RESTRICTIVE FOR SELECT TO admin_user, public USING (true)",
            "ALTER TABLE auth.refresh_session ALTER COLUMN user_agent SET STATISTICS 500",
            "ALTER TABLE auth.refresh_session ALTER COLUMN user_agent TYPE text COLLATE \"C\"",
            "ALTER TABLE auth.refresh_session ALTER COLUMN user_agent SET COMPRESSION pglz",
            "CREATE UNIQUE INDEX partial_idx ON auth.refresh_session (user_id, jti) WHERE expires_at IS NOT NULL",
        ],
        &["ALTER TABLE auth.refresh_session DISABLE ROW LEVEL SECURITY"],
        &[
            "DROP POLICY admin_all_refresh_sessions ON auth.refresh_session",
            "DROP POLICY select_own_refresh_sessions ON auth.refresh_session",
            "DROP POLICY insert_own_refresh_sessions ON auth.refresh_session",
            "DROP POLICY update_own_refresh_sessions ON auth.refresh_session",
            "DROP POLICY delete_own_refresh_sessions ON auth.refresh_session",
        ],
    ];
    for statements in variants {
        let db = TestDb::new().await?;
        let conn = db.connect().await?;
        for statement in *statements {
            conn.execute_unprepared(statement).await?;
        }
        for (schema, table, psql_name) in [
            ("auth", "refresh_session", "auth.refresh_session"),
            ("auth", "user", "auth.\"user\""),
        ] {
            let rendered = schema_inspect::describe(&conn, schema, table).await?;
            let psql = psql_describe(&db, psql_name)?;
            assert_eq!(
                rendered, psql,
                "\\d+ {psql_name} after {statements:?}:\n--- psql\n{psql}\n+++ rendered\n{rendered}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn features_the_renderer_does_not_print_are_refused_by_name() -> Result<()> {
    let db = TestDb::new().await?;
    let conn = db.connect().await?;
    conn.execute_unprepared(
        "CREATE FUNCTION auth.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER noop BEFORE INSERT ON auth.refresh_session FOR EACH ROW EXECUTE FUNCTION auth.noop()",
    )
    .await?;
    let error = schema_inspect::describe(&conn, "auth", "refresh_session")
        .await
        .expect_err("triggers are not rendered");
    assert!(error.to_string().contains("triggers"), "{error}");
    let missing = schema_inspect::describe(&conn, "auth", "nope")
        .await
        .expect_err("no such table");
    assert!(missing.to_string().contains("auth.nope"), "{missing}");
    Ok(())
}

/// `schema check` compares with `spec/schema-snapshot.snap`; it must be what
/// the migrations produce. It is an insta snapshot kept in `spec/`, so an
/// intended schema change is reviewed with `cargo insta review` like every
/// other snapshot.
#[tokio::test]
async fn committed_schema_snapshot_equals_a_freshly_migrated_database() -> Result<()> {
    let db = TestDb::new().await?;
    let live = schema_inspect::snapshot(&db.connect().await?).await?;
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../spec"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("schema-snapshot", live);
    });
    Ok(())
}
