//! One migration run at a time per database: a PostgreSQL advisory lock.
//!
//! Like sqlx's migrator, every command that changes the schema (`up`, `down`,
//! `fresh`, `refresh`, `reset`) first takes a *session-level*
//! `pg_advisory_lock` on a dedicated connection and holds it until the command
//! ends. Concurrent runs (several CI jobs or pods) queue on it; the next one
//! then finds nothing pending. Session-level rather than transaction-level
//! because each migration commits on its own, and the whole run must be
//! exclusive. If the process dies (even SIGKILL), the server ends its session
//! and releases the lock: a crash never leaves the database locked.
//!
//! Advisory locks are scoped to one database, so a fixed key serialises runs
//! on the same database without affecting any other database of the server.

use anyhow::{Context, Result};
use sea_orm_migration::sea_orm::sqlx::{self, Connection as _, postgres::PgConnection};

/// The advisory lock key: the bytes of `"auth.mig"` as a big-endian integer.
pub const LOCK_KEY: i64 = i64::from_be_bytes(*b"auth.mig");

/// A held advisory lock; released by [`MigrationLock::release`], or by the
/// server when this process's connection ends.
pub struct MigrationLock {
    connection: PgConnection,
}

impl MigrationLock {
    /// Blocks until the lock is held, saying on stderr when it has to wait.
    pub async fn acquire(url: &str, shown: &str) -> Result<Self> {
        let mut connection = PgConnection::connect(url)
            .await
            .with_context(|| format!("cannot connect to {shown} for the migration lock"))?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .context("cannot take the migration lock")?;
        if !got {
            eprintln!(
                "another migration run holds the lock (pg_advisory_lock {LOCK_KEY}); waiting for it to finish"
            );
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(LOCK_KEY)
                .execute(&mut connection)
                .await
                .context("lost the connection while waiting for the migration lock")?;
        }
        Ok(Self { connection })
    }

    /// Fails if the lock's connection is gone (server restart,
    /// `pg_terminate_backend`): the lock went with it and another run may
    /// already be migrating, so this run must stop before its next migration.
    pub async fn ensure_held(&mut self) -> Result<()> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted
                              AND pid = pg_backend_pid() AND classid = ($1 >> 32)::oid
                              AND objid = ($1 & 4294967295)::oid AND objsubid = 1)",
        )
        .bind(LOCK_KEY)
        .fetch_one(&mut self.connection)
        .await
        .context("lost the connection that holds the migration lock; stopping before the next migration (rerun `migration up`)")?;
        anyhow::ensure!(
            held,
            "the migration lock is no longer held; stopping before the next migration"
        );
        Ok(())
    }

    /// Releases the lock and closes its connection.
    pub async fn release(mut self) -> Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut self.connection)
            .await
            .context("cannot release the migration lock")?;
        self.connection.close().await.ok();
        Ok(())
    }
}
