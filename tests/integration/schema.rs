//! The migrated schema, read back: it must be the specification exactly.

use anyhow::Result;
use tests::{TestDb, spec_describe, strip_fence};

fn psql() -> Result<std::path::PathBuf> {
    Ok(pg_provider::binaries()?.join("psql"))
}

#[tokio::test]
async fn describe_of_the_migrated_table_equals_the_spec_byte_for_byte() -> Result<()> {
    let db = TestDb::new().await?;
    let described = schema_inspect::describe_table(&psql()?, &db.url(), "auth.refresh_session")?;
    let spec = spec_describe()?;
    // assert_eq! on the whole text prints both sides; a line diff is easier to read.
    if described != spec {
        panic!(
            "\\d+ auth.refresh_session differs from spec/refresh_session.describe.txt\n--- spec\n{spec}\n+++ migrated\n{described}"
        );
    }
    Ok(())
}

#[test]
fn the_committed_spec_is_the_shared_seed() -> Result<()> {
    // The seed lives beside the repository on our machines and in CI; a clone
    // elsewhere has only the committed copy, which this check then cannot see.
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/seed/000_37859d00c5fe5032.txt"
    );
    let Ok(seed) = std::fs::read_to_string(seed) else {
        eprintln!(
            "shared seed not found beside the repository; only the committed copy is checked"
        );
        return Ok(());
    };
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/refresh_session.describe.txt"
    ))?;
    assert_eq!(committed, seed, "spec/ must be a verbatim copy of the seed");
    assert!(strip_fence(&seed).is_some());
    Ok(())
}

#[tokio::test]
async fn what_describe_does_not_show_is_snapshotted() -> Result<()> {
    let db = TestDb::new().await?;
    let snapshot = schema_inspect::snapshot(&db.connect().await?).await?;
    insta::assert_snapshot!("schema_beyond_describe", snapshot);
    Ok(())
}
