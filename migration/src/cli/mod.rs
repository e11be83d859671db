//! Command-line parsing and the exit-code contract. Errors are printed as one
//! line on stderr (`error: …`) with a non-zero exit; nothing here panics on bad
//! input.
//!
//! Exit codes (also in `--help`):
//! - 0: success (`schema check`: the database matches the committed snapshot)
//! - 1: failure, one line on stderr (bad input, unreachable database, failed
//!   or refused migration, changed checksum)
//! - 2: usage error (clap)
//! - 3: `schema check` found differences (unified diff on stdout)

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sea_orm_migration::sea_orm::sqlx::Connection as _;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::process::ExitCode;

mod apply;
mod lock;
mod preview;
mod schema;

/// Exit code for a failed command (bad input, unreachable database, failed migration).
const EXIT_FAILURE: u8 = 1;
/// Exit code of `schema check` when the database differs from the snapshot.
pub(crate) const EXIT_DRIFT: u8 = 3;

const EXIT_CODES: &str = "Exit codes:
  0  success (schema check: identical to the committed snapshot)
  1  failure: one line on stderr (bad input, unreachable database, failed or refused migration)
  2  usage error
  3  schema check: the database differs from the committed snapshot (unified diff on stdout)";

#[derive(Parser)]
#[command(
    name = "migration",
    version,
    about = "Migrations for auth.refresh_session (PostgreSQL 18)",
    long_about = "Migrations for auth.refresh_session (PostgreSQL 18).\n\n\
        Commands that change the schema (up, down, fresh, refresh, reset) hold a \
        PostgreSQL advisory lock for their whole run, so concurrent runs queue \
        instead of racing. Every applied migration's sha256 is recorded; up refuses \
        to run when an applied migration's source has changed since.",
    after_help = EXIT_CODES
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
    /// Apply pending migrations, each in its own transaction, under the
    /// migration lock; progress and timings on stderr
    #[command(after_help = EXIT_CODES)]
    Up {
        /// Apply at most this many pending migrations
        #[arg(short, long)]
        num: Option<u32>,
        /// Print the SQL the pending migrations would run, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Roll back applied migrations, newest first, under the migration lock
    #[command(after_help = EXIT_CODES)]
    Down {
        /// How many applied migrations to roll back
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// Show each migration: pending, or applied with its checksum verdict
    /// (ok, unverified, or CHECKSUM MISMATCH when its source changed)
    #[command(after_help = EXIT_CODES)]
    Status,
    /// Drop the auth schema and the migration tables, then apply all migrations
    #[command(after_help = EXIT_CODES)]
    Fresh,
    /// Roll back all applied migrations, then apply all migrations
    #[command(after_help = EXIT_CODES)]
    Refresh,
    /// Roll back all applied migrations and drop the migration tables
    #[command(after_help = EXIT_CODES)]
    Reset,
    /// Start a throwaway PostgreSQL 18 (DATABASE_URL's server, Docker, or
    /// embedded), apply all migrations to a scratch database and print the
    /// resulting schema. Needs nothing configured.
    #[command(after_help = EXIT_CODES)]
    Preview,
    /// Read the live schema back: describe it, or check it against the
    /// committed snapshot
    #[command(after_help = EXIT_CODES)]
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print psql 18's `\d+ auth.refresh_session` (rendered without psql),
    /// then the snapshot of everything else the migrations own
    #[command(after_help = EXIT_CODES)]
    Describe,
    /// Compare the database with the snapshot committed in spec/: exit 0 when
    /// identical, exit 3 with a unified diff when not
    #[command(after_help = EXIT_CODES)]
    Check,
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
        Ok(code) => code,
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

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Preview = cli.command {
        preview::run().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let url = cli
        .database_url
        .context("no database given: set DATABASE_URL or pass -u postgres://…")?;
    let db = connect(&url).await?;
    let shown = shown_url(&url);
    match cli.command {
        Command::Up { num, dry_run: true } => apply::dry_run(&db, num).await?,
        Command::Up {
            num,
            dry_run: false,
        } => apply::locked(&db, &url, &shown, apply::Locked::Up(num)).await?,
        Command::Down { num } => apply::locked(&db, &url, &shown, apply::Locked::Down(num)).await?,
        Command::Status => apply::status(&db).await?,
        Command::Fresh => apply::locked(&db, &url, &shown, apply::Locked::Fresh).await?,
        Command::Refresh => apply::locked(&db, &url, &shown, apply::Locked::Refresh).await?,
        Command::Reset => apply::locked(&db, &url, &shown, apply::Locked::Reset).await?,
        Command::Schema {
            command: SchemaCommand::Describe,
        } => schema::describe(&db).await?,
        Command::Schema {
            command: SchemaCommand::Check,
        } => return schema::check(&db).await,
        Command::Preview => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL as it may appear in messages: password replaced by `***`.
fn shown_url(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "DATABASE_URL".to_owned(), |url| redact_password(&url))
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
        .sqlx_logging(false)
        // If this process dies mid-statement (SIGKILL, OOM), the server only
        // notices the dead client when it next talks to it; with this it
        // checks every second, so an orphaned migration is rolled back
        // promptly instead of holding its locks until its statement ends.
        .map_sqlx_postgres_opts(|options| {
            options.options([("client_connection_check_interval", "1000")])
        });
    Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to {shown}"))
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn redact_password(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

fn init_tracing(verbose: bool) {
    // sea-orm-migration reports each step through tracing; the CLI prints its
    // own progress with timings, so its messages only show with --verbose.
    let filter = if verbose {
        "debug"
    } else {
        "sea_orm_migration=warn"
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
