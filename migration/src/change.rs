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

/// Adapts a [`Change`] to sea-orm-migration's [`MigrationTrait`].
///
/// On PostgreSQL sea-orm-migration wraps each migration in its own
/// transaction, so a failing statement leaves nothing of the change behind.
pub struct Step(pub &'static dyn Change);

impl MigrationName for Step {
    fn name(&self) -> &str {
        self.0.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Step {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, self.0.up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, self.0.down()).await
    }
}

async fn execute_all(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(&statement).await?;
    }
    Ok(())
}

/// Renders a sea-query schema statement as PostgreSQL SQL.
pub(crate) fn pg<S: SchemaStatementBuilder>(statement: &S) -> String {
    statement.to_string(PostgresQueryBuilder)
}
