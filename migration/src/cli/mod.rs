//! Command-line parsing and the exit-code contract. Errors are printed as one
//! line on stderr (`error: …`) with a non-zero exit; nothing here panics on bad
//! input.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::sqlx::Connection as _;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm_migration::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait,
};
use std::process::ExitCode;

mod preview;

/// Exit code for a failed command (bad input, unreachable database, failed migration).
const EXIT_FAILURE: u8 = 1;

#[derive(Parser)]
#[command(
    name = "migration",
    version,
    about = "Migrations for auth.refresh_session (PostgreSQL 18)",
    after_help = "Exit codes: 0 success, 1 failure (message on stderr), 2 usage error."
)]
struct Cli {
    /// Database to migrate, e.g. postgres://user:pass@host:5432/app
    #[arg(
        short = 'u',
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Show sea-orm-migration's debug messages
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (each in its own transaction)
    Up {
        /// Apply at most this many pending migrations
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations
    Down {
        /// How many applied migrations to roll back
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// Show which migrations are applied and which are pending
    Status,
    /// Drop the auth schema and the migration table, then apply all migrations
    Fresh,
    /// Roll back all applied migrations, then apply all migrations
    Refresh,
    /// Roll back all applied migrations and drop the migration table
    Reset,
    /// Start a throwaway PostgreSQL 18 (DATABASE_URL's server, Docker, or
    /// embedded), apply all migrations to a scratch database and print the
    /// resulting schema. Needs nothing configured.
    Preview,
}

/// Runs the CLI and maps every error to one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(anyhow::Error::new(error).context("cannot start the async runtime"));
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(&error));
    ExitCode::from(EXIT_FAILURE)
}

/// Joins the error chain on one line ("cannot connect to …: refused"),
/// skipping causes that the message above already quotes (sqlx and sea-orm
/// repeat their source in their own text).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Preview = cli.command {
        return preview::run().await;
    }
    let url = cli
        .database_url
        .context("no database given: set DATABASE_URL or pass -u postgres://…")?;
    let db = connect(&url).await?;
    match cli.command {
        Command::Up { num } => Migrator::up(&db, num).await?,
        Command::Down { num } => Migrator::down(&db, Some(num)).await?,
        Command::Status => Migrator::status(&db).await?,
        Command::Fresh => {
            drop_owned_objects(&db).await?;
            Migrator::up(&db, None).await?
        }
        Command::Refresh => Migrator::refresh(&db).await?,
        Command::Reset => Migrator::reset(&db).await?,
        Command::Preview => unreachable!("handled above"),
    }
    Ok(())
}

/// Connects, turning failures into one readable line that names the server
/// but never the password.
pub(crate) async fn connect(url: &str) -> Result<DatabaseConnection> {
    let parsed = url::Url::parse(url)
        .map_err(|error| anyhow::anyhow!("DATABASE_URL is not a valid URL ({error})"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        anyhow::bail!(
            "DATABASE_URL must start with postgres:// (got scheme {:?})",
            parsed.scheme()
        );
    }
    let shown = redact_password(&parsed);
    // One direct connection first: a pool only reports "timed out" after
    // retrying, while a single attempt says what is wrong (refused, auth, …).
    let options: PgConnectOptions = url
        .parse()
        .map_err(|_| anyhow::anyhow!("DATABASE_URL {shown} has options sqlx cannot read"))?;
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            anyhow::anyhow!("cannot connect to {shown}: no answer within {CONNECT_TIMEOUT:?}")
        })?
        .with_context(|| format!("cannot connect to {shown}"))?;
    probe.close().await.ok();

    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to {shown}"))
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// sea-orm's `fresh` drops the tables of the `public` schema only; ours live in
/// `auth`, so `fresh` here drops what these migrations own, atomically.
async fn drop_owned_objects(db: &DatabaseConnection) -> Result<()> {
    let txn = db.begin().await?;
    txn.execute_unprepared("DROP SCHEMA IF EXISTS auth CASCADE")
        .await?;
    txn.execute_unprepared("DROP TABLE IF EXISTS seaql_migrations")
        .await?;
    txn.commit().await?;
    Ok(())
}

fn redact_password(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

fn init_tracing(verbose: bool) {
    // sea-orm-migration reports progress ("Applying migration …") through tracing.
    let filter = if verbose {
        "debug"
    } else {
        "sea_orm_migration=info"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_level(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_never_reach_error_messages() {
        let url = url::Url::parse("postgres://app:s3cret@db:5432/app").unwrap();
        assert_eq!(redact_password(&url), "postgres://app:***@db:5432/app");
    }
}
