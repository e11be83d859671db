//! `schema describe` and `schema check`: the live schema as text, and its
//! comparison with the expectation committed in `spec/`.
//!
//! Both use `schema_inspect::schema_text`, the same code the snapshot tests
//! use. The expectation is compiled into the binary, so `check` needs no
//! checkout and no psql: `spec/refresh_session.describe.txt` (psql 18's
//! `\d+`, the specification) followed by `spec/schema-snapshot.txt` (the
//! structured snapshot; a test keeps it equal to a freshly migrated database).

use super::EXIT_DRIFT;
use anyhow::{Context, Result};
use sea_orm_migration::sea_orm::DatabaseConnection;
use std::process::ExitCode;

const SPEC_DESCRIBE: &str = include_str!("../../../spec/refresh_session.describe.txt");
const SPEC_SNAPSHOT: &str = include_str!("../../../spec/schema-snapshot.txt");

/// The committed expectation, in `schema describe`'s format.
pub fn expected() -> Result<String> {
    let describe = SPEC_DESCRIBE
        .strip_prefix("```sql\n")
        .and_then(|body| {
            body.strip_suffix("```\n")
                .or_else(|| body.strip_suffix("```"))
        })
        .context("spec/refresh_session.describe.txt is not a ```sql fenced block")?;
    Ok(schema_inspect::join_schema_text(describe, SPEC_SNAPSHOT))
}

/// `schema describe`: the live schema on stdout.
pub async fn describe(db: &DatabaseConnection) -> Result<()> {
    let text = schema_inspect::schema_text(db)
        .await
        .context("cannot describe the schema")?;
    print!("{text}");
    Ok(())
}

/// `schema check`: exit 0 when the live schema equals the committed one,
/// otherwise a unified diff on stdout, a summary on stderr and exit 3.
pub async fn check(db: &DatabaseConnection) -> Result<ExitCode> {
    let expected = expected()?;
    let actual = schema_inspect::schema_text(db)
        .await
        .context("cannot describe the schema")?;
    match schema_inspect::unified_diff(
        &expected,
        &actual,
        "committed (spec/refresh_session.describe.txt + spec/schema-snapshot.txt)",
        "live database (DATABASE_URL)",
    ) {
        None => {
            eprintln!("schema matches the committed snapshot");
            Ok(ExitCode::SUCCESS)
        }
        Some(diff) => {
            print!("{diff}");
            let changed = diff
                .lines()
                .filter(|line| {
                    (line.starts_with('-') && !line.starts_with("---"))
                        || (line.starts_with('+') && !line.starts_with("+++"))
                })
                .count();
            eprintln!(
                "error: the schema differs from the committed snapshot ({changed} line(s) differ; diff on stdout)"
            );
            Ok(ExitCode::from(EXIT_DRIFT))
        }
    }
}
