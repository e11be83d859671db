//! A PostgreSQL 18 server to run against (work in progress: binaries first).

mod binaries;
mod error;

pub use binaries::binaries;
pub use error::ProviderError;
