//! `cargo run -p codegen`: regenerates `entity/src` from a freshly migrated
//! PostgreSQL 18. `cargo run -p codegen -- --check` only compares and fails
//! with a diff when `entity/src` is out of date.
//!
//! The database: `DATABASE_URL` if set, which must name a database that is
//! empty or already migrated by this workspace (pending migrations are
//! applied to it, so never point it at a database you care about); otherwise
//! a scratch database on a PostgreSQL 18 from `pg-provider` (a `postgres:18`
//! container if Docker answers, else an embedded server it downloads once),
//! stopped and deleted when the command ends.

use std::process::ExitCode;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("codegen: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, BoxError> {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => return Err(format!("unknown argument {other:?} (only --check)").into()),
    };

    let database = database().await?;
    codegen::migrate(database.url()).await?;
    let generated = codegen::generate(database.url()).await?;

    let dir = codegen::entity_src_dir();
    let committed = codegen::read_entity_src(&dir)?;
    let Some(diff) = codegen::diff(&committed, &generated) else {
        println!("entity/src is up to date ({} files)", generated.len());
        return Ok(ExitCode::SUCCESS);
    };
    if check {
        eprintln!(
            "{diff}\nentity/ is out of date: run {}",
            codegen::REGENERATE_COMMAND
        );
        return Ok(ExitCode::FAILURE);
    }
    codegen::write_entity_src(&dir, &generated)?;
    println!("{diff}\nregenerated entity/src ({} files)", generated.len());
    Ok(ExitCode::SUCCESS)
}

/// Where the schema is built.
struct Database {
    url: String,
    /// The `pg-provider` server, if one was started: dropping it stops the
    /// server and deletes its data. `None` for `DATABASE_URL`.
    _server: Option<pg_provider::PgServer>,
}

impl Database {
    fn url(&self) -> &str {
        &self.url
    }
}

async fn database() -> Result<Database, BoxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(Database { url, _server: None }),
        _ => provided_database().await,
    }
}

/// A fresh database on a PostgreSQL 18 from `pg-provider` (a container if
/// Docker answers, else an embedded server).
async fn provided_database() -> Result<Database, BoxError> {
    const NAME: &str = "entity_codegen";
    let server = pg_provider::PgServer::start().await?;
    // A leftover from an interrupted run on a reused server must not leak in.
    server.drop_database(NAME).await?;
    server.create_database(NAME, Some("template0")).await?;
    Ok(Database {
        url: server.url(NAME),
        _server: Some(server),
    })
}
