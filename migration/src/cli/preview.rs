//! The main job with no setup: a throwaway PostgreSQL 18, all migrations, the
//! resulting schema on stdout.

use anyhow::Result;

pub async fn run() -> Result<()> {
    anyhow::bail!("preview: not yet wired")
}
