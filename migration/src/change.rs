//! A migration expressed as data: the SQL it runs, in order.

use sea_orm_migration::prelude::*;

/// One schema change as ordered SQL statements.
///
/// Keeping the SQL as data (rather than calls made inside `up`) lets the
/// migrator run it, a dry run print it and a snapshot test show it to a
/// reviewer, all from one source.
pub trait Change: Send + Sync {
    /// The migration's name, e.g. `m20261204_000001_create_auth_schema`.
    fn name(&self) -> &'static str;
    /// Statements that apply the change, in order.
    fn up(&self) -> Vec<String>;
    /// Statements that undo [`Change::up`] completely, in order.
    fn down(&self) -> Vec<String>;
}

/// Table holding one checksum per applied migration, beside `seaql_migrations`
/// (unqualified: it lands in the same schema, the first on `search_path`).
///
/// sea-orm-migration's own table has only `version` and `applied_at`, and it
/// inserts its row after [`Step::up`] returns, so the checksum cannot go into
/// that row; a small table of our own can be written from inside the
/// migration's transaction instead.
pub const CHECKSUM_TABLE: &str = "seaql_migrations_checksum";

/// The SQL text a checksum covers: each statement of [`Change::up`] followed
/// by `;` and a newline. It is exactly what `migration up --dry-run` prints
/// for the change, so "the checksum changed" means "this text changed".
pub fn up_script(change: &dyn Change) -> String {
    let mut script = String::new();
    for statement in change.up() {
        script.push_str(&statement);
        script.push_str(";\n");
    }
    script
}

/// Lowercase hex sha256 of [`up_script`]: what `up` records and later
/// compares, so an applied migration whose source was edited is noticed.
pub fn checksum(change: &dyn Change) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(up_script(change).as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Statements [`Step::up`] runs after the change's own SQL: record the
/// checksum. They run in the migration's transaction (sea-orm-migration's
/// `seaql_migrations` insert follows in the same one), so a migration is never
/// committed without its checksum, whether the CLI or an app's
/// `Migrator::up` applied it.
pub fn record_checksum_sql(change: &dyn Change) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} (version varchar PRIMARY KEY, checksum char(64) NOT NULL)"
        ),
        format!(
            "INSERT INTO {CHECKSUM_TABLE} (version, checksum) VALUES ({}, {}) \
             ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum",
            literal(change.name()),
            literal(&checksum(change)),
        ),
    ]
}

/// Statement [`Step::down`] runs after the change's own SQL: forget the
/// checksum, and drop the table once it is empty, so that rolling everything
/// back (`reset`) leaves no table behind. Tolerates a missing table (a
/// database migrated before checksums existed).
pub fn forget_checksum_sql(change: &dyn Change) -> String {
    format!(
        r#"DO $$
BEGIN
    IF to_regclass('{CHECKSUM_TABLE}') IS NOT NULL THEN
        DELETE FROM {CHECKSUM_TABLE} WHERE version = {};
        IF NOT EXISTS (SELECT FROM {CHECKSUM_TABLE}) THEN
            DROP TABLE {CHECKSUM_TABLE};
        END IF;
    END IF;
END
$$"#,
        literal(change.name())
    )
}

/// Adapts a [`Change`] to sea-orm-migration's [`MigrationTrait`].
///
/// On PostgreSQL sea-orm-migration wraps each migration in its own
/// transaction, so a failing statement leaves nothing of the change behind.
/// `up` ends by recording the change's [`checksum`]; `down` ends by removing
/// it (see [`record_checksum_sql`], [`forget_checksum_sql`]).
pub struct Step(pub &'static dyn Change);

impl MigrationName for Step {
    fn name(&self) -> &str {
        self.0.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Step {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut statements = self.0.up();
        statements.extend(record_checksum_sql(self.0));
        execute_all(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut statements = self.0.down();
        statements.push(forget_checksum_sql(self.0));
        execute_all(manager, statements).await
    }
}

async fn execute_all(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(&statement).await?;
    }
    Ok(())
}

/// SQL that creates a cluster-wide role unless it already exists.
///
/// Roles are shared by every database on the server, and another database
/// may have created this one first, so an existing role is tolerated
/// (race-free, unlike a NOT EXISTS check). Two databases migrating at the
/// same moment race on pg_authid's unique index, which reports
/// `unique_violation` rather than `duplicate_object`, so both are tolerated.
pub(crate) fn create_role_if_missing(name: &str, attributes: &str) -> String {
    format!(
        "DO $$\nBEGIN\n    CREATE ROLE {name} {attributes};\n\
         EXCEPTION WHEN duplicate_object OR unique_violation THEN\n    NULL;\nEND\n$$"
    )
}

/// Renders a sea-query schema statement as PostgreSQL SQL.
pub(crate) fn pg<S: SchemaStatementBuilder>(statement: &S) -> String {
    statement.to_string(PostgresQueryBuilder)
}
