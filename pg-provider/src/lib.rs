//! A PostgreSQL 18 server to run against (work in progress: choice and SQL helpers).

mod binaries;
mod choose;
mod error;
mod sql;

pub use binaries::binaries;
pub use error::ProviderError;

/// Where a PostgreSQL server comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// An existing server named by `DATABASE_URL`; never stopped by this crate.
    DatabaseUrl,
    /// A `postgres:18` container started through testcontainers.
    Container,
    /// A PostgreSQL 18 postmaster started from local binaries.
    Embedded,
}
