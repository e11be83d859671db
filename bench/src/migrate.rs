//! Applying every migration to an empty database: `Migrator::up` beside
//! `psql -f` of the same statements (`migration::up_script` of each change,
//! one transaction per migration as the migrator does), each on a fresh
//! database, alternating, median of several repetitions. Both timings
//! include connecting; `psql -c 'SELECT 1'` shows psql's own start-up.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use migration::{Migrator, MigratorTrait};

use crate::report::{MigrationRow, Report};
use crate::{Env, Plan, pool};

/// The migrations' up SQL as one psql script.
pub fn psql_script() -> String {
    let mut script = String::new();
    for change in migration::changes() {
        script.push_str(&format!("-- {}\nBEGIN;\n", change.name()));
        script.push_str(&migration::up_script(change));
        script.push_str("COMMIT;\n");
    }
    script
}

async fn psql(env: &Env, database: &str, args: &[&str]) -> Result<Duration> {
    let (host, port) = env.host_port()?;
    let t = Instant::now();
    let out = tokio::process::Command::new(env.bin_dir.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &host,
            "-p",
            &port.to_string(),
        ])
        .args(["-U", "postgres", "-d", database])
        .args(args)
        .output()
        .await
        .context("running psql")?;
    let elapsed = t.elapsed();
    ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Measures and adds the row to `report`.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    let file = env.scratch.join("migrations.sql");
    std::fs::write(&file, psql_script())?;
    let file = file.to_string_lossy().into_owned();
    let (mut rust, mut cli, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.migration_reps {
        let name = format!("bench_migrate_rust_{i}");
        env.server.create_database(&name, Some("template0")).await?;
        let t = Instant::now();
        let db = pool(&env.owner_url(&name), 1).await?;
        Migrator::up(&db, None).await?;
        db.close().await?;
        rust.push(t.elapsed());

        let name = format!("bench_migrate_psql_{i}");
        env.server.create_database(&name, Some("template0")).await?;
        cli.push(psql(env, &name, &["-f", &file]).await?);
        baseline.push(psql(env, &name, &["-c", "SELECT 1"]).await?);
    }
    let row = MigrationRow {
        migrations: migration::changes().len(),
        statements: migration::changes().iter().map(|c| c.up().len()).sum(),
        reps: plan.migration_reps,
        migrator_ms: median(rust).as_secs_f64() * 1e3,
        psql_ms: median(cli).as_secs_f64() * 1e3,
        psql_select1_ms: median(baseline).as_secs_f64() * 1e3,
    };
    eprintln!(
        "bench: migrations: Migrator::up {:.1} ms, psql -f {:.1} ms (psql -c 'SELECT 1' {:.1} ms)",
        row.migrator_ms, row.psql_ms, row.psql_select1_ms
    );
    report.migration = Some(row);
    Ok(())
}
