//! `cargo run --release -p bench`: refresh-token rotation measured side by
//! side on one embedded PostgreSQL 18, in one run.
//!
//! - (a) `service` rotate (`RefreshService::rotate`, a sea-orm/sqlx pool
//!   that pings connections only after 30 s idle), and (a0) the same with
//!   sea-orm's default pool, which pings on every checkout;
//! - (b) pgbench sending exactly the statement the service sent (read back
//!   from `pg_stat_activity` after (a), not copied), prepared, autocommit;
//! - (b1) pgbench sending the floor: the single optimistic `UPDATE … WHERE
//!   jti = … AND refresh_version = … RETURNING`;
//! - (c) a naive rotate from Rust: `BEGIN; SELECT … FOR UPDATE; UPDATE …;
//!   COMMIT`;
//!
//! at 1, 8 and 32 clients (one connection each, each client rotating its own
//! session); then the same table at 10 thousand and 1 million sessions
//! (rotate and list latency), `purge_expired` of 1 million expired rows in
//! batches, and the migrations' apply time beside `psql -f` of their SQL.
//! Results go to `<out>/results.jsonl`, `<out>/rotation.svg` and
//! `<out>/summary.md`; the tables are also printed.

mod cpu;
mod migrate;
mod pgbench;
mod report;
mod rotation;
mod scale;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use pg_provider::PgServer;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    about = "Rotation throughput/latency beside pgbench and a naive rotate; scale; purge; migrations"
)]
struct Args {
    /// A smaller, shorter run (about a minute): 2 s per measurement, 10k vs
    /// 100k sessions, 100k rows purged. Its results go to target/bench-quick
    /// unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Where results.jsonl, rotation.svg and summary.md are written
    /// (default docs/bench, or target/bench-quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds per rotation measurement (default 4, or 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds of all variants at each concurrency; the table shows each
    /// variant's median round (default 3, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Rows per purge batch (one short transaction each).
    #[arg(long, default_value_t = 2000)]
    purge_batch: u32,
    /// Skip the 10k-vs-1M scale and purge part.
    #[arg(long)]
    skip_scale: bool,
    /// Skip the migration timing part.
    #[arg(long)]
    skip_migration: bool,
}

/// The sizes one run uses.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Duration of each rotation measurement.
    pub run: Duration,
    /// Rounds of all variants per concurrency (median reported).
    pub reps: usize,
    /// Concurrency levels (clients = connections).
    pub clients: &'static [usize],
    /// Background sessions in the rotation table, besides the clients' own.
    pub background_sessions: i64,
    /// Small and large table sizes for the scale part.
    pub scale_small: i64,
    /// See `scale_small`.
    pub scale_large: i64,
    /// Expired rows to purge.
    pub purge_rows: i64,
    /// Rows per purge batch.
    pub purge_batch: u32,
    /// Rotations / lists sampled at each scale.
    pub scale_samples: usize,
    /// Migration apply repetitions (median reported).
    pub migration_reps: usize,
}

/// The server and how to reach it.
pub struct Env {
    /// The embedded PostgreSQL 18.
    pub server: PgServer,
    /// psql, pgbench, … of the same version.
    pub bin_dir: PathBuf,
    /// A temp directory for pgbench logs and SQL files.
    pub scratch: PathBuf,
}

impl Env {
    /// URL of `database` as the owner (the embedded superuser).
    pub fn owner_url(&self, database: &str) -> String {
        self.server.url(database)
    }

    /// URL of `database` as `role` (trust authentication, no password).
    pub fn role_url(&self, database: &str, role: &str) -> Result<String> {
        let mut url = url::Url::parse(&self.server.url(database))?;
        url.set_username(role)
            .map_err(|()| anyhow::anyhow!("cannot put {role} in a URL"))?;
        url.set_password(None).ok();
        Ok(url.into())
    }

    /// Host and port for command-line clients.
    pub fn host_port(&self) -> Result<(String, u16)> {
        let url = url::Url::parse(&self.server.url("postgres"))?;
        Ok((
            url.host_str().unwrap_or("127.0.0.1").to_owned(),
            url.port().unwrap_or(5432),
        ))
    }
}

/// A pool of exactly `size` connections (all opened up front by callers that
/// need them, see `rotation::open_all`), configured as we recommend for the
/// service: a connection is pinged on checkout only after 30 s idle, so a
/// rotation is one round trip. sea-orm's default (sqlx's
/// `test_before_acquire`) pings on *every* checkout, a second round trip per
/// rotation; [`default_pool`] measures that.
pub async fn pool(url: &str, size: u32) -> Result<DatabaseConnection> {
    connect(url, size, true).await
}

/// Like [`pool`], with sea-orm's default checkout ping.
pub async fn default_pool(url: &str, size: u32) -> Result<DatabaseConnection> {
    connect(url, size, false).await
}

async fn connect(url: &str, size: u32, tuned: bool) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(size)
        .min_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if tuned {
        options.test_before_acquire_if_idle_for(Duration::from_secs(30));
    }
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

fn redact(url: &str) -> String {
    url.split('@').next_back().unwrap_or(url).to_owned()
}

/// `VACUUM (ANALYZE)` and `CHECKPOINT`, so each measurement starts from the
/// same state of the table and no checkpoint of an earlier run's writes
/// lands in the next one.
pub async fn settle(owner: &DatabaseConnection, table: &str) -> Result<()> {
    owner
        .execute_unprepared(&format!("VACUUM (ANALYZE) {table}"))
        .await?;
    owner.execute_unprepared("CHECKPOINT").await?;
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick;
    let out = args.out.clone().unwrap_or_else(|| {
        workspace_root().join(if quick {
            "target/bench-quick"
        } else {
            "docs/bench"
        })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let plan = Plan {
        run: Duration::from_secs_f64(args.seconds.unwrap_or(if quick { 2.0 } else { 4.0 })),
        reps: args.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
        clients: &[1, 8, 32],
        background_sessions: 10_000,
        scale_small: 10_000,
        scale_large: if quick { 100_000 } else { 1_000_000 },
        purge_rows: if quick { 100_000 } else { 1_000_000 },
        purge_batch: args.purge_batch.max(1),
        scale_samples: if quick { 300 } else { 2_000 },
        migration_reps: if quick { 2 } else { 5 },
    };

    eprintln!("bench: starting an embedded PostgreSQL 18");
    let server = PgServer::start_embedded().await?;
    let bin_dir = server
        .bin_dir()
        .context("the embedded server has a bin directory")?
        .to_path_buf();
    let scratch = std::env::temp_dir().join(format!("refresh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let env = Env {
        server,
        bin_dir,
        scratch,
    };

    let mut report = report::Report::new(&env, quick, &plan).await?;
    let result = run_all(&env, &plan, &args, &mut report).await;
    let _ = std::fs::remove_dir_all(&env.scratch);
    result?;
    report.write(&out)?;
    eprintln!("bench: results in {}", out.display());
    Ok(())
}

async fn run_all(env: &Env, plan: &Plan, args: &Args, report: &mut report::Report) -> Result<()> {
    rotation::run(env, plan, report).await?;
    report.print_rotation();
    if !args.skip_scale {
        scale::run(env, plan, report).await?;
        report.print_scale();
    }
    if !args.skip_migration {
        migrate::run(env, plan, report).await?;
        report.print_migration();
    }
    Ok(())
}
