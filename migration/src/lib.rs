//! SeaORM migrations that build `auth.refresh_session` exactly as specified in
//! `spec/refresh_session.describe.txt` (psql 18's `\d+` of the table).
//!
//! Every migration is a [`Change`]: an ordered list of SQL statements for `up`
//! and for `down`, built with sea-query where its builders can say it and
//! written as SQL where they cannot (roles, functions, row level security).
//! Because a change *is* its SQL, the same source is executed by
//! [`Migrator`], printed by a dry run and snapshotted by the tests: what a
//! reviewer reads is exactly what runs.
//!
//! ```no_run
//! use migration::{Migrator, MigratorTrait};
//! # async fn run() -> Result<(), sea_orm_migration::sea_orm::DbErr> {
//! let db = sea_orm_migration::sea_orm::Database::connect("postgres://localhost/app").await?;
//! // Applies every pending migration, each in its own transaction.
//! Migrator::up(&db, None).await?;
//! # Ok(()) }
//! ```
//!
//! Requirements: PostgreSQL 18 or newer (`uuidv7()`, named NOT NULL
//! constraints). The first migration refuses older servers before it changes
//! anything.

pub use sea_orm_migration::prelude::*;

mod change;
mod m20261204_000001_create_auth_schema;
mod m20261204_000002_create_user_table;
mod m20261204_000003_create_uid_function;
mod m20261204_000004_create_refresh_session_table;
mod m20261204_000005_create_admin_user_role;
mod m20261204_000006_enable_refresh_session_rls;
mod m20261204_000007_create_refresh_service_role;

pub use change::{
    CHECKSUM_TABLE, Change, Step, checksum, forget_checksum_sql, record_checksum_sql, up_script,
};
pub use m20261204_000001_create_auth_schema::require_server_version;

/// The ordered list of migrations. Append new ones at the end; never edit one
/// that has been applied somewhere.
pub struct Migrator;

/// Every change, in the order it is applied.
pub fn changes() -> Vec<&'static dyn Change> {
    vec![
        &m20261204_000001_create_auth_schema::Migration,
        &m20261204_000002_create_user_table::Migration,
        &m20261204_000003_create_uid_function::Migration,
        &m20261204_000004_create_refresh_session_table::Migration,
        &m20261204_000005_create_admin_user_role::Migration,
        &m20261204_000006_enable_refresh_session_rls::Migration,
        &m20261204_000007_create_refresh_service_role::Migration,
    ]
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        changes()
            .into_iter()
            .map(|change| Box::new(Step(change)) as Box<dyn MigrationTrait>)
            .collect()
    }
}

/// Identifiers shared by several migrations.
#[derive(DeriveIden)]
pub(crate) enum Auth {
    #[sea_orm(iden = "auth")]
    Schema,
}

#[derive(DeriveIden)]
pub(crate) enum User {
    Table,
    Id,
    Email,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum RefreshSession {
    Table,
    Id,
    Jti,
    UserId,
    RefreshVersion,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    UserAgent,
    IpAddress,
}
