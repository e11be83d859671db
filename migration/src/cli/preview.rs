//! The main job with no setup: a PostgreSQL 18 (DATABASE_URL's server,
//! Docker, or an embedded one), all migrations applied to a scratch database,
//! the resulting schema on stdout. Progress goes to stderr, so stdout is
//! exactly the schema and can be redirected to a file and diffed.

use anyhow::{Context, Result};
use migration::{Migrator, MigratorTrait};
use pg_provider::{PgServer, ProviderKind};
use std::time::Instant;

pub async fn run() -> Result<()> {
    let started = Instant::now();
    let server = PgServer::start()
        .await
        .context("cannot get a PostgreSQL 18 server")?;
    eprintln!(
        "PostgreSQL ready ({}) after {:.1?}",
        describe_kind(server.kind()),
        started.elapsed()
    );

    // A scratch database: preview never touches the database DATABASE_URL names.
    let name = format!("migration_preview_{}", std::process::id());
    server
        .create_database(&name, Some("template0"))
        .await
        .with_context(|| format!("cannot create the scratch database {name}"))?;
    let result = migrate_and_describe(&server, &name).await;
    if server.kind() != ProviderKind::Embedded {
        server.drop_database(&name).await.ok();
    }
    let text = result?;
    print!("{text}");
    eprintln!("done in {:.1?}", started.elapsed());
    Ok(())
}

async fn migrate_and_describe(server: &PgServer, database: &str) -> Result<String> {
    let url = server.url(database);
    let db = super::connect(&url).await?;
    Migrator::up(&db, None).await?;
    let psql = pg_provider::binaries()?.join("psql");
    let describe = schema_inspect::describe_table(&psql, &url, "auth.refresh_session")?;
    let snapshot = schema_inspect::snapshot(&db).await?;
    db.close().await?;
    Ok(format!(
        "{describe}\n-- Everything else the migrations own (not shown by \\d+):\n\n{snapshot}"
    ))
}

fn describe_kind(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::DatabaseUrl => "the server in DATABASE_URL",
        ProviderKind::Container => "a postgres:18 container",
        ProviderKind::Embedded => "embedded",
    }
}
