//! The CLI against a real PostgreSQL 18 (pg_provider: DATABASE_URL, Docker or
//! embedded): concurrent runs, checksums, dry run, faults, `schema check`.
//!
//! These run the real binary as child processes, so they live in this crate
//! (`CARGO_BIN_EXE_migration`); each test gets its own database on one
//! shared server.

use migration::{Migrator, MigratorTrait};
use pg_provider::PgServer;
use sea_orm_migration::sea_orm::sqlx::{self, Connection as _, postgres::PgConnection};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database of its own on the shared server.
async fn empty_database(label: &str) -> Result<(&'static PgServer, String)> {
    let server = pg_provider::shared().await?;
    let name = format!(
        "cli_{}_{}_{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    server.create_database(&name, Some("template0")).await?;
    Ok((server, server.url(&name)))
}

fn migration(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_migration"));
    command.env("DATABASE_URL", url).env_remove("RUST_LOG");
    command
}

fn run(url: &str, args: &[&str]) -> Output {
    migration(url)
        .args(args)
        .output()
        .expect("the migration binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

async fn connect(url: &str) -> Result<DatabaseConnection> {
    Ok(Database::connect(url).await?)
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get_by_index(0)?)
}

/// Every migration recorded exactly once, with its checksum.
async fn assert_each_version_once(db: &DatabaseConnection) -> Result {
    let total = migration::changes().len() as i64;
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM seaql_migrations").await?,
        total
    );
    assert_eq!(
        scalar_i64(db, "SELECT count(DISTINCT version) FROM seaql_migrations").await?,
        total
    );
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM seaql_migrations_checksum").await?,
        total
    );
    Ok(())
}

fn spec() -> String {
    let fenced = include_str!("../../spec/refresh_session.describe.txt");
    fenced
        .strip_prefix("```sql\n")
        .and_then(|body| body.strip_suffix("```\n"))
        .expect("fenced spec")
        .to_owned()
}

async fn assert_describe_is_the_spec(db: &DatabaseConnection) -> Result {
    let described = schema_inspect::describe(db, "auth", "refresh_session").await?;
    assert_eq!(described, spec());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn four_simultaneous_ups_all_succeed_and_apply_each_migration_once() -> Result {
    let (_server, url) = empty_database("four_ups").await?;
    let children: Vec<_> = (0..4)
        .map(|_| {
            migration(&url)
                .arg("up")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::result::Result<_, _>>()?;
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output())
        .collect::<std::result::Result<_, _>>()?;
    for output in &outputs {
        eprintln!("one of four runs:\n{}", text(&output.stderr));
        assert_success(output);
    }
    // Exactly one run applied the migrations; the others found nothing to do.
    let appliers = outputs
        .iter()
        .filter(|output| {
            text(&output.stderr).contains(&format!(
                "applied {} migration(s)",
                migration::changes().len()
            ))
        })
        .count();
    assert_eq!(
        appliers,
        1,
        "{:?}",
        outputs.iter().map(|o| text(&o.stderr)).collect::<Vec<_>>()
    );

    let db = connect(&url).await?;
    assert_each_version_once(&db).await?;
    assert_describe_is_the_spec(&db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn up_prints_progress_with_timings_per_migration() -> Result {
    let (_server, url) = empty_database("progress").await?;
    let output = run(&url, &["up"]);
    assert_success(&output);
    let stderr = text(&output.stderr);
    let total = migration::changes().len();
    for (index, change) in migration::changes().iter().enumerate() {
        assert!(
            stderr.contains(&format!(
                "[{}/{total}] applying {}\n",
                index + 1,
                change.name()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "[{}/{total}] applied  {} in ",
                index + 1,
                change.name()
            )),
            "{stderr}"
        );
    }
    assert!(stderr.contains(" ms"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_applied_migration_is_reported_by_status_and_refused_by_up() -> Result {
    let (_server, url) = empty_database("checksum").await?;
    assert_success(&run(&url, &["up", "-n", "4"]));
    let db = connect(&url).await?;

    let status = run(&url, &["status"]);
    assert_success(&status);
    let listing = text(&status.stdout);
    assert_eq!(listing.matches("checksum ok").count(), 4, "{listing}");
    assert_eq!(
        listing.matches("pending").count(),
        migration::changes().len() - 4,
        "{listing}"
    );

    // What an edited source looks like from the database's side: the
    // recorded checksum no longer matches the one compiled into the binary.
    db.execute_unprepared(
        "UPDATE seaql_migrations_checksum SET checksum = repeat('0', 64)
         WHERE version = 'm20261204_000003_create_uid_function'",
    )
    .await?;
    let status = run(&url, &["status"]);
    assert_success(&status);
    let listing = text(&status.stdout);
    let line = listing
        .lines()
        .find(|line| line.starts_with("m20261204_000003_create_uid_function"))
        .ok_or("no status line for migration 3")?;
    assert!(line.contains("CHECKSUM MISMATCH"), "{listing}");
    assert!(line.contains("recorded 000000000000"), "{line}");

    let before = scalar_i64(&db, "SELECT count(*) FROM seaql_migrations").await?;
    for args in [&["up"][..], &["up", "--dry-run"][..]] {
        let up = run(&url, args);
        let stderr = text(&up.stderr);
        assert_eq!(up.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: refusing to migrate"), "{stderr}");
        assert!(
            stderr.contains("m20261204_000003_create_uid_function"),
            "{stderr}"
        );
    }
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM seaql_migrations").await?,
        before,
        "a refused up must apply nothing"
    );

    // Restored source (here: the recorded checksum put back) → up proceeds.
    db.execute_unprepared(&format!(
        "UPDATE seaql_migrations_checksum SET checksum = '{}'
         WHERE version = 'm20261204_000003_create_uid_function'",
        migration::checksum(migration::changes()[2])
    ))
    .await?;
    assert_success(&run(&url, &["up"]));
    assert_each_version_once(&db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_applied_before_checksums_is_unverified_not_refused() -> Result {
    let (_server, url) = empty_database("unverified").await?;
    assert_success(&run(&url, &["up", "-n", "2"]));
    let db = connect(&url).await?;
    db.execute_unprepared(
        "DELETE FROM seaql_migrations_checksum WHERE version = 'm20261204_000002_create_user_table'",
    )
    .await?;
    let listing = text(&run(&url, &["status"]).stdout);
    let line = listing
        .lines()
        .find(|line| line.starts_with("m20261204_000002_create_user_table"))
        .ok_or("no status line")?;
    assert!(line.contains("unverified"), "{listing}");
    assert_success(&run(&url, &["up"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_exact_sql_of_pending_migrations_and_changes_nothing() -> Result {
    let (_server, url) = empty_database("dry_run").await?;
    let db = connect(&url).await?;
    let output = run(&url, &["up", "--dry-run"]);
    assert_success(&output);
    let sql = text(&output.stdout);
    eprintln!("up --dry-run on an empty database:\n{sql}");
    for change in migration::changes() {
        assert!(sql.contains(&migration::up_script(change)), "{sql}");
        assert!(sql.contains(&format!("-- {}", change.name())), "{sql}");
    }
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        .await?,
        0,
        "a dry run must not even create the migration table"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'"
        )
        .await?,
        0
    );

    // After three, only the other three are printed; -n limits further.
    assert_success(&run(&url, &["up", "-n", "3"]));
    let sql = text(&run(&url, &["up", "--dry-run"]).stdout);
    let names: Vec<_> = migration::changes().iter().map(|c| c.name()).collect();
    for name in &names[..3] {
        assert!(!sql.contains(name), "{name} is applied: {sql}");
    }
    for name in &names[3..] {
        assert!(sql.contains(name), "{sql}");
    }
    let sql = text(&run(&url, &["up", "--dry-run", "-n", "1"]).stdout);
    assert!(sql.contains(names[3]) && !sql.contains(names[4]), "{sql}");
    Ok(())
}

/// Applies three migrations, then locks `auth."user"` from another session so
/// that migration 4 (its foreign key needs a lock on `auth."user"`) blocks.
/// Returns the locking connection (drop it or roll back to release).
async fn block_migration_4(url: &str) -> Result<PgConnection> {
    assert_success(&run(url, &["up", "-n", "3"]));
    let mut blocker = PgConnection::connect(url).await?;
    sqlx::query("BEGIN").execute(&mut blocker).await?;
    sqlx::query(r#"LOCK TABLE auth."user" IN ACCESS EXCLUSIVE MODE"#)
        .execute(&mut blocker)
        .await?;
    Ok(blocker)
}

/// The pid of the backend that waits for a lock in this database.
async fn wait_for_blocked_backend(db: &DatabaseConnection) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE 'CREATE TABLE%refresh_session%'",
            ))
            .await?;
        if let Some(row) = row {
            return Ok(row.try_get_by_index(0)?);
        }
        assert!(Instant::now() < deadline, "migration 4 never blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_completes_after_rerun(url: &str, db: &DatabaseConnection) -> Result {
    let rerun = run(url, &["up"]);
    assert_success(&rerun);
    assert_each_version_once(db).await?;
    assert_describe_is_the_spec(db).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_in_the_middle_of_up_leaves_nothing_half_applied_and_a_rerun_completes() -> Result {
    let (_server, url) = empty_database("sigkill").await?;
    let db = connect(&url).await?;
    let mut blocker = block_migration_4(&url).await?;
    let mut child = migration(&url)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let orphan = wait_for_blocked_backend(&db).await?;
    child.kill()?; // SIGKILL
    child.wait()?;

    sqlx::query("ROLLBACK").execute(&mut blocker).await?;
    blocker.close().await?;
    // The killed run's backend gets its lock, finds its client gone and
    // rolls back: migration 4 never committed, neither its table nor its row.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar_i64(
        &db,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {orphan}"),
    )
    .await?
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the orphaned backend never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM seaql_migrations").await?,
        3
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname = 'refresh_session'"
        )
        .await?,
        0,
        "migration 4 was half-applied"
    );
    assert_completes_after_rerun(&url, &db).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_mid_migration_is_a_clear_error_and_a_rerun_works() -> Result {
    let (_server, url) = empty_database("dropped").await?;
    let db = connect(&url).await?;
    let mut blocker = block_migration_4(&url).await?;
    let child = migration(&url)
        .arg("up")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = wait_for_blocked_backend(&db).await?;
    db.execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await?;
    let output = child.wait_with_output()?;
    let stderr = text(&output.stderr);
    eprintln!("the dropped connection, as the user sees it:\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(
            "lost the connection to the database while applying migration m20261204_000004_create_refresh_session_table"
        ) && error[0].contains("rerun"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    sqlx::query("ROLLBACK").execute(&mut blocker).await?;
    blocker.close().await?;
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM seaql_migrations").await?,
        3
    );
    assert_completes_after_rerun(&url, &db).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_through_the_cli_leaves_no_table_and_up_restores_the_spec() -> Result {
    let (_server, url) = empty_database("reset").await?;
    assert_success(&run(&url, &["up"]));
    assert_success(&run(&url, &["reset"]));
    let db = connect(&url).await?;
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        .await?,
        0
    );
    assert_success(&run(&url, &["fresh"]));
    assert_success(&run(&url, &["refresh"]));
    assert_each_version_once(&db).await?;
    assert_describe_is_the_spec(&db).await?;
    Ok(())
}

/// `schema check` on a migrated database, then after each hand change the
/// issue lists: exit 3 and a diff that names the change.
#[tokio::test(flavor = "multi_thread")]
async fn schema_check_passes_when_migrated_and_fails_with_a_diff_after_each_hand_change() -> Result
{
    let (server, url) = empty_database("check_template").await?;
    {
        let db = connect(&url).await?;
        Migrator::up(&db, None).await?;
        db.close().await?;
    }
    let template = url::Url::parse(&url)?
        .path()
        .trim_start_matches('/')
        .to_owned();

    let check = run(&url, &["schema", "check"]);
    assert_success(&check);
    assert!(check.stdout.is_empty(), "{}", text(&check.stdout));

    let cases = [
        (
            "DROP POLICY select_own_refresh_sessions ON auth.refresh_session",
            r#"-    POLICY "select_own_refresh_sessions" FOR SELECT"#,
        ),
        (
            "ALTER TABLE auth.refresh_session DROP CONSTRAINT refresh_session_jti_key",
            r#"-    "refresh_session_jti_key" UNIQUE CONSTRAINT, btree (jti)"#,
        ),
        (
            "ALTER TABLE auth.refresh_session ALTER COLUMN refresh_version SET DEFAULT 1",
            "+ refresh_version | integer                  |           | not null | 1 ",
        ),
        (
            "ALTER TABLE auth.refresh_session FORCE ROW LEVEL SECURITY",
            "+Policies (forced row security enabled):",
        ),
    ];
    for (index, (change, expected_line)) in cases.into_iter().enumerate() {
        let name = format!("{template}_{index}");
        server.create_database(&name, Some(&template)).await?;
        let tampered = server.url(&name);
        let db = connect(&tampered).await?;
        db.execute_unprepared(change).await?;
        db.close().await?;

        let output = run(&tampered, &["schema", "check"]);
        let diff = text(&output.stdout);
        eprintln!("schema check after {change}:\n{diff}");
        assert_eq!(
            output.status.code(),
            Some(3),
            "{change}: {}",
            text(&output.stderr)
        );
        assert!(diff.starts_with("--- committed"), "{diff}");
        assert!(
            diff.lines().any(|line| line.starts_with(expected_line)),
            "{change}: expected a line starting {expected_line:?} in\n{diff}"
        );
        assert!(
            text(&output.stderr).contains("differs from the committed snapshot"),
            "{}",
            text(&output.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_describe_prints_the_spec_then_the_snapshot() -> Result {
    let (_server, url) = empty_database("describe").await?;
    assert_success(&run(&url, &["up"]));
    let output = run(&url, &["schema", "describe"]);
    assert_success(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with(&spec()), "{stdout}");
    assert!(stdout.contains("## Policies"), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_calling_migrator_up_directly_records_checksums_too() -> Result {
    let (_server, url) = empty_database("app_up").await?;
    let db = connect(&url).await?;
    Migrator::up(&db, None).await?;
    let listing = text(&run(&url, &["status"]).stdout);
    assert_eq!(
        listing.matches("checksum ok").count(),
        migration::changes().len(),
        "{listing}"
    );
    // And rolling everything back through the library leaves no table.
    Migrator::reset(&db).await?;
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        .await?,
        0
    );
    Ok(())
}
