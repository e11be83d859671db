//! The commands that read or change which migrations are applied: `status`,
//! `up` (and its dry run), `down`, `fresh`, `refresh`, `reset`.
//!
//! Everything that changes the schema runs under the [`MigrationLock`] and
//! decides what to do only once the lock is held, so two runs never race on
//! the same migration. Each migration is applied through sea-orm-migration
//! one at a time (`Migrator::up(db, Some(1))`), which keeps its
//! one-transaction-per-migration guarantee and lets us print progress with
//! timings per migration on stderr.

use super::lock::MigrationLock;
use anyhow::{Context, Result};
use migration::{CHECKSUM_TABLE, Change, DbErr, Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, Statement, TransactionTrait,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// How an applied migration's recorded checksum compares with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not applied yet.
    Pending,
    /// Applied, and the source is what was applied.
    Verified,
    /// Applied before checksums were recorded: nothing to compare with.
    Unverified,
    /// Applied, and the source has changed since (recorded checksum given).
    Changed(String),
}

/// One migration of this binary and its state in the database.
pub struct Row {
    pub change: &'static dyn Change,
    pub state: State,
}

async fn table_exists(db: &DatabaseConnection, table: &str) -> Result<bool> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT to_regclass($1) IS NOT NULL",
            [table.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get_by_index(0)?,
        None => false,
    })
}

/// Reads the applied versions and checksums without creating anything.
/// Returns this binary's migrations in order, plus applied versions this
/// binary does not know.
pub async fn read_state(db: &DatabaseConnection) -> Result<(Vec<Row>, Vec<String>)> {
    let backend = db.get_database_backend();
    let applied: BTreeSet<String> = if table_exists(db, "seaql_migrations").await? {
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations",
            ))
            .await
            .context("cannot read seaql_migrations")?;
        rows.iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?
    } else {
        BTreeSet::new()
    };
    let recorded: BTreeMap<String, String> = if table_exists(db, CHECKSUM_TABLE).await? {
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT version, checksum::text FROM {CHECKSUM_TABLE}"),
            ))
            .await
            .with_context(|| format!("cannot read {CHECKSUM_TABLE}"))?;
        rows.iter()
            .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
            .collect::<Result<_, sea_orm_migration::sea_orm::DbErr>>()?
    } else {
        BTreeMap::new()
    };
    let changes = migration::changes();
    let known: BTreeSet<&str> = changes.iter().map(|change| change.name()).collect();
    let rows = changes
        .into_iter()
        .map(|change| {
            let state = if !applied.contains(change.name()) {
                State::Pending
            } else {
                match recorded.get(change.name()) {
                    None => State::Unverified,
                    Some(sum) if *sum == migration::checksum(change) => State::Verified,
                    Some(sum) => State::Changed(sum.clone()),
                }
            };
            Row { change, state }
        })
        .collect();
    let unknown = applied
        .into_iter()
        .filter(|version| !known.contains(version.as_str()))
        .collect();
    Ok((rows, unknown))
}

/// Fails, naming every applied migration whose source changed since.
fn refuse_changed(rows: &[Row]) -> Result<()> {
    let changed: Vec<String> = rows
        .iter()
        .filter_map(|row| match &row.state {
            State::Changed(recorded) => Some(format!(
                "{} (applied with sha256 {}, source is now {})",
                row.change.name(),
                short(recorded),
                short(&migration::checksum(row.change))
            )),
            _ => None,
        })
        .collect();
    if !changed.is_empty() {
        anyhow::bail!(
            "refusing to migrate: applied migration changed since it was applied: {}; restore its source (never edit an applied migration; add a new one)",
            changed.join(", ")
        );
    }
    Ok(())
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// `status`: one line per migration on stdout.
pub async fn status(db: &DatabaseConnection) -> Result<()> {
    let (rows, unknown) = read_state(db).await?;
    for row in &rows {
        let state = match &row.state {
            State::Pending => "pending".to_owned(),
            State::Verified => "applied   checksum ok".to_owned(),
            State::Unverified => {
                "applied   checksum unverified (applied before checksums were recorded)".to_owned()
            }
            State::Changed(recorded) => format!(
                "applied   CHECKSUM MISMATCH: source changed since it was applied (recorded {}, now {})",
                short(recorded),
                short(&migration::checksum(row.change))
            ),
        };
        println!("{:<48}  {state}", row.change.name());
    }
    for version in unknown {
        println!("{version:<48}  applied   UNKNOWN: not a migration of this binary");
    }
    Ok(())
}

/// `up --dry-run`: the SQL each pending migration would run, on stdout;
/// nothing is written to the database (not even the migration table).
pub async fn dry_run(db: &DatabaseConnection, num: Option<u32>) -> Result<()> {
    let (rows, _) = read_state(db).await?;
    refuse_changed(&rows)?;
    let pending = pending(&rows, num);
    if pending.is_empty() {
        eprintln!("nothing to apply: every migration is applied");
    } else if !table_exists(db, "seaql_migrations").await? {
        println!(
            "-- sea-orm-migration first creates its table:\n{};\n",
            install_sql()
        );
    }
    for change in pending {
        print!("{}", dry_run_text(change));
    }
    Ok(())
}

/// The dry-run text of one migration: the transaction it runs in, its own
/// statements (exactly what `Step::up` executes), then the bookkeeping.
pub fn dry_run_text(change: &dyn Change) -> String {
    let mut text = format!(
        "-- {}  (sha256 {})\nBEGIN;\n",
        change.name(),
        migration::checksum(change)
    );
    text.push_str(&migration::up_script(change));
    text.push_str("-- bookkeeping, in the same transaction:\n");
    for statement in migration::record_checksum_sql(change) {
        text.push_str(&statement);
        text.push_str(";\n");
    }
    text.push_str(&format!(
        "-- INSERT INTO seaql_migrations (version, applied_at) VALUES ('{}', <unix time now>), by sea-orm-migration\nCOMMIT;\n\n",
        change.name()
    ));
    text
}

/// sea-orm-migration's `install`: the statement it runs before migrating.
fn install_sql() -> String {
    use sea_orm_migration::sea_orm::{DbBackend, Schema};
    let mut statement = Schema::new(DbBackend::Postgres)
        .create_table_from_entity(sea_orm_migration::seaql_migrations::Entity);
    statement.if_not_exists();
    DbBackend::Postgres.build(&statement).to_string()
}

fn pending(rows: &[Row], num: Option<u32>) -> Vec<&'static dyn Change> {
    rows.iter()
        .filter(|row| row.state == State::Pending)
        .map(|row| row.change)
        .take(num.map_or(usize::MAX, |n| n as usize))
        .collect()
}

/// Applies pending migrations one by one under the lock, with progress.
async fn apply_pending(
    db: &DatabaseConnection,
    lock: &mut MigrationLock,
    num: Option<u32>,
) -> Result<()> {
    let (rows, unknown) = read_state(db).await?;
    if let Some(version) = unknown.first() {
        anyhow::bail!(
            "the database has migration {version} applied, which this binary does not know (is it older than the database?)"
        );
    }
    refuse_changed(&rows)?;
    let pending = pending(&rows, num);
    if pending.is_empty() {
        eprintln!("nothing to apply: every migration is applied");
        return Ok(());
    }
    let total = pending.len();
    let started = Instant::now();
    for (index, change) in pending.into_iter().enumerate() {
        lock.ensure_held().await?;
        eprintln!("[{}/{total}] applying {}", index + 1, change.name());
        let began = Instant::now();
        if let Err(error) = Migrator::up(db, Some(1)).await {
            return Err(if connection_lost(&error) {
                anyhow::Error::new(error).context(format!(
                    "lost the connection to the database while applying migration {}; the server rolled it back, nothing of it was committed; rerun `migration up`",
                    change.name()
                ))
            } else {
                anyhow::Error::new(error).context(format!(
                    "migration {} failed and was rolled back",
                    change.name()
                ))
            });
        }
        eprintln!(
            "[{}/{total}] applied  {} in {}",
            index + 1,
            change.name(),
            millis(began)
        );
    }
    eprintln!("applied {total} migration(s) in {}", millis(started));
    Ok(())
}

/// Rolls back `num` applied migrations (all when `None`), newest first.
async fn roll_back(
    db: &DatabaseConnection,
    lock: &mut MigrationLock,
    num: Option<u32>,
) -> Result<()> {
    let (rows, _) = read_state(db).await?;
    let applied: Vec<_> = rows
        .iter()
        .rev()
        .filter(|row| row.state != State::Pending)
        .map(|row| row.change)
        .take(num.map_or(usize::MAX, |n| n as usize))
        .collect();
    if applied.is_empty() {
        eprintln!("nothing to roll back: no migration is applied");
        return Ok(());
    }
    let total = applied.len();
    let started = Instant::now();
    for (index, change) in applied.into_iter().enumerate() {
        lock.ensure_held().await?;
        eprintln!("[{}/{total}] rolling back {}", index + 1, change.name());
        let began = Instant::now();
        Migrator::down(db, Some(1)).await.with_context(|| {
            format!(
                "rolling back migration {} failed and was undone",
                change.name()
            )
        })?;
        eprintln!(
            "[{}/{total}] rolled back {} in {}",
            index + 1,
            change.name(),
            millis(began)
        );
    }
    eprintln!("rolled back {total} migration(s) in {}", millis(started));
    Ok(())
}

/// Whether a failure means the connection went away (server restart,
/// `pg_terminate_backend`, network) rather than a statement being refused.
/// Either way the migration's transaction did not commit; the distinction
/// only changes the advice printed.
fn connection_lost(error: &DbErr) -> bool {
    if matches!(error, DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) {
        return true;
    }
    let text = error.to_string().to_lowercase();
    [
        "terminating connection",
        "connection closed",
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "server closed the connection",
        "pool timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

fn millis(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1000.0)
}

/// What a locked command does.
pub enum Locked {
    Up(Option<u32>),
    Down(u32),
    Fresh,
    Refresh,
    Reset,
}

/// Runs a schema-changing command while holding the migration lock.
pub async fn locked(
    db: &DatabaseConnection,
    url: &str,
    shown: &str,
    command: Locked,
) -> Result<()> {
    let mut lock = MigrationLock::acquire(url, shown).await?;
    let result = run_locked(db, &mut lock, command).await;
    // On failure the process exits and its session ends, which releases the
    // lock anyway; the command's own error is the one worth reporting.
    let released = lock.release().await;
    result?;
    released
}

async fn run_locked(
    db: &DatabaseConnection,
    lock: &mut MigrationLock,
    command: Locked,
) -> Result<()> {
    match command {
        Locked::Up(num) => apply_pending(db, lock, num).await,
        Locked::Down(num) => roll_back(db, lock, Some(num)).await,
        Locked::Fresh => {
            drop_owned_objects(db).await?;
            apply_pending(db, lock, None).await
        }
        Locked::Refresh => {
            roll_back(db, lock, None).await?;
            apply_pending(db, lock, None).await
        }
        Locked::Reset => {
            roll_back(db, lock, None).await?;
            Migrator::uninstall(db).await?;
            Ok(())
        }
    }
}

/// sea-orm's `fresh` drops the tables of the `public` schema only; ours live in
/// `auth`, so `fresh` here drops what these migrations own, atomically.
async fn drop_owned_objects(db: &DatabaseConnection) -> Result<()> {
    let txn = db.begin().await?;
    txn.execute_unprepared("DROP SCHEMA IF EXISTS auth CASCADE")
        .await?;
    txn.execute_unprepared("DROP TABLE IF EXISTS seaql_migrations")
        .await?;
    txn.execute_unprepared(&format!("DROP TABLE IF EXISTS {CHECKSUM_TABLE}"))
        .await?;
    txn.commit().await?;
    eprintln!("dropped schema auth and the migration tables");
    Ok(())
}
