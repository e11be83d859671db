//! Test harness: every test gets its own database, cloned from a template
//! that ran the real migrations, on one PostgreSQL 18 shared by the whole test
//! binary (see `pg-provider` for how that server is chosen and started).
//!
//! Cloning a template costs a few milliseconds; running `initdb` or all
//! migrations per test would cost seconds.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let db = tests::TestDb::new().await?;        // migrated, isolated
//! let owner = db.connect().await?;              // as the migrating role
//! # Ok(()) }
//! ```

use anyhow::{Context, Result};
use migration::{Migrator, MigratorTrait};
use pg_provider::{PgServer, ProviderKind};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::OnceCell;

/// The migrated template every [`TestDb::new`] clones.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test.
///
/// On the embedded server it disappears with the server at the end of the
/// run; on a server you provide (DATABASE_URL or a container) it is dropped
/// when the test passes and kept, with its name printed, when it fails.
pub struct TestDb {
    name: String,
    server: &'static PgServer,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Result<Self> {
        let server = pg_provider::shared().await?;
        let template = TEMPLATE.get_or_try_init(|| create_template(server)).await?;
        Self::create(server, Some(template)).await
    }

    /// A fresh database with nothing applied, for tests of the migrations.
    pub async fn empty() -> Result<Self> {
        let server = pg_provider::shared().await?;
        Self::create(server, None).await
    }

    async fn create(server: &'static PgServer, template: Option<&str>) -> Result<Self> {
        let name = unique_name(&current_test_name());
        server
            .create_database(&name, Some(template.unwrap_or("template0")))
            .await
            .with_context(|| format!("creating test database {name}"))?;
        Ok(Self { name, server })
    }

    /// The database's name (printed when a test fails, so you can inspect it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server this database lives on.
    pub fn server(&self) -> &'static PgServer {
        self.server
    }

    /// Connection URL as the migrating role (the table owner).
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    /// Connects as the migrating role: owner of every table, so row level
    /// security does not apply. Use [`TestDb::connect_as`] to test policies.
    pub async fn connect(&self) -> Result<DatabaseConnection> {
        connect(&self.url()).await
    }

    /// Connects as `role`, a LOGIN role the migrations created. On the
    /// embedded server (trust authentication) no password is needed; on other
    /// servers the role gets a test-only password first.
    pub async fn connect_as(&self, role: &str) -> Result<DatabaseConnection> {
        let mut url = url::Url::parse(&self.url())?;
        url.set_username(role)
            .map_err(|()| anyhow::anyhow!("cannot put role {role} in a URL"))?;
        if self.server.kind() == ProviderKind::Embedded {
            url.set_password(None).ok();
        } else {
            let password = format!("test-only-{role}");
            let owner = self.connect().await?;
            owner
                .execute_unprepared(&format!(
                    "ALTER ROLE \"{}\" PASSWORD '{password}'",
                    role.replace('"', "\"\"")
                ))
                .await?;
            url.set_password(Some(&password)).ok();
        }
        connect(url.as_str()).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test database kept for inspection: {}",
                self.server.url(&self.name)
            );
            return;
        }
        if self.server.kind() == ProviderKind::Embedded {
            return; // gone with the server at the end of the run
        }
        // Drop cannot await, and the test's runtime may be shutting down:
        // use a private runtime on a scoped thread.
        let (server, name) = (self.server, self.name.clone());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime
                    && let Err(error) = runtime.block_on(server.drop_database(&name))
                {
                    eprintln!("could not drop test database {name}: {error}");
                }
            });
        });
    }
}

/// Connects with a small pool; tests that need many connections build their own.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(4).sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

async fn create_template(server: &'static PgServer) -> Result<String> {
    let name = format!("migrated_template_{}", std::process::id());
    server.create_database(&name, Some("template0")).await?;
    let db = connect(&server.url(&name)).await?;
    Migrator::up(&db, None)
        .await
        .context("applying the migrations to the template database")?;
    // CREATE DATABASE … TEMPLATE refuses a template with open connections.
    db.close().await?;
    Ok(name)
}

/// cargo test names each test's thread after the test (`module::test_name`).
fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .to_owned()
}

/// `t<n>_<test name>`, cut to PostgreSQL's 63-byte identifier limit.
fn unique_name(test_name: &str) -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let clean: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("t{}_{id}_{clean}", std::process::id());
    name.truncate(63);
    name
}

/// The specification: psql 18's `\d+ auth.refresh_session`, as committed in
/// `spec/` (the seed file, fenced as a ```sql block).
pub fn spec_describe() -> Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/refresh_session.describe.txt"
    );
    let fenced = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    strip_fence(&fenced).with_context(|| format!("{path} is not a ```sql fenced block"))
}

/// The text between a leading "```sql" line and a trailing "```" line.
pub fn strip_fence(fenced: &str) -> Option<String> {
    let body = fenced.strip_prefix("```sql\n")?;
    let body = body
        .strip_suffix("```\n")
        .or_else(|| body.strip_suffix("```"))?;
    Some(body.to_owned())
}

#[cfg(test)]
mod unit {
    use super::{strip_fence, unique_name};

    #[test]
    fn names_are_unique_valid_identifiers() {
        let a = unique_name("a_test_with_a_name_that_is_far_too_long_for_postgresql_identifiers");
        let b = unique_name("a_test_with_a_name_that_is_far_too_long_for_postgresql_identifiers");
        assert_ne!(a, b);
        assert!(a.len() <= 63);
        assert!(unique_name("Weird-Name!").ends_with("weird_name_"));
    }

    #[test]
    fn fences_are_stripped_exactly() {
        assert_eq!(strip_fence("```sql\nx\n\n```\n").as_deref(), Some("x\n\n"));
        assert_eq!(strip_fence("no fence"), None);
    }
}
