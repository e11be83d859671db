//! The migrations themselves: their SQL, atomicity, reversibility.

use anyhow::Result;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::fmt::Write as _;
use tests::TestDb;

/// The exact SQL each migration runs, for reviewers: a migration change shows
/// up as a DDL diff in this snapshot.
#[test]
fn the_sql_of_every_migration_is_snapshotted() {
    let mut text = String::new();
    for change in migration::changes() {
        for (direction, statements) in [("up", change.up()), ("down", change.down())] {
            let _ = writeln!(text, "-- {} ({direction})", change.name());
            for statement in statements {
                let _ = writeln!(text, "{statement};");
            }
            text.push('\n');
        }
    }
    insta::assert_snapshot!("migration_sql", text);
}

fn pg_dump_schema(db: &TestDb) -> Result<String> {
    let pg_dump = pg_provider::binaries()?.join("pg_dump");
    let output = std::process::Command::new(pg_dump)
        .args(["--schema-only", "--no-owner", "-d", &db.url()])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump 18 brackets its output with \restrict <random key>: not schema.
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn count(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row from {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

/// Objects of ours that could survive a bad `down`.
async fn leftovers(db: &DatabaseConnection) -> Result<i64> {
    count(
        db,
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'auth')
              + (SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))
              + (SELECT count(*) FROM pg_policy)
              + (SELECT count(*) FROM pg_proc WHERE proname = 'uid')",
    )
    .await
}

#[tokio::test]
async fn up_reset_up_gives_the_same_schema_and_reset_leaves_nothing() -> Result<()> {
    let db = TestDb::empty().await?;
    let conn = db.connect().await?;
    Migrator::up(&conn, None).await?;
    let first = pg_dump_schema(&db)?;
    assert!(
        first.contains("CREATE TABLE auth.refresh_session"),
        "{first}"
    );

    Migrator::reset(&conn).await?;
    assert_eq!(leftovers(&conn).await?, 0, "reset left objects behind");

    Migrator::up(&conn, None).await?;
    assert_eq!(pg_dump_schema(&db)?, first);
    Ok(())
}

#[tokio::test]
async fn every_migration_can_be_undone_and_redone_one_step_at_a_time() -> Result<()> {
    let db = TestDb::empty().await?;
    let conn = db.connect().await?;
    let total = migration::changes().len() as u32;
    for step in 1..=total {
        Migrator::up(&conn, Some(1)).await?;
        let after_up = schema_inspect::snapshot(&conn).await?;
        Migrator::down(&conn, Some(1)).await?;
        Migrator::up(&conn, Some(1)).await?;
        assert_eq!(
            schema_inspect::snapshot(&conn).await?,
            after_up,
            "down then up of migration {step} changed the schema"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_migration_leaves_no_half_built_schema() -> Result<()> {
    let db = TestDb::empty().await?;
    let conn = db.connect().await?;
    // Apply up to the user table and uid(), then occupy a name that the
    // refresh_session migration's last statement (an index) needs.
    Migrator::up(&conn, Some(3)).await?;
    conn.execute_unprepared("CREATE TABLE auth.refresh_session_expires_at_idx (x integer)")
        .await?;

    let error = Migrator::up(&conn, None)
        .await
        .expect_err("the name clash must fail");
    assert!(
        error.to_string().contains("refresh_session_expires_at_idx"),
        "{error}"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM pg_class WHERE relname = 'refresh_session'"
        )
        .await?,
        0,
        "the table created earlier in the failed migration must be rolled back"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM seaql_migrations").await?,
        3
    );
    Ok(())
}

#[tokio::test]
async fn a_server_older_than_the_requirement_is_refused_by_name_before_anything_changes()
-> Result<()> {
    // No PostgreSQL 17 runs here, so the guard is tested by asking for a
    // version this server does not have; the SQL is the same as the first
    // migration's, only the number differs.
    let db = TestDb::empty().await?;
    let conn = db.connect().await?;
    let guard = migration::require_server_version(990000);
    let error = conn
        .execute_unprepared(&guard)
        .await
        .expect_err("PostgreSQL 18 is older than 99");
    let message = error.to_string();
    assert!(message.contains("uuidv7()"), "{message}");
    assert!(message.contains("this server is 18"), "{message}");
    assert_eq!(leftovers(&conn).await?, 0);

    // And the real guard accepts this server.
    conn.execute_unprepared(&migration::require_server_version(180000))
        .await?;
    Ok(())
}
