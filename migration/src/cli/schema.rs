//! `schema describe` and `schema check`: the live schema as text, and its
//! comparison with the expectation committed in `spec/`.
//!
//! Both use `schema_inspect::schema_text`, the same code the snapshot tests
//! use. The expectation is compiled into the binary, so `check` needs no
//! checkout and no psql: `spec/refresh_session.describe.txt` (psql 18's
//! `\d+`, the specification) followed by `spec/schema-snapshot.snap` (the
//! structured snapshot, an insta snapshot that a test keeps equal to a
//! freshly migrated database).

use super::EXIT_DRIFT;
use anyhow::{Context, Result};
use sea_orm_migration::sea_orm::DatabaseConnection;
use std::process::ExitCode;

const SPEC_DESCRIBE: &str = include_str!("../../../spec/refresh_session.describe.txt");
const SPEC_SNAPSHOT: &str = include_str!("../../../spec/schema-snapshot.snap");

/// The committed expectation, in `schema describe`'s format.
pub fn expected() -> Result<String> {
    let describe = SPEC_DESCRIBE
        .strip_prefix("```sql\n")
        .and_then(|body| {
            body.strip_suffix("```\n")
                .or_else(|| body.strip_suffix("```"))
        })
        .context("spec/refresh_session.describe.txt is not a ```sql fenced block")?;
    let snapshot = snap_body(SPEC_SNAPSHOT)
        .context("spec/schema-snapshot.snap has no insta header (---, …, ---)")?;
    Ok(schema_inspect::join_schema_text(describe, &snapshot))
}

/// The content of an insta `.snap` file: what follows its `---` … `---`
/// header, with the single final newline that [`schema_inspect::snapshot`]
/// ends with (insta stores snapshots with trailing newlines trimmed).
fn snap_body(snap: &str) -> Option<String> {
    let after_open = snap.strip_prefix("---\n")?;
    let close = after_open.find("\n---\n")?;
    let body = &after_open[close + "\n---\n".len()..];
    Some(format!("{}\n", body.trim_end()))
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
        "committed (spec/refresh_session.describe.txt + spec/schema-snapshot.snap)",
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

#[cfg(test)]
mod tests {
    use super::snap_body;

    #[test]
    fn the_body_of_an_insta_snapshot_is_read_with_one_final_newline() {
        let snap = "---\nsource: tests/integration/cli.rs\n---\n## Schema\nauth\n";
        assert_eq!(snap_body(snap).as_deref(), Some("## Schema\nauth\n"));
        assert_eq!(snap_body("## Schema\n"), None);
    }

    #[test]
    fn the_committed_expectation_parses() {
        let expected = super::expected().expect("spec files parse");
        assert!(expected.contains("Table \"auth.refresh_session\""));
        assert!(expected.contains("## Policies"));
    }
}
